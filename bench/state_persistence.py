"""What durable state costs: per-save latency by store and state size, and tasks/s of a member.

    .venv/bin/python bench/state_persistence.py [--saves 200] [--tasks 2000]

In-process, against the real stores: the ConfigMap store talks to the local cluster's API server
(started if needed), the PVC store writes SQLite (WAL, synchronous=FULL) under .local-cluster/.
- Latency: tasks one at a time, each changing a state of 1 KiB, 64 KiB or 512 KiB; the time of
  each durable write that carries a state change (p50/p99).
- Throughput: tasks sent 64 at a time to one member with a 1 KiB state, with and without group
  commit; tasks/s from the first acceptance to the last durable completion.
A benchmark, not a test: it asserts nothing and prints JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from pydantic import BaseModel

from foundation_agent.model import Agent, action
from foundation_agent.runtime.member import Member
from foundation_agent.runtime.settings import Settings
from foundation_agent.stores import Commit
from foundation_agent.stores.configmap import ConfigMapStore
from foundation_agent.stores.sqlite import SqliteStore
from foundation_common import rest

REPO = Path(__file__).resolve().parents[1]
KUBECONFIG = str(REPO / ".local-cluster/kubeconfig")
SIZES = {"1KiB": 1024, "64KiB": 64 * 1024, "512KiB": 512 * 1024}


class Blob(BaseModel):
    blob: str = ""
    n: int = 0


class BlobAgent(Agent[Blob]):
    State = Blob

    @action
    async def touch(self, state: Blob, input: dict) -> tuple[int, Blob]:
        # Every task rewrites part of the blob, so every save carries the whole state.
        size = int(input.get("size", len(state.blob)))
        n = state.n + 1
        blob = (f"{n:08d}" * (size // 8 + 1))[:size]
        return n, Blob(blob=blob, n=n)


def timed(store_class: type) -> type:
    class Timed(store_class):  # type: ignore[misc, valid-type]
        """The real store, timing each write that carries a state."""

        def __init__(self, *args: object) -> None:
            super().__init__(*args)
            self.state_writes: list[float] = []

        async def commit(self, commit: Commit) -> int:
            started = time.perf_counter()
            size = await super().commit(commit)
            if commit.state is not None:
                self.state_writes.append(time.perf_counter() - started)
            return size

    return Timed


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


class Stores:
    def __init__(self, api: rest.Client, namespace: str, workdir: Path) -> None:
        self.api, self.namespace, self.workdir = api, namespace, workdir

    async def make(self, kind: str, name: str) -> SqliteStore | ConfigMapStore:
        if kind == "PVC":
            return timed(SqliteStore)(self.workdir / f"{name}.db")
        await self.api.create(
            f"/api/v1/namespaces/{self.namespace}/configmaps", {"metadata": {"name": name}}
        )
        return timed(ConfigMapStore)(self.api, self.namespace, name)


async def latency(stores: Stores, kind: str, size: int, saves: int) -> dict:
    store = await stores.make(kind, f"lat-{kind.lower()}-{size}")
    member = Member(BlobAgent(), store, Settings(agent_class="x:Y"))
    await member.load()
    member.start()
    for i in range(saves):
        await member.submit(f"t{i}", "touch", {"size": size})
        await member.finished(f"t{i}")
    await member.stop()
    writes = store.state_writes[1:]  # the first write is the initial (empty) state
    return {
        "p50_ms": round(statistics.median(writes) * 1000, 2),
        "p99_ms": round(percentile(writes, 0.99) * 1000, 2),
        "writes": len(writes),
    }


async def throughput(stores: Stores, kind: str, tasks: int, group_commit: bool) -> dict:
    store = await stores.make(kind, f"tput-{kind.lower()}-{group_commit}".lower())
    member = Member(
        BlobAgent(),
        store,
        Settings(agent_class="x:Y", group_commit=group_commit, inbox_max_queued=tasks),
    )
    await member.load()
    member.start()
    gate = asyncio.Semaphore(64)

    async def one(i: int) -> None:
        async with gate:
            await member.submit(f"t{i}", "touch", {"size": 1024})

    started = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(tasks)))
    await member.finished(f"t{tasks - 1}")
    elapsed = time.perf_counter() - started
    await member.stop()
    return {"tasks_per_s": round(tasks / elapsed, 1), "writes": len(store.state_writes)}


async def main_async(saves: int, tasks: int) -> dict:
    namespace = f"bench-state-{uuid.uuid4().hex[:5]}"
    results: dict = {"latency": {}, "throughput": {}}
    async with rest.connect(str(KUBECONFIG)) as api:
        await api.create("/api/v1/namespaces", {"metadata": {"name": namespace}})
        workdir = Path(tempfile.mkdtemp(prefix="bench-state-", dir=REPO / ".local-cluster"))
        stores = Stores(api, namespace, workdir)
        try:
            for kind in ("ConfigMap", "PVC"):
                for label, size in SIZES.items():
                    figures = await latency(stores, kind, size, saves)
                    results["latency"][f"{kind} {label}"] = figures
                    print(f"{kind} {label}: {figures}", file=sys.stderr, flush=True)
                for group_commit in (True, False):
                    figures = await throughput(stores, kind, tasks, group_commit)
                    label = "group commit" if group_commit else "one write per change"
                    results["throughput"][f"{kind} {label}"] = figures
                    print(f"{kind} {label}: {figures}", file=sys.stderr, flush=True)
        finally:
            await api.delete(f"/api/v1/namespaces/{namespace}")
            subprocess.run(["rm", "-rf", str(workdir)], check=False)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--saves", type=int, default=200)
    parser.add_argument("--tasks", type=int, default=2000)
    args = parser.parse_args()
    subprocess.run([str(REPO / "e2e/local/cluster"), "up"], check=True, capture_output=True)
    print(json.dumps(asyncio.run(main_async(args.saves, args.tasks)), indent=2))


if __name__ == "__main__":
    main()
