"""From a Schedule's tick to its Workflow's first step running, on the local cluster.

    .venv/bin/python bench/schedule_tick.py [--ticks 5]

A Schedule of `* * * * *` whose Workflow's one step is TaskAgent's `clock` (the member's wall
clock when the step runs), with the real operator and runner; for each of `--ticks` minutes,
the time from the scheduled minute to the step running at its member, and to the Workflow
created (its creationTimestamp, second resolution). p50, p99 (the worst, with few ticks) and
every value. A benchmark, not a test: it asserts nothing and prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import time
import uuid
from datetime import datetime
from pathlib import Path

from harness import agent_body, delete_namespace, new_namespace, operator_env
from kubernetes_asyncio import client, config
from workflow_steps import quantile

REPO = Path(__file__).resolve().parents[1]
KUBECONFIG = str(REPO / ".local-cluster/kubeconfig")
GROUP, VERSION = "foundation.dev", "v1alpha1"


def stamp(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


async def main_async(ticks: int) -> dict:
    configuration = client.Configuration()
    await config.load_kube_config(KUBECONFIG, client_configuration=configuration)
    ns = f"bench-tick-{uuid.uuid4().hex[:5]}"
    env = operator_env(ns, 18084, 19094)
    log = open(REPO / ".local-cluster" / "logs" / "bench-tick.log", "ab")
    async with client.ApiClient(configuration) as api:
        core = client.CoreV1Api(api)
        custom = client.CustomObjectsApi(api)
        await new_namespace(core, ns)
        operator = subprocess.Popen(
            [str(REPO / ".venv/bin/foundation-operator")], env=env, stdout=log, stderr=log
        )
        try:
            clock = agent_body(
                "clock", "foundation_agent.agents:TaskAgent", sidecar={"enabled": False}
            )
            await custom.create_namespaced_custom_object(GROUP, VERSION, ns, "agents", clock)
            while True:
                body = await custom.get_namespaced_custom_object(
                    GROUP, VERSION, ns, "agents", "clock"
                )
                if (body.get("status") or {}).get("ready") == "1/1":
                    break
                await asyncio.sleep(0.2)
            await custom.create_namespaced_custom_object(
                GROUP, VERSION, ns, "schedules",
                {"apiVersion": f"{GROUP}/{VERSION}", "kind": "Schedule",
                 "metadata": {"name": "tick"},
                 "spec": {"schedule": "* * * * *", "successfulWorkflowsHistoryLimit": ticks + 2,
                          "workflow": {"spec": {"steps": [
                              {"name": "now", "agent": "clock", "action": "clock"}]}}}},
            )  # fmt: skip
            to_step: dict[str, float] = {}
            to_create: dict[str, float] = {}
            deadline = time.monotonic() + 60 * (ticks + 2)
            while len(to_step) < ticks and time.monotonic() < deadline:
                listed = await custom.list_namespaced_custom_object(
                    GROUP, VERSION, ns, "workflows", label_selector="foundation.dev/schedule=tick"
                )
                for item in listed["items"]:
                    at = stamp(item["metadata"]["annotations"]["foundation.dev/scheduled-at"])
                    name = item["metadata"]["name"]
                    to_create[name] = stamp(item["metadata"]["creationTimestamp"]) - at
                    for step in (item.get("status") or {}).get("steps") or []:
                        if step.get("result"):
                            to_step[name] = step["result"]["at"] - at
                await asyncio.sleep(0.5)
        finally:
            operator.terminate()
            operator.wait(30)
            await delete_namespace(core, custom, ns, ["clock"])
    values = sorted(to_step.values())
    return {
        "ticks": len(values),
        "tick_to_first_step_p50_s": round(statistics.median(values), 3) if values else None,
        "tick_to_first_step_p99_s": round(quantile(values, 0.99), 3) if values else None,
        "tick_to_first_step_s": [round(v, 3) for v in values],
        "tick_to_created_s": sorted(round(v, 1) for v in to_create.values()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ticks", type=int, default=5)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(main_async(args.ticks)), indent=2))


if __name__ == "__main__":
    main()
