"""What the console costs to look at: the first view of a namespace with 1,000 Agents and 1,000
Workflows, and a 200-step Workflow's graph, in a real browser.

    .venv/bin/python bench/console_load.py [--agents 1000] [--workflows 1000] [--steps 200]

On the local cluster, no operator: the objects are created as a user would (the API server
validates them) and stay as they are, which is all a first view reads. Then `foundation
console` for that namespace, and Debian's Chromium driven by Playwright (headless), five times
each (the first load of each view warms the server and the browser's caches too; the median is
shown, and every run):
- `agents_first_view_ms`, `workflows_first_view_ms`: from navigation to the first page's rows
  (100) in the table, the list's watch opened after;
- `graph_ms`: from navigation to the 200 steps' nodes drawn; `graph_draw_ms`: the drawing alone
  (the page's own measure: building the SVG of the DAG).
The issue's bounds: a first view under 1 s, a 200-step graph under 500 ms. A benchmark, not a
test: it asserts nothing and prints JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import time
import uuid

import httpx
from harness import GROUP, KUBECONFIG, REPO, VERSION, new_namespace
from kubernetes_asyncio import client, config
from playwright.async_api import async_playwright

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-gpu",
]
RUNS = 5


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def steps(count: int) -> list[dict]:
    """A DAG of `count` steps, ten wide: each depends on two of the layer before."""
    out = []
    for i in range(count):
        layer, place = divmod(i, 10)
        deps = (
            []
            if layer == 0
            else sorted({f"s{(layer - 1) * 10 + place}", f"s{(layer - 1) * 10 + (place + 1) % 10}"})
        )
        out.append(
            {
                "name": f"s{i}",
                "agent": "worker",
                "action": "echo",
                "input": {"i": i},
                "dependsOn": deps,
            }
        )
    return out


async def create_all(
    custom: client.CustomObjectsApi, ns: str, plural: str, bodies: list[dict]
) -> None:
    gate = asyncio.Semaphore(16)

    async def one(body: dict) -> None:
        async with gate:
            await custom.create_namespaced_custom_object(GROUP, VERSION, ns, plural, body)

    await asyncio.gather(*(one(b) for b in bodies))


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--workflows", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=200)
    args = parser.parse_args()
    ns = f"bench-console-{uuid.uuid4().hex[:5]}"
    configuration = client.Configuration()
    await config.load_kube_config(config_file=KUBECONFIG, client_configuration=configuration)
    api = client.ApiClient(configuration)
    core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
    await new_namespace(core, ns)
    console = None
    result: dict = {"agents": args.agents, "workflows": args.workflows, "steps": args.steps}
    try:
        began = time.perf_counter()
        agent = {"agent": "foundation_agent.agents:CounterAgent", "image": "foundation-agent:dev"}
        await create_all(
            custom,
            ns,
            "agents",
            [
                {
                    "apiVersion": f"{GROUP}/{VERSION}",
                    "kind": "Agent",
                    "metadata": {"name": f"a{i:04d}"},
                    "spec": agent,
                }
                for i in range(args.agents)
            ],
        )
        one_step = [{"name": "only", "agent": "worker", "action": "echo"}]
        await create_all(
            custom,
            ns,
            "workflows",
            [
                {
                    "apiVersion": f"{GROUP}/{VERSION}",
                    "kind": "Workflow",
                    "metadata": {"name": f"w{i:04d}"},
                    "spec": {"steps": one_step},
                }
                for i in range(args.workflows)
            ]
            + [
                {
                    "apiVersion": f"{GROUP}/{VERSION}",
                    "kind": "Workflow",
                    "metadata": {"name": "big"},
                    "spec": {"steps": steps(args.steps)},
                }
            ],
        )
        result["create_seconds"] = round(time.perf_counter() - began, 1)
        port = free_port()
        console = subprocess.Popen(
            [
                str(REPO / ".venv/bin/foundation"),
                "--kubeconfig",
                KUBECONFIG,
                "-n",
                ns,
                "console",
                "--listen",
                f"127.0.0.1:{port}",
            ],
            stdout=subprocess.DEVNULL,
            env={k: v for k, v in os.environ.items() if k != "KUBECONFIG"},
        )
        url = f"http://127.0.0.1:{port}/"
        async with httpx.AsyncClient() as http:
            for _ in range(100):
                try:
                    if (await http.get(url, timeout=1)).status_code == 200:
                        break
                except httpx.HTTPError:
                    await asyncio.sleep(0.1)
        chromium = subprocess.run(
            [str(REPO / "e2e/local/browser"), "--bin"], capture_output=True, text=True, check=True
        ).stdout.strip()
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
            runs: dict[str, list[float]] = {
                "agents_first_view_ms": [],
                "workflows_first_view_ms": [],
                "graph_ms": [],
                "graph_draw_ms": [],
            }
            for _ in range(RUNS):
                for kind in ("agents", "workflows"):
                    page = await browser.new_page()
                    started = time.perf_counter()
                    await page.goto(f"{url}#/{kind}")
                    await page.locator(f"#{kind}-table tbody tr").nth(99).wait_for(timeout=30_000)
                    runs[f"{kind}_first_view_ms"].append(
                        round((time.perf_counter() - started) * 1000, 1)
                    )
                    await page.close()
                page = await browser.new_page()
                started = time.perf_counter()
                await page.goto(f"{url}#/workflows/big")
                await page.locator(f'#dag g[data-step="s{args.steps - 1}"]').wait_for(
                    timeout=30_000
                )
                runs["graph_ms"].append(round((time.perf_counter() - started) * 1000, 1))
                runs["graph_draw_ms"].append(
                    round(float(await page.get_attribute("#graph", "data-drawn-ms")), 1)
                )
                await page.close()
            await browser.close()
        result.update({k: statistics.median(v) for k, v in runs.items()})
        result["runs"] = runs
    finally:
        if console is not None:
            console.terminate()
            console.wait(timeout=10)
        await core.delete_namespace(ns)  # no operator ran: no finalizers hold it
        # Gone before this ends: an operator started next would find 2,000 objects to handle.
        while True:
            try:
                await core.read_namespace(ns)
            except client.ApiException as exc:
                if exc.status == 404:
                    break
                raise
            await asyncio.sleep(1)
        await api.close()
    print(json.dumps(result))


if __name__ == "__main__":
    asyncio.run(main())
