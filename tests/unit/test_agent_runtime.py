"""The member runtime without a cluster: inbox, exactly-once writes, group commit, stores."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from pydantic import BaseModel, Field

from foundation_agent.agents import CounterAgent, TaskAgent
from foundation_agent.agents.counter import CounterState
from foundation_agent.model import Agent, NoInput, action
from foundation_agent.runtime.member import Member, Refused
from foundation_agent.runtime.settings import Settings
from foundation_agent.runtime.status import StatusReporter
from foundation_agent.stores import Commit, StateCorrupt, StateTooLarge, StoreUnavailable
from foundation_agent.stores.configmap import LIMIT, data_size, decode, encode
from foundation_agent.stores.sqlite import SqliteStore
from waiting import until


def settings(**overrides: object) -> Settings:
    return Settings(agent_class="x:Y", **overrides)


class CountingStore(SqliteStore):
    """The real SQLite store, counting its writes (and failing some when told)."""

    def __init__(self, path: Path, fail_next: int = 0, delay: float = 0.0) -> None:
        super().__init__(path)
        self.commits: list[Commit] = []
        self.fail_next = fail_next
        self.delay = delay

    async def commit(self, commit: Commit) -> int:
        if self.fail_next:
            self.fail_next -= 1
            raise StoreUnavailable("the disk is away for a moment")
        await asyncio.sleep(self.delay)
        self.commits.append(commit)
        return await super().commit(commit)


async def started(agent: Agent, store, **overrides: object) -> Member:
    member = Member(agent, store, settings(**overrides))
    await member.load()
    member.start()
    return member


async def until_done(member: Member, *ids: str) -> None:
    for _ in range(500):
        if all((member.task(i) or {}).get("status") in ("succeeded", "failed") for i in ids):
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"not done: {[member.task(i) for i in ids]}")


async def test_tasks_run_once_and_a_repeated_id_returns_the_record(tmp_path: Path) -> None:
    member = await started(CounterAgent(), SqliteStore(tmp_path / "a.db"))
    assert (await member.submit("t1", "increment", {"by": 2}))[0] == 202
    assert (await member.submit("t2", "increment", {"by": 3}))[0] == 202
    await until_done(member, "t1", "t2")
    again, record = await member.submit("t1", "increment", {"by": 2})
    assert again == 200 and record["status"] == "succeeded" and record["result"] == {"count": 2}
    assert member.state.count == 5
    await member.stop()
    # What was acknowledged is in the store: a new member continues from it.
    reloaded = await started(CounterAgent(), SqliteStore(tmp_path / "a.db"))
    assert reloaded.state.count == 5 and reloaded.task("t2")["attempts"] == 1
    await reloaded.stop()


async def test_bad_tasks_get_messages_that_name_the_problem(tmp_path: Path) -> None:
    member = await started(CounterAgent(), SqliteStore(tmp_path / "a.db"))
    with pytest.raises(Refused) as unknown:
        await member.submit("t1", "decrement", {})
    assert unknown.value.status == 400 and "get, increment" in unknown.value.message
    with pytest.raises(Refused) as invalid:
        await member.submit("t1", "increment", {"by": "many"})
    assert invalid.value.status == 400 and "input.by" in invalid.value.message
    with pytest.raises(Refused) as bad_id:
        await member.submit("no spaces", "get", None)
    assert bad_id.value.status == 400
    await member.stop()


class Bounded(BaseModel):
    count: int = Field(0, le=2)


class Fragile(Agent[Bounded]):
    State = Bounded

    @action
    async def add(self, state: Bounded, input: dict) -> tuple[int, Bounded]:
        if input.get("explode"):
            raise RuntimeError("boom")
        state.count += 1  # in place, unvalidated: the runtime validates the whole state again
        return state.count, state


async def test_a_failing_action_or_invalid_state_fails_the_task_and_keeps_the_state(
    tmp_path: Path,
) -> None:
    member = await started(Fragile(), SqliteStore(tmp_path / "a.db"))
    for i in range(2):
        await member.submit(f"ok{i}", "add", {})
    await member.submit("boom", "add", {"explode": True})
    await member.submit("third", "add", {})
    await until_done(member, "ok0", "ok1", "boom", "third")
    assert member.task("boom")["status"] == "failed"
    assert "RuntimeError: boom" in member.task("boom")["error"]
    assert member.task("third")["status"] == "failed"
    assert "the new state is invalid" in member.task("third")["error"]
    assert member.state.count == 2
    await member.stop()
    reloaded = await started(Fragile(), SqliteStore(tmp_path / "a.db"))
    assert reloaded.state.count == 2
    await reloaded.stop()


async def test_a_full_inbox_refuses_with_429_and_loses_nothing_accepted(tmp_path: Path) -> None:
    member = await started(
        TaskAgent(), SqliteStore(tmp_path / "a.db"), inbox_max_queued=3, group_commit=False
    )
    await member.submit("slow", "sleep", {"seconds": 0.3})
    await until_running(member, "slow")
    for i in range(3):
        assert (await member.submit(f"q{i}", "echo", i))[0] == 202
    with pytest.raises(Refused) as full:
        await member.submit("q3", "echo", 3)
    assert full.value.status == 429 and full.value.retry_after
    await until_done(member, "slow", "q0", "q1", "q2")
    assert [member.task(f"q{i}")["result"] for i in range(3)] == [0, 1, 2]
    assert (await member.submit("q3", "echo", 3))[0] == 202
    await member.stop()


async def until_running(member: Member, task_id: str) -> None:
    for _ in range(200):
        if member.running == task_id:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{task_id} never ran")


async def test_group_commit_writes_concurrent_tasks_together(tmp_path: Path) -> None:
    grouped = CountingStore(tmp_path / "g.db", delay=0.01)
    member = await started(CounterAgent(), grouped)
    await asyncio.gather(*(member.submit(f"t{i}", "increment", {}) for i in range(100)))
    await until_done(member, *(f"t{i}" for i in range(100)))
    await member.stop()
    assert member.state.count == 100
    # One write for the initial state, then far fewer than one per acceptance and completion.
    assert len(grouped.commits) < 40

    single = CountingStore(tmp_path / "s.db")
    member = await started(CounterAgent(), single, group_commit=False)
    await asyncio.gather(*(member.submit(f"t{i}", "increment", {}) for i in range(20)))
    await until_done(member, *(f"t{i}" for i in range(20)))
    await member.stop()
    assert len(single.commits) == 1 + 2 * 20


async def test_a_store_that_is_away_for_a_moment_is_retried(tmp_path: Path) -> None:
    store = CountingStore(tmp_path / "a.db")
    member = await started(CounterAgent(), store)
    store.fail_next = 3
    assert (await member.submit("t1", "increment", {}))[0] == 202
    await until_done(member, "t1")
    assert member.state.count == 1 and member.error is None
    await member.stop()


async def test_completion_records_are_kept_for_a_bounded_window(tmp_path: Path) -> None:
    member = await started(CounterAgent(), SqliteStore(tmp_path / "a.db"), keep_completed=5)
    for i in range(12):
        await member.submit(f"t{i}", "increment", {})
        await until_done(member, f"t{i}")
    await member.submit("last", "get", None)
    await until_done(member, "last")
    await member.stop()
    reloaded = await started(CounterAgent(), SqliteStore(tmp_path / "a.db"), keep_completed=5)
    kept = sorted(reloaded.records)
    assert len(kept) <= 6 and "last" in kept and "t0" not in kept
    await reloaded.stop()


async def test_shutdown_requeues_a_task_that_does_not_finish_in_time(tmp_path: Path) -> None:
    member = await started(TaskAgent(), SqliteStore(tmp_path / "a.db"), shutdown_seconds=0.1)
    await member.submit("long", "sleep", {"seconds": 30})
    await until_running(member, "long")
    await member.stop()
    reloaded = await started(TaskAgent(), SqliteStore(tmp_path / "a.db"))
    assert reloaded.task("long")["status"] in ("queued", "running")
    assert reloaded.running == "long" or list(reloaded.queue) == ["long"]
    await reloaded.stop()


async def test_a_corrupt_database_or_state_is_reported_clearly(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StateCorrupt) as corrupt:
        await Member(CounterAgent(), SqliteStore(garbage), settings()).load()
    assert "garbage.db is not a readable state database" in corrupt.value.message

    path = tmp_path / "wrong.db"
    store = SqliteStore(path)
    await store.commit(Commit(version=1, saved_at=0.0, state='{"count": "many"}'))
    await store.close()
    with pytest.raises(StateCorrupt) as wrong:
        await Member(CounterAgent(), SqliteStore(path), settings()).load()
    assert "does not fit CounterState" in wrong.value.message and "count" in wrong.value.message


def test_configmap_document_round_trip_and_limits() -> None:
    data = encode(7, 1.5, '{"count":3}', {"t1": {"id": "t1", "status": "queued"}})
    snapshot = decode("team/a-0-state", data)
    assert snapshot.version == 7 and snapshot.state == {"count": 3}
    assert snapshot.tasks == {"t1": {"id": "t1", "status": "queued"}}
    assert snapshot.size_bytes == data_size(data)
    assert decode("team/a-0-state", {}) is None
    with pytest.raises(StateCorrupt) as corrupt:
        decode("team/a-0-state", {"state.json": "{not json"})
    assert "ConfigMap team/a-0-state does not hold a readable state" in corrupt.value.message


class Big(BaseModel):
    blob: str = ""


class Grower(Agent[Big]):
    State = Big

    @action
    async def grow(self, state: Big, input: dict) -> tuple[int, Big]:
        new = Big(blob=state.blob + "x" * int(input["bytes"]))
        return len(new.blob), new


class LimitedStore(SqliteStore):
    """A store with the ConfigMap store's kind of limit, on SQLite."""

    max_bytes = LIMIT

    def size_with(self, state: str) -> int:
        return len(state.encode())


async def test_a_state_over_the_store_limit_fails_the_task_and_keeps_the_state(
    tmp_path: Path,
) -> None:
    member = await started(Grower(), LimitedStore(tmp_path / "a.db"))
    await member.submit("small", "grow", {"bytes": 1000})
    await member.submit("huge", "grow", {"bytes": LIMIT})
    await until_done(member, "small", "huge")
    assert member.task("huge")["status"] == "failed"
    assert "over the PVC store's limit of 1048576 bytes" in member.task("huge")["error"]
    assert isinstance(member.error, StateTooLarge)
    assert len(member.state.blob) == 1000
    assert member.summary()["reason"] == "StateTooLarge"
    await member.stop()


class Hooked(Agent[CounterState]):
    State = CounterState

    async def on_start(self, state: CounterState) -> CounterState:
        return CounterState(count=state.count + 100)

    async def on_stop(self, state: CounterState) -> CounterState:
        return CounterState(count=state.count + 1)

    @action
    async def get(self, state: CounterState, input: NoInput) -> tuple[int, CounterState]:
        return state.count, state


async def test_start_and_stop_hooks_change_the_state_and_stop_saves_it(tmp_path: Path) -> None:
    member = await started(Hooked(), SqliteStore(tmp_path / "a.db"))
    assert member.state.count == 100
    await member.stop()  # on_stop adds 1, and the stop saves it
    reloaded = await started(Hooked(), SqliteStore(tmp_path / "a.db"))
    assert reloaded.state.count == 201
    await reloaded.stop()


class Recorder(StatusReporter):
    """The reporter's pacing, with the report itself recorded instead of sent."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.sent: list[dict] = []
        self.at: list[float] = []

    async def report(self, summary: dict) -> bool:
        self.sent.append(summary)
        self.at.append(asyncio.get_running_loop().time())
        return True


async def test_status_reports_are_rate_bounded_and_problems_go_at_once() -> None:
    reporter = Recorder(interval=0.2)
    changed = asyncio.Event()
    summary = {"version": 0, "reason": None}
    running = asyncio.create_task(reporter.run(lambda: dict(summary), changed))
    changed.set()
    await until(lambda: len(reporter.sent) == 1, what="the first report, at once")
    for version in range(1, 50):  # a burst of changes inside one interval
        summary["version"] = version
        changed.set()
        await asyncio.sleep(0)
    await until(lambda: len(reporter.sent) == 2, what="the second report")
    # The burst went out as one report of its last state, no sooner than one interval after
    # the first.
    assert reporter.sent[1]["version"] == 49
    assert reporter.at[1] - reporter.at[0] >= reporter.interval * 0.99
    summary["reason"] = "StateConflict"
    changed.set()
    await until(lambda: len(reporter.sent) == 3, what="the problem's report")
    # A problem goes out at once, in the middle of the interval.
    assert reporter.sent[2]["reason"] == "StateConflict"
    assert reporter.at[2] - reporter.at[1] < reporter.interval
    running.cancel()


class Gate(BaseModel):
    ran: list[str] = Field(default_factory=list)


class Gated(Agent[Gate]):
    """Each task waits for the test to open the gate, and records that it ran."""

    State = Gate

    def __init__(self) -> None:
        self.gate = asyncio.Event()

    @action
    async def work(self, state: Gate, input: str) -> tuple[str, Gate]:
        await self.gate.wait()
        state.ran.append(input)
        return input, state


async def test_only_a_queued_task_can_be_cancelled_and_it_never_runs(tmp_path: Path) -> None:
    agent = Gated()
    member = await started(agent, SqliteStore(tmp_path / "a.db"))
    await member.submit("first", "work", "first")
    await member.submit("second", "work", "second")
    await until(lambda: member.running == "first", what="the first task running")
    with pytest.raises(Refused) as running:
        await member.cancel("first")
    assert running.value.status == 409 and "only a queued task" in running.value.message
    cancelled = await member.cancel("second")
    assert cancelled["status"] == "cancelled" and cancelled["finishedAt"]
    assert (await member.cancel("second"))["status"] == "cancelled"  # again: same answer
    with pytest.raises(Refused) as unknown:
        await member.cancel("nope")
    assert unknown.value.status == 404
    agent.gate.set()
    await until_done(member, "first")
    # The same id sent again gets the cancelled record: a cancelled task never runs.
    assert (await member.submit("second", "work", "second"))[1]["status"] == "cancelled"
    assert member.state.ran == ["first"]
    with pytest.raises(Refused) as done:
        await member.cancel("first")
    assert done.value.status == 409 and "succeeded" in done.value.message
    await member.stop()
    # Stored as cancelled: a new start does not queue it again.
    again = Gated()
    again.gate.set()
    reloaded = await started(again, SqliteStore(tmp_path / "a.db"))
    assert reloaded.task("second")["status"] == "cancelled" and list(reloaded.queue) == []
    await reloaded.stop()


class BrokenStore(SqliteStore):
    """A store whose writes after the first (the load's) fail in a way no store error names
    (a bug, an answer that cannot be read)."""

    async def commit(self, commit: Commit) -> int:
        if commit.version > 1:
            raise ValueError("Expecting value: line 1 column 1 (char 0)")
        return await super().commit(commit)


async def test_an_unexpected_write_error_ends_the_member_instead_of_hanging_it(
    tmp_path: Path,
) -> None:
    """Found on the cluster: an API answer the ConfigMap store could not decode killed the
    committer silently, and the member kept accepting tasks it never ran."""
    member = await started(CounterAgent(), BrokenStore(tmp_path / "a.db"))
    with pytest.raises(Refused, match=r"could not be stored.*ValueError"):
        await asyncio.wait_for(member.submit("t1", "increment", {"by": 1}), timeout=5)
    await asyncio.wait_for(member.failed.wait(), timeout=5)  # the process ends and restarts
    assert member.fatal is not None and "ValueError" in member.fatal.message
    with pytest.raises(Refused):
        await member.submit("t2", "increment", {"by": 1})
    await member.stop()


async def test_a_member_says_what_it_holds_and_since_when_it_is_idle(tmp_path: Path) -> None:
    """What the operator reads to put an idle Agent to sleep, and to wake one whose member
    stopped holding a task (issue 29)."""
    clock = [1000.0]
    agent = Gated()
    member = Member(agent, SqliteStore(tmp_path / "a.db"), settings(), clock=lambda: clock[0])
    await member.load()
    member.start()
    assert member.summary()["busy"] == 0
    assert member.summary()["idleSince"] == "1970-01-01T00:16:40.000000Z"  # since it started
    clock[0] = 1010.0
    await member.submit("first", "work", "first")
    await member.submit("second", "work", "second")
    await until(lambda: member.running == "first", what="the first task running")
    assert (member.summary()["busy"], member.summary()["idleSince"]) == (2, None)
    clock[0] = 1020.0
    agent.gate.set()
    await until_done(member, "first", "second")
    await until(lambda: member.summary()["busy"] == 0, what="nothing held")
    assert member.summary()["idleSince"] == "1970-01-01T00:17:00.000000Z"
    await member.stop()
    # Stopped with a task not run (shutdown out of time): its last word says it holds one.
    again = Gated()
    held = Member(again, SqliteStore(tmp_path / "a.db"), settings(shutdown_seconds=0.1))
    await held.load()
    held.start()
    await held.submit("third", "work", "third")
    await until(lambda: held.running == "third", what="the third task running")
    await held.stop()
    assert held.summary()["busy"] == 1 and held.summary()["idleSince"] is None


async def test_member_0_parked_reports_itself_idle_and_leaves_the_agents_state_alone() -> None:
    """A parked member (spec.warmWhileAsleep, warmSpares) says once that it holds nothing,
    and member 0's report then does not stand for the Agent's state (it has loaded none)."""

    class Api:
        def __init__(self) -> None:
            self.patches: list[dict] = []

        async def merge_patch(self, path: str, body: dict) -> None:
            self.patches.append(body)

    api = Api()
    reporter = StatusReporter(api, "ns", "w", "w-0", 0, 5.0)
    parked = {"busy": 0, "idleSince": "2026-12-04T10:00:00.000000Z", "parked": "spare"}
    assert await reporter.report(parked)
    assert api.patches == [{"status": {"memberStates": {"w-0": parked}}}]
    loaded = {"store": "ConfigMap", "key": "w-0-state", "version": 3, "sizeBytes": 9}
    assert await reporter.report({**loaded, "lastSavedAt": None, "parked": None})
    assert api.patches[-1]["status"]["state"]["version"] == 3
