"""What listing an Agent's task history costs: the first page out of 10,000 kept records.

    .venv/bin/python bench/task_listing.py [--records 10000] [--members 4] [--calls 200]

No cluster: CounterAgent members on loopback, each holding `--records` completion records
(sent as tasks through the real inbox and journal, on the in-memory store), their task API
served by aiohttp as in a pod. Then, `--calls` times each, sequentially:
- `first_page`: `GET /v1/tasks` (50 newest) from one member: p50, p99;
- `filtered`: the same with a filter that matches 1 in 100 (`action=get`);
- `deep_page`: a page 100 pages down, by its token;
- `merged_first_page`: the first page across `--members` members as the door makes it (the
  members asked at once, their pages merged: `foundation_common.history.merge`). Here the
  members share this one process and core, so it pays for all of them in turn; in a cluster
  each is a pod of its own and they answer side by side. `merge_only` is the merge itself.
The issue's bound: a first page under 50 ms. A benchmark, not a test: it prints JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO)]

from foundation_agent.agents import CounterAgent  # noqa: E402
from foundation_agent.runtime.access import Gate  # noqa: E402
from foundation_agent.runtime.member import Member  # noqa: E402
from foundation_agent.runtime.server import TaskApi  # noqa: E402
from foundation_agent.runtime.settings import Settings  # noqa: E402
from foundation_agent.stores import MemoryStore  # noqa: E402
from foundation_common import history  # noqa: E402


def quantiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50_ms": round(1000 * ordered[len(ordered) // 2], 2),
        "p99_ms": round(1000 * ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], 2),
    }


async def member_with(records: int, index: int) -> Member:
    settings = Settings(
        agent_class="x:Y",
        keep_completed=records,
        keep_completed_bytes=1 << 30,
        keep_completed_seconds=86_400,
    )
    member = Member(CounterAgent(), MemoryStore(), settings)
    await member.load()
    member.start()
    batch = 500
    for start in range(0, records, batch):
        await asyncio.gather(
            *(
                member.submit(
                    f"m{index}-t{i:06d}",
                    "increment" if i % 100 else "get",
                    {"by": 1} if i % 100 else {},
                )
                for i in range(start, min(records, start + batch))
            )
        )
    for task_id in list(member.records):  # every task done: each record's end awaited
        await member.finished(task_id)
    await member.journal.idle()
    return member


async def served(member: Member, port: int) -> web.AppRunner:
    gate = Gate(None, "bench", "counter", "counter", "Permissive")
    runner = web.AppRunner(TaskApi(gate, member).app(), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner


async def timed(calls: int, call: Any) -> dict[str, float]:
    samples = []
    for _ in range(calls):
        started = time.perf_counter()
        await call()
        samples.append(time.perf_counter() - started)
    return quantiles(samples)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--members", type=int, default=4)
    parser.add_argument("--calls", type=int, default=200)
    args = parser.parse_args()
    filled = time.perf_counter()
    members = [await member_with(args.records, i) for i in range(args.members)]
    filled = time.perf_counter() - filled
    ports = [18700 + i for i in range(args.members)]
    runners = [await served(m, p) for m, p in zip(members, ports, strict=True)]
    async with aiohttp.ClientSession() as http:

        async def get(port: int, params: dict[str, str]) -> dict[str, Any]:
            async with http.get(f"http://127.0.0.1:{port}/v1/tasks", params=params) as answer:
                assert answer.status == 200, await answer.text()
                return await answer.json()  # type: ignore[no-any-return]

        first = await get(ports[0], {})
        assert len(first["tasks"]) == 50 and first["totalSize"] == args.records
        token = ""
        for _ in range(100):
            token = (await get(ports[0], {"pageSize": "50", "pageToken": token} if token else {}))[
                "nextPageToken"
            ]
        query = history.Query()

        async def merged() -> history.Page:
            pages = await asyncio.gather(*(get(p, query.params()) for p in ports))
            return history.merge(
                [history.Page.of_body(p) for p in pages], query, [f"m-{i}" for i in ports]
            )

        answers = [
            history.Page.of_body(p) for p in await asyncio.gather(*(get(p, {}) for p in ports))
        ]

        async def merge_only() -> history.Page:
            return history.merge(answers, query, [f"m-{i}" for i in ports])

        result = {
            "records_per_member": args.records,
            "members": args.members,
            "fill_seconds": round(filled, 1),
            "first_page": await timed(args.calls, lambda: get(ports[0], {})),
            "filtered": await timed(args.calls, lambda: get(ports[0], {"action": "get"})),
            "deep_page": await timed(args.calls, lambda: get(ports[0], {"pageToken": token})),
            "merged_first_page": await timed(args.calls, merged),
            "merge_only": await timed(args.calls, merge_only),
            "first_page_bytes": len(json.dumps(first)),
            "max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        }
    for runner in runners:
        await runner.cleanup()
    for member in members:
        await member.stop()
    print(json.dumps(result))


if __name__ == "__main__":
    asyncio.run(main())
