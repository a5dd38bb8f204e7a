"""Foundation over time: Agents created, updated, scaled and deleted and tasks sent without
pause for `--minutes`, the operator's and a sidecar's memory, file descriptors and asyncio tasks
sampled throughout.

    .venv/bin/python bench/soak.py --minutes 30 [--seed 1] [--sample-seconds 30]

In a namespace of its own, with `foundation-operator` run for it alone:
- a steady `caller` Agent (CounterAgent with the sidecar), inside whose pod a load generator
  sends `increment` tasks at `--rate`/s by capability `soak-counter` through the sidecar, and
  waits for each to finish (so discovery, the breaker and delivery to members that come and
  go are all under way);
- `--churn` Agents of that capability (CounterAgent, real members, state on ConfigMaps), on
  which every `--every` seconds one change is made at random: created if absent, a rolling
  update (a pod-template annotation), scaled between 1 and 2 replicas, or deleted.
Samples: RSS (MB), open file descriptors and asyncio tasks (the `*_asyncio_tasks` gauges) of
the operator and of the caller's sidecar. Reported: each series' first, last and largest value,
and the RSS slope after the warm-up (the first fifth of the run, at least two samples) in MB per
10 minutes, by least squares; tasks sent, finished and failed (a task to a member being deleted
may fail: that is the churn, not a loss).
A benchmark, not a test: it asserts nothing and prints JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import aiohttp
from harness import (
    GROUP,
    KUBECONFIG,
    REPO,
    VERSION,
    agent_body,
    delete_namespace,
    new_namespace,
    operator_env,
    rss_mb,
)
from kubernetes_asyncio import client, config
from prometheus_client.parser import text_string_to_metric_families

sys.path.insert(0, str(REPO / "e2e/local"))
from foundation_common.resources import SIDECAR_ADMIN_PORT
from localcluster import cgroups
from localcluster.network import pod_netns

HEALTH_PORT, METRICS_PORT = 18083, 19093

CAPABILITY = "soak-counter"
COUNTER = "foundation_agent.agents:CounterAgent"

LOAD = r"""
import asyncio, json, sys, time
from foundation_agent.client import Sidecar, DeliveryError

async def main(rate, capability):
    sent = ok = failed = 0
    errors = {}
    gate = asyncio.Semaphore(64)
    async with Sidecar() as sidecar:
        async def one():
            nonlocal ok, failed
            try:
                delivered = await sidecar.send_task(capability, "increment", {"by": 1},
                                                    deadline_seconds=30)
                record = await sidecar.finished(delivered, within=30)
                if record.get("status") == "succeeded":
                    ok += 1
                else:
                    failed += 1
            except Exception as exc:
                failed += 1
                kind = type(exc).__name__
                errors[kind] = errors.get(kind, 0) + 1
            finally:
                gate.release()
        reported = time.monotonic()
        while True:
            await gate.acquire()
            sent += 1
            asyncio.get_running_loop().create_task(one())
            await asyncio.sleep(1 / rate)
            if time.monotonic() - reported > 5:
                reported = time.monotonic()
                print(json.dumps({"sent": sent, "ok": ok, "failed": failed, "errors": errors}),
                      flush=True)

asyncio.run(main(float(sys.argv[1]), sys.argv[2]))
"""


def fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def sidecar_pid(pod_uid: str) -> int | None:
    """The caller member's sidecar process: the test node runs each container's processes in a
    pids cgroup of its own."""
    for pid in cgroups.pids(cgroups.container_cgroup(pod_uid, "sidecar")):
        try:
            if b"foundation-sidecar" in Path(f"/proc/{pid}/cmdline").read_bytes():
                return pid
        except OSError:
            continue
    return None


async def gauge(url: str, name: str) -> float | None:
    try:
        async with aiohttp.ClientSession() as http, http.get(url, timeout=5) as answer:
            text = await answer.text()
    except (aiohttp.ClientError, TimeoutError):
        return None
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                return sample.value
    return None


def slope_per_10_min(samples: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of (seconds, MB) in MB per 10 minutes."""
    if len(samples) < 2:
        return None
    n = len(samples)
    mean_t = sum(t for t, _ in samples) / n
    mean_v = sum(v for _, v in samples) / n
    var = sum((t - mean_t) ** 2 for t, _ in samples)
    if var == 0:
        return None
    cov = sum((t - mean_t) * (v - mean_v) for t, v in samples)
    return round(cov / var * 600, 2)


def summary(series: list[tuple[float, float]], warm_up: float) -> dict:
    values = [v for _, v in series]
    if not values:
        return {}
    after = [(t, v) for t, v in series if t >= warm_up]
    if len(after) < 2:
        after = series[-2:]
    return {
        "first": values[0],
        "last": values[-1],
        "max": max(values),
        "slope_mb_per_10_min": slope_per_10_min(after),
    }


def counts(series: list[tuple[float, float]]) -> dict:
    values = [v for _, v in series]
    return {"first": values[0], "last": values[-1], "max": max(values)} if values else {}


def churned(name: str) -> dict:
    """One of the Agents the soak changes at random: real members, state on ConfigMaps."""
    return agent_body(name, COUNTER, capabilities=[CAPABILITY], sidecar={"enabled": False})


async def wait_ready(custom: client.CustomObjectsApi, ns: str, name: str) -> dict:
    for _ in range(1200):
        body = await custom.get_namespaced_custom_object(GROUP, VERSION, ns, "agents", name)
        status = body.get("status") or {}
        if status.get("phase") == "Running" and status.get("ready") == "1/1":
            return body
        await asyncio.sleep(0.25)
    raise TimeoutError(f"agent {name} not Ready")


async def churn_once(
    custom: client.CustomObjectsApi, ns: str, names: list[str], rng: random.Random, done: dict
) -> None:
    name = rng.choice(names)
    try:
        body = await custom.get_namespaced_custom_object(GROUP, VERSION, ns, "agents", name)
    except client.ApiException as exc:
        if exc.status != 404:
            raise
        body = None
    if body is None or body["metadata"].get("deletionTimestamp"):
        if body is None:
            await custom.create_namespaced_custom_object(
                GROUP, VERSION, ns, "agents", churned(name)
            )
            done["create"] = done.get("create", 0) + 1
        return
    what = rng.choice(["update", "scale", "delete"])
    if what == "update":
        patch: dict = {"spec": {"podTemplate": {"annotations": {"soak/rev": uuid.uuid4().hex}}}}
    elif what == "scale":
        patch = {"spec": {"replicas": 2 if body["spec"].get("replicas", 1) == 1 else 1}}
    else:
        await custom.delete_namespaced_custom_object(GROUP, VERSION, ns, "agents", name)
        done["delete"] = done.get("delete", 0) + 1
        return
    await custom.patch_namespaced_custom_object(
        GROUP, VERSION, ns, "agents", name, patch, _content_type="application/merge-patch+json"
    )
    done[what] = done.get(what, 0) + 1


async def soak(args: argparse.Namespace) -> dict:
    rng = random.Random(args.seed)
    ns = f"soak-{uuid.uuid4().hex[:5]}"
    configuration = client.Configuration()
    await config.load_kube_config(KUBECONFIG, client_configuration=configuration)
    log = open(REPO / ".local-cluster" / "logs" / "bench-soak.log", "ab")
    async with client.ApiClient(configuration) as api:
        core = client.CoreV1Api(api)
        custom = client.CustomObjectsApi(api)
        await new_namespace(core, ns)
        operator = subprocess.Popen(
            [str(REPO / ".venv/bin/foundation-operator")],
            env=operator_env(ns, HEALTH_PORT, METRICS_PORT),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        load: subprocess.Popen | None = None
        names = [f"churn-{i}" for i in range(args.churn)]
        try:
            for name in names:
                await custom.create_namespaced_custom_object(
                    GROUP, VERSION, ns, "agents", churned(name)
                )
            await custom.create_namespaced_custom_object(
                GROUP,
                VERSION,
                ns,
                "agents",
                agent_body("caller", COUNTER, persistence={"store": "None"}),
            )
            await wait_ready(custom, ns, "caller")
            for name in names:
                await wait_ready(custom, ns, name)
            pod = await core.read_namespaced_pod("caller-0", ns)
            sidecar = sidecar_pid(pod.metadata.uid)
            if sidecar is None:
                raise RuntimeError("the caller's sidecar process was not found")
            load = subprocess.Popen(
                [
                    "ip",
                    "netns",
                    "exec",
                    pod_netns(pod.metadata.uid),
                    str(REPO / ".venv/bin/python"),
                    "-c",
                    LOAD,
                    str(args.rate),
                    CAPABILITY,
                ],
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
            )
            lines: list[str] = []

            def pump() -> None:  # the load generator's latest report, read as it comes
                for line in load.stdout:  # type: ignore[union-attr]
                    lines[:] = [line]

            threading.Thread(target=pump, daemon=True).start()
            sidecar_metrics = f"http://{pod.status.pod_ip}:{SIDECAR_ADMIN_PORT}/metrics"
            operator_metrics = f"http://127.0.0.1:{METRICS_PORT}/metrics"

            series: dict[str, list[tuple[float, float]]] = {
                k: []
                for k in (
                    "operator_rss",
                    "operator_fds",
                    "operator_tasks",
                    "sidecar_rss",
                    "sidecar_fds",
                    "sidecar_tasks",
                )
            }
            changes: dict[str, int] = {}
            restarts: dict[str, int] = {}
            last_load: dict = {}
            started = time.monotonic()
            end = started + args.minutes * 60
            next_sample = started
            next_change = started
            while time.monotonic() < end:
                now = time.monotonic()
                if now >= next_change:
                    await churn_once(custom, ns, names, rng, changes)
                    next_change = now + args.every
                if now >= next_sample:
                    at = round(now - started, 1)
                    series["operator_rss"].append((at, rss_mb(operator.pid)))
                    series["operator_fds"].append((at, fds(operator.pid)))
                    tasks = await gauge(operator_metrics, "foundation_operator_asyncio_tasks")
                    if tasks is not None:
                        series["operator_tasks"].append((at, tasks))
                    if not Path(f"/proc/{sidecar}").exists():  # the member was restarted
                        pod = await core.read_namespaced_pod("caller-0", ns)
                        sidecar = sidecar_pid(pod.metadata.uid) or sidecar
                        restarts["sidecar"] = restarts.get("sidecar", 0) + 1
                    series["sidecar_rss"].append((at, rss_mb(sidecar)))
                    series["sidecar_fds"].append((at, fds(sidecar)))
                    tasks = await gauge(sidecar_metrics, "foundation_sidecar_asyncio_tasks")
                    if tasks is not None:
                        series["sidecar_tasks"].append((at, tasks))
                    if lines:
                        last_load = json.loads(lines[-1])
                    print(
                        f"soak {at:.0f}s: operator {series['operator_rss'][-1][1]} MB, "
                        f"sidecar {series['sidecar_rss'][-1][1]} MB, tasks {last_load}",
                        file=sys.stderr,
                        flush=True,
                    )
                    next_sample = now + args.sample_seconds
                await asyncio.sleep(max(0.0, min(next_change, next_sample) - time.monotonic()))
            warm_up = args.minutes * 60 / 5
            return {
                "minutes": args.minutes,
                "rate_per_s": args.rate,
                "churn_agents": args.churn,
                "changes": changes,
                "tasks": last_load,
                "caller_restarts": restarts,
                "operator": {
                    "rss_mb": summary(series["operator_rss"], warm_up),
                    "open_fds": counts(series["operator_fds"]),
                    "asyncio_tasks": counts(series["operator_tasks"]),
                },
                "sidecar": {
                    "rss_mb": summary(series["sidecar_rss"], warm_up),
                    "open_fds": counts(series["sidecar_fds"]),
                    "asyncio_tasks": counts(series["sidecar_tasks"]),
                },
                "samples": {k: [v for _, v in s] for k, s in series.items()},
            }
        finally:
            if load:
                load.kill()
                load.wait()
            operator.send_signal(signal.SIGTERM)
            operator.wait(timeout=30)
            log.close()
            await delete_namespace(core, custom, ns, [])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=30)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--rate", type=float, default=10, help="tasks sent per second")
    parser.add_argument("--churn", type=int, default=6, help="Agents changed at random")
    parser.add_argument("--every", type=float, default=3, help="seconds between changes")
    parser.add_argument("--sample-seconds", type=float, default=30)
    args = parser.parse_args()
    subprocess.run([str(REPO / "e2e/local/cluster"), "up"], check=True, capture_output=True)
    subprocess.run(
        [str(REPO / "e2e/local/kubectl"), "apply", "-f", str(REPO / "crds")],
        check=True,
        capture_output=True,
    )
    print(json.dumps(asyncio.run(soak(args)), indent=2))


if __name__ == "__main__":
    main()
