"""One large result never takes a member down (issue 26): a result over its budget, or one
the store could not take, fails that task alone; completion records are bounded by bytes and
make room for new ones; queued inputs are bounded in memory."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from foundation_agent.agents import TaskAgent
from foundation_agent.agents.tasks import TaskState
from foundation_agent.model import Agent, action
from foundation_agent.runtime.member import Member, Refused
from foundation_agent.runtime.settings import Settings
from foundation_agent.stores.configmap import LIMIT, ConfigMapStore, data_size
from foundation_common.rest import ApiError
from waiting import until


class FakeConfigMapApi:
    """The API server's side of one ConfigMap: GET and merge PATCH with resourceVersion,
    and its size limit, as the ConfigMap store meets them."""

    def __init__(self) -> None:
        self.data: dict[str, str] = {}
        self.version = 1
        self.writes = 0

    async def get(self, path: str) -> dict[str, Any]:
        return {"metadata": {"resourceVersion": str(self.version)}, "data": dict(self.data)}

    async def merge_patch(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        if body["metadata"]["resourceVersion"] != str(self.version):
            raise ApiError(409, reason="Conflict")
        data = {**self.data, **body["data"]}
        if data_size(data) > LIMIT:
            raise ApiError(422, reason="Invalid")
        self.data, self.version, self.writes = data, self.version + 1, self.writes + 1
        return await self.get(path)


def settings(**overrides: object) -> Settings:
    return Settings(agent_class="x:Y", **overrides)


async def started(store: Any, **overrides: object) -> Member:
    member = Member(TaskAgent(), store, settings(**overrides))
    await member.load()
    member.start()
    return member


async def done(member: Member, task_id: str) -> dict[str, Any]:
    return await asyncio.wait_for(member.finished(task_id), 10)


def configmap() -> tuple[FakeConfigMapApi, ConfigMapStore]:
    api = FakeConfigMapApi()
    return api, ConfigMapStore(api, "team", "a-0-state")  # type: ignore[arg-type]


async def test_a_result_over_the_budget_fails_that_task_and_the_member_goes_on() -> None:
    _, store = configmap()
    member = await started(store, result_max_bytes=64 * 1024)
    await member.submit("first", "put", {"key": "k", "value": 1})
    await member.submit("big", "emit", {"bytes": 1_100_000})  # 20 bytes in, 1.1 MB out
    await member.submit("after", "get", {"key": "k"})
    big = await done(member, "big")
    assert big["status"] == "failed" and big["result"] is None
    assert big["error"] == (
        "ResultTooLarge: the result takes 1100002 bytes as JSON, over this Agent's limit of "
        "65536 bytes (spec.limits.resultBytes); the state is kept as it was"
    )
    assert (await done(member, "after"))["result"] == {"key": "k", "value": 1}
    assert member.fatal is None and member.error is None
    await member.stop()


async def test_a_result_within_budget_that_the_store_cannot_take_fails_alone() -> None:
    api, store = configmap()
    member = await started(store, result_max_bytes=4 << 20)
    await member.submit("fill", "fill", {"key": "k", "bytes": 600_000})
    await done(member, "fill")
    await member.submit("big", "emit", {"bytes": 500_000})
    big = await done(member, "big")
    assert big["status"] == "failed"
    assert big["error"].startswith("ResultTooLarge: the result (500002 bytes) does not fit in")
    assert "the ConfigMap store's limit is 1048576 bytes" in big["error"]
    await member.submit("small", "emit", {"bytes": 10})
    assert (await done(member, "small"))["status"] == "succeeded"
    assert member.fatal is None and data_size(api.data) <= LIMIT
    await member.stop()


async def test_completion_records_make_room_by_bytes_and_no_write_is_refused() -> None:
    # The review's case: 2 KB results with keepCompleted 1,000 filled the ConfigMap after 487.
    api, store = configmap()
    member = await started(store, keep_completed=1000)
    for i in range(700):
        await member.submit(f"t{i}", "emit", {"bytes": 2000})
    await done(member, "t699")
    assert member.fatal is None
    assert all(member.task(f"t{i}") is None for i in range(100))  # the oldest went
    kept = json.loads(api.data["tasks.json"])
    assert "t699" in kept and len(kept) < 700
    assert sum(len(json.dumps(r)) for r in kept.values()) <= 512 * 1024 + 4096
    assert data_size(api.data) <= LIMIT
    await member.stop()


async def test_a_store_near_full_drops_the_oldest_records_to_take_a_write() -> None:
    api, store = configmap()
    member = await started(store, keep_completed_bytes=1 << 30)  # only the store's size bounds
    await member.submit("fill", "fill", {"key": "k", "bytes": 700_000})
    for i in range(4):
        await member.submit(f"r{i}", "emit", {"bytes": 100_000})
        assert (await done(member, f"r{i}"))["status"] == "succeeded"
    assert member.fatal is None and data_size(api.data) <= LIMIT
    kept = json.loads(api.data["tasks.json"])
    assert "r3" in kept and "r0" not in kept
    await member.stop()


async def test_records_dropped_at_once_are_not_stored_nor_kept_in_memory() -> None:
    api, store = configmap()
    member = await started(store, keep_completed=0)
    status, _ = await member.submit("once", "emit", {"bytes": 3})
    assert status == 202
    # Three writes: the initial state, the acceptance, the completion (dropped at once).
    await until(lambda: api.writes == 3 and not member.queued() and member.running is None)
    assert member.task("once") is None and "once" not in json.loads(api.data["tasks.json"])
    await member.stop()


class Held(Agent[TaskState]):
    """`hold` waits for `gate`; `echo` returns its input."""

    State = TaskState
    gate: asyncio.Event

    @action
    async def hold(self, state: TaskState, input: dict) -> tuple[None, TaskState]:
        await self.gate.wait()
        return None, state

    @action
    async def echo(self, state: TaskState, input: dict) -> tuple[dict, TaskState]:
        return input, state


async def test_queued_inputs_are_bounded_in_memory_with_429() -> None:
    _, store = configmap()
    agent = Held()
    agent.gate = asyncio.Event()
    member = Member(agent, store, settings(inbox_max_queued_bytes=4096))
    await member.load()
    member.start()
    await member.submit("hold", "hold", {})
    await until(lambda: member.running == "hold")
    for i in range(3):
        await member.submit(f"q{i}", "echo", {"text": "y" * 1000})
    with pytest.raises(Refused) as full:
        await member.submit("one-too-many", "echo", {"text": "y" * 1500})
    assert full.value.status == 429 and full.value.retry_after == 1
    assert "would pass the limit of 4096 bytes (spec.inbox.maxQueuedBytes)" in full.value.message
    agent.gate.set()
    await done(member, "q2")
    assert member.queued_bytes == 0
    assert (await member.submit("one-too-many", "echo", {"text": "y" * 1500}))[0] == 202
    await member.stop()
