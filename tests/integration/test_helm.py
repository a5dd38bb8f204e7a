"""`helm install`, `upgrade` and `uninstall` of charts/foundation on the local cluster, with Helm
4's own engine (helm-python-sdk): the operator pods start on the test node under the chart's
restricted securityContext, one becomes active, an example Agent applied with kubectl becomes
Ready and keeps running, with its state, through an upgrade; uninstalling removes the operator
and leaves the CRDs and Agents (as Helm does)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import helm_python
import httpx
import pytest
import yaml
from aiohttp import web
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from kube import REPO, Kube, is_ready, phase
from operators import OperatorProcess

pytestmark = pytest.mark.usefixtures("operator")
CHART = REPO / "charts/foundation"
KUBECTL = str(REPO / "e2e/local/kubectl")
VALUES = {
    "leaderElection": {"leaseDurationSeconds": 4},
    "logLevel": "INFO",
    "excludedNamespaces": ["foundation-demo"],  # `make demo`'s operator has it
    # The shared ClusterRoles are the tests' harness's already (conftest), as a second
    # release in a cluster finds them.
    "clusterRoles": {"create": False},
    # People's door's APIService too: the harness's operator serves it while the tests run.
    "door": {"apiService": {"create": False}, "creatorWebhook": {"create": False}},
}


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


@contextlib.asynccontextmanager
async def chart_in_charge(
    kube: Kube, operator: OperatorProcess, cluster: str
) -> AsyncIterator[tuple[helm_python.Config, str]]:
    """A Helm client and a release name for one test. The tests' own operator stops meanwhile
    (one supervisor at a time: the chart's) and comes back after, the release uninstalled."""
    release = f"fdn-{uuid.uuid4().hex[:5]}"
    helm = helm_python.Config(kubeconfig_path=cluster, namespace=kube.ns)
    operator.stop(signal.SIGTERM)
    try:
        yield helm, release
    finally:
        try:
            await asyncio.to_thread(helm.uninstall, release, ignore_not_found=True)
        finally:
            helm.close()
            operator.start()
            await kube.wait(lambda: _leads(operator), 30, "the tests' operator leading again")


async def test_install_upgrade_and_uninstall_keep_agents_and_their_state(
    kube: Kube, operator: OperatorProcess, cluster: str
) -> None:
    async with chart_in_charge(kube, operator, cluster) as (helm, release):
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
                [KUBECTL, "-n", kube.ns, "get", "pdb", "-o", "json"],
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
        async with await kube.member_client() as http:
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
        live = [
            p
            for p in await operator_pods(kube, release)
            if not p["metadata"].get("deletionTimestamp")
        ]
        for pod in live:
            env = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0]["env"]}
            assert env["FOUNDATION_LOG_LEVEL"] == "DEBUG" and env["FOUNDATION_WORKERS"] == "32"
        agent = await kube.wait_agent("counter", running(2), 60, "the example still Running")
        after = await kube.members("counter")
        assert {n: p["metadata"]["uid"] for n, p in after.items()} == uids  # never restarted
        async with await kube.member_client() as http:
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


def prometheus_config(discovery_url: str, rules: Path) -> dict:
    """Scrape what the discovery adapter lists, keeping pods that expose a metrics port: the
    operators' `metrics`, the members' `http` (runtime) and `sidecar-admin`. The relabelling is
    what kubernetes_sd_configs (role: pod) would take."""
    return {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(rules)],
        "scrape_configs": [
            {
                "job_name": "foundation",
                "http_sd_configs": [{"url": discovery_url, "refresh_interval": "1s"}],
                "relabel_configs": [
                    {
                        "source_labels": ["__meta_kubernetes_pod_container_port_name"],
                        "regex": "metrics|http|sidecar-admin",
                        "action": "keep",
                    },
                    {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
                    {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
                ],
            }
        ],
    }


class PodDiscovery:
    """Prometheus's pod discovery, through the local API server: Debian's prometheus is built
    without kubernetes_sd_configs ("field kubernetes_sd_configs not found"), so this serves
    the namespace's pods in http_sd form with kubernetes_sd's meta labels, one target a
    container port."""

    def __init__(self, kube: Kube) -> None:
        self.kube = kube

    async def targets(self, _: web.Request) -> web.Response:
        answer = await self.kube.core.list_namespaced_pod(self.kube.ns, _preload_content=False)
        groups = []
        for pod in json.loads(await answer.read())["items"]:
            ip = pod.get("status", {}).get("podIP")
            if not ip or pod["status"].get("phase") != "Running":
                continue
            for container in pod["spec"]["containers"]:
                for port in container.get("ports") or []:
                    groups.append(
                        {
                            "targets": [f"{ip}:{port['containerPort']}"],
                            "labels": {
                                "__meta_kubernetes_namespace": self.kube.ns,
                                "__meta_kubernetes_pod_name": pod["metadata"]["name"],
                                "__meta_kubernetes_pod_container_name": container["name"],
                                "__meta_kubernetes_pod_container_port_name": port.get("name", ""),
                            },
                        }
                    )
        return web.json_response(groups)

    async def start(self) -> str:
        app = web.Application()
        app.router.add_get("/targets", self.targets)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        return f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}/targets"


async def query(http: httpx.AsyncClient, expr: str) -> list[dict]:
    answer = await http.get("/api/v1/query", params={"query": expr})
    return answer.json()["data"]["result"]


async def test_prometheus_scrapes_operator_and_agents_and_the_intensity_alert_fires(
    kube: Kube, operator: OperatorProcess, cluster: str, tmp_path: Path
) -> None:
    from test_alert_rules import rendered_rules

    async with chart_in_charge(kube, operator, cluster) as (helm, release):
        prometheus = None
        try:
            await asyncio.to_thread(
                helm.install, CHART, release, VALUES, namespace=kube.ns, wait="watcher", timeout=180
            )
            await kube.wait(lambda: _one_leader(kube, release), 30, "one operator replica active")
            await kube.create_agent("counter", sidecar={})  # scraped below
            await kube.wait_agent("counter", running(1), 60, "counter Running")
            ip = (await kube.pod("counter-0"))["status"]["podIP"]
            async with await kube.member_client() as http:
                await http.post(
                    f"http://{ip}:8080/v1/tasks", json={"id": "a", "action": "increment"}
                )
                await kube.wait(lambda: _done(http, ip, "a"), 30, "the task done")

            rules = tmp_path / "rules.yaml"
            rules.write_text(yaml.safe_dump(rendered_rules()))
            config = tmp_path / "prometheus.yml"
            discovery = PodDiscovery(kube)
            config.write_text(yaml.safe_dump(prometheus_config(await discovery.start(), rules)))
            port = free_port()
            prometheus = subprocess.Popen(
                [
                    "prometheus",
                    f"--config.file={config}",
                    f"--storage.tsdb.path={tmp_path / 'data'}",
                    f"--web.listen-address=127.0.0.1:{port}",
                ],
                stdout=subprocess.DEVNULL,
                stderr=(tmp_path / "prometheus.log").open("wb"),
            )
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as http:
                seen: list = []

                async def scraped() -> bool:
                    try:
                        targets = (await http.get("/api/v1/targets")).json()["data"][
                            "activeTargets"
                        ]
                    except (httpx.TransportError, ValueError):
                        return False  # not up yet: it answers "Service Unavailable" while starting
                    seen[:] = [
                        (t["labels"].get("pod"), t["health"], t["lastError"]) for t in targets
                    ]
                    up = {pod for pod, health, _ in seen if health == "up"}
                    return len(up) == 3  # two operators and the member

                try:
                    await kube.wait(
                        scraped, 60, "Prometheus scraping both operators and the member"
                    )
                except AssertionError as exc:
                    log = (tmp_path / "prometheus.log").read_text()[-2000:]
                    raise AssertionError(f"{exc}; targets {seen}; log {log}") from None

                async def answers(expr: str, check) -> bool:
                    return check(await query(http, expr))

                # Each answer as soon as a scrape carries it (a scrape a second).
                await kube.wait(
                    lambda: answers(
                        "foundation_operator_leader",
                        lambda r: sorted(float(s["value"][1]) for s in r) == [0.0, 1.0],
                    ),
                    15,
                    "one leader and one standby in Prometheus",
                )
                await kube.wait(
                    lambda: answers(
                        'foundation_agent_tasks_total{outcome="succeeded"}',
                        lambda r: [s["metric"]["pod"] for s in r] == ["counter-0"],
                    ),
                    15,
                    "the member's task counted in Prometheus",
                )
                await kube.wait(
                    lambda: answers('foundation_operator_agents{phase="Running"} == 1', bool),
                    15,
                    "the operator's Agents by phase in Prometheus",
                )
                assert (
                    await query(http, "foundation_sidecar_capability_members") == []
                )  # none asked
                await kube.wait(
                    lambda: answers('up{pod="counter-0"} == 1', lambda r: len(r) == 2),
                    15,
                    "the member's runtime and sidecar both scraped",
                )

                await kube.create_agent("crasher", command=["sh", "-c", "echo starting; exit 1"])
                await kube.wait_agent(
                    "crasher", lambda a: phase(a) == "Failed", 60, "crasher Failed"
                )

                async def firing() -> bool:
                    alerts = (await http.get("/api/v1/alerts")).json()["data"]["alerts"]
                    return any(
                        a["labels"]["alertname"] == "FoundationAgentRestartIntensityExceeded"
                        and a["state"] == "firing"
                        for a in alerts
                    )

                await kube.wait(firing, 60, "the restart-intensity alert firing in Prometheus")

            # The operator's log: JSON lines, those about an Agent carrying its namespace and name.
            pods = await operator_pods(kube, release)
            leader = next(
                p
                for p, role in zip(pods, [await roles([p]) for p in pods], strict=True)
                if role == ["leader"]
            )
            lines = [json.loads(line) for line in kube.log(leader, "operator").splitlines() if line]
            # (the operator watches every namespace: an earlier test's Agent may show too)
            about = [line for line in lines if f"{kube.ns}/crasher" in line["message"]]
            assert about and all(
                (line.get("namespace"), line.get("agent")) == (kube.ns, "crasher") for line in about
            )
        finally:
            if prometheus is not None:
                prometheus.terminate()
                prometheus.wait(timeout=30)
                await discovery.runner.cleanup()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_every_value_set_passes_a_server_side_dry_run(
    kube: Kube, cluster: str, tmp_path: Path
) -> None:
    """Rendered with this cluster's capabilities (Helm's server dry run: policy/v1beta1 PDBs on
    1.20), then sent to its API server with dryRun=All (kubectl apply --dry-run=server), which
    validates every object without storing it; Helm's own dry run submits nothing. The
    prometheus-operator kinds are left out: this cluster has no monitoring.coreos.com CRDs (the
    rules are checked by promtool)."""
    value_sets = [
        {},
        {"watchNamespaces": [kube.ns], "replicas": 3},
        {"dashboard": {"enabled": True}, "networkPolicy": {"enabled": True}},
        {"metrics": {"service": {"enabled": False}}, "podDisruptionBudget": {"enabled": False}},
        {"podLabels": {"bad key!": "x"}},  # Helm lets it through; the API server must not
    ]
    # The shared ClusterRoles exist already (the harness's; the chart renders the same rules,
    # tests/unit/test_chart.py): Helm would refuse to take them over, as for a second release.
    # So do people's door's APIService and webhook (the harness's, while the tests run).
    value_sets = [
        {
            **v,
            "clusterRoles": {"create": False},
            "door": {"apiService": {"create": False}, "creatorWebhook": {"create": False}},
        }
        for v in value_sets
    ]
    helm = helm_python.Config(kubeconfig_path=cluster, namespace=kube.ns)
    results = []
    try:
        for i, values in enumerate(value_sets):
            rendered = await asyncio.to_thread(
                helm.install, CHART, f"dry-{i}", values, namespace=kube.ns, dry_run="server"
            )
            manifest = tmp_path / f"dry-{i}.yaml"
            manifest.write_text(rendered["manifest"])
            results.append(
                subprocess.run(
                    [KUBECTL, "apply", "--dry-run=server", "-f", str(manifest)],
                    capture_output=True,
                    text=True,
                    check=False,
                )
            )
    finally:
        helm.close()
    *valid, invalid = results
    for result in valid:
        assert result.returncode == 0, result.stderr
        assert "deployment.apps/dry-" in result.stdout and "(server dry run)" in result.stdout
    assert "poddisruptionbudget.policy/dry-0-foundation-operator created" in valid[0].stdout
    assert invalid.returncode != 0 and "bad key!" in invalid.stderr
    assert await operator_pods(kube, "dry-0") == []  # nothing was stored


async def test_the_doors_cluster_wide_objects_pass_a_server_side_dry_run(
    kube: Kube, cluster: str, tmp_path: Path
) -> None:
    """The APIService and the webhook the chart makes once per cluster (the harness has its
    own, so Helm would refuse to take them over): rendered, then validated by the API server
    with dryRun=All."""
    helm = helm_python.Config(kubeconfig_path=cluster, namespace=kube.ns)
    try:
        rendered = await asyncio.to_thread(
            helm.install, CHART, "door", {}, namespace=kube.ns, dry_run="client"
        )
    finally:
        helm.close()
    door = [
        doc
        for doc in yaml.safe_load_all(rendered["manifest"])
        if doc and doc["kind"] in ("APIService", "MutatingWebhookConfiguration")
    ]
    assert sorted(d["kind"] for d in door) == ["APIService", "MutatingWebhookConfiguration"]
    manifest = tmp_path / "door.yaml"
    manifest.write_text(yaml.safe_dump_all(door))
    result = subprocess.run(
        [KUBECTL, "apply", "--dry-run=server", "-f", str(manifest)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "(server dry run)" in result.stdout
