"""A map step against the same work as separate steps, on the local cluster, in the same run.

    .venv/bin/python bench/workflow_map.py [--items 500] [--members 4] [--parallelism 16]

One Agent of `--members` members (TaskAgent; each item is its no-op `clock`). Then:
- map: one Workflow whose one step maps over `--items` items;
- steps: one Workflow of `--items` independent steps (the same tasks, written out);
both with the same parallelism, one after the other, the real operator and runner. For each:
items/s (from the Workflow's creation to its end), the runner's status writes and every
write anyone made (kube-apiserver's counters) per item, the Workflow's size at the end, and
create → first item accepted. A benchmark, not a test: it asserts nothing and prints one JSON
object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import time
import uuid
from pathlib import Path

from apiserver import delta, request_counts, writes  # bench/apiserver.py
from harness import agent_body, delete_namespace, new_namespace, operator_env
from kubernetes_asyncio import client, config
from workflow_steps import finished, status_patches

REPO = Path(__file__).resolve().parents[1]
KUBECONFIG = str(REPO / ".local-cluster/kubeconfig")
GROUP, VERSION = "foundation.dev", "v1alpha1"


def workflow(name: str, items: int, parallelism: int, as_map: bool) -> dict:
    if as_map:
        steps = [
            {
                "name": "each",
                "agent": "pool",
                "action": "clock",
                "input": {"n": "{{ item }}"},
                "map": {"items": list(range(items)), "parallelism": parallelism},
            }
        ]
    else:
        steps = [
            {"name": f"s{i}", "agent": "pool", "action": "clock", "input": {"n": i}}
            for i in range(items)
        ]
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Workflow",
        "metadata": {"name": name},
        "spec": {"parallelism": parallelism, "steps": steps},
    }


async def one_run(
    api: client.ApiClient,
    custom: client.CustomObjectsApi,
    ns: str,
    name: str,
    items: int,
    parallelism: int,
    as_map: bool,
) -> dict:
    before = await request_counts(api)
    began = time.time()
    await custom.create_namespaced_custom_object(
        GROUP, VERSION, ns, "workflows", workflow(name, items, parallelism, as_map)
    )
    body = await finished(custom, ns, name, 900)
    seconds = time.time() - began
    counts = delta(await request_counts(api), before)
    status = body["status"]
    clocks = (
        [r["at"] for r in status["steps"][0]["result"]]
        if as_map
        else [s["result"]["at"] for s in status["steps"] if s.get("result")]
    )
    patches = status_patches(counts, "workflows")
    return {
        "phase": status["phase"],
        "items": items,
        "seconds": round(seconds, 2),
        "items_per_s": round(items / seconds, 1),
        "status_writes": patches,
        "status_writes_per_item": round(patches / items, 3),
        "all_writes_per_item": round(writes(counts) / items, 2),
        "workflow_kib": round(len(json.dumps(body)) / 1024, 1),
        "create_to_first_item_s": round(min(clocks) - began, 2) if clocks else None,
    }


async def main_async(items: int, members: int, parallelism: int) -> dict:
    configuration = client.Configuration()
    await config.load_kube_config(KUBECONFIG, client_configuration=configuration)
    ns = f"bench-map-{uuid.uuid4().hex[:5]}"
    env = operator_env(ns, 18083, 19093)
    log = open(REPO / ".local-cluster" / "logs" / "bench-map.log", "ab")
    out: dict = {"members": members, "parallelism": parallelism}
    async with client.ApiClient(configuration) as api:
        core = client.CoreV1Api(api)
        custom = client.CustomObjectsApi(api)
        await new_namespace(core, ns)
        operator = subprocess.Popen(
            [str(REPO / ".venv/bin/foundation-operator")], env=env, stdout=log, stderr=log
        )
        try:
            await custom.create_namespaced_custom_object(
                GROUP,
                VERSION,
                ns,
                "agents",
                agent_body(
                    "pool",
                    "foundation_agent.agents:TaskAgent",
                    replicas=members,
                    sidecar={"enabled": False},
                ),
            )
            while True:
                body = await custom.get_namespaced_custom_object(
                    GROUP, VERSION, ns, "agents", "pool"
                )
                if (body.get("status") or {}).get("ready") == f"{members}/{members}":
                    break
                await asyncio.sleep(0.2)
            out["map"] = await one_run(api, custom, ns, "as-map", items, parallelism, True)
            out["steps"] = await one_run(api, custom, ns, "as-steps", items, parallelism, False)
            out["ratio_items_per_s"] = round(
                out["map"]["items_per_s"] / out["steps"]["items_per_s"], 2
            )
            out["ratio_status_writes"] = round(
                out["map"]["status_writes"] / max(1, out["steps"]["status_writes"]), 2
            )
        finally:
            operator.terminate()
            operator.wait(30)
            await delete_namespace(core, custom, ns, ["pool"])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=500)
    parser.add_argument("--members", type=int, default=4)
    parser.add_argument("--parallelism", type=int, default=16)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(main_async(args.items, args.members, args.parallelism)), indent=2))


if __name__ == "__main__":
    main()
