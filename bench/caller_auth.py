"""What a member's door costs: authentication (TokenReview) and authorization (SAR) per call.

    .venv/bin/python bench/caller_auth.py [--kubeconfig .local-cluster/kubeconfig]
        [--seconds 10] [--rate 1000] [--callers 20] [--ttl 2]

Against the local cluster's API server (its real TokenReview and LocalSubjectAccessReview), with
ServiceAccounts made for the run in a namespace of its own (deleted after):
- Added latency, cache warm: a member's task API served on loopback in this process, called at
  `--rate` calls/s (open loop) for `--seconds`, round-robin over `--callers` accounts, each
  with its Foundation token; then the same with no token at all (the door lets it through:
  Permissive), in the same run. p50 and p99 of each and their differences; and the door's own
  time per call (identify + authorize), measured inside the process.
- Reviews that reach the API server: counted over the run, and the shortest time between two
  reviews of one kind for one caller (answers are refreshed ahead, at 80 % of `--ttl`).
- A cache miss: the time of a first call from a new caller (both reviews), p50 and max.
- How long a removed RoleBinding takes to bite: at most the cache period (`--ttl`; 10 s by
  default in members), measured here by removing one and calling until refused.
A benchmark, not a test: it asserts nothing and prints JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "e2e/local"))

from foundation_agent.agents import CounterAgent  # noqa: E402
from foundation_agent.runtime.access import Gate, review_with  # noqa: E402
from foundation_agent.runtime.member import Member  # noqa: E402
from foundation_agent.runtime.server import TaskApi  # noqa: E402
from foundation_agent.runtime.settings import Settings  # noqa: E402
from foundation_agent.stores import MemoryStore  # noqa: E402
from foundation_common.rest import connect  # noqa: E402
from foundation_operator.core import rbac  # noqa: E402


def quantiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50_ms": round(1000 * ordered[len(ordered) // 2], 3),
        "p99_ms": round(1000 * ordered[int(len(ordered) * 0.99)], 3),
    }


async def paced(
    http: aiohttp.ClientSession,
    url: str,
    headers: list[dict[str, str]],
    rate: float,
    seconds: float,
) -> tuple[list[float], Counter[int]]:
    """Open-loop GETs at `rate`/s; their latencies and statuses."""
    latencies: list[float] = []
    statuses: Counter[int] = Counter()

    async def one(i: int) -> None:
        started = time.perf_counter()
        async with http.get(url, headers=headers[i % len(headers)]) as answer:
            await answer.read()
            statuses[answer.status] += 1
        latencies.append(time.perf_counter() - started)

    start = time.perf_counter()
    calls = []
    for i in range(int(rate * seconds)):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        calls.append(asyncio.create_task(one(i)))
    await asyncio.gather(*calls)
    return latencies, statuses


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kubeconfig", default=str(REPO / ".local-cluster/kubeconfig"))
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--callers", type=int, default=20)
    parser.add_argument("--ttl", type=float, default=2.0)
    args = parser.parse_args()

    api = connect(args.kubeconfig)
    ns = f"bench-auth-{uuid.uuid4().hex[:6]}"
    await api.create("/api/v1/namespaces", {"metadata": {"name": ns}})
    try:
        for role in rbac.agent_cluster_roles():
            try:
                await api.create("/apis/rbac.authorization.k8s.io/v1/clusterroles", role)
            except Exception:  # already there (the chart's, or the tests')
                pass
        tokens = []
        for i in range(args.callers + 1):
            name = f"caller-{i}"
            await api.create(
                f"/api/v1/namespaces/{ns}/serviceaccounts", {"metadata": {"name": name}}
            )
            await api.create(
                f"/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings",
                {
                    "metadata": {"name": name},
                    "roleRef": {
                        "apiGroup": "rbac.authorization.k8s.io",
                        "kind": "ClusterRole",
                        "name": "foundation-agent-caller",
                    },
                    "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": ns}],
                },
            )
            answer = await api.create(
                f"/api/v1/namespaces/{ns}/serviceaccounts/{name}/token",
                {
                    "apiVersion": "authentication.k8s.io/v1",
                    "kind": "TokenRequest",
                    "spec": {"audiences": ["foundation.dev"], "expirationSeconds": 3600},
                },
            )
            tokens.append(answer["status"]["token"])
        late, tokens = tokens[-1], tokens[:-1]

        reviews: list[tuple[float, str, str]] = []  # (time, kind, who)
        real = review_with(api)

        async def counted(path: str, body: dict[str, Any]) -> dict[str, Any]:
            who = body["spec"].get("user") or body["spec"].get("token", "")[-12:]
            reviews.append((time.monotonic(), body["kind"], who))
            return await real(path, body)

        gate = Gate(
            counted,
            ns,
            "counter",
            "counter",
            "Permissive",
            ttl=args.ttl,
            denied_ttl=min(2.0, args.ttl),
        )
        door_times: list[float] = []
        identify, allowed = gate.identify, gate.allowed

        async def timed_identify(headers: Any) -> Any:
            started = time.perf_counter()
            try:
                return await identify(headers)
            finally:
                door_times.append(time.perf_counter() - started)

        async def timed_allowed(*a: Any, **k: Any) -> bool:
            started = time.perf_counter()
            try:
                return await allowed(*a, **k)
            finally:
                door_times[-1] += time.perf_counter() - started

        gate.identify, gate.allowed = timed_identify, timed_allowed  # type: ignore[method-assign]
        member = Member(CounterAgent(), MemoryStore(), Settings(agent_class="x:Y"))
        await member.load()
        member.start()
        runner = web.AppRunner(TaskApi(gate, member).app(), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        url = f"http://127.0.0.1:{port}/v1/actions"
        with_token = [{"Authorization": f"Bearer {t}"} for t in tokens]
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64)) as http:
            # Warm: every caller once (the misses, timed).
            misses = []
            for headers in with_token:
                started = time.perf_counter()
                async with http.get(url, headers=headers) as answer:
                    assert answer.status == 200, await answer.text()
                misses.append(time.perf_counter() - started)
            door_times.clear()
            started_at = time.monotonic()
            authed, authed_statuses = await paced(http, url, with_token, args.rate, args.seconds)
            door = list(door_times)
            anonymous, anonymous_statuses = await paced(http, url, [{}], args.rate, args.seconds)

            # A removed grant bites within the period.
            headers = {"Authorization": f"Bearer {late}"}
            async with http.get(url, headers=headers) as answer:
                assert answer.status == 200
            await api.delete(
                f"/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings/caller-{args.callers}"
            )
            removed = time.monotonic()
            while True:
                async with http.get(url, headers=headers) as answer:
                    if answer.status == 403:
                        break
                await asyncio.sleep(0.05)
            bite = time.monotonic() - removed
        await runner.cleanup()
        await member.stop()

        last: dict[tuple[str, str], float] = {}
        gaps: list[float] = []
        for at, kind, who in reviews:
            if (kind, who) in last:
                gaps.append(at - last[(kind, who)])
            last[(kind, who)] = at
        a, b = quantiles(authed), quantiles(anonymous)
        print(
            json.dumps(
                {
                    "rate_per_s": args.rate,
                    "seconds": args.seconds,
                    "callers": args.callers,
                    "cache_seconds": args.ttl,
                    "with_token": {**a, "statuses": dict(authed_statuses)},
                    "no_token_baseline": {**b, "statuses": dict(anonymous_statuses)},
                    "added_p50_ms": round(a["p50_ms"] - b["p50_ms"], 3),
                    "added_p99_ms": round(a["p99_ms"] - b["p99_ms"], 3),
                    "door_time_per_call": quantiles(door),
                    "reviews_in_run": {
                        k: sum(1 for at, kind, _ in reviews if kind == k and at >= started_at)
                        for k in ("TokenReview", "LocalSubjectAccessReview")
                    },
                    # Refreshed ahead at 80 % of the period: one review per caller and kind at most
                    # every 0.8 x cache_seconds.
                    "min_seconds_between_reviews_of_one_caller": round(min(gaps, default=0.0), 2),
                    "cache_miss_ms": {
                        "p50": round(1000 * statistics.median(misses), 2),
                        "max": round(1000 * max(misses), 2),
                    },
                    "removed_binding_bites_after_s": round(bite, 2),
                }
            )
        )
    finally:
        await api.delete(f"/api/v1/namespaces/{ns}")
        await api.close()


if __name__ == "__main__":
    asyncio.run(main())
