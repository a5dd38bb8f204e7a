"""Integration tests run against the local cluster's real API server and test node.

The session fixture brings the cluster up (idempotently) with a 1 s restart back-off base; a
test that cannot get the cluster fails: nothing here is ever skipped.
"""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator

import door
import pytest
import yaml
from kubernetes_asyncio import client, config

from foundation_operator.core import rbac
from kube import REPO, RESTART_BACKOFF, Kube
from operators import OperatorProcess

pytestmark = pytest.mark.integration


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration" in str(item.path):
            item.add_marker(pytest.mark.integration)
    # Disruptive tests go after the others: their aftermath (a controller-manager busy for
    # minutes with a thousand Agents' Services going) must not starve the Endpoints of the tests
    # after them, as it did once in CI. Tests that take the cluster down and up go last.
    items.sort(
        key=lambda item: (
            item.get_closest_marker("cluster_lifecycle") is not None,
            item.get_closest_marker("disruptive") is not None,
        )
    )


@pytest.fixture(scope="session")
def cluster() -> str:
    """`e2e/local/cluster up`; the kubeconfig's path."""
    subprocess.run(
        [str(REPO / "e2e/local/cluster"), "up", "--restart-backoff", RESTART_BACKOFF],
        check=True,
    )
    return str(REPO / ".local-cluster" / "kubeconfig")


@pytest.fixture(scope="session")
async def api(cluster: str) -> AsyncIterator[client.ApiClient]:
    configuration = client.Configuration()
    await config.load_kube_config(config_file=cluster, client_configuration=configuration)
    async with client.ApiClient(configuration) as api_client:
        yield api_client


@pytest.fixture
async def kube(api: client.ApiClient, request: pytest.FixtureRequest) -> AsyncIterator[Kube]:
    """A fresh namespace for the test, deleted afterwards (its pods with it)."""
    name = f"t-{request.node.name[:40].lower().replace('_', '-').strip('-')}-{uuid.uuid4().hex[:5]}"
    kube = Kube(api, name)
    await kube.create_namespace()
    try:
        yield kube
    finally:
        if os.environ.get("FOUNDATION_KEEP_NAMESPACES") != "1":
            await kube.delete_namespace()


@pytest.fixture
def operator(session_operator: OperatorProcess) -> OperatorProcess:
    """The tests' operator, leading and its door answering: a test before may have stopped
    and started it again (an upgrade, a SIGKILL), and the next must not race its start."""
    deadline = time.monotonic() + 60
    while session_operator.role_now() != "leader":
        if time.monotonic() > deadline:
            raise AssertionError("the tests' operator did not lead within 60 s")
        time.sleep(0.2)
    door.wait_serving()
    return session_operator


@pytest.fixture(scope="session")
def session_operator(cluster: str) -> Iterator[OperatorProcess]:
    """The CRDs applied and `foundation-operator` running against the local cluster."""
    kubectl = str(REPO / "e2e/local/kubectl")
    subprocess.run([kubectl, "apply", "-f", str(REPO / "crds")], check=True, capture_output=True)
    # The ClusterRoles the chart installs beside the operator: the members' and the callers'.
    subprocess.run(
        [kubectl, "apply", "-f", "-"],
        input=yaml.safe_dump_all(rbac.agent_cluster_roles()).encode(),
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [
            kubectl,
            "wait",
            "--for=condition=Established",
            "crd/agents.foundation.dev",
            "crd/workflows.foundation.dev",
            "crd/workflowtemplates.foundation.dev",
            "crd/schedules.foundation.dev",
        ],
        check=True,
        capture_output=True,
    )
    # People's door (the APIService the CLI and people's calls go through), served by this
    # operator only: other operators the tests start serve none.
    process = OperatorProcess(cluster, env=door.install())
    process.start()
    # Leading before any test runs: a test that starts a second replica at once would race it.
    deadline = time.monotonic() + 60
    while process.role_now() != "leader":
        if time.monotonic() > deadline:
            raise AssertionError("the tests' operator did not lead within 60 s")
        time.sleep(0.2)
    door.wait_available()
    yield process
    process.stop()
    door.uninstall()
