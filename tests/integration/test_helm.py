"""`helm install`, `upgrade` and `uninstall` of charts/foundation on the local cluster, with Helm
4's own engine (helm-python-sdk): the operator pods start on the test node under the chart's
restricted securityContext, one becomes active, an example Agent applied with kubectl becomes
Ready and keeps running, with its state, through an upgrade; uninstalling removes the operator
and leaves the CRDs and Agents (as Helm does)."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import time
import uuid

import helm_python
import httpx
import pytest
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from kube import REPO, Kube, is_ready, phase
from operators import OperatorProcess

pytestmark = pytest.mark.usefixtures("operator")
CHART = REPO / "charts/foundation"
VALUES = {"leaderElection": {"leaseDurationSeconds": 4}, "logLevel": "INFO"}


def running(n: int):
    return lambda a: phase(a) == "Running" and a["status"].get("ready") == f"{n}/{n}"


async def operator_pods(kube: Kube, release: str) -> list[dict]:
    answer = await kube.core.list_namespaced_pod(
        kube.ns, label_selector=f"app.kubernetes.io/instance={release}", _preload_content=False
    )
    return [p for p in json.loads(await answer.read())["items"]]


async def roles(pods: list[dict]) -> list[str]:
    found = []
    async with httpx.AsyncClient() as http:
        for pod in pods:
            ip = pod.get("status", {}).get("podIP")
            try:
                found.append(
                    (await http.get(f"http://{ip}:8080/healthz", timeout=2)).json()["role"]
                )
            except (httpx.TransportError, ValueError):
                found.append("unreachable")
    return sorted(found)


async def test_install_upgrade_and_uninstall_keep_agents_and_their_state(
    kube: Kube, operator: OperatorProcess, cluster: str
) -> None:
    release = f"fdn-{uuid.uuid4().hex[:5]}"
    helm = helm_python.Config(kubeconfig_path=cluster, namespace=kube.ns)
    operator.stop(signal.SIGTERM)  # one supervisor at a time: the chart's
    try:
        started = time.monotonic()
        installed = await asyncio.to_thread(
            helm.install, CHART, release, VALUES, namespace=kube.ns, wait="watcher", timeout=180
        )
        install_seconds = time.monotonic() - started
        assert installed["status"] == "deployed", installed
        pods = await operator_pods(kube, release)
        assert len(pods) == 2 and all(is_ready(p) for p in pods)
        for pod in pods:  # the chart's restricted securityContext reached the pods
            assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
        await kube.wait(
            lambda: _one_leader(kube, release), 30, "one operator replica active, one standby"
        )
        pdb = json.loads(
            subprocess.run(
                [str(REPO / "e2e/local/kubectl"), "-n", kube.ns, "get", "pdb", "-o", "json"],
                capture_output=True,
                check=True,
            ).stdout
        )["items"]
        assert [(p["apiVersion"], p["spec"]["minAvailable"]) for p in pdb] == [
            ("policy/v1beta1", 1)  # the chart picks v1beta1 on this 1.20 cluster
        ]

        kube.kubectl_apply(REPO / "examples/agent.yaml")
        await kube.wait_agent("counter", running(2), 90, "the example Ready under the chart")
        members = await kube.members("counter")
        ip = members["counter-0"]["status"]["podIP"]
        async with httpx.AsyncClient() as http:
            for i in range(5):
                answer = await http.post(
                    f"http://{ip}:8080/v1/tasks",
                    json={"id": f"t{i}", "action": "increment", "input": {"by": 2}},
                )
                assert answer.status_code == 202
            await kube.wait(lambda: _done(http, ip, "t4"), 30, "the increments done")
        uids = {name: p["metadata"]["uid"] for name, p in members.items()}

        upgraded = await asyncio.to_thread(
            helm.upgrade,
            CHART,
            release,
            {**VALUES, "logLevel": "DEBUG", "workers": 32},
            namespace=kube.ns,
            wait="watcher",
            timeout=180,
        )
        assert upgraded["revision"] == 2 and upgraded["status"] == "deployed"
        await kube.wait(
            lambda: _one_leader(kube, release), 60, "one replica active after the upgrade"
        )
        pods = await operator_pods(kube, release)
        env = {e["name"]: e.get("value") for e in pods[0]["spec"]["containers"][0]["env"]}
        assert env["FOUNDATION_LOG_LEVEL"] == "DEBUG" and env["FOUNDATION_WORKERS"] == "32"
        agent = await kube.wait_agent("counter", running(2), 60, "the example still Running")
        after = await kube.members("counter")
        assert {n: p["metadata"]["uid"] for n, p in after.items()} == uids  # never restarted
        async with httpx.AsyncClient() as http:
            record = (await http.post(
                f"http://{ip}:8080/v1/tasks", json={"id": "get", "action": "get"}
            )).json()  # fmt: skip
            await kube.wait(lambda: _done(http, ip, "get"), 30, "get done")
            state = (await http.get(f"http://{ip}:8080/v1/tasks/get")).json()
        assert record["id"] == "get" and state["result"] == {"count": 10}
        assert agent["status"]["restarts"] == 0

        await asyncio.to_thread(helm.uninstall, release, wait="watcher", timeout=120)
        await kube.wait(
            lambda: _no_operator(kube, release), 60, "the operator's pods gone after uninstall"
        )
        rbac = client.RbacAuthorizationV1Api(kube.api)
        with pytest.raises(ApiException) as gone:
            await rbac.read_cluster_role(f"{release}-foundation-operator")
        assert gone.value.status == 404
        # What stays: the CRD, and so the Agents and their members.
        extensions = client.ApiextensionsV1Api(kube.api)
        assert (await extensions.read_custom_resource_definition("agents.foundation.dev")).metadata
        assert await kube.agent("counter") is not None
        print(f"helm install took {install_seconds:.1f} s (both operator pods Ready)")
    finally:
        try:
            await asyncio.to_thread(helm.uninstall, release, ignore_not_found=True)
        finally:
            helm.close()
            operator.start()
            await kube.wait(lambda: _leads(operator), 30, "the tests' operator leading again")


async def _one_leader(kube: Kube, release: str) -> bool:
    pods = [
        p for p in await operator_pods(kube, release) if not p["metadata"].get("deletionTimestamp")
    ]
    return len(pods) == 2 and await roles(pods) == ["leader", "standby"]


async def _done(http: httpx.AsyncClient, ip: str, task: str) -> bool:
    answer = await http.get(f"http://{ip}:8080/v1/tasks/{task}")
    return answer.status_code == 200 and answer.json()["status"] == "succeeded"


async def _no_operator(kube: Kube, release: str) -> bool:
    return not await operator_pods(kube, release)


async def _leads(operator: OperatorProcess) -> bool:
    return await operator.role() == "leader"
