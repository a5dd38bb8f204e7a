"""`helm upgrade` from the previous release to this one, on the local cluster: the previous
chart installed with the previous release's code (its own environment, tests/integration/
previous.py: the operator and the members it makes run that code), an Agent working and holding
state and task records; then this chart. Every existing Agent must come out with members that
know who calls them — tokens required, its NetworkPolicy, a Role that no longer lets it patch
its own spec — without losing a task or any state."""

from __future__ import annotations

import asyncio
import signal
import uuid
from pathlib import Path

import helm_python
import httpx
import pytest
from kubernetes_asyncio import client
from previous import IMAGE, chart, crds, environment, run_image_from

from foundation_operator.core.security import CALLER_TOKEN_VOLUME
from kube import REPO, Kube, phase
from operators import OperatorProcess

pytestmark = pytest.mark.usefixtures("operator")
CHART = REPO / "charts/foundation"


def running(n: int):
    def check(agent: dict) -> bool:
        status = agent.get("status") or {}
        return phase(agent) == "Running" and status.get("ready") == f"{n}/{n}"

    return check


async def member_images(kube: Kube) -> set[str]:
    return {
        p["spec"]["containers"][0]["image"]
        for p in (await kube.members("counter")).values()
        if not p["metadata"].get("deletionTimestamp")
    }


async def test_an_upgrade_from_the_previous_release_loses_no_task_and_no_state(
    kube: Kube, operator: OperatorProcess, cluster: str, tmp_path: Path
) -> None:
    run_image_from(await asyncio.to_thread(environment))
    previous_chart = await asyncio.to_thread(chart, tmp_path)
    previous_crds = crds(previous_chart)
    release = f"up-{uuid.uuid4().hex[:5]}"
    helm = helm_python.Config(kubeconfig_path=cluster, namespace=kube.ns)
    operator.stop(signal.SIGTERM)  # one supervisor at a time: the chart's
    try:
        # The cluster as the previous release left it: its CRDs.
        kube.kubectl("apply", "-f", str(previous_crds))
        # The previous release, as it was installed: its values, its image (its code).
        await asyncio.to_thread(
            helm.install,
            previous_chart,
            release,
            {
                "image": {"tag": IMAGE.split(":")[1]},
                "replicas": 1,
                "leaderElection": {"enabled": False},
                "excludedNamespaces": ["foundation-demo"],
            },
            namespace=kube.ns,
            wait="watcher",
            timeout=180,
        )
        await kube.custom.create_namespaced_custom_object(
            "foundation.dev",
            "v1alpha1",
            kube.ns,
            "agents",
            {
                "apiVersion": "foundation.dev/v1alpha1",
                "kind": "Agent",
                "metadata": {"name": "counter"},
                # No image: the chart's (the release's), so an upgrade brings the new code.
                "spec": {
                    "agent": "foundation_agent.agents:CounterAgent",
                    "replicas": 2,
                    "sidecar": {"enabled": False},
                },
            },
        )
        await kube.wait_agent("counter", running(2), 120, "counter under the release")
        assert await member_images(kube) == {IMAGE}
        members = await kube.members("counter")
        ip = members["counter-0"]["status"]["podIP"]
        async with httpx.AsyncClient(timeout=10) as http:
            # The previous release's members take calls from anyone: no token.
            for i in range(5):
                sent = await http.post(
                    f"http://{ip}:8080/v1/tasks",
                    json={"id": f"before-{i}", "action": "increment", "input": {"by": 2}},
                )
                assert sent.status_code == 202, sent.text
            done = await http.get(f"http://{ip}:8080/v1/tasks/before-4?wait=10")
            assert done.json()["status"] == "succeeded"
            # One still queued when the upgrade begins: it must run, once.
            slow = await http.post(
                f"http://{ip}:8080/v1/tasks",
                json={"id": "during", "action": "increment", "input": {"by": 100}},
            )
            assert slow.status_code == 202

        # This release, as docs/operator.md says to upgrade: the CRDs, then the chart.
        kube.kubectl("apply", "-f", str(REPO / "crds"))
        await asyncio.to_thread(
            helm.upgrade,
            CHART,
            release,
            {
                "replicas": 1,
                "leaderElection": {"enabled": False},
                "excludedNamespaces": ["foundation-demo"],
                # The cluster-wide objects are the tests' harness's already.
                "clusterRoles": {"create": False},
                "door": {"apiService": {"create": False}, "creatorWebhook": {"create": False}},
            },
            namespace=kube.ns,
            wait="watcher",
            timeout=180,
        )
        await kube.wait(lambda: _rolled(kube), 180, "every member rolled to this release's image")
        await kube.wait_agent("counter", running(2), 120, "counter Running after the upgrade")
        for pod in (await kube.members("counter")).values():
            if pod["metadata"].get("deletionTimestamp"):
                continue  # the previous release's, on its way out
            (container,) = pod["spec"]["containers"]
            env = {e["name"]: e.get("value") for e in container.get("env", [])}
            assert env["FOUNDATION_CALLER_AUTH"] == "Required"
            assert CALLER_TOKEN_VOLUME in {v["name"] for v in pod["spec"]["volumes"]}

        ip = (await kube.members("counter"))["counter-0"]["status"]["podIP"]
        async with httpx.AsyncClient(timeout=10) as http:
            refused = await http.post(
                f"http://{ip}:8080/v1/tasks", json={"id": "x", "action": "get"}
            )
            assert refused.status_code == 401
        async with await kube.member_client(timeout=15) as http:
            # Every record from before, as it was; the queued one ran once.
            for i in range(5):
                record = (await http.get(f"http://{ip}:8080/v1/tasks/before-{i}")).json()
                assert record["status"] == "succeeded" and "sender" not in record, record
            during = (await http.get(f"http://{ip}:8080/v1/tasks/during?wait=20")).json()
            assert during["status"] == "succeeded", during
            counted = await http.post(
                f"http://{ip}:8080/v1/tasks?wait=10", json={"id": "after", "action": "get"}
            )
            assert counted.status_code == 202
            after = (await http.get(f"http://{ip}:8080/v1/tasks/after?wait=10")).json()
            assert after["result"] == {"count": 110}, after
        # The Agent's account no longer patches its spec, and a NetworkPolicy guards it.
        rbac = client.RbacAuthorizationV1Api(kube.api)
        role = await rbac.read_namespaced_role("foundation-agent-counter", kube.ns)
        agents_rules = [
            r
            for r in role.rules
            if "agents" in (r.resources or []) and "foundation.dev" in r.api_groups
        ]
        assert all(r.verbs == ["get"] for r in agents_rules)
        policies = client.NetworkingV1Api(kube.api)
        assert await policies.read_namespaced_network_policy("foundation-agent-counter", kube.ns)
    finally:
        try:
            await asyncio.to_thread(helm.uninstall, release, ignore_not_found=True)
        finally:
            helm.close()
            kube.kubectl("apply", "-f", str(REPO / "crds"))
            operator.start()


async def _rolled(kube: Kube) -> bool:
    images = await member_images(kube)
    return bool(images) and IMAGE not in images
