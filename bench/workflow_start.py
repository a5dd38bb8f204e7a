"""How fast a Workflow starts: on a runner pod of its own (the default) against the namespace's
shared runner (`spec.runner.shared: true`: a process forked from one already running), in the
same run, on the same members (issue 29).

    .venv/bin/python bench/workflow_start.py [--alone 20] [--burst 100]
        [--workflows 100] [--steps 10]

- `alone`: one Workflow of one step at a time, `--alone` times: create to its first step
  running at its member (TaskAgent's `clock`: the member's wall clock when it ran, against this
  process's clock at the create; one machine, one clock), p50 and p99.
- `burst`: `--burst` Workflows of one step created at once: the same, p50 and p99.
- `many`: `--workflows` Workflows of `--steps` chained steps at once on an Agent of 4 members
  (bench/workflow_steps.py's run): steps/s, status writes per step, every write anyone made per
  Workflow (kube-apiserver's counters), create to first step.
- The shared runner's memory: the proportional set size (PSS: shared pages split between the
  processes that share them) of its pod's processes, at the burst's peak, and idle.

The goals: p50 under 100 ms alone and under 2 s with 100 at once, and at least 5x the
default's steps/s at 100 x 10. A benchmark, not a test: it asserts nothing and prints one JSON
object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import time
import uuid
from pathlib import Path

from harness import delete_namespace, operator_env
from kubernetes_asyncio import client, config
from workflow_steps import (
    KUBECONFIG,
    REPO,
    chain,
    many,
    quantile,
    until_finished,
    workflow_finished,
)

GROUP, VERSION = "foundation.dev", "v1alpha1"


def shared(body: dict) -> dict:
    body["spec"]["runner"] = {"shared": True}
    return body


def shared_chain(name: str, agent: str, steps: int) -> dict:
    return shared(chain(name, agent, steps))


def pss_mb(namespace: str) -> float:
    """PSS of the shared runner's processes of `namespace` (its manager, forkserver and the
    Workflows' processes: all carry the pod's FOUNDATION_NAMESPACE and no member's name)."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
            cmdline = (entry / "cmdline").read_bytes()
            if f"FOUNDATION_NAMESPACE={namespace}".encode() not in environ:
                continue
            if b"foundation-shared-runner" not in cmdline and b"forkserver" not in cmdline:
                continue
            for line in (entry / "smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1]) / 1024
        except OSError:
            continue
    return round(total, 1)


def ms(seconds: list[float]) -> dict:
    return {
        "p50_ms": round(statistics.median(seconds) * 1000, 1),
        "p99_ms": round(quantile(seconds, 0.99) * 1000, 1),
        "max_ms": round(max(seconds) * 1000, 1),
    }


async def first_steps(
    custom: client.CustomObjectsApi, ns: str, names: list[str], make, at_once: bool
) -> tuple[list[float], list[float]]:
    """Create each (all at once, or one after the other's end): create to first step, and
    how long the API server took to answer each create (its admission webhook included)."""
    out = []
    creates: list[float] = []

    async def one(name: str) -> float:
        created_at = time.time()
        await custom.create_namespaced_custom_object(
            GROUP, VERSION, ns, "workflows", make(name, "one", 1)
        )
        creates.append(time.time() - created_at)
        return created_at

    if at_once:
        created = dict(zip(names, await asyncio.gather(*(one(n) for n in names)), strict=True))
        done = await until_finished(custom, ns, "workflows", set(names), workflow_finished)
    else:
        created, done = {}, {}
        for name in names:
            created[name] = await one(name)
            done |= await until_finished(custom, ns, "workflows", {name}, workflow_finished)
    for name in names:
        steps = done[name]["status"].get("steps") or []
        if steps and steps[0].get("result"):
            out.append(steps[0]["result"]["at"] - created[name])
    return out, creates


async def main_async(alone: int, burst: int, workflows: int, steps: int) -> dict:
    configuration = client.Configuration()
    await config.load_kube_config(KUBECONFIG, client_configuration=configuration)
    ns = f"bench-start-{uuid.uuid4().hex[:5]}"
    log = open(REPO / ".local-cluster" / "logs" / "bench-workflow-start.log", "ab")
    out: dict = {"alone": {}, "burst": {}, "many": {}}
    async with client.ApiClient(configuration) as api:
        core = client.CoreV1Api(api)
        custom = client.CustomObjectsApi(api)
        await core.create_namespace({"metadata": {"name": ns}})
        for _ in range(300):  # the namespace's default account, which pods need
            if (await core.list_namespaced_service_account(ns)).items:
                break
            await asyncio.sleep(0.1)
        operator = subprocess.Popen(
            [str(REPO / ".venv/bin/foundation-operator")],
            env=operator_env(ns, 18083, 19093),
            stdout=log,
            stderr=log,
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
            await until_finished(
                custom,
                ns,
                "agents",
                {"one", "four"},
                lambda a: (a.get("status") or {}).get("phase") == "Running",
            )
            # The shared runner made and warm (the namespace's first shared Workflow), as
            # it is for every shared Workflow after the first.
            warm = time.time()
            await custom.create_namespaced_custom_object(
                GROUP, VERSION, ns, "workflows", shared_chain("warm", "one", 1)
            )
            await until_finished(custom, ns, "workflows", {"warm"}, workflow_finished)
            out["shared_runner_first_start_s"] = round(time.time() - warm, 2)
            out["shared_runner_idle_pss_mb"] = pss_mb(ns)

            for mode, make in (("pod", chain), ("shared", shared_chain)):
                names = [f"a-{mode}-{i}" for i in range(alone)]
                firsts, creates = await first_steps(custom, ns, names, make, False)
                out["alone"][mode] = ms(firsts) | {"create_answered": ms(creates)}
            for mode, make in (("pod", chain), ("shared", shared_chain)):
                names = [f"b-{mode}-{i}" for i in range(burst)]
                peak = 0.0

                async def sample() -> None:
                    nonlocal peak
                    while True:
                        peak = max(peak, await asyncio.to_thread(pss_mb, ns))
                        await asyncio.sleep(0.2)

                sampler = asyncio.create_task(sample()) if mode == "shared" else None
                try:
                    firsts, creates = await first_steps(custom, ns, names, make, True)
                    out["burst"][mode] = ms(firsts) | {"create_answered": ms(creates)}
                finally:
                    if sampler is not None:
                        sampler.cancel()
                if mode == "shared":
                    out["burst"][mode]["runner_pss_mb_peak"] = peak
            for mode, make in (("pod", chain), ("shared", shared_chain)):
                result = await many(api, custom, ns, make, workflows, steps, f"m-{mode}-")
                result["all_writes_per_workflow"] = round(result["all_writes"] / workflows, 1)
                out["many"][mode] = result
            pod, ours = out["many"]["pod"]["steps_per_s"], out["many"]["shared"]["steps_per_s"]
            out["ratio_steps_per_s"] = round(ours / pod, 2) if pod else None
        finally:
            operator.terminate()
            operator.wait(30)
            await delete_namespace(core, custom, ns, ["one", "four"])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alone", type=int, default=20)
    parser.add_argument("--burst", type=int, default=100)
    parser.add_argument("--workflows", type=int, default=100)
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()
    os.environ.setdefault("KUBECONFIG", KUBECONFIG)
    print(json.dumps(asyncio.run(main_async(args.alone, args.burst, args.workflows, args.steps))))


if __name__ == "__main__":
    main()
