"""The reconciler core without a cluster: the work queue's guarantees, the workers' back-off
and requeue, and the status writer's skipping and rate bound."""

import asyncio

import pytest

from foundation_common.retry import Backoff
from foundation_operator.core.client import ApiError
from foundation_operator.core.queue import WorkQueue
from foundation_operator.core.reconciler import Reconciler
from foundation_operator.core.status import StatusWriter


def test_backoff_grows_per_failure_up_to_its_cap() -> None:
    backoff = Backoff(initial=0.1, maximum=1.0)
    assert [backoff.next() for _ in range(6)] == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    backoff.reset()
    assert backoff.next() == 0.1
    jittered = Backoff(initial=1.0, maximum=10.0, jitter=True)
    assert all(0.5 <= jittered.delay(0) < 1.5 for _ in range(100))


async def test_a_key_is_queued_once_and_never_handled_by_two_workers_at_once() -> None:
    queue: WorkQueue[str] = WorkQueue()
    queue.add("a")
    queue.add("a")
    queue.add("b")
    assert len(queue) == 2
    assert await queue.get() == "a"
    queue.add("a")  # changed while being handled: handled again after, not alongside
    assert await queue.get() == "b"
    assert len(queue) == 0
    queue.done("a")
    assert await asyncio.wait_for(queue.get(), 1) == "a"


async def test_per_key_backoff_grows_and_forget_resets_it() -> None:
    queue: WorkQueue[str] = WorkQueue(Backoff(initial=0.01, maximum=0.04))
    assert [queue.add_rate_limited("a") for _ in range(4)] == [0.01, 0.02, 0.04, 0.04]
    assert queue.failures("a") == 4
    assert queue.add_rate_limited("b") == 0.01  # per key
    queue.forget("a")
    assert queue.add_rate_limited("a") == 0.01
    got = {await asyncio.wait_for(queue.get(), 1) for _ in range(2)}
    assert got == {"a", "b"}
    queue.close()


async def test_requeue_after_keeps_the_earliest_and_discard_cancels_it() -> None:
    queue: WorkQueue[str] = WorkQueue()
    queue.add_after("a", 60)
    queue.add_after("a", 0.01)  # earlier wins
    assert await asyncio.wait_for(queue.get(), 1) == "a"
    queue.done("a")
    queue.add_after("b", 0.01)
    queue.discard("b")
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(queue.get(), 0.1)


class Flaky(Reconciler):
    resource = "test"

    def __init__(self, fail: int, again: float | None = None) -> None:
        super().__init__(workers=2, queue=WorkQueue(Backoff(initial=0.01, maximum=0.02)))
        self.fail = fail
        self.again = again
        self.calls: list[tuple[str, str]] = []
        self.concurrent = 0
        self.most_concurrent = 0
        self.waiting: dict[tuple, asyncio.Event] = {}

    async def reconcile(self, key):
        self.concurrent += 1
        self.most_concurrent = max(self.most_concurrent, self.concurrent)
        try:
            await asyncio.sleep(0)
            self.calls.append(key)
            for (which, count), event in self.waiting.items():
                if self.calls.count(which) >= count:
                    event.set()
            if key[1] == "bad" and self.calls.count(key) <= self.fail:
                raise ApiError(status=500, reason="boom")
            return self.again
        finally:
            self.concurrent -= 1

    async def calls_reach(self, key, count: int) -> None:
        """Wait until `key` was reconciled `count` times."""
        if self.calls.count(key) < count:
            event = self.waiting.setdefault((key, count), asyncio.Event())
            await asyncio.wait_for(event.wait(), 2)


async def test_a_failing_key_comes_back_after_its_backoff_without_holding_a_worker() -> None:
    flaky = Flaky(fail=1_000)
    flaky.start()
    try:
        flaky.queue.add(("n", "bad"))
        await flaky.calls_reach(("n", "bad"), 3)
        # One worker each would be held for good by a key that keeps failing; with two
        # workers and "bad" backing off, a new key is served at once, again and again.
        for served in range(1, 4):
            flaky.queue.add(("n", "good"))
            await flaky.calls_reach(("n", "good"), served)
    finally:
        await flaky.stop()
    assert flaky.queue.failures(("n", "bad")) >= 3  # still backing off, growing
    assert flaky.queue.failures(("n", "good")) == 0
    assert flaky.most_concurrent <= 2


async def test_reconcile_can_ask_to_be_called_again_after_a_while() -> None:
    flaky = Flaky(fail=0, again=0.01)
    flaky.start()
    try:
        flaky.queue.add(("n", "a"))
        await flaky.calls_reach(("n", "a"), 3)
    finally:
        await flaky.stop()
    assert flaky.calls[:3] == [("n", "a")] * 3


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


class Written:
    """What a StatusWriter patched and requeued, on a clock the test moves."""

    def __init__(self) -> None:
        self.patches: list[dict] = []
        self.requeued: list[tuple] = []
        self.clock = Clock()

    async def patch(self, namespace: str, name: str, body: dict) -> dict:
        self.patches.append(body)
        return {"metadata": {"namespace": namespace, "name": name}, **body}

    def writer(self, **options: object) -> StatusWriter:
        return StatusWriter(
            self.patch,
            lambda key, wait: self.requeued.append((key, wait)),
            clock=self.clock,
            **options,
        )


async def test_status_writer_skips_unchanged_and_bounds_progress_only_writes() -> None:
    written = Written()
    patches, requeued, clock = written.patches, written.requeued, written.clock
    writer = written.writer(others=["state"])
    body = {
        "metadata": {"namespace": "n", "name": "a"},
        "status": {"phase": "Running", "state": {"version": 3}},
    }
    # Unchanged (only a field others write differs): no write.
    assert await writer.write(body, {"phase": "Running"}) is None
    # Progress-only within the interval: deferred, the key requeued for when it may go.
    assert await writer.write(body, {"phase": "Degraded"}, urgent=False) is None
    assert requeued == [(("n", "a"), 1.0)]
    clock.t += 1.0
    assert await writer.write(body, {"phase": "Degraded"}, urgent=False) is not None
    # Urgent changes go out at once, never carrying the fields others write.
    assert await writer.write(body, {"phase": "Failed", "state": {"version": 9}}) is not None
    assert patches == [{"status": {"phase": "Degraded"}}, {"status": {"phase": "Failed"}}]


async def test_status_writer_waits_for_a_new_object_to_settle_before_its_first_write() -> None:
    written = Written()
    patches, requeued, clock = written.patches, written.requeued, written.clock
    writer = written.writer(patience=30.0)
    new = {"metadata": {"namespace": "n", "name": "a"}}
    starting = {"phase": "Pending", "ready": "0/1"}
    # A new object still starting: its first write waits the patience, not the interval.
    assert await writer.write(new, starting, urgent=False, settled=False) is None
    clock.t += 5.0
    assert await writer.write(new, starting, urgent=False, settled=False) is None
    assert requeued == [(("n", "a"), 30.0), (("n", "a"), 25.0)]
    # Its members ready (settled) within the patience: one write, as soon as the interval allows.
    assert await writer.write(new, {"phase": "Running", "ready": "1/1"}, urgent=False) is not None
    assert patches == [{"status": {"phase": "Running", "ready": "1/1"}}]

    # Another that never settles: written once the patience has run out.
    other = {"metadata": {"namespace": "n", "name": "b"}}
    assert await writer.write(other, starting, urgent=False, settled=False) is None
    clock.t += 30.0
    assert await writer.write(other, starting, urgent=False, settled=False) is not None
    # An object that has a status of ours already: progress waits the interval only.
    written = {**other, "status": starting}
    assert (
        await writer.write(
            written, {"phase": "Pending", "ready": "0/2"}, urgent=False, settled=False
        )
        is None
    )
    assert requeued[-1] == (("n", "b"), 1.0)
    # Urgent changes never wait.
    assert await writer.write(new, {"phase": "Failed"}) is not None
