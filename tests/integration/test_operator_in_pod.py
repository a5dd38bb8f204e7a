"""The operator as a pod under exactly the permissions `foundation_operator.core.rbac` writes
down."""

from __future__ import annotations

import signal

import httpx
import pytest
from kubernetes_asyncio import client

from foundation_operator.core import rbac
from kube import REPO, Kube, is_ready, phase, pod
from operators import OperatorProcess

pytestmark = pytest.mark.usefixtures("operator")


async def test_operator_in_a_pod_supervises_with_only_its_written_rules(
    kube: Kube, operator: OperatorProcess
) -> None:
    name = f"foundation-operator-{kube.ns}"
    cluster_scoped = client.RbacAuthorizationV1Api(kube.api)
    for obj in rbac.manifests(kube.ns, name):
        if obj["metadata"]["name"] in {r["metadata"]["name"] for r in rbac.agent_cluster_roles()}:
            continue  # the shared ClusterRoles: the harness's (conftest), as a chart makes them
        if obj["metadata"].get("namespace") == "kube-system":
            continue  # the door's reading of the API server's relay: this one serves no door
        if obj["kind"] == "ClusterRole":
            await cluster_scoped.create_cluster_role(obj)
        elif obj["kind"] == "ClusterRoleBinding":
            await cluster_scoped.create_cluster_role_binding(obj)
        else:
            await kube.create(obj)
    operator.stop(signal.SIGTERM)  # one supervisor at a time: the pod's
    try:
        container = {
            "name": "operator",
            "image": "foundation-operator:dev",
            "command": [str(REPO / ".venv/bin/foundation-operator")],
            "env": [
                {"name": "FOUNDATION_LOG_FORMAT", "value": "json"},
                {"name": "FOUNDATION_LEASE_DURATION_SECONDS", "value": "4"},
            ],
            "ports": [{"name": "health", "containerPort": 8080}],
            "readinessProbe": {
                "httpGet": {"path": "/readyz", "port": "health"},
                "periodSeconds": 1,
            },
        }
        await kube.create(pod("operator", container, serviceAccountName=name))
        ready = await kube.wait_running("operator", timeout=60)
        ip = ready["status"]["podIP"]
        async with httpx.AsyncClient() as http:
            assert (await http.get(f"http://{ip}:8080/healthz")).json()["role"] == "leader"

        await kube.create_agent("guarded", replicas=2, capabilities=["guard"])
        agent = await kube.wait_agent(
            "guarded", lambda a: phase(a) == "Running", what="Agent Running under the pod"
        )
        assert agent["status"]["ready"] == "2/2"
        assert await kube.names("Service") == ["foundation-cap-guard", "guarded"]
        assert await kube.names("RoleBinding") == ["foundation-agent-guarded", name]
        await kube.delete_agent("guarded")
        await kube.wait(
            lambda: _nothing_left(kube), 60, "the Agent's pods and Services gone after delete"
        )

        async with httpx.AsyncClient() as http:
            scraped = (await http.get(f"http://{ip}:9090/metrics")).text
        assert 'foundation_operator_api_errors_total{code="403"}' not in scraped
        log = kube.log(await kube.pod("operator"), "operator")
        assert '"level": "ERROR"' not in log
        # RBAC refusals read 'is forbidden: User "system:serviceaccount:…" cannot …'.
        for refused in ("cannot", "Not enough permissions"):
            assert refused not in log, f"{refused!r} in the operator's log:\n{log[-3000:]}"
        assert is_ready(await kube.pod("operator"))
    finally:
        await kube.delete_pod("operator")
        await cluster_scoped.delete_cluster_role_binding(name)
        await cluster_scoped.delete_cluster_role(name)
        operator.start()
        await kube.wait(lambda: _leads(operator), 30, "the tests' operator leading again")


async def _nothing_left(kube: Kube) -> bool:
    return not await kube.members("guarded") and await kube.names("Service") == []


async def _leads(operator: OperatorProcess) -> bool:
    return await operator.role() == "leader"
