"""Workflow step overhead and throughput on the local cluster, with the real operator and runner.

    .venv/bin/python bench/workflow_steps.py [--chain 20] [--workflows 100] [--steps 10]

- Chain: one Workflow of `--chain` no-op steps in a row on one Agent. Each step is TaskAgent's
  `clock`, which returns the member's wall clock when it runs, so the gap between two steps'
  clocks is the overhead from one step's end at its member to the next one running there: the
  member's durable completion, the runner learning of it, the status write recording the next
  attempt, the send and the member's durable acceptance. Also: Workflow create to first step.
- Many: `--workflows` Workflows of `--steps` steps at once, on an Agent of 4 members, as chains
  and again as fan-out/fan-in (one step, then the rest but one at once, then a join): steps/s
  from the first create to the last finish, the status writes per step and every write anyone
  made (kube-apiserver's counters), create to first step, and the runners' RSS (sampled).
- The bound: the write rate the cluster sustains (ConfigMap creates, 64 at once), and the
  steps/s that rate allows given the writes each run took.

Then the same two runs driven the idiomatic kopf way (bench/baseline_workflow_operator.py:
the operator advances a BaselineWorkflow one step per handler call through status patches, no
runner), on the same members, and the ratios. A benchmark, not a test: it asserts nothing and
prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from apiserver import Counts, delta, request_counts, write_capacity, writes  # bench/apiserver.py
from harness import delete_namespace
from kubernetes_asyncio import client, config, watch

REPO = Path(__file__).resolve().parents[1]
KUBECTL = str(REPO / "e2e/local/kubectl")
KUBECONFIG = str(REPO / ".local-cluster/kubeconfig")
GROUP, VERSION = "foundation.dev", "v1alpha1"


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def runner_rss_mb() -> list[float]:
    """RSS of every foundation-runner process on this machine (the test node runs them)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if b"foundation-runner" not in (entry / "cmdline").read_bytes():
                continue
            for line in (entry / "status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    found.append(int(line.split()[1]) / 1024)
        except OSError:
            continue
    return found


def status_patches(counts: Counts, resource: str) -> int:
    return sum(
        v
        for (verb, res, sub, code), v in counts.items()
        if (verb, res, sub) == ("PATCH", resource, "status") and code.startswith("2")
    )


async def until_finished(
    custom: client.CustomObjectsApi,
    ns: str,
    plural: str,
    names: set[str],
    is_done: Any,
    group: str = GROUP,
    version: str = VERSION,
    timeout: float = 900,
) -> dict[str, dict]:
    """The objects named, once `is_done` says so of each, from one watch (not polling: a
    poll per object would load the API server the benchmark measures)."""
    done: dict[str, dict] = {}
    deadline = time.monotonic() + timeout
    while len(done) < len(names):
        listing = await custom.list_namespaced_custom_object(group, version, ns, plural)
        for item in listing["items"]:
            if item["metadata"]["name"] in names and is_done(item):
                done[item["metadata"]["name"]] = item
        version_seen = listing["metadata"]["resourceVersion"]
        stream = watch.Watch().stream(
            custom.list_namespaced_custom_object,
            group,
            version,
            ns,
            plural,
            resource_version=version_seen,
            timeout_seconds=60,
        )
        async with stream as events:
            async for event in events:
                item = event["object"]
                if item["metadata"]["name"] in names and is_done(item):
                    done[item["metadata"]["name"]] = item
                if len(done) == len(names):
                    break
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{len(names) - len(done)} not finished")
    return done


def workflow_finished(item: dict) -> bool:
    return (item.get("status") or {}).get("phase") in ("Succeeded", "Failed")


async def many(
    api: client.ApiClient,
    custom: client.CustomObjectsApi,
    ns: str,
    shape: Any,
    workflows: int,
    steps: int,
    prefix: str,
) -> dict:
    """`workflows` Workflows of `steps` steps of `shape` at once on the Agent of 4 members."""
    counts_before = await request_counts(api)
    created_at = time.time()
    started = time.monotonic()
    names = {f"{prefix}{i}" for i in range(workflows)}
    await asyncio.gather(
        *(
            custom.create_namespaced_custom_object(
                GROUP, VERSION, ns, "workflows", shape(name, "four", steps)
            )
            for name in names
        )
    )
    rss: list[float] = []

    async def sample() -> None:
        nonlocal rss
        while True:
            rss = max(rss, runner_rss_mb(), key=lambda r: max(r, default=0))
            await asyncio.sleep(0.5)

    sampler = asyncio.create_task(sample())
    try:
        finished = await until_finished(custom, ns, "workflows", names, workflow_finished)
    finally:
        sampler.cancel()
    elapsed = time.monotonic() - started
    counts = delta(await request_counts(api), counts_before)
    total_steps = workflows * steps
    phases: dict[str, int] = {}
    first_steps = []  # create to the first step running at its member, per Workflow
    for item in finished.values():
        phase = item["status"]["phase"]
        phases[phase] = phases.get(phase, 0) + 1
        clocks = [s["result"]["at"] for s in item["status"].get("steps", []) if s.get("result")]
        if clocks:
            first_steps.append(min(clocks) - created_at)
    return {
        "shape": shape.__name__,
        "workflows": workflows,
        "steps_each": steps,
        "phases": phases,
        "seconds": round(elapsed, 1),
        "steps_per_s": round(total_steps / elapsed, 1),
        # The operator's first Pending write per Workflow included.
        "status_writes_per_step": round(status_patches(counts, "workflows") / total_steps, 2),
        # Every write anyone made: Workflows, runner pods and their status, RBAC, Events.
        "all_writes": writes(counts),
        "create_to_first_step_p50_s": round(statistics.median(first_steps), 2),
        "create_to_first_step_max_s": round(max(first_steps), 2),
        "runner_rss_mb_max": round(max(rss, default=0), 1),
        "runner_rss_mb_median": round(statistics.median(rss), 1) if rss else 0,
    }


def wide(name: str, agent: str, steps: int) -> dict:
    """One step, then `steps - 2` at once, then one that joins them."""
    middle = [f"s{i}" for i in range(1, steps - 1)]
    body = chain(name, agent, 1)
    body["spec"]["steps"] += [
        {"name": m, "agent": agent, "action": "clock", "dependsOn": ["s0"]} for m in middle
    ]
    body["spec"]["steps"].append(
        {"name": f"s{steps - 1}", "agent": agent, "action": "clock", "dependsOn": middle}
    )
    return body


def chain(name: str, agent: str, steps: int) -> dict:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Workflow",
        "metadata": {"name": name},
        "spec": {
            "steps": [
                {
                    "name": f"s{i}",
                    "agent": agent,
                    "action": "clock",
                    **({"dependsOn": [f"s{i - 1}"]} if i else {}),
                }
                for i in range(steps)
            ],
        },
    }


async def finished(custom: client.CustomObjectsApi, ns: str, name: str, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = await custom.get_namespaced_custom_object(GROUP, VERSION, ns, "workflows", name)
        if (body.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            return body
        await asyncio.sleep(0.2)
    raise TimeoutError(name)


async def main_async(chain_steps: int, workflows: int, steps: int) -> dict:
    configuration = client.Configuration()
    await config.load_kube_config(KUBECONFIG, client_configuration=configuration)
    ns = f"bench-wf-{uuid.uuid4().hex[:5]}"
    env = dict(
        os.environ,
        KUBECONFIG=KUBECONFIG,
        FOUNDATION_HEALTH_PORT="18082",
        FOUNDATION_METRICS_PORT="19092",
        FOUNDATION_HEALTH_HOST="127.0.0.1",
        FOUNDATION_LEADER_ELECTION="false",
        FOUNDATION_NAMESPACES=ns,
        FOUNDATION_AGENT_IMAGE="foundation-agent:dev",
    )
    log = open(REPO / ".local-cluster" / "logs" / "bench-workflows.log", "ab")
    out: dict = {}
    async with client.ApiClient(configuration) as api:
        core = client.CoreV1Api(api)
        custom = client.CustomObjectsApi(api)
        await core.create_namespace({"metadata": {"name": ns}})
        for _ in range(300):  # the namespace's default account, which pods need
            if (await core.list_namespaced_service_account(ns)).items:
                break
            await asyncio.sleep(0.1)
        operator = subprocess.Popen(
            [str(REPO / ".venv/bin/foundation-operator")], env=env, stdout=log, stderr=log
        )
        try:
            for name, replicas in (("one", 1), ("four", 4)):
                await custom.create_namespaced_custom_object(
                    GROUP,
                    VERSION,
                    ns,
                    "agents",
                    {
                        "apiVersion": f"{GROUP}/{VERSION}",
                        "kind": "Agent",
                        "metadata": {"name": name},
                        "spec": {
                            "image": "foundation-agent:dev",
                            "agent": "foundation_agent.agents:TaskAgent",
                            "replicas": replicas,
                            "sidecar": {"enabled": False},
                        },
                    },
                )
            for name, replicas in (("one", 1), ("four", 4)):
                while True:
                    body = await custom.get_namespaced_custom_object(
                        GROUP, VERSION, ns, "agents", name
                    )
                    if (body.get("status") or {}).get("ready") == f"{replicas}/{replicas}":
                        break
                    await asyncio.sleep(0.2)

            # -- one chain ----------------------------------------------------------------
            created_at = time.time()
            await custom.create_namespaced_custom_object(
                GROUP, VERSION, ns, "workflows", chain("chain", "one", chain_steps)
            )
            body = await finished(custom, ns, "chain", 300)
            clocks = [s["result"]["at"] for s in body["status"]["steps"]]
            gaps_ms = [(b - a) * 1000 for a, b in itertools.pairwise(clocks)]
            out["chain"] = {
                "steps": chain_steps,
                "phase": body["status"]["phase"],
                "overhead_p50_ms": round(statistics.median(gaps_ms), 1),
                "overhead_p99_ms": round(quantile(gaps_ms, 0.99), 1),
                "overhead_max_ms": round(max(gaps_ms), 1),
                "create_to_first_step_s": round(clocks[0] - created_at, 2),
            }

            # -- many at once, as chains and as fan-out/fan-in ---------------------------
            out["many"] = await many(api, custom, ns, chain, workflows, steps, "w")
            out["many_wide"] = await many(api, custom, ns, wide, workflows, steps, "v")
        finally:
            operator.terminate()
            operator.wait(30)
        try:
            out["baseline_kopf"] = await baseline(
                api, custom, core, ns, chain_steps, workflows, steps, log
            )
            ours, theirs = out["many"]["steps_per_s"], out["baseline_kopf"]["many"]["steps_per_s"]
            out["ratio_steps_per_s"] = round(ours / theirs, 2) if theirs else None
            # The baseline advances one step per handler call whatever the shape: its chain
            # figure stands for both.
            out["ratio_wide_steps_per_s"] = round(out["many_wide"]["steps_per_s"] / theirs, 2)
            # What the cluster's write rate allows for the many-run, given the writes it took.
            rate = await write_capacity(core, ns)
            out["cluster_write_rate_per_s"] = round(rate)
            bound = workflows * steps / (out["many"]["all_writes"] / rate)
            out["write_bound_steps_per_s"] = round(bound, 1)
            out["of_write_bound"] = round(ours / bound, 2)
            out["baseline_write_bound_steps_per_s"] = round(
                workflows * steps / (out["baseline_kopf"]["many"]["all_writes"] / rate), 1
            )
            out["ratio_overhead_p50"] = round(
                out["baseline_kopf"]["chain"]["overhead_p50_ms"] / out["chain"]["overhead_p50_ms"],
                2,
            )
        finally:
            await delete_namespace(core, custom, ns, ["one", "four"])
    return out


def baseline_chain(name: str, member: str, steps: int) -> dict:
    return {
        "apiVersion": "bench.foundation.dev/v1",
        "kind": "BaselineWorkflow",
        "metadata": {"name": name},
        "spec": {"steps": steps, "member": member, "action": "clock"},
    }


async def baseline(
    api: client.ApiClient,
    custom: client.CustomObjectsApi,
    core: client.CoreV1Api,
    ns: str,
    chain_steps: int,
    workflows: int,
    steps: int,
    log: Any,
) -> dict:
    group, version, plural = "bench.foundation.dev", "v1", "baselineworkflows"
    pods = (await core.list_namespaced_pod(ns, label_selector="foundation.dev/agent")).items
    address = {p.metadata.name: f"{p.status.pod_ip}:8080" for p in pods}
    operator = subprocess.Popen(
        [
            str(REPO / ".venv/bin/kopf"),
            "run",
            str(REPO / "bench/baseline_workflow_operator.py"),
            "--standalone",
            "--namespace",
            ns,
        ],
        env=dict(os.environ, KUBECONFIG=KUBECONFIG),
        stdout=log,
        stderr=log,
    )

    async def done(name: str, count: int, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            body = await custom.get_namespaced_custom_object(group, version, ns, plural, name)
            if int((body.get("status") or {}).get("next", 0)) >= count:
                return body
            await asyncio.sleep(0.2)
        raise TimeoutError(name)

    out: dict = {}
    try:
        await asyncio.sleep(3)  # kopf's start
        created_at = time.time()
        await custom.create_namespaced_custom_object(
            group, version, ns, plural, baseline_chain("chain", address["one-0"], chain_steps)
        )
        body = await done("chain", chain_steps, 300)
        results = body["status"]["results"]
        clocks = [results[str(i)]["at"] for i in range(chain_steps)]
        gaps_ms = [(b - a) * 1000 for a, b in itertools.pairwise(clocks)]
        out["chain"] = {
            "overhead_p50_ms": round(statistics.median(gaps_ms), 1),
            "overhead_p99_ms": round(quantile(gaps_ms, 0.99), 1),
            "create_to_first_step_s": round(clocks[0] - created_at, 2),
        }
        counts_before = await request_counts(api)
        started = time.monotonic()
        members = [f"four-{i}" for i in range(4)]
        await asyncio.gather(
            *(
                custom.create_namespaced_custom_object(
                    group,
                    version,
                    ns,
                    plural,
                    baseline_chain(f"w{i}", address[members[i % 4]], steps),
                )
                for i in range(workflows)
            )
        )
        await until_finished(
            custom,
            ns,
            plural,
            {f"w{i}" for i in range(workflows)},
            lambda item: int((item.get("status") or {}).get("next", 0)) >= steps,
            group,
            version,
        )
        elapsed = time.monotonic() - started
        counts = delta(await request_counts(api), counts_before)
        out["many"] = {
            "seconds": round(elapsed, 1),
            "steps_per_s": round(workflows * steps / elapsed, 1),
            "status_writes_per_step": round(
                status_patches(counts, plural) / (workflows * steps), 2
            ),
            "all_writes": writes(counts),
        }
    finally:
        operator.terminate()
        operator.wait(30)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--chain", type=int, default=20)
    parser.add_argument("--workflows", type=int, default=100)
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()
    subprocess.run([str(REPO / "e2e/local/cluster"), "up"], check=True, capture_output=True)
    for manifest in (REPO / "crds", REPO / "bench/baseline-workflow-crd.yaml"):
        subprocess.run([KUBECTL, "apply", "-f", str(manifest)], check=True, capture_output=True)
    print(json.dumps(asyncio.run(main_async(args.chain, args.workflows, args.steps)), indent=2))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
