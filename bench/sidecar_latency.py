"""What the sidecar adds: latency against calling the upstream directly, its top rate, its RSS;
and against a baseline sidecar, the same code at an earlier commit, in the same run.

    .venv/bin/python bench/sidecar_latency.py [--seconds 10] [--rates 200,1000]
        [--baseline d0188f7]   # the sidecar before issue 26's checks; "" for none
        [--no-tracing]         # leave out the tracing comparison

All on loopback: an upstream (aiohttp, answers 200 with a small body) and the real
`foundation-sidecar` process pinned to core 1 (taskset), the load from this process and the
upstream on core 0.
- Added latency: open-loop load at each rate for `--seconds`, first straight to the upstream,
  then through `/upstream/<name>/`; p50 and p99 of each and their difference.
- Top rate: 64 calls in flight through the sidecar for 5 s; requests/s and the sidecar's CPU.
- The sidecar's RSS after all that, and its PSS and USS (what of the RSS is its own).
- With --baseline: the baseline's sidecar (its packages from `git archive`, put first on the
  path) and this one take turns, five rounds at the highest rate; each one's median p99 and
  CPU per call, and the change.
- Tracing: this sidecar with tracing off; on (spans exported over OTLP every second to a sink
  on core 0 that answers 200) with calls outside any trace (passed as they come); on with
  every call in a sampled trace (a client span each); and on with one call in ten sampled (the
  others in unsampled traces, as `samplingRatio: 0.1` makes them), taking turns the same way;
  and the off
  path's allocations: the peak memory Python's allocator traces (tracemalloc) over a million
  passes of what a call runs for tracing when it is off (0 bytes: nothing is allocated).
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
import tempfile
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


async def open_loop(
    http: aiohttp.ClientSession,
    url: str,
    rate: int,
    seconds: float,
    headers: dict[str, str] | None = None,
) -> dict:
    """`rate` calls a second on schedule, whether earlier ones have answered or not; with
    `headers` (`SAMPLED_ONE_IN` set in them: only every n-th call's trace sampled)."""
    latencies: list[float] = []
    errors = 0
    headers = dict(headers or {})
    one_in = int(headers.pop(SAMPLED_ONE_IN, "1"))

    async def one(i: int) -> None:
        nonlocal errors
        started = time.perf_counter()
        sent = headers
        if headers and one_in > 1 and i % one_in:
            sent = {**headers, "traceparent": headers["traceparent"][:-2] + "00"}  # not sampled
        async with http.get(url, headers=sent) as answer:
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
        calls.append(asyncio.create_task(one(i)))
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


ROUNDS = 5


def baseline_packages(ref: str, into: Path) -> Path:
    """The foundation packages at `ref`, laid out to go first on PYTHONPATH."""
    source, packages = into / "src", into / "packages"
    source.mkdir(parents=True)
    packages.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", ref, "agent_image", "common"],
        check=True,
        capture_output=True,
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(source)], input=archive, check=True)
    (packages / "foundation_agent").symlink_to(source / "agent_image")
    (packages / "foundation_common").symlink_to(source / "common")
    return packages


def start_sidecar(
    up_port: int, packages: Path | None, extra: dict[str, str] | None = None
) -> tuple[subprocess.Popen, int]:
    """A sidecar pinned to one core with one upstream; this checkout's, or `packages`'; with
    `extra` environment."""
    proxy_port, admin_port = free_port(), free_port()
    config = {"upstreams": [{"name": "up", "url": f"http://127.0.0.1:{up_port}"}]}
    env = dict(
        os.environ,
        FOUNDATION_SIDECAR_CONFIG=json.dumps(config),
        FOUNDATION_SIDECAR_PORT=str(proxy_port),
        FOUNDATION_SIDECAR_ADMIN_PORT=str(admin_port),
        FOUNDATION_AGENT_PORT=str(free_port()),  # no agent: on SIGTERM it stops at once
        **(extra or {}),
    )
    command = [str(REPO / ".venv/bin/foundation-sidecar")]
    if packages is not None:
        env["PYTHONPATH"] = str(packages)
        command = [sys.executable, "-m", "foundation_agent.sidecar.server"]
    sidecar = subprocess.Popen(["taskset", "-c", "1", *command], env=env, stderr=subprocess.DEVNULL)
    return sidecar, proxy_port


async def against_baseline(
    http: aiohttp.ClientSession, up_port: int, packages: Path, rate: int, seconds: float
) -> dict:
    """This sidecar and the baseline's, taking turns."""
    return await turns(
        http, up_port, {"baseline": (packages, {}, {}), "this": (None, {}, {})}, rate, seconds
    )


async def turns(
    http: aiohttp.ClientSession,
    up_port: int,
    variants: dict[str, tuple[Path | None, dict[str, str], dict[str, str]]],
    rate: int,
    seconds: float,
) -> dict:
    """Sidecars (packages, environment; the calls' headers) taking turns, `ROUNDS` rounds
    each: p99 at `rate`, and the sidecar's CPU time per call (which a noisy machine disturbs
    less than a p99); each one's change against the first."""
    names = list(variants)
    p99: dict[str, list[float]] = {name: [] for name in names}
    cpu: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(ROUNDS):
        for name, (where, env, headers) in variants.items():
            sidecar, port = start_sidecar(up_port, where, env)
            url = f"http://127.0.0.1:{port}/upstream/up/v1/x"
            try:
                await wait_up(url)
                await closed_loop(http, url, 1.0)
                before = proc_stat(sidecar.pid)[0]
                loaded = await open_loop(http, url, rate, seconds, headers)
                calls = loaded["sent_per_s"] * seconds
                p99[name].append(loaded["p99_ms"])
                cpu[name].append(round((proc_stat(sidecar.pid)[0] - before) / calls * 1e6, 1))
            finally:
                sidecar.send_signal(signal.SIGTERM)
                sidecar.wait(timeout=30)
    first = names[0]
    median_p99 = {n: statistics.median(p99[n]) for n in names}
    median_cpu = {n: statistics.median(cpu[n]) for n in names}

    def change(of: dict[str, float], name: str) -> float:
        return round((of[name] - of[first]) / of[first] * 100, 1)

    out = {
        "rate_per_s": rate,
        "p99_ms": p99,
        "median_p99_ms": median_p99,
        "cpu_us_per_call": cpu,
        "median_cpu_us_per_call": median_cpu,
    }
    if len(names) == 2:
        out["p99_change_percent"] = change(median_p99, names[1])
        out["cpu_change_percent"] = change(median_cpu, names[1])
    else:
        out["p99_change_percent"] = {n: change(median_p99, n) for n in names[1:]}
        out["cpu_change_percent"] = {n: change(median_cpu, n) for n in names[1:]}
    return out


SAMPLED_ONE_IN = "x-bench-sampled-one-in"  # not sent: how many calls share one sampled trace
# A sampled trace's context, as an agent's call in a task's run carries it.
PARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
SINK = """
import sys
from aiohttp import web
async def took(request):
    await request.read()
    return web.Response(status=200, content_type="application/x-protobuf")
app = web.Application(client_max_size=64 * 2**20)
app.router.add_post("/v1/traces", took)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)
"""


def off_path_allocations(passes: int = 1_000_000) -> dict:
    """Bytes Python's allocator holds at its peak, over what a call runs for tracing when it
    is off (the sidecar's choice of `send`, the runtime's checks), beyond what it held."""
    import tracemalloc

    sys.path[:0] = [str(REPO)]
    from foundation_agent.sidecar.routes import sender
    from foundation_common import tracing

    assert not tracing.enabled()
    sender(), tracing.enabled()  # imported and warm
    tracemalloc.start()
    before, _ = tracemalloc.get_traced_memory()
    tracemalloc.reset_peak()
    for _ in range(passes):
        sender()
        tracing.enabled()
    after, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {"passes": passes, "peak_bytes_added": peak - before, "held_bytes_added": after - before}


async def measure(seconds: float, rates: list[int], baseline: str, traced: bool) -> dict:
    up_port = free_port()
    # The load and the upstream on core 0, the sidecar alone on core 1: what is measured is
    # the sidecar, not the three processes' contention on two cores.
    os.sched_setaffinity(0, {0})
    upstream = subprocess.Popen(
        ["taskset", "-c", "0", sys.executable, "-c", UPSTREAM, str(up_port)]
    )
    sidecar, proxy_port = start_sidecar(up_port, None)
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
            sidecar.send_signal(signal.SIGTERM)
            sidecar.wait(timeout=30)
            if traced:
                sink_port = free_port()
                sink = subprocess.Popen(
                    ["taskset", "-c", "0", sys.executable, "-c", SINK, str(sink_port)]
                )
                try:
                    on = {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{sink_port}"}
                    result["tracing"] = {
                        **await turns(
                            http,
                            up_port,
                            {
                                "off": (None, {}, {}),
                                "on_calls_untraced": (None, on, {}),
                                "on_every_call_traced": (None, on, {"traceparent": PARENT}),
                                "on_one_in_ten_sampled": (
                                    None,
                                    on,
                                    {"traceparent": PARENT, SAMPLED_ONE_IN: "10"},
                                ),
                            },
                            max(rates),
                            seconds,
                        ),
                        "off_path_allocations": off_path_allocations(),
                    }
                finally:
                    sink.terminate()
                    sink.wait(timeout=10)
            if baseline:
                with tempfile.TemporaryDirectory() as scratch:
                    packages = baseline_packages(baseline, Path(scratch))
                    result["against_baseline"] = {
                        "baseline": baseline,
                        **await against_baseline(http, up_port, packages, max(rates), seconds),
                    }
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
    parser.add_argument("--baseline", default="d0188f7", help="a commit; empty for none")
    parser.add_argument("--no-tracing", action="store_true", help="no tracing comparison")
    args = parser.parse_args()
    rates = [int(r) for r in args.rates.split(",")]
    result = asyncio.run(measure(args.seconds, rates, args.baseline, not args.no_tracing))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
