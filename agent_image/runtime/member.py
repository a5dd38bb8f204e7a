"""One member's runtime: the inbox, the executor and the lifecycle around them.

Exactly once, by construction:
- A task is acknowledged (202) only after a write that stores it as queued (`admission`
  decides whether it may be taken, the `journal` writes it).
- The executor runs queued tasks one at a time on the current state. A task's new state and its
  completion record go out in the same write, and the task reads as done only after that
  write. After any crash the store holds either both or neither: the task is then done, or
  still queued and runs again on the state from before it.
- With group commit, acceptances and completions that gather while a write is in flight go
  out together in the next one; the executor carries on with the state it computed (which no
  one sees until written). A write that fails for good ends the process, so nothing
  unwritten is ever acknowledged.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ValidationError

from foundation_agent.model import Agent, InvalidInput, TaskContext, running
from foundation_agent.runtime import admission, metrics
from foundation_agent.runtime.journal import Journal
from foundation_agent.runtime.records import (
    ID_TAKEN,
    Change,
    Refused,
    ResultTooLarge,
    public,
    record_bytes,
    stamp,
)
from foundation_agent.runtime.settings import Settings
from foundation_agent.stores import Record, StateCorrupt, StateTooLarge, Store, StoreError
from foundation_common import history, tracing
from foundation_common.tasks import ENDED, input_digest

__all__ = ["Member", "Refused"]

logger = logging.getLogger("foundation_agent.runtime")

# A done task keeps its input in its record up to this size as JSON (for its history: what
# was asked); a larger one is dropped, its size kept. Only the outcome answers a retry.
KEEP_INPUT_BYTES = 2048
# What a completion record takes beside its result (id, action, times, attempts, sender,
# a kept input...).
RECORD_ROOM = 1024 + KEEP_INPUT_BYTES


def done_record(record: Record, input_bytes: int | None) -> Record:
    """The record of a task that ends, before its outcome: its input kept if small."""
    if input_bytes is None:
        input_bytes = len(json.dumps(record.get("input")))
    if input_bytes <= KEEP_INPUT_BYTES:
        return dict(record)
    done = {k: v for k, v in record.items() if k != "input"}
    done["inputBytes"] = input_bytes
    return done


class Member:
    def __init__(
        self,
        agent: Agent[Any],
        store: Store,
        settings: Settings,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.agent = agent
        self.store = store
        self.settings = settings
        self.clock = clock
        self.actions = agent.actions()
        self.state_model: type[BaseModel] = type(agent).State
        self.state: BaseModel = agent.initial_state()
        self.journal = Journal(store, settings, clock, self._applied)
        self.records: dict[str, Record] = {}  # what the store holds, plus the task running
        self.queue: deque[str] = deque()  # stored as queued, in order of acceptance
        self.accepting: dict[str, Change] = {}  # acceptances not yet written
        self.running: str | None = None
        self.seq = 0
        self.queued_bytes = 0  # the queued tasks' inputs, as JSON, held in memory
        self._input_bytes: dict[str, int] = {}  # each unfinished task's, measured once
        self.ready = False
        self.stopping = False
        self._wake_executor = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._waiters: dict[str, list[asyncio.Future[Record]]] = {}
        # Since when no task is queued or running (None: one is): what the operator reads in
        # the Agent's status to put an idle Agent to sleep (spec.sleepAfterIdleSeconds).
        self.idle_since: float | None = None

    # What the journal knows, as the member's own (the server, status and tests read these).
    @property
    def version(self) -> int:
        return self.journal.version

    @property
    def error(self) -> StoreError | None:
        return self.journal.error

    @error.setter
    def error(self, exc: StoreError | None) -> None:  # a state that cannot be loaded
        self.journal.error = exc

    @property
    def fatal(self) -> StoreError | None:
        return self.journal.fatal

    @property
    def failed(self) -> asyncio.Event:
        return self.journal.failed

    @property
    def changed(self) -> asyncio.Event:
        return self.journal.changed

    # -- start -------------------------------------------------------------------------------

    async def load(self) -> None:
        """Load the stored state and records, or begin with the initial state."""
        snapshot = await self.store.load()
        if snapshot is not None:
            if snapshot.state is not None:
                try:
                    self.state = self.state_model.model_validate(snapshot.state)
                except ValidationError as exc:
                    raise StateCorrupt(
                        f"the stored state in {self.store.key} does not fit "
                        f"{self.state_model.__name__}: {exc.errors()[0]['msg']} at "
                        f"{'.'.join(str(p) for p in exc.errors()[0]['loc']) or 'the top'}; "
                        "repair it, or remove it to start from the initial state"
                    ) from None
            else:
                self.journal.state_unsaved = True
            self.journal.version = snapshot.version
            self.journal.saved_at = snapshot.saved_at
            self.journal.size_bytes = snapshot.size_bytes
            self.records = dict(snapshot.tasks)
            ordered = sorted(self.records.values(), key=lambda r: r.get("seq", 0))
            for record in ordered:
                if record.get("status") in ENDED:
                    continue
                # "running" is never stored; anything not done is queued again.
                self.records[record["id"]] = {**record, "status": "queued"}
                self.queue.append(record["id"])
            self.journal.remember(
                sorted(
                    (r.get("finishedAt") or 0.0, r["id"], record_bytes(r))
                    for r in ordered
                    if r.get("status") in ENDED
                )
            )
            for task_id in self.queue:
                self._input_bytes[task_id] = len(json.dumps(self.records[task_id].get("input")))
            self.queued_bytes = sum(self._input_bytes.values())
            self.seq = max((r.get("seq", 0) for r in ordered), default=0)
        else:
            self.journal.state_unsaved = True  # the first write stores the initial state
        started = await self.agent.on_start(self.state)
        if started is not None:
            self.state = self._validated(started)
            self.journal.state_unsaved = True
        self.journal.state_json = self.state.model_dump_json()
        metrics.STATE_VERSION.set(self.version)
        metrics.CHECKPOINT_BYTES.set(self.journal.size_bytes)
        metrics.QUEUE_DEPTH.set(len(self.queue))
        if self.journal.state_unsaved:
            await self.journal.write([])

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._execute(), name="executor"),
            loop.create_task(self.journal.run(), name="committer"),
        ]
        self.ready = True
        self._note_busy()
        self._wake_executor.set()

    # -- the inbox -----------------------------------------------------------------------------

    def queued(self) -> int:
        return len(self.queue) + len(self.accepting)

    def busy(self) -> int:
        """Tasks accepted and not ended: queued, being stored, or running."""
        return self.queued() + (self.running is not None)

    def _note_busy(self) -> None:
        if self.busy():
            self.idle_since = None
        elif self.idle_since is None:
            self.idle_since = self.clock()

    async def submit(
        self,
        task_id: Any,
        action: Any,
        raw_input: Any,
        context: Any = None,
        sender: str | None = None,
    ) -> tuple[int, Record]:
        """Accept a task durably: (202, record) new, (200, record) known; else Refused.
        `context` (optional) groups tasks, as an A2A context does; it is kept with the record.
        `sender` (the caller's identity) is kept too: an id is its sender's, and the same id
        from anyone else is refused (409), so no one can take a task id another will send."""
        task_id = admission.check_id(task_id)
        admission.check_context(context)
        digest = input_digest(raw_input)
        known = self.records.get(task_id)
        if known is None and task_id in self.accepting:
            await asyncio.shield(self.accepting[task_id].done)
            known = self.records.get(task_id)
        if known is not None:
            if known.get("sender") != sender:
                raise Refused(
                    409,
                    f"task id {task_id} was sent by another caller; send yours with another id",
                    reason=ID_TAKEN,
                )
            admission.check_same(known, action, digest)
            return 200, public(known)
        if self.fatal is not None or not self.ready or self.stopping:
            reason = self.fatal.message if self.fatal else "the member is not taking tasks now"
            raise Refused(503, reason, retry_after=1)
        admission.admit(
            action,
            raw_input,
            actions=self.actions,
            store=self.store,
            state_json=self.journal.state_json,
            queued=self.queued(),
            max_queued=self.settings.inbox_max_queued,
            queued_bytes=self.queued_bytes,
            max_queued_bytes=self.settings.inbox_max_queued_bytes,
        )
        with (
            tracing.span(
                f"accept_task {self.settings.agent_name}",
                kind="SERVER",
                context=tracing.INCOMING.get(),
                attributes=self._attributes(task_id, action),
            )
            if tracing.enabled()
            else contextlib.nullcontext()
        ):
            return await self._accept(task_id, action, raw_input, digest, context, sender)

    def _attributes(self, task_id: str, action: str, attempt: int | None = None) -> dict[str, Any]:
        return {
            tracing.AGENT: self.settings.agent_name,
            tracing.NAMESPACE: self.settings.namespace,
            tracing.MEMBER: self.settings.member_name,
            tracing.TASK_ID: task_id,
            tracing.ACTION: action,
            tracing.ATTEMPT: attempt,
        }

    async def _accept(
        self,
        task_id: str,
        action: Any,
        raw_input: Any,
        digest: str,
        context: Any,
        sender: str | None,
    ) -> tuple[int, Record]:
        """Store a new task as queued (the accepted span is current, if traced)."""
        self.seq += 1
        record: Record = {
            "id": task_id,
            "action": action,
            "input": raw_input,
            "inputDigest": digest,
            "status": "queued",
            "attempts": 0,
            "seq": self.seq,
            "acceptedAt": self.clock(),
        }
        if context:
            record["context"] = context
        if sender:
            record["sender"] = sender
        # The trace it belongs to, kept: every run of it, after a crash too, joins that trace.
        trace = tracing.current() if tracing.enabled() else tracing.INCOMING.get()
        if trace:
            record["trace"] = trace
        change = Change(record, accepted=True)
        self.accepting[task_id] = change
        metrics.QUEUE_DEPTH.set(self.queued())
        self.journal.enqueue(change)
        try:
            await asyncio.shield(change.done)
        except StoreError as exc:
            metrics.REFUSED.labels(reason="store").inc()
            raise Refused(503, f"the task could not be stored: {exc.message}", 1) from None
        finally:
            self.accepting.pop(task_id, None)
        # It may have run, and its record been dropped (keepCompleted 0), since it was stored.
        return 202, public(self.records.get(task_id, record))

    async def finished(self, task_id: str) -> Record:
        """Wait until a known task is durably done; its record."""
        record = self.records.get(task_id)
        if record is None:
            raise KeyError(task_id)
        if record["status"] not in ENDED:
            waiter: asyncio.Future[Record] = asyncio.get_running_loop().create_future()
            self._waiters.setdefault(task_id, []).append(waiter)
            record = await waiter  # what was stored (the store may keep it no longer)
        return public(record)

    async def cancel(self, task_id: str) -> Record:
        """Cancel a queued task: once the answer comes, it is stored as cancelled and can never
        run. Refused with 409 if it is running or done otherwise (404 if unknown); cancelling a
        cancelled task answers its record again."""
        waiting = self.accepting.get(task_id)
        if waiting is not None:
            await asyncio.shield(waiting.done)  # accepted first, then cancelled
        record = self.records.get(task_id)
        if record is None:
            raise Refused(404, f"no task {task_id!r} (or its record expired)")
        if record["status"] == "cancelled":
            return public(record)
        if record["status"] != "queued" or task_id not in self.queue:
            raise Refused(
                409,
                f"task {task_id} is {record['status']}: only a queued task can be cancelled",
            )
        if self.fatal is not None or self.stopping:
            reason = self.fatal.message if self.fatal else "the member is stopping"
            raise Refused(503, reason, retry_after=1)
        # Out of the queue at once, so the executor cannot take it while the write is made.
        self.queue.remove(task_id)
        self.queued_bytes -= self._input_bytes.pop(task_id, 0)
        cancelled = done_record(record, self._input_bytes.get(task_id))
        cancelled.update(status="cancelled", finishedAt=self.clock())
        change = Change(cancelled, accepted=False)
        self.journal.enqueue(change)
        try:
            await asyncio.shield(change.done)
        except StoreError as exc:
            raise Refused(503, f"the cancellation could not be stored: {exc.message}", 1) from None
        return public(self.records[task_id])

    def task(self, task_id: str) -> Record | None:
        record = self.records.get(task_id)
        return public(record) if record else None

    def history(self, query: history.Query) -> history.Page:
        """A page of this member's task records (those stored, and the one running), newest
        first, as the task API shows them."""
        # Newest first, as records mostly are in the order they were accepted.
        chosen, total, remaining = history.select(reversed(self.records.values()), query)
        return history.page_of([self._listed(r) for r in chosen], query, total, remaining)

    def _listed(self, record: Record) -> Record:
        """A record as a listing shows it: a queued task's input only if it is small (as a
        done task keeps it), so a page stays small whatever the tasks carry."""
        size = self._input_bytes.get(record["id"], 0)
        if "input" not in record or size <= KEEP_INPUT_BYTES:
            return public(record)
        return public(done_record(record, size))

    # -- execution -----------------------------------------------------------------------------

    def _validated(self, state: Any) -> BaseModel:
        if not isinstance(state, self.state_model):
            raise TypeError(
                f"the action returned {type(state).__name__} as the new state, not "
                f"{self.state_model.__name__}"
            )
        # model_copy/attribute assignment skip validation: check the whole state again.
        return self.state_model.model_validate(state.model_dump())

    async def _execute(self) -> None:
        while True:
            while not self.queue or self.stopping:
                if self.stopping:
                    return
                self._wake_executor.clear()
                await self._wake_executor.wait()
            task_id = self.queue.popleft()
            queued = self.records[task_id]
            self.queued_bytes -= self._input_bytes.get(task_id, 0)
            record = {
                **queued,
                "status": "running",
                "attempts": queued.get("attempts", 0) + 1,
                "startedAt": self.clock(),
            }
            self.records[task_id] = record
            self.running = task_id
            try:
                change = await self._run(record)
            except asyncio.CancelledError:
                # Shutdown ran out of time: the stored record is still queued, and so is this.
                self.records[task_id] = queued
                self.queue.appendleft(task_id)
                self.queued_bytes += self._input_bytes.get(task_id, 0)
                self.running = None
                raise
            self.running = None
            self.journal.enqueue(change)
            if not self.settings.group_commit:
                with contextlib.suppress(StoreError):
                    await asyncio.shield(change.done)

    async def _run(self, record: Record) -> Change:
        if not tracing.enabled():
            # Not traced here, but the calls the task makes carry its caller's trace on.
            tracing.INCOMING.set(record.get("trace"))
            return await self._run_action(record)
        attributes = self._attributes(record["id"], record["action"], record["attempts"])
        with tracing.span(
            f"invoke_agent {self.settings.agent_name}",
            context=record.get("trace"),
            attributes={
                "gen_ai.operation.name": "invoke_agent",
                "gen_ai.agent.name": self.settings.agent_name,
                "gen_ai.conversation.id": record.get("context"),
                **attributes,
            },
        ) as span:
            change = await self._run_action(record)
            if span is not None and change.record["status"] == "failed":
                tracing.failed(span, change.record.get("error") or "failed")
            return change

    async def _run_action(self, record: Record) -> Change:
        action = self.actions.get(record["action"])
        state_json: str | None = None
        try:
            if action is None:
                raise InvalidInput(f"the agent no longer has action {record['action']!r}")
            running(TaskContext(record["id"], record["action"], record["attempts"]))
            result, new_state = await action.fn(self.state, action.parse(record.get("input")))
            new_state = self._validated(new_state)
            candidate = new_state.model_dump_json()
            self._check_fits(result, candidate)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if isinstance(exc, StateTooLarge):
                self.journal.set_error(exc)
            message = exc.message if isinstance(exc, StoreError) else f"{exc}"
            if isinstance(exc, ValidationError):
                message = f"the new state is invalid: {exc.errors()[0]['msg']} at " + ".".join(
                    str(p) for p in exc.errors()[0]["loc"]
                )
            # The action may have changed the state in place before failing: go back to the
            # last good state (restored only on failure, so successes cost no copy).
            self.state = self.state_model.model_validate_json(self.journal.state_json)
            logger.info("task %s (%s) failed: %s", record["id"], record["action"], message)
            outcome: Record = {"status": "failed", "error": f"{type(exc).__name__}: {message}"}
        else:
            if candidate != self.journal.state_json:
                state_json = candidate
                self.journal.state_json = candidate
            self.state = new_state
            outcome = {"status": "succeeded", "result": result}
        finished = done_record(record, self._input_bytes.get(record["id"]))
        finished.update(outcome, finishedAt=self.clock())
        return Change(finished, accepted=False, state=state_json)

    def _check_fits(self, result: Any, candidate: str) -> None:
        """ResultTooLarge unless `result` is within the budget and fits in the store beside
        the new state and the queued tasks (older completion records make room as needed:
        the journal drops the oldest first); StateTooLarge unless the new state fits."""
        size = len(json.dumps(result, separators=(",", ":")).encode())  # stored as JSON
        budget = self.settings.result_max_bytes
        if size > budget:
            raise ResultTooLarge(
                f"the result takes {size} bytes as JSON, over this Agent's limit of {budget} "
                "bytes (spec.limits.resultBytes); the state is kept as it was"
            )
        limit = self.store.max_bytes
        if not limit:
            return
        stored = self.store.size_with(candidate)
        if candidate != self.journal.state_json and stored > limit:
            raise StateTooLarge(
                f"the new state would take {stored} bytes in {self.store.key}, over the "
                f"{self.store.kind} store's limit of {limit} bytes; the state is kept as"
                " it was (use persistence.store PVC for large state)"
            )
        beside = stored - self.journal.completed_bytes  # the state and the queued tasks
        if beside + size + RECORD_ROOM > limit:
            raise ResultTooLarge(
                f"the result ({size} bytes) does not fit in {self.store.key} beside the state "
                f"and the queued tasks ({beside} bytes): the {self.store.kind} store's limit is "
                f"{limit} bytes; the state is kept as it was"
            )

    # -- what the journal wrote ---------------------------------------------------------------

    def _applied(self, batch: list[Change], drop: list[str]) -> None:
        """`batch` is stored: accepted tasks join the queue, finished ones wake their waiters;
        the dropped completion records are forgotten."""
        for change in batch:
            record = change.record
            self.records[record["id"]] = record
            if change.accepted:
                self.queue.append(record["id"])
                size = self._input_bytes[record["id"]] = len(json.dumps(record.get("input")))
                self.queued_bytes += size
                self._wake_executor.set()
            else:
                self._input_bytes.pop(record["id"], None)
                for waiter in self._waiters.pop(record["id"], []):
                    if not waiter.done():
                        waiter.set_result(record)
                metrics.TASKS.labels(action=record["action"], outcome=record["status"]).inc()
                metrics.TASK_SECONDS.labels(action=record["action"]).observe(
                    max(0.0, record["finishedAt"] - record["acceptedAt"])
                )
        for task_id in drop:  # after the batch: a record may be stored and dropped at once
            self.records.pop(task_id, None)
        metrics.QUEUE_DEPTH.set(self.queued())
        self._note_busy()

    # -- stop ------------------------------------------------------------------------------------

    async def stop(self) -> None:
        """SIGTERM: take no more tasks, finish (or re-queue) the one in flight, save, stop."""
        self.stopping = True
        self._wake_executor.set()
        executor, committer = self._tasks or (None, None)
        if executor is not None:
            done, _ = await asyncio.wait({executor}, timeout=self.settings.shutdown_seconds)
            if not done:
                logger.warning(
                    "task %s still running after %.0fs; it stays queued for the next start",
                    self.running,
                    self.settings.shutdown_seconds,
                )
                executor.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await executor
        if self.fatal is None:
            stopped = await self.agent.on_stop(self.state)
            if stopped is not None:
                self.state = self._validated(stopped)
                candidate = self.state.model_dump_json()
                if candidate != self.journal.state_json:
                    self.journal.state_json = candidate
                    self.journal.state_unsaved = True
            await self.journal.idle()  # what the executor finished is written
            if self.journal.state_unsaved and self.fatal is None:
                try:
                    await self.journal.write([])
                except StoreError as exc:
                    logger.error("could not save the state on stop: %s", exc.message)
        if committer is not None:
            committer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await committer
        await self.store.close()

    def summary(self) -> dict[str, Any]:
        """The state summary the Agent's status shows for this member."""
        return {
            "store": self.store.kind,
            "key": self.store.key,
            "version": self.version,
            "lastSavedAt": stamp(self.journal.saved_at),
            "sizeBytes": self.journal.size_bytes,
            "queued": self.queued(),
            "busy": self.busy(),
            "idleSince": history.stamp(self.idle_since),
            # Started parked (spec.warmWhileAsleep) and loaded for a call: the Agent is awake.
            "wokeFrom": self.settings.parked_for or None,
            "parked": None,  # loaded: no longer parked
            "reason": self.error.reason if self.error else None,
            "message": self.error.message if self.error else None,
        }
