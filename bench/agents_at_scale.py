"""Many Agents on the local cluster, against a minimal kopf operator as the baseline.

    .venv/bin/python bench/agents_at_scale.py [--agents 1000] [--skip-baseline]

For each operator, in turn and in a fresh namespace: create N objects (32 at a time), time until
every object has its pod and until every pod is Ready, count the API writes the operator made per
object (from kube-apiserver's request counters: creates/patches/deletes of the kinds the operator
writes, less the scheduler's one Event per pod) and, for Foundation, its own count of requests
by verb and kind; read the operator's RSS; then delete them all and read its RSS again.
Members run busybox httpd, so 1,000 of them fit in memory.
A benchmark, not a test: it asserts nothing and prints JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import aiohttp
from apiserver import request_counts  # bench/apiserver.py
from kubernetes_asyncio import client, config, watch
from kubernetes_asyncio.client.exceptions import ApiException
from prometheus_client.parser import text_string_to_metric_families

REPO = Path(__file__).resolve().parents[1]
KUBECTL = str(REPO / "e2e/local/kubectl")
KUBECONFIG = str(REPO / ".local-cluster/kubeconfig")
WWW = Path("/tmp/foundation-bench-www")
COMMAND = ["busybox", "httpd", "-f", "-p", "8080", "-h", str(WWW)]
# Resources an operator writes when it makes members; the node writes pods/status, the
# controller-manager endpoints and token secrets, the scheduler pods/binding and one Event a pod.
# Writes of those kinds that others make: the benchmark's own creates, the node's token requests,
# the token controller's service-account updates.
NOT_THE_OPERATORS = {
    "POST agents",
    "POST baselineagents",
    "POST serviceaccounts/token",
    "PUT serviceaccounts",
}
OPERATOR_WRITES = {
    "agents",
    "baselineagents",
    "pods",
    "services",
    "serviceaccounts",
    "roles",
    "rolebindings",
    "events",
}


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


async def api_writes(api: client.ApiClient) -> dict[str, int]:
    """The writes an operator makes, by verb and resource, from kube-apiserver's counters."""
    counts: dict[str, int] = {}
    for (verb, resource, sub, code), value in (await request_counts(api)).items():
        # Creation writes only: deletes here are earlier namespaces being collected.
        if verb not in ("POST", "PUT", "PATCH") or resource not in OPERATOR_WRITES:
            continue
        if not code.startswith("2"):
            continue
        if resource == "pods" and (sub or verb != "POST"):
            continue  # the node's status writes and deletions, the scheduler's bindings
        what = f"{verb} {resource}" + (f"/{sub}" if sub else "")
        if what in NOT_THE_OPERATORS:
            continue
        counts[what] = counts.get(what, 0) + value
    return counts


def is_ready(pod: dict) -> bool:
    return any(
        c["type"] == "Ready" and c["status"] == "True"
        for c in pod.get("status", {}).get("conditions") or []
    )


async def track_pods(
    core: client.CoreV1Api, ns: str, agents: int, started: float
) -> tuple[float | None, float]:
    """Seconds until every object has a pod, and until all pods are Ready at once (a watch,
    so measuring costs the API server little)."""
    seen: set[str] = set()
    ready: set[str] = set()
    all_pods = None
    async for event in watch.Watch(return_type="object").stream(
        core.list_namespaced_pod, ns, timeout_seconds=900
    ):
        pod = event["raw_object"]
        name = pod["metadata"]["name"]
        if event["type"] == "DELETED":
            seen.discard(name)
            ready.discard(name)
            continue
        seen.add(name)
        (ready.add if is_ready(pod) else ready.discard)(name)
        if all_pods is None and len(seen) >= agents:
            all_pods = time.monotonic() - started
        if len(ready) >= agents:
            return all_pods, time.monotonic() - started
    raise TimeoutError


async def operator_requests(port: int) -> dict[str, int]:
    """Foundation's own count of its API requests by verb and kind (2xx and errors alike)."""
    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/metrics") as r:
        text = await r.text()
    counts: dict[str, int] = {}
    for family in text_string_to_metric_families(text):
        if family.name != "foundation_operator_api_requests":
            continue
        for sample in family.samples:
            if sample.name.endswith("_total"):
                labels = sample.labels
                what = f"{labels['verb']} {labels['kind']} {labels['code']}"
                counts[what] = counts.get(what, 0) + int(sample.value)
    return counts


async def until_leading(port: int, proc: subprocess.Popen) -> None:
    """Wait until the operator holds its Lease (a Lease left by an earlier run expires first)."""
    for _ in range(600):
        if proc.poll() is not None:
            raise RuntimeError(f"the operator exited with {proc.returncode}")
        try:
            async with (
                aiohttp.ClientSession() as http,
                http.get(f"http://127.0.0.1:{port}/healthz") as answer,
            ):
                if (await answer.json()).get("role") == "leader":
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.1)
    raise TimeoutError("the operator never became the leader")


async def run_phase(
    name: str, agents: int, operator_argv: list[str], make: dict, metrics_port: int = 0
) -> dict:
    ns = f"bench-{name}-{uuid.uuid4().hex[:5]}"
    env = dict(
        os.environ,
        KUBECONFIG=KUBECONFIG,
        FOUNDATION_HEALTH_PORT="18081",
        FOUNDATION_METRICS_PORT=str(metrics_port),
        FOUNDATION_HEALTH_HOST="127.0.0.1",
    )
    log = open(REPO / ".local-cluster" / "logs" / f"bench-{name}.log", "ab")
    configuration = client.Configuration()
    await config.load_kube_config(KUBECONFIG, client_configuration=configuration)
    async with client.ApiClient(configuration) as api:
        core = client.CoreV1Api(api)
        custom = client.CustomObjectsApi(api)
        await core.create_namespace({"metadata": {"name": ns}})
        for _ in range(300):
            if (await core.list_namespaced_service_account(ns)).items:
                break
            await asyncio.sleep(0.1)
        proc = subprocess.Popen(operator_argv, env=env, stdout=log, stderr=subprocess.STDOUT)
        if metrics_port:
            await until_leading(18081, proc)
        else:
            await asyncio.sleep(3)  # the operator's startup
        writes_before = await api_writes(api)
        requests_before = await operator_requests(metrics_port) if metrics_port else {}
        gate = asyncio.Semaphore(32)

        async def create(i: int) -> None:
            body = {
                "apiVersion": make["apiVersion"],
                "kind": make["kind"],
                "metadata": {"name": f"a{i}"},
                "spec": make["spec"],
            }
            async with gate:
                await custom.create_namespaced_custom_object(
                    make["group"], make["version"], ns, make["plural"], body, _preload_content=False
                )

        started = time.monotonic()
        tracker = asyncio.create_task(track_pods(core, ns, agents, started))
        await asyncio.gather(*(create(i) for i in range(agents)))
        created = time.monotonic() - started
        try:
            all_pods, all_ready = await asyncio.wait_for(tracker, 900)
        except TimeoutError:
            all_pods = all_ready = None
        await asyncio.sleep(3)  # let status writes that follow readiness land
        writes_after = await api_writes(api)
        requests = {}
        if metrics_port:
            requests_after = await operator_requests(metrics_port)
            requests = {
                k: v - requests_before.get(k, 0)
                for k, v in sorted(requests_after.items())
                if v - requests_before.get(k, 0)
            }
        breakdown = {
            k: v - writes_before.get(k, 0)
            for k, v in writes_after.items()
            if v - writes_before.get(k, 0)
        }
        # The scheduler posts one Event per pod it binds.
        breakdown["POST events"] = breakdown.get("POST events", 0) - agents
        breakdown = {k: v for k, v in breakdown.items() if v}
        writes = sum(breakdown.values())
        rss_full = rss_mb(proc.pid)
        deleting = time.monotonic()
        print(
            f"{name} created: all pods {all_pods} s, all ready {all_ready} s, "
            f"writes/object {writes / agents:.2f}, rss {rss_full} MB",
            file=sys.stderr,
            flush=True,
        )
        while (
            await custom.list_namespaced_custom_object(
                make["group"], make["version"], ns, make["plural"], limit=1
            )
        )["items"]:
            try:
                await custom.delete_collection_namespaced_custom_object(
                    make["group"], make["version"], ns, make["plural"]
                )
            except ApiException as exc:
                if exc.status != 504:
                    raise  # 504: it stopped partway at its timeout; delete the rest

        while time.monotonic() - deleting < 900:
            left = await core.list_namespaced_pod(ns, limit=1)
            objs = await custom.list_namespaced_custom_object(
                make["group"], make["version"], ns, make["plural"], limit=1
            )
            if not left.items and not objs["items"]:
                break
            await asyncio.sleep(2)
        deleted = time.monotonic() - deleting
        await asyncio.sleep(2)
        rss_after = rss_mb(proc.pid)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        await core.delete_namespace(ns)
    log.close()
    result = {
        "objects": agents,
        "created_all_objects_s": round(created, 1),
        "all_have_pods_s": round(all_pods, 1) if all_pods else None,
        "all_ready_s": round(all_ready, 1) if all_ready else None,
        "objects_per_s_to_pods": round(agents / all_pods, 1) if all_pods else None,
        "api_writes_per_object": round(writes / agents, 2),
        "api_writes_by_kind": dict(sorted(breakdown.items())),
        **({"operator_requests_by_kind": requests} if metrics_port else {}),
        "operator_rss_mb_at_n": rss_full,
        "operator_rss_mb_after_delete": rss_after,
        "delete_all_s": round(deleted, 1),
    }
    print(f"{name}: {json.dumps(result)}", file=sys.stderr, flush=True)
    return result


async def main_async(agents: int, skip_baseline: bool) -> dict:
    results: dict = {}
    if not skip_baseline:
        results["baseline_kopf"] = await run_phase(
            "baseline",
            agents,
            [
                str(REPO / ".venv/bin/kopf"),
                "run",
                str(REPO / "bench/baseline_operator.py"),
                "--standalone",
                "--all-namespaces",
            ],
            {
                "apiVersion": "bench.foundation.dev/v1",
                "kind": "BaselineAgent",
                "group": "bench.foundation.dev",
                "version": "v1",
                "plural": "baselineagents",
                "spec": {"command": COMMAND},
            },
        )
    results["foundation"] = await run_phase(
        "foundation",
        agents,
        [str(REPO / ".venv/bin/foundation-operator")],
        {
            "apiVersion": "foundation.dev/v1alpha1",
            "kind": "Agent",
            "group": "foundation.dev",
            "version": "v1alpha1",
            "plural": "agents",
            "spec": {
                "image": "foundation-agent:dev",
                "agent": "bench:Idle",
                "command": COMMAND,
                "persistence": {"store": "None"},
                # 1,000 sidecars (a Python process each) do not fit beside 1,000 members here,
                # and the baseline runs one container a pod.
                "sidecar": {"enabled": False},
            },
        },
        metrics_port=19091,
    )
    if not skip_baseline:
        ours = results["foundation"]["objects_per_s_to_pods"]
        theirs = results["baseline_kopf"]["objects_per_s_to_pods"]
        if ours and theirs:
            results["ratio_objects_per_s"] = round(ours / theirs, 2)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--skip-baseline", action="store_true")
    args = parser.parse_args()
    subprocess.run([str(REPO / "e2e/local/cluster"), "up"], check=True, capture_output=True)
    for manifest in (REPO / "crds", REPO / "bench/baseline-crd.yaml"):
        subprocess.run([KUBECTL, "apply", "-f", str(manifest)], check=True, capture_output=True)
    WWW.mkdir(exist_ok=True)
    for name in ("readyz", "healthz"):
        (WWW / name).write_text("ok\n")
    print(json.dumps(asyncio.run(main_async(args.agents, args.skip_baseline)), indent=2))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
