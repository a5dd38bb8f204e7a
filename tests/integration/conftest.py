"""Integration tests run against the local cluster's real API server and test node.

The session fixture brings the cluster up (idempotently) with a 1 s restart back-off base; a
test that cannot get the cluster fails: nothing here is ever skipped.
"""

from __future__ import annotations

import os
import signal
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
from kubernetes_asyncio import client, config

from kube import REPO, RESTART_BACKOFF, Kube

pytestmark = pytest.mark.integration


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration" in str(item.path):
            item.add_marker(pytest.mark.integration)
    # Tests that take the cluster down and up again go last.
    items.sort(key=lambda item: item.get_closest_marker("cluster_lifecycle") is not None)


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


class OperatorProcess:
    """`foundation-operator` running on this machine against the local cluster."""

    def __init__(self, kubeconfig: str) -> None:
        self.kubeconfig = kubeconfig
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.log = open(REPO / ".local-cluster" / "logs" / "operator-tests.log", "ab")
        env = dict(
            os.environ,
            KUBECONFIG=self.kubeconfig,
            FOUNDATION_HEALTH_HOST="127.0.0.1",
            FOUNDATION_HEALTH_PORT="18080",
            FOUNDATION_METRICS_PORT="19090",
            FOUNDATION_LOG_FORMAT="json",
        )
        self.proc = subprocess.Popen(
            [str(REPO / ".venv/bin/foundation-operator")],
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is None:
            return
        self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None
        self.log.close()


@pytest.fixture(scope="session")
def operator(cluster: str) -> Iterator[OperatorProcess]:
    """The CRDs applied and `foundation-operator` running against the local cluster."""
    kubectl = str(REPO / "e2e/local/kubectl")
    subprocess.run([kubectl, "apply", "-f", str(REPO / "crds")], check=True, capture_output=True)
    subprocess.run(
        [kubectl, "wait", "--for=condition=Established", "crd/agents.foundation.dev"],
        check=True,
        capture_output=True,
    )
    process = OperatorProcess(cluster)
    process.start()
    yield process
    process.stop()
