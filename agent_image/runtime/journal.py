"""The journal: every change a member makes goes to its store through here, in order.

With group commit, the changes that gather while a write is in flight (acceptances and
completions) go out together in the next write; without it, one write each. A write the store
cannot make for a moment is retried with back-off for `RETRY_WRITES_FOR` seconds; one that
fails for good (or for longer) is fatal: nothing more is acknowledged and the process should
end, so nothing unwritten is ever acknowledged. Completion records past `keepCompleted` or
`keepCompletedBytes` (or older than `keepCompletedSeconds`) are dropped in the same writes, the
oldest first; so are as many as a store with a size limit needs to take the write, so a write
the store can tell it will refuse is never attempted.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable

from foundation_agent.runtime import metrics
from foundation_agent.runtime.records import Change, record_bytes
from foundation_agent.runtime.settings import Settings
from foundation_agent.stores import Commit, Record, StateTooLarge, Store, StoreError
from foundation_common.retry import Backoff, retrying

logger = logging.getLogger("foundation_agent.runtime")

# A write the store could not make for a moment is retried with back-off for this long before
# the member gives up (and restarts, reloading what was stored).
RETRY_WRITES_FOR = 30.0

# Room left in a store with a size limit for what the estimates do not count (JSON commas).
STORE_MARGIN = 2048

Applied = Callable[[list[Change], list[str]], None]  # (changes written, record ids dropped)


class Journal:
    def __init__(
        self, store: Store, settings: Settings, clock: Callable[[], float], applied: Applied
    ) -> None:
        self.store = store
        self.settings = settings
        self.clock = clock
        self._applied = applied
        self.version = 0
        self.saved_at: float | None = None
        self.size_bytes = 0
        # (finishedAt, id, bytes) of the completion records stored, oldest first
        self.completed: deque[tuple[float, str, int]] = deque()
        self.completed_bytes = 0
        self.state_json = ""  # the state as last computed, saved or not
        self.state_unsaved = False
        self.error: StoreError | None = None  # shown in the status while it lasts
        self.fatal: StoreError | None = None
        self.failed = asyncio.Event()  # set with `fatal`: the process should end
        self.changed = asyncio.Event()  # the summary changed: the status reporter wakes
        self._pending: list[Change] = []
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()

    def enqueue(self, change: Change) -> None:
        self._pending.append(change)
        self._idle.clear()
        self._wake.set()

    async def idle(self) -> None:
        """Until every change enqueued so far is written (or failed)."""
        await self._idle.wait()

    async def run(self) -> None:
        """The committer: writes what is pending, batch after batch, until a write fails."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                if self.settings.group_commit:
                    batch, self._pending = self._pending, []
                else:
                    batch, self._pending = self._pending[:1], self._pending[1:]
                try:
                    await self.write(batch)
                except StoreError as exc:
                    self._give_up(exc, batch)
                    return
                except Exception as exc:
                    # Not a store problem we know (a bug, an answer that cannot be read): the
                    # member must end and restart, never sit with tasks it will not run.
                    logger.exception("writing to %s failed unexpectedly", self.store.key)
                    self._give_up(StoreError(f"writing to {self.store.key}: {exc!r}"), batch)
                    return
            self._idle.set()

    def remember(self, completed: list[tuple[float, str, int]]) -> None:
        """The completion records loaded from the store: (finishedAt, id, bytes), oldest first."""
        self.completed = deque(completed)
        self.completed_bytes = sum(size for _, _, size in completed)

    def _forget_oldest(self) -> str:
        _, task_id, size = self.completed.popleft()
        self.completed_bytes -= size
        return task_id

    def _expired(self, now: float, over: int) -> list[str]:
        """The completion records to drop: past the count, the age or the bytes kept, and the
        oldest until `over` bytes (what the store would lack room for) are freed."""
        settings = self.settings
        keep, horizon = settings.keep_completed, now - settings.keep_completed_seconds
        drop = []
        while self.completed and (
            len(self.completed) > keep
            or self.completed[0][0] < horizon
            or self.completed_bytes > settings.keep_completed_bytes
            or over > 0
        ):
            over -= self.completed[0][2]
            drop.append(self._forget_oldest())
        return drop

    def _over(self, state: str | None, incoming: int) -> int:
        """How many bytes over its limit the store would be after records of `incoming` bytes
        are written (<= 0: it fits)."""
        limit = self.store.max_bytes
        if not limit:
            return 0
        return self.store.size_with(state or self.state_json) + incoming + STORE_MARGIN - limit

    async def write(self, batch: list[Change]) -> None:
        """One commit of `batch` (and of the state, if it changed or was never saved)."""
        now = self.clock()
        state = next((c.state for c in reversed(batch) if c.state is not None), None)
        if state is None and self.state_unsaved:
            state = self.state_json
        sizes = [record_bytes(c.record) for c in batch]  # each record measured once
        for change, size in zip(batch, sizes, strict=True):
            if not change.accepted:
                self.completed.append((change.record["finishedAt"], change.record["id"], size))
                self.completed_bytes += size
        drop = self._expired(now, self._over(state, sum(sizes)))
        commit = Commit(
            version=self.version + 1,
            saved_at=now,
            state=state,
            put=_without({c.record["id"]: c.record for c in batch}, drop),
            drop=drop,
        )

        def failed(exc: Exception, _pause: float) -> None:
            assert isinstance(exc, StoreError)
            if self.error is None or self.error.reason != exc.reason:
                logger.warning("could not save to %s, retrying: %s", self.store.key, exc)
            self.set_error(exc)

        started = time.monotonic()

        async def committed() -> int:
            return await retrying(
                lambda: self.store.commit(commit),
                Backoff(initial=0.05, maximum=2.0),
                retry_on=lambda exc: isinstance(exc, StoreError) and not exc.fatal,
                deadline=started + RETRY_WRITES_FOR,
                on_retry=failed,
            )

        try:
            size = await committed()
        except StateTooLarge:
            if not self.completed:
                raise
            # The estimate fell short: every completion record goes (tasks retried after this
            # may run again), which beats a member that stops for good.
            more = [self._forget_oldest() for _ in range(len(self.completed))]
            logger.warning(
                "%s is full: dropping all %d completion records to take the write",
                self.store.key,
                len(more),
            )
            drop.extend(more)
            commit.drop, commit.put = drop, _without(commit.put, more)
            size = await committed()
        metrics.CHECKPOINT_SECONDS.labels(store=self.store.kind).observe(time.monotonic() - started)
        metrics.CHECKPOINT_CHANGES.observe(len(batch))
        self.version, self.saved_at, self.size_bytes = commit.version, now, size
        if state is not None:
            self.state_unsaved = False
            if self.error is not None:
                self.set_error(None)
        elif self.error is not None and not isinstance(self.error, StateTooLarge):
            self.set_error(None)
        self._applied(batch, drop)
        for change in batch:
            if not change.done.done():
                change.done.set_result(None)
        metrics.STATE_VERSION.set(self.version)
        metrics.CHECKPOINT_BYTES.set(size)
        self.changed.set()

    def _give_up(self, exc: StoreError, batch: list[Change]) -> None:
        """A write failed for good: acknowledge nothing more, report, and let the process end."""
        logger.error("cannot save to %s: %s", self.store.key, exc.message)
        self.fatal = exc
        self.failed.set()
        self.set_error(exc)
        for change in batch + self._pending:
            if not change.done.done():
                change.done.set_exception(exc)
                change.done.exception()  # retrieved: no "never retrieved" warnings
        self._pending.clear()
        self._idle.set()

    def set_error(self, exc: StoreError | None) -> None:
        self.error = exc
        self.changed.set()


def _without(put: dict[str, Record], drop: list[str]) -> dict[str, Record]:
    """The records to put, but those dropped in the same write (dropped at once: kept 0)."""
    if not drop:
        return put
    dropped = set(drop)
    return {k: v for k, v in put.items() if k not in dropped}
