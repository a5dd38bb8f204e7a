"""Pod start latency on the local cluster: create -> Running and create -> Ready, per pod.

    .venv/bin/python bench/pod_start_latency.py [--pods 50] [--concurrency 10] [--serial]

--serial creates the next pod only once the previous one runs: the latency of a lone pod.

Brings the cluster up if needed, creates pods running `sleep` in a fresh namespace, timestamps
each pod's first Running and Ready from a watch, prints percentiles and the test node's memory,
then deletes the namespace. A benchmark, not a test: it asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import time
import uuid
from pathlib import Path

from kubernetes_asyncio import client, config, watch

REPO = Path(__file__).resolve().parents[1]


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def rss_mb(pid_file: Path) -> float:
    pid = pid_file.read_text().strip()
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def run(pods: int, concurrency: int, serial: bool) -> dict:
    configuration = client.Configuration()
    await config.load_kube_config(
        str(REPO / ".local-cluster/kubeconfig"), client_configuration=configuration
    )
    ns = f"bench-{uuid.uuid4().hex[:6]}"
    async with client.ApiClient(configuration) as api:
        core = client.CoreV1Api(api)
        await core.create_namespace({"metadata": {"name": ns}})
        for _ in range(300):  # pods are refused until the default service account exists
            if (await core.list_namespaced_service_account(ns)).items:
                break
            await asyncio.sleep(0.1)
        created: dict[str, float] = {}
        scheduled: dict[str, float] = {}
        running: dict[str, float] = {}
        ready: dict[str, float] = {}
        is_running = {f"p{i}": asyncio.Event() for i in range(pods)}

        async def observe() -> None:
            async for event in watch.Watch(return_type="object").stream(
                core.list_namespaced_pod, ns, timeout_seconds=600
            ):
                obj, seen = event["raw_object"], time.monotonic()
                name = obj["metadata"]["name"]
                if obj["spec"].get("nodeName"):
                    scheduled.setdefault(name, seen)
                if obj.get("status", {}).get("phase") == "Running":
                    running.setdefault(name, seen)
                    is_running[name].set()
                if any(
                    c["type"] == "Ready" and c["status"] == "True"
                    for c in obj.get("status", {}).get("conditions") or []
                ):
                    ready.setdefault(name, seen)
                if len(ready) == pods:
                    return

        watcher = asyncio.create_task(observe())
        await asyncio.sleep(0.5)
        gate = asyncio.Semaphore(1 if serial else concurrency)

        async def create(i: int) -> None:
            name = f"p{i}"
            manifest = {
                "metadata": {"name": name},
                "spec": {
                    "terminationGracePeriodSeconds": 1,
                    "containers": [
                        {"name": "main", "image": "busybox", "command": ["sleep", "3600"]}
                    ],
                },
            }
            async with gate:
                created[name] = time.monotonic()
                await core.create_namespaced_pod(ns, manifest, _preload_content=False)
                if serial:
                    await is_running[name].wait()

        started = time.monotonic()
        await asyncio.gather(*(create(i) for i in range(pods)))
        await asyncio.wait_for(watcher, timeout=600)
        total = time.monotonic() - started
        node_rss = rss_mb(REPO / ".local-cluster/run/node.pid")
        to_scheduled = [scheduled[n] - created[n] for n in created]
        to_running = [running[n] - created[n] for n in created]
        to_ready = [ready[n] - created[n] for n in created]
        await core.delete_namespace(ns)
    return {
        "pods": pods,
        "concurrency": "serial" if serial else concurrency,
        "total_seconds": round(total, 2),
        "pods_per_second": round(pods / total, 1),
        "create_to_scheduled_ms": {
            "p50": round(statistics.median(to_scheduled) * 1000),
            "p99": round(percentile(to_scheduled, 99) * 1000),
        },
        "create_to_running_ms": {
            "p50": round(statistics.median(to_running) * 1000),
            "p90": round(percentile(to_running, 90) * 1000),
            "p99": round(percentile(to_running, 99) * 1000),
            "max": round(max(to_running) * 1000),
        },
        "create_to_ready_ms": {
            "p50": round(statistics.median(to_ready) * 1000),
            "p99": round(percentile(to_ready, 99) * 1000),
        },
        "node_rss_mb_with_pods_running": round(node_rss),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pods", type=int, default=50)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--serial", action="store_true")
    args = parser.parse_args()
    subprocess.run([str(REPO / "e2e/local/cluster"), "up"], check=True, capture_output=True)
    print(json.dumps(asyncio.run(run(args.pods, args.concurrency, args.serial)), indent=2))


if __name__ == "__main__":
    main()
