"""What the sidecar adds: latency against calling the upstream directly, its top rate, its RSS.

    .venv/bin/python bench/sidecar_latency.py [--seconds 10] [--rates 200,1000]

All on loopback: an upstream (aiohttp, answers 200 with a small body) and the real
`foundation-sidecar` process pinned to one core (taskset), the load from this process.
- Added latency: open-loop load at each rate for `--seconds`, first straight to the upstream,
  then through `/upstream/<name>/`; p50 and p99 of each and their difference.
- Top rate: 64 calls in flight through the sidecar for 5 s; requests/s and the sidecar's CPU.
- The sidecar's RSS after all that, and its PSS and USS (what of the RSS is its own).
A benchmark, not a test: it asserts nothing and prints JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import aiohttp

REPO = Path(__file__).resolve().parents[1]
UPSTREAM = """
import sys
from aiohttp import web
async def ok(request):
    return web.Response(text="ok " * 10)
app = web.Application()
app.router.add_get("/{tail:.*}", ok)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_stat(pid: int) -> tuple[float, float]:
    """(CPU seconds, RSS MB) of a process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    rss = int(fields[21]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    return cpu, round(rss, 1)


def memory_mb(pid: int) -> dict[str, float]:
    """RSS, and what of it is the process's own: PSS (shared pages divided among the processes
    that map them) and USS (private pages). In a member pod the sidecar shares the Python
    binary and libraries' clean pages with the agent's own Python process."""
    fields: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        name, value = line.split(":", 1)
        fields[name] = int(value.split()[0])
    return {
        "rss_mb": round(fields["Rss"] / 1024, 1),
        "pss_mb": round(fields["Pss"] / 1024, 1),
        "uss_mb": round((fields["Private_Clean"] + fields["Private_Dirty"]) / 1024, 1),
        "shared_clean_mb": round(fields["Shared_Clean"] / 1024, 1),
    }


async def wait_up(url: str) -> None:
    async with aiohttp.ClientSession() as http:
        for _ in range(200):
            try:
                async with http.get(url) as answer:
                    if answer.status < 500:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
    raise TimeoutError(url)


def percentiles(samples: list[float]) -> dict[str, float]:
    cuts = statistics.quantiles(samples, n=100)
    return {"p50_ms": round(cuts[49] * 1000, 3), "p99_ms": round(cuts[98] * 1000, 3)}


async def open_loop(http: aiohttp.ClientSession, url: str, rate: int, seconds: float) -> dict:
    """`rate` calls a second on schedule, whether earlier ones have answered or not."""
    latencies: list[float] = []
    errors = 0

    async def one() -> None:
        nonlocal errors
        started = time.perf_counter()
        async with http.get(url) as answer:
            await answer.read()
            if answer.status != 200:
                errors += 1
        latencies.append(time.perf_counter() - started)

    calls = []
    begin = time.perf_counter()
    for i in range(int(rate * seconds)):
        delay = begin + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        calls.append(asyncio.create_task(one()))
    await asyncio.gather(*calls)
    elapsed = time.perf_counter() - begin
    return {**percentiles(latencies), "sent_per_s": round(len(calls) / elapsed), "errors": errors}


async def closed_loop(http: aiohttp.ClientSession, url: str, seconds: float) -> float:
    done = 0
    end = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() < end:
            async with http.get(url) as answer:
                await answer.read()
            done += 1

    begin = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(64)))
    return done / (time.perf_counter() - begin)


async def measure(seconds: float, rates: list[int]) -> dict:
    up_port, proxy_port, admin_port = free_port(), free_port(), free_port()
    upstream = subprocess.Popen([sys.executable, "-c", UPSTREAM, str(up_port)])
    config = {"upstreams": [{"name": "up", "url": f"http://127.0.0.1:{up_port}"}]}
    env = dict(
        os.environ,
        FOUNDATION_SIDECAR_CONFIG=json.dumps(config),
        FOUNDATION_SIDECAR_PORT=str(proxy_port),
        FOUNDATION_SIDECAR_ADMIN_PORT=str(admin_port),
        FOUNDATION_AGENT_PORT=str(free_port()),  # no agent: on SIGTERM it stops at once
    )
    sidecar = subprocess.Popen(
        ["taskset", "-c", "1", str(REPO / ".venv/bin/foundation-sidecar")],
        env=env,
        stderr=subprocess.DEVNULL,
    )
    direct = f"http://127.0.0.1:{up_port}/v1/x"
    proxied = f"http://127.0.0.1:{proxy_port}/upstream/up/v1/x"
    result: dict = {}
    try:
        await wait_up(direct)
        await wait_up(proxied)
        connector = aiohttp.TCPConnector(limit=256)
        async with aiohttp.ClientSession(connector=connector) as http:
            await closed_loop(http, proxied, 1.0)  # warm up pools and code paths
            for rate in rates:
                straight = await open_loop(http, direct, rate, seconds)
                through = await open_loop(http, proxied, rate, seconds)
                result[f"{rate}_per_s"] = {
                    "direct": straight,
                    "sidecar": through,
                    "added_p50_ms": round(through["p50_ms"] - straight["p50_ms"], 3),
                    "added_p99_ms": round(through["p99_ms"] - straight["p99_ms"], 3),
                }
                print(f"{rate}/s: {json.dumps(result[f'{rate}_per_s'])}", file=sys.stderr)
            cpu_before, _ = proc_stat(sidecar.pid)
            began = time.perf_counter()
            top = await closed_loop(http, proxied, 5.0)
            cpu = (proc_stat(sidecar.pid)[0] - cpu_before) / (time.perf_counter() - began)
        result["max_per_s_one_core"] = round(top)
        result["sidecar_cpu_share_at_max"] = round(cpu, 2)
        result["sidecar_rss_mb"] = proc_stat(sidecar.pid)[1]
        result["sidecar_memory"] = memory_mb(sidecar.pid)
    finally:
        sidecar.send_signal(signal.SIGTERM)
        upstream.terminate()
        sidecar.wait(timeout=30)
        upstream.wait(timeout=10)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rates", default="200,1000")
    args = parser.parse_args()
    rates = [int(r) for r in args.rates.split(",")]
    print(json.dumps(asyncio.run(measure(args.seconds, rates)), indent=2))


if __name__ == "__main__":
    main()
