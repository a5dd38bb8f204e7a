"""Many Agents on the local cluster, against a minimal kopf operator as the baseline.

    .venv/bin/python bench/agents_at_scale.py [--agents 1000] [--skip-baseline]
    .venv/bin/python bench/agents_at_scale.py --hollow --agents 10000 --skip-baseline \
        --unrelated-pods 5000

For each operator, in turn and in a fresh namespace: create N objects (32 at a time), time until
every object has its pod and until every pod is Ready, count the API writes the operator made per
object (from kube-apiserver's request counters: creates/patches/deletes of the kinds the operator
writes, less the scheduler's one Event per pod) and, for Foundation, its own count of requests
by verb and kind; read the operator's RSS; then delete them all and read its RSS again.
Members run busybox httpd, so 1,000 of them fit in memory; with --hollow they run on the test
cluster's hollow node (no process at all), so 10,000 fit.

With every object present, Foundation is also measured idle (its writes over --idle-seconds),
on new Agents (create -> member pod latency of --probe-creates Agents made one at a time, with
the N others present), and against --unrelated-pods hollow pods in another namespace (its CPU
time, API requests and RSS while they are created: the cost of pods it does not own).

The keys the scale issue names: `ratio` (pods/s against the baseline's), `ready_ratio`
(Foundation's all-Ready time over the baseline's), `write_efficiency` (the time Foundation's
writes need at the write rate the cluster sustained in the baseline's run, over the time it
took: 1.0 uses the cluster's write capacity fully), `writes_per_agent`, `rss_mb`,
`rss_after_delete_mb`.
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
from typing import Any

import aiohttp
from apiserver import delta, request_counts, writes, writes_by_kind  # bench/apiserver.py
from harness import new_namespace, rss_by_mapping, rss_mb
from kubernetes_asyncio import client, config, watch
from kubernetes_asyncio.client.exceptions import ApiException
from prometheus_client.parser import text_string_to_metric_families

from localcluster.apiclient import list_and_watch

REPO = Path(__file__).resolve().parents[1]
KUBECTL = str(REPO / "e2e/local/kubectl")
KUBECONFIG = str(REPO / ".local-cluster/kubeconfig")
WWW = Path("/tmp/foundation-bench-www")
COMMAND = ["busybox", "httpd", "-f", "-p", "8080", "-h", str(WWW)]
HOLLOW = {
    "nodeSelector": {"foundation.dev/hollow": "true"},
    "tolerations": [{"key": "foundation.dev/hollow", "operator": "Exists", "effect": "NoSchedule"}],
}
READ_VERBS = {"GET", "LIST", "WATCH"}
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


def cpu_s(pid: int) -> float:
    """User and system CPU seconds of process `pid`."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


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


async def events(list_call: Any, *args: Any) -> Any:
    """A collection's events, its items first as ADDED: a watch that is resumed when the
    server ends it (a run longer than one watch's timeout)."""
    async for kind, obj in list_and_watch(list_call, *args, timeout_seconds=240):
        if kind == "SYNC":
            for item in obj["items"]:
                yield "ADDED", item
        else:
            yield kind, obj


async def track_pods(
    core: client.CoreV1Api,
    ns: str,
    agents: int,
    started: float,
    created: dict[str, float] | None = None,
    became_ready: list[float] | None = None,
) -> tuple[float | None, float]:
    """Seconds until every object has a pod, and until all pods are Ready at once (a watch,
    so measuring costs the API server little). With `created` (object name -> when it was
    created), `became_ready` gains each object's seconds from its create to its pod's first
    Ready."""
    seen: set[str] = set()
    ready: set[str] = set()
    first_ready: set[str] = set()
    all_pods = None
    async for kind, pod in events(core.list_namespaced_pod, ns):
        name = pod["metadata"]["name"]
        if kind == "DELETED":
            seen.discard(name)
            ready.discard(name)
            continue
        seen.add(name)
        (ready.add if is_ready(pod) else ready.discard)(name)
        owner = name.rsplit("-", 1)[0]
        if created and became_ready is not None and name in ready and name not in first_ready:
            first_ready.add(name)
            if owner in created:
                became_ready.append(time.monotonic() - created[owner])
        if all_pods is None and len(seen) >= agents:
            all_pods = time.monotonic() - started
        if len(ready) >= agents:
            return all_pods, time.monotonic() - started
    raise TimeoutError


async def track_objects(
    custom: client.CustomObjectsApi, ns: str, make: dict, agents: int, started: float
) -> float:
    """Seconds until every object's own status says it is Ready (Foundation's Agents: the
    status a user reads, written by the operator after the pods' readiness)."""
    ready: set[str] = set()
    async for kind, obj in events(
        custom.list_namespaced_custom_object, make["group"], make["version"], ns, make["plural"]
    ):
        name = obj["metadata"]["name"]
        status = obj.get("status") or {}
        running = status.get("phase") == "Running" and status.get("ready") == "1/1"
        if kind != "DELETED" and running:
            ready.add(name)
        else:
            ready.discard(name)
        if len(ready) >= agents:
            return time.monotonic() - started
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


def operator_writes(requests: dict[str, int]) -> int:
    return sum(v for k, v in requests.items() if k.split()[0] not in READ_VERBS)


async def idle_writes(port: int, seconds: float) -> dict:
    """Foundation's requests while nothing changes: writes should be none at all."""
    before = await operator_requests(port)
    await asyncio.sleep(seconds)
    after = await operator_requests(port)
    moved = {k: v - before.get(k, 0) for k, v in after.items() if v - before.get(k, 0)}
    return {"seconds": seconds, "writes": operator_writes(moved), "requests": moved}


async def create_latency(
    core: client.CoreV1Api, custom: client.CustomObjectsApi, ns: str, make: dict, count: int
) -> dict:
    """Create `count` more Agents one at a time; for each, the time from the create request to
    its member pod's creation arriving on a watch (so the operator's queue, its reads and the
    pod's create are all in it, with every other Agent present)."""
    arrived: dict[str, float] = {}
    changed = asyncio.Event()

    async def follow() -> None:
        async for event in watch.Watch(return_type="object").stream(
            core.list_namespaced_pod,
            ns,
            label_selector="foundation.dev/agent",
            timeout_seconds=900,
        ):
            agent = event["raw_object"]["metadata"]["labels"].get("foundation.dev/agent", "")
            if agent.startswith("probe-") and agent not in arrived:
                arrived[agent] = time.monotonic()
                changed.set()

    follower = asyncio.create_task(follow())
    await asyncio.sleep(1)  # the watch's initial list of every pod present
    latencies = []
    for i in range(count):
        name = f"probe-{i}"
        body = {
            "apiVersion": make["apiVersion"],
            "kind": make["kind"],
            "metadata": {"name": name},
            "spec": make["spec"],
        }
        sent = time.monotonic()
        await custom.create_namespaced_custom_object(
            make["group"], make["version"], ns, make["plural"], body, _preload_content=False
        )
        while name not in arrived:
            changed.clear()
            await asyncio.wait_for(changed.wait(), 60)
        latencies.append((arrived[name] - sent) * 1000)
    follower.cancel()
    return {
        "agents": count,
        "p50_ms": round(percentile(latencies, 0.5), 1),
        "p99_ms": round(percentile(latencies, 0.99), 1),
        "max_ms": round(max(latencies), 1),
    }


async def unrelated_pods(
    core: client.CoreV1Api, pid: int, port: int, count: int, rss_before: float
) -> dict:
    """`count` hollow pods in a namespace of their own, none of them Foundation's: what they
    cost the operator while they are created and become Ready."""
    ns = f"bench-unrelated-{uuid.uuid4().hex[:5]}"
    await new_namespace(core, ns)
    requests_before = await operator_requests(port)
    cpu_before = cpu_s(pid)
    gate = asyncio.Semaphore(32)

    async def create(i: int) -> None:
        pod = {
            "metadata": {"name": f"u{i}", "labels": {"app": "unrelated"}},
            "spec": {"containers": [{"name": "c", "image": "busybox"}], **HOLLOW},
        }
        async with gate:
            await core.create_namespaced_pod(ns, pod, _preload_content=False)

    started = time.monotonic()
    tracker = asyncio.create_task(track_pods(core, ns, count, started))
    await asyncio.gather(*(create(i) for i in range(count)))
    await asyncio.wait_for(tracker, 900)
    seconds = time.monotonic() - started
    await asyncio.sleep(2)
    requests_after = await operator_requests(port)
    moved = {
        k: v - requests_before.get(k, 0)
        for k, v in requests_after.items()
        if v - requests_before.get(k, 0)
    }
    result = {
        "pods": count,
        "seconds": round(seconds, 1),
        "operator_cpu_s": round(cpu_s(pid) - cpu_before, 2),
        "operator_requests": moved,
        "operator_rss_mb_before": rss_before,
        "operator_rss_mb_after": rss_mb(pid),
    }
    await core.delete_namespace(ns)
    return result


async def trace_snapshot(proc: subprocess.Popen, trace: bool) -> None:
    """With --trace, a tracemalloc snapshot of the operator (bench/traced_operator.py)."""
    if not trace:
        return
    out = Path(os.environ.get("TRACE_DIR", "/tmp/foundation-trace"))
    before = len(list(out.glob("*.snap")))
    proc.send_signal(signal.SIGUSR2)
    while len(list(out.glob("*.snap"))) == before:  # noqa: ASYNC110 (another process writes it)
        await asyncio.sleep(0.5)


async def collect_dependents(core: client.CoreV1Api, ns: str) -> None:
    rbac = client.RbacAuthorizationV1Api(core.api_client)
    for delete in (
        core.delete_collection_namespaced_pod,
        core.delete_collection_namespaced_service_account,
        rbac.delete_collection_namespaced_role,
        rbac.delete_collection_namespaced_role_binding,
    ):
        while True:
            try:
                await delete(ns, _preload_content=False)
                break
            except ApiException as exc:
                if exc.status != 504:
                    raise
    services = await core.list_namespaced_service(ns, _preload_content=False)
    for item in json.loads(await services.read())["items"]:
        await core.delete_namespaced_service(item["metadata"]["name"], ns, _preload_content=False)


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
    name: str,
    agents: int,
    operator_argv: list[str],
    make: dict,
    metrics_port: int = 0,
    extra: dict | None = None,
    collect: bool = False,
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
        await new_namespace(core, ns)
        proc = subprocess.Popen(operator_argv, env=env, stdout=log, stderr=subprocess.STDOUT)
        if metrics_port:
            await until_leading(18081, proc)
        else:
            await asyncio.sleep(3)  # the operator's startup
        rss_start = rss_mb(proc.pid)
        rss_start_where = rss_by_mapping(proc.pid)
        trace = bool(extra and extra.get("trace"))
        await trace_snapshot(proc, trace)
        counts_before = await request_counts(api)
        writes_before = await api_writes(api)
        requests_before = await operator_requests(metrics_port) if metrics_port else {}
        gate = asyncio.Semaphore(32)

        created_at: dict[str, float] = {}
        became_ready: list[float] = []

        async def create(i: int) -> None:
            body = {
                "apiVersion": make["apiVersion"],
                "kind": make["kind"],
                "metadata": {"name": f"a{i}"},
                "spec": make["spec"],
            }
            async with gate:
                created_at[f"a{i}"] = time.monotonic()
                await custom.create_namespaced_custom_object(
                    make["group"], make["version"], ns, make["plural"], body, _preload_content=False
                )

        started = time.monotonic()
        tracker = asyncio.create_task(
            track_pods(core, ns, agents, started, created_at, became_ready)
        )
        statuses = (
            asyncio.create_task(track_objects(custom, ns, make, agents, started))
            if metrics_port
            else None
        )
        await asyncio.gather(*(create(i) for i in range(agents)))
        created = time.monotonic() - started
        try:
            all_pods, all_ready = await asyncio.wait_for(tracker, 900)
        except TimeoutError:
            all_pods = all_ready = None
        statuses_ready = None
        if statuses:
            try:
                statuses_ready = await asyncio.wait_for(statuses, 1800)
            except TimeoutError:
                pass
        await asyncio.sleep(3)  # let status writes that follow readiness land
        writes_after = await api_writes(api)
        cluster_delta = delta(await request_counts(api), counts_before)
        cluster_writes = writes(cluster_delta)
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
        operator_total = sum(breakdown.values())
        rss_full = rss_mb(proc.pid)
        await trace_snapshot(proc, trace)
        measured: dict = {}
        if metrics_port and extra:
            if extra.get("idle_seconds"):
                measured["idle"] = await idle_writes(metrics_port, extra["idle_seconds"])
                print(f"{name} idle: {measured['idle']}", file=sys.stderr, flush=True)
            if extra.get("unrelated_pods"):
                measured["unrelated_pods"] = await unrelated_pods(
                    core, proc.pid, metrics_port, extra["unrelated_pods"], rss_full
                )
                print(f"{name} unrelated: {measured['unrelated_pods']}", file=sys.stderr)
            if extra.get("probe_creates"):
                measured["create_to_pod"] = await create_latency(
                    core, custom, ns, make, extra["probe_creates"]
                )
                print(f"{name} latency: {measured['create_to_pod']}", file=sys.stderr)
        deleting = time.monotonic()
        print(
            f"{name} created: all pods {all_pods} s, all ready {all_ready} s, "
            f"all statuses ready {statuses_ready} s, "
            f"writes/object {operator_total / agents:.2f}, rss {rss_full} MB",
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
                # 504, or 500 "context deadline exceeded" (10,000 Agents): it stopped partway
                # at its timeout; delete the rest.
                if exc.status not in (500, 504):
                    raise
        if collect:
            # The garbage collector's work, done at once: this cluster's collector deletes
            # about 5 dependents/s when 10,000 owners go together, and the measure is the
            # operator's memory once it has seen everything go, not the collector's speed.
            await collect_dependents(core, ns)

        while time.monotonic() - deleting < 900:
            left = await core.list_namespaced_pod(ns, limit=1)
            objs = await custom.list_namespaced_custom_object(
                make["group"], make["version"], ns, make["plural"], limit=1
            )
            if not left.items and not objs["items"]:
                break
            await asyncio.sleep(2)
        deleted = time.monotonic() - deleting
        # The operator hands memory back once deletions have been quiet for 5 s; its pooled
        # connections idle since then close later, so look again after a minute.
        await asyncio.sleep(10)
        rss_after = rss_mb(proc.pid)
        await asyncio.sleep(50)
        rss_after_idle = rss_mb(proc.pid)
        rss_where = rss_by_mapping(proc.pid)
        await trace_snapshot(proc, trace)
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
        # Each object's create to its pod's first Ready: how long a status written only once
        # members are ready would keep a user waiting.
        "create_to_ready_s": {
            q: round(percentile(became_ready, v), 1)
            for q, v in (("p50", 0.5), ("p90", 0.9), ("max", 1.0))
        }
        if became_ready
        else None,
        **(
            {"all_statuses_ready_s": round(statuses_ready, 1) if statuses_ready else None}
            if metrics_port
            else {}
        ),
        "api_writes_per_object": round(operator_total / agents, 2),
        "cluster_writes": cluster_writes,
        "cluster_writes_per_s": round(cluster_writes / all_ready, 1) if all_ready else None,
        # Everyone's writes (operator, node, controllers, scheduler) per object, by kind.
        "cluster_writes_per_object_by_kind": writes_by_kind(cluster_delta, agents),
        "api_writes_by_kind": dict(sorted(breakdown.items())),
        **({"operator_requests_by_kind": requests} if metrics_port else {}),
        "operator_rss_mb_at_start": rss_start,
        "operator_rss_mb_at_start_by_mapping": rss_start_where,
        "operator_rss_mb_at_n": rss_full,
        "operator_rss_mb_after_delete": rss_after,
        "operator_rss_mb_a_minute_after_delete": rss_after_idle,
        "operator_rss_mb_a_minute_after_delete_by_mapping": rss_where,
        "delete_all_s": round(deleted, 1),
        **measured,
    }
    print(f"{name}: {json.dumps(result)}", file=sys.stderr, flush=True)
    return result


async def main_async(args: argparse.Namespace) -> dict:
    agents = args.agents
    results: dict = {}
    placement = HOLLOW if args.hollow else {}
    if not args.skip_baseline:
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
                "spec": {"command": COMMAND, **placement},
            },
        )
    ours = results["foundation"] = await run_phase(
        "foundation",
        agents,
        [str(REPO / ".venv/bin/python"), str(REPO / "bench/traced_operator.py")]
        if args.trace
        else [str(REPO / ".venv/bin/foundation-operator")],
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
                "persistence": {"store": args.store},
                # 1,000 sidecars (a Python process each) do not fit beside 1,000 members here,
                # and the baseline runs one container a pod.
                "sidecar": {"enabled": False},
                **({"podTemplate": placement} if placement else {}),
            },
        },
        metrics_port=19091,
        collect=args.collect,
        extra={
            "idle_seconds": args.idle_seconds,
            "probe_creates": args.probe_creates,
            "unrelated_pods": args.unrelated_pods,
            "trace": args.trace,
        },
    )
    results["hollow"] = args.hollow
    results["writes_per_agent"] = ours["api_writes_per_object"]
    results["rss_mb"] = ours["operator_rss_mb_at_n"]
    results["rss_after_delete_mb"] = ours["operator_rss_mb_after_delete"]
    results["rss_at_start_mb"] = ours["operator_rss_mb_at_start"]
    if not args.skip_baseline:
        theirs = results["baseline_kopf"]
        if ours["objects_per_s_to_pods"] and theirs["objects_per_s_to_pods"]:
            results["ratio"] = round(
                ours["objects_per_s_to_pods"] / theirs["objects_per_s_to_pods"], 2
            )
        if ours["all_ready_s"] and theirs["all_ready_s"]:
            results["ready_ratio"] = round(ours["all_ready_s"] / theirs["all_ready_s"], 2)
        if ours["all_ready_s"] and theirs["cluster_writes_per_s"]:
            needed = ours["cluster_writes"] / theirs["cluster_writes_per_s"]
            results["write_efficiency"] = round(needed / ours["all_ready_s"], 2)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--skip-baseline", action="store_true")
    parser.add_argument("--hollow", action="store_true", help="members on the hollow node")
    parser.add_argument(
        "--store",
        default="None",
        choices=["None", "ConfigMap"],
        help="the Agents' persistence.store (None: no state object, as the baseline has none)",
    )
    parser.add_argument("--idle-seconds", type=float, default=30)
    parser.add_argument("--probe-creates", type=int, default=50)
    parser.add_argument(
        "--unrelated-pods", type=int, default=0, help="hollow pods of no Agent (needs --hollow)"
    )
    parser.add_argument(
        "--trace",
        action="store_true",
        help="run the operator under tracemalloc (bench/traced_operator.py) and snapshot it at "
        "start, with every Agent, and after deleting them, into $TRACE_DIR",
    )
    parser.add_argument(
        "--collect",
        action="store_true",
        help="after deleting the Agents, delete their pods and owned objects too rather than "
        "wait for the garbage collector (slow at 10,000 owners here)",
    )
    args = parser.parse_args()
    if args.unrelated_pods and not args.hollow:
        parser.error("--unrelated-pods runs hollow pods: add --hollow")
    subprocess.run([str(REPO / "e2e/local/cluster"), "up"], check=True, capture_output=True)
    for manifest in (REPO / "crds", REPO / "bench/baseline-crd.yaml"):
        subprocess.run([KUBECTL, "apply", "-f", str(manifest)], check=True, capture_output=True)
    WWW.mkdir(exist_ok=True)
    for name in ("readyz", "healthz"):
        (WWW / name).write_text("ok\n")
    print(json.dumps(asyncio.run(main_async(args)), indent=2))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
