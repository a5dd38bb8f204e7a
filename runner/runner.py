"""`foundation-runner`: one Workflow's runner, in the pod the operator gives it.

It carries out what `workflows.plan` decides, straight to the members (their Endpoints, through
`foundation_common.discovery`, as the sidecar does): no reconcile round of the operator between
steps. Progress lives in the Workflow's status and nowhere else, so a runner that crashes is
replaced by one that goes on from there:

- Before an attempt is sent, its task id and the member it is pinned to are written to the
  status. A new runner sends the same id to the same member again; the member answers with the
  record it has instead of running the task twice.
- A completion is learned by waiting on the member (`GET /v1/tasks/{id}?wait=`), not polling.
- Status changes that happen together (a step done, the next ones sent) go out in one write.

It exits 0 once the Workflow is Succeeded or Failed: nothing keeps running for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from datetime import datetime
from typing import Any

import httpx
from pydantic import ValidationError

from foundation_common import events, rest, tracing
from foundation_common.aio import cancel_all
from foundation_common.discovery import Capability, Directory, RestEndpoints
from foundation_common.retry import Backoff, retrying
from foundation_common.sidecar import Discovery
from foundation_common.status import (
    condition,
    now,
    parse_stamp,
    stamp,
)
from foundation_common.wake import Waker
from foundation_common.workflows import plan, report, templates, transitions
from foundation_common.workflows.api import (
    WORKFLOW,
    Step,
    StepStatus,
    WorkflowSpec,
    WorkflowStatus,
)
from foundation_runner.attempts import Attempts, Outcome, settled
from foundation_runner.status import dump, refused

logger = logging.getLogger("foundation_operator.runner")
VERDICTS = ("Approved", "Rejected")
NORMAL_EVENTS = frozenset(
    {"MapStarted", "ApprovalRequested", "Approved"}
)  # the runner's other Events are Warnings
MAX_ITEM_EVENTS = 10  # a map's item failures with an Event each; the rest show in the status
IDLE_SECONDS = 30.0  # the longest the loop waits with nothing to wake it
WRITE_RETRY_SECONDS = 60.0  # how long a status write is retried through the API's failures


class Runner:
    def __init__(
        self,
        api: rest.Client,
        namespace: str,
        name: str,
        http: httpx.AsyncClient,
        slice_api: str | None = None,
    ) -> None:
        self.api = api
        self.namespace, self.name = namespace, name
        self.path = WORKFLOW.path(namespace, name)
        self.http = http
        self.directory = Directory(Discovery(), namespace, RestEndpoints(api, slice_api=slice_api))
        self.waker = Waker(self._api, namespace)
        self.attempts = Attempts(http, self._members, self._wake)
        self.outcomes: list[Outcome] = []  # of attempts, for the main loop
        self.woken = asyncio.Event()  # set with each outcome
        self.following: dict[str, asyncio.Task[None]] = {}
        self.uid = ""
        self.generation = 0
        self.spec_watch: asyncio.Task[None] | None = None
        self.spec: WorkflowSpec | None = None
        self.status = WorkflowStatus()
        self.steps: dict[str, StepStatus] = {}
        self.items: dict[str, StepStatus] = {}  # maps' items, by <step>.<index>
        self.item_steps: dict[str, Step] = {}  # the task of each item followed, as a step
        self.written: dict[str, StepStatus] = {}  # steps and items as the last write left them
        self.ended: plan.Decision | None = None  # what ended the run before its steps did
        self.kept_bytes = 0  # of the results in the status
        self.budget = plan.MAX_RESULTS_BYTES
        self.pending_events: list[tuple[str, str]] = []
        self.run_started = time.monotonic()
        self.done_at: dict[str, float] = {}  # monotonic, when this runner saw a step done

    # -- the Workflow ------------------------------------------------------------------------

    async def read(self) -> dict[str, Any]:
        return await self.api.get(self.path)

    async def load(self) -> None:
        body = await self.read()
        self.uid = body["metadata"]["uid"]
        self.generation = body["metadata"].get("generation", 0)
        try:
            self.status = WorkflowStatus.model_validate(body.get("status") or {})
        except ValidationError:
            self.status = WorkflowStatus()
        # A template's steps, as they were when the Workflow started (status.template).
        own = WorkflowSpec.model_validate(body["spec"])
        self.spec = templates.effective(own, self.status.template)
        self.steps = plan.statuses(self.spec, self.status.steps)
        self.items = plan.item_statuses(self.status.items)
        self.written = {**self.steps, **self.items}
        self.kept_bytes = plan.kept_bytes(self.steps) + plan.kept_bytes(self.items)
        # The object's size without the results: a large spec leaves less room for them.
        self.budget = plan.results_budget(len(json.dumps(body)) - self.kept_bytes)

    async def write(self, resource_version: str | None = None) -> None:
        """The status as it is now, in one patch; a passing failure of the API is retried (a
        runner that crashed for one would count towards RunnerCrashLoop). With
        `resource_version`, only over that version of the Workflow (a 409 otherwise)."""
        assert self.spec is not None
        for name, step in self.steps.items():
            if step.items is not None and step.phase == "Running":
                self.steps[name] = step.model_copy(
                    update={"progress": report.map_progress(name, step.items, self.items)}
                )
        self.status = self.status.model_copy(
            update={
                "steps": list(self.steps.values()),
                "items": list(self.items.values()),
                "progress": report.progress(self.steps),
                "item_progress": report.item_progress(self.steps, self.items),
            }
        )
        body: dict[str, Any] = {"status": dump(self.status)}
        if resource_version is not None:
            body["metadata"] = {"resourceVersion": resource_version}

        def passing(exc: Exception) -> bool:
            if isinstance(exc, rest.ApiError):
                return not refused(exc) and exc.status != 409
            return isinstance(exc, rest.Unreachable)

        def failed(exc: Exception, _pause: float) -> None:
            logger.warning("writing the status of %s/%s: %s", self.namespace, self.name, exc)

        await retrying(
            lambda: self.api.merge_patch(f"{self.path}/status", body),
            Backoff(initial=0.2, maximum=5.0, jitter=True),
            retry_on=passing,
            deadline=time.monotonic() + WRITE_RETRY_SECONDS,
            on_retry=failed,
        )
        self.written = {**self.steps, **self.items}

    def _table(self, name: str) -> dict[str, StepStatus]:
        return self.items if plan.is_item(name) else self.steps

    def _status(self, name: str) -> StepStatus:
        return self._table(name).get(name) or StepStatus(name=name)

    def _put(self, name: str, status: StepStatus) -> None:
        self._table(name)[name] = status

    def _step(self, name: str) -> Step:
        """The spec's step of this name, or the task of a map's item as a step (its input
        resolved once, from the list the map runs over)."""
        assert self.spec is not None
        if not plan.is_item(name):
            return next(s for s in [*self.spec.steps, *self.spec.on_exit] if s.name == name)
        if name not in self.item_steps:
            step = self._step(plan.map_of(name))
            index = int(name.rsplit(".", 1)[1])
            known = plan.results(self.steps)
            items = plan.map_items(step, self.spec.input, known)
            self.item_steps[name] = plan.item_step(
                step, index, items[index], self.spec.input, known
            )
        return self.item_steps[name]

    # -- the run -----------------------------------------------------------------------------

    async def run(self) -> int:
        await self.load()
        assert self.spec is not None
        if self.status.phase in ("Succeeded", "Failed"):
            logger.info(
                "workflow %s/%s is %s already", self.namespace, self.name, self.status.phase
            )
            return 0
        at = now()
        if not self.status.started_at:
            self.status = self.status.model_copy(update={"started_at": stamp(at)})
        started_at = parse_stamp(self.status.started_at or stamp(at))
        # Attempts sent before a crash: the same id to the same member again.
        for step in [*self.spec.steps, *self.spec.on_exit]:
            if self.steps[step.name].phase == "Running" and step.map is None and not step.approval:
                self._follow(step, self.steps[step.name])
        for name, item in self.items.items():
            if item.phase == "Running":
                self._follow(self._step(name), item)
        self.spec_watch = asyncio.get_running_loop().create_task(
            self._watch_spec(), name="watch-spec"
        )
        dirty = True  # startedAt, at least
        while True:
            at = now()
            dirty |= self._take_outcomes(at)
            await self._flush_events()
            decision = plan.decide(
                self.spec,
                self.uid,
                self.steps,
                started_at,
                at,
                self.items,
                self.status.outcome,
                {v.step: v for v in self.status.approvals},
            )
            if decision.expired:
                # An approval's timeout, taken only if no one decided meanwhile.
                await self._expire(decision.expired, at)
                continue
            if decision.record is not None:
                # The steps have ended: how is kept before any clean-up step starts, and
                # steps still in flight (the run's timeout) are not waited for.
                self.status = self.status.model_copy(update={"outcome": decision.record})
                if self.following:
                    await self._abandon(decision, at)
                dirty = True
                continue
            if self.ended is not None and not self.following:
                decision = self.ended  # the run's timeout, not the steps it abandoned
            if (
                decision.skip
                or decision.fail
                or decision.expand
                or decision.gather
                or decision.wait
                or decision.verdicts
            ):
                # Skipped or failed before starting: that may let others start, or end the
                # run. Decide again at once; it is all written together.
                self._settle(decision, at)
                dirty = True
                continue
            if decision.finished and self.following:
                # The whole run's timeout with steps in flight: they are not waited for.
                await self._abandon(decision, at)
                self.ended = decision
                dirty = True
                continue
            sending = await self._pin(decision, at)
            dirty |= bool(sending) | self._set_phase(decision, at)
            if dirty:
                try:
                    # Recorded before anything is sent: a new runner re-sends these ids.
                    await self.write()
                except rest.ApiError as exc:
                    if not self._refused(exc, sending, at):
                        await self._fail_refused(exc, at)
                        return 0
                    continue  # the steps whose results were refused failed: decide again
                dirty = False
            for dispatch in sending:
                name = dispatch.step.name
                self._follow(dispatch.step, self._status(name), self._ready_at(name))
            if decision.finished:
                await self._finished(decision)
                return 0
            wait = IDLE_SECONDS
            if decision.wake_at is not None:
                wait = min(wait, max(0.0, (decision.wake_at - now()).total_seconds()))
            if len(sending) < len(decision.start):
                wait = min(wait, 0.5)  # members not ready yet
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.woken.wait(), wait)

    def _settle(self, decision: plan.Decision, at: datetime) -> None:
        for name, why in decision.skip.items():
            self.steps[name] = transitions.skipped(self.steps[name], why, at)
            self.done_at[name] = time.monotonic()
        for name, (reason, message) in decision.fail.items():
            self._put(name, transitions.failed(self._status(name), reason, message, at))
            self._failed_event(name)
        for name, prompt in decision.wait.items():
            self.steps[name] = transitions.waiting(self.steps[name], prompt, at)
            self.pending_events.append(("ApprovalRequested", f"step {name}: {prompt}"[:1024]))
        for name, verdict in decision.verdicts.items():
            self._decided(name, verdict, at)
        for name, count in decision.expand.items():
            self.steps[name] = transitions.map_started(self.steps[name], count, at)
            self.pending_events.append(("MapStarted", f"step {name}: {count} items"))
        for name, gathered in decision.gather.items():
            # The items' results move into the map's: kept once, in order.
            for index in range(len(gathered)):
                item = plan.item_name(name, index)
                if item in self.items and self.items[item].result is not None:
                    self.kept_bytes -= plan.result_size(self.items[item].result)
                    self.items[item] = self.items[item].model_copy(update={"result": None})
            self.kept_bytes += plan.result_size(gathered)
            self.steps[name] = transitions.succeeded(self.steps[name], gathered, at)
            self.done_at[name] = time.monotonic()

    def _decided(self, name: str, verdict: Any, at: datetime) -> None:
        self.steps[name] = transitions.decided(self.steps[name], verdict, at)
        said = f": {verdict.message}" if verdict.message else ""
        self.pending_events.append((verdict.decision, f"step {name} by {verdict.by}{said}"))
        self.done_at[name] = time.monotonic()

    async def _expire(self, names: list[str], at: datetime) -> None:
        """Approvals past their timeout: read the Workflow again (a person may have decided
        meanwhile); the rest take their timeout's decision, written over the version read,
        so a decision the door records meanwhile makes this write fail, not vanish."""
        body = await self.read()
        known = WorkflowStatus.model_validate(body.get("status") or {}).approvals
        self.status = self.status.model_copy(update={"approvals": known})
        decided = {v.step for v in known}
        before = dict(self.steps)
        expiring = [name for name in names if name not in decided]
        if not expiring:
            return  # decided by people: taken on the next round
        for name in expiring:
            self._decided(name, transitions.expiry(self._step(name), at), at)
        try:
            await self.write(body["metadata"]["resourceVersion"])
        except rest.ApiError as exc:
            if exc.status != 409:
                raise
            self.steps = before  # someone decided meanwhile: read again next round
            self.pending_events = [e for e in self.pending_events if e[0] not in VERDICTS]

    def _failed_event(self, name: str) -> None:
        """A step's failure, or one of a map's first few items' (not an Event per item)."""
        failed = self._status(name)
        why = f"{failed.reason}: {failed.error}"
        if not plan.is_item(name):
            self.pending_events.append(("StepFailed", f"step {name}: {why}"))
            return
        prefix = plan.map_of(name) + "."
        failures = sum(
            1 for n, i in self.items.items() if i.phase == "Failed" and n.startswith(prefix)
        )
        if failures <= MAX_ITEM_EVENTS:
            self.pending_events.append(("ItemFailed", f"item {name}: {why}"))

    async def _pin(self, decision: plan.Decision, at: datetime) -> list[plan.Dispatch]:
        """The attempts to start, each pinned to a ready member (recorded, not sent yet)."""
        sending = []
        for dispatch in decision.start:
            pinned = await self._choose(dispatch.step, dispatch.task_id)
            if pinned is None:
                continue  # no ready member yet: looked at again shortly
            agent, member = pinned
            name = dispatch.step.name
            self._put(
                name, transitions.attempt_sent(self._status(name), dispatch, agent, member, at)
            )
            if plan.is_item(name):
                self.item_steps[name] = dispatch.step
            sending.append(dispatch)
        return sending

    async def _abandon(self, decision: plan.Decision, at: datetime) -> None:
        """Steps in flight when the run ends early: a queued attempt is cancelled at its member
        (it will never run); a running one is left to finish there, not waited for and never
        sent again. Either way the step fails and says which."""
        assert self.spec is not None
        following, self.following = self.following, {}
        await cancel_all(following.values())
        self._take_outcomes(at)  # what finished meanwhile counts as it came
        for name in following:
            status = self._status(name)
            if status.phase != "Running":
                continue
            members = await self._members(self._step(name))
            member = members.pinned(status.member)
            cancelled = False
            if member is not None:
                with contextlib.suppress(httpx.HTTPError):
                    answer = await self.http.post(
                        f"http://{member.address}/v1/tasks/{status.task_id}/cancel"
                    )
                    cancelled = answer.status_code == 200
            if cancelled:
                reason, message = (
                    "Cancelled",
                    (
                        f"attempt {status.attempts} ({status.task_id}) was cancelled while queued "
                        f"at {status.member}: {decision.message}"
                    ),
                )
            else:
                reason, message = (
                    "Abandoned",
                    (
                        f"attempt {status.attempts} ({status.task_id}) was still running at "
                        f"{status.member} (or could not be reached) when the run ended: "
                        f"{decision.message}; it may still take effect once, and is not sent again"
                    ),
                )
            self._put(name, transitions.failed(status, reason, message, at))
            self._failed_event(name)

    def _refused(self, exc: rest.ApiError, sending: list[plan.Dispatch], at: datetime) -> bool:
        """The API server refused the status (too large, invalid): the steps whose results
        came since the last write fail with its message, and what was about to be sent is
        not (it was not recorded). False if no result is to blame: the Workflow is failed."""
        for dispatch in sending:
            name = dispatch.step.name
            was = self.written.get(name)
            if was is not None:
                self._put(name, was)
            else:
                self._table(name).pop(name, None)
        blamed = [
            name
            for name, status in [*self.steps.items(), *self.items.items()]
            if status.phase == "Succeeded" and self.written.get(name) != status
        ]
        for name in blamed:
            self.kept_bytes -= plan.result_size(self._status(name).result)
            self._put(
                name,
                transitions.failed(
                    self._status(name).model_copy(update={"result": None}),
                    "StatusRefused",
                    f"the API server refused the Workflow's status with this result: "
                    f"{exc.message[:400]}",
                    at,
                ),
            )
            self._failed_event(name)
        if blamed:
            return True
        return False

    async def _fail_refused(self, exc: rest.ApiError, at: datetime) -> None:
        """Failed, in the fewest fields, when the API server refuses the status itself."""
        logger.error("workflow %s/%s: status refused: %s", self.namespace, self.name, exc)
        message = f"the API server refused the Workflow's status: {exc.message[:400]}"
        verdict = condition(
            "Succeeded",
            False,
            "StatusRefused",
            message,
            self.status.observed_generation,
            self.status.conditions,
            at,
        )
        fields = {
            "phase": "Failed",
            "conditions": [verdict.model_dump(by_alias=True, exclude_none=True)],
            "finishedAt": stamp(at),
        }
        await self.api.merge_patch(f"{self.path}/status", {"status": fields})
        await self._event("Warning", "Failed", message)

    async def _finished(self, decision: plan.Decision) -> None:
        await self._flush_events()
        await self._event(
            "Normal" if decision.phase == "Succeeded" else "Warning",
            decision.phase,
            decision.message,
        )
        logger.info(
            "workflow %s/%s %s: %s", self.namespace, self.name, decision.phase, decision.message
        )

    async def _flush_events(self) -> None:
        while self.pending_events:
            reason, message = self.pending_events.pop(0)
            kind = "Normal" if reason in NORMAL_EVENTS else "Warning"
            await self._event(kind, reason, message)

    async def _event(self, kind: str, reason: str, message: str) -> None:
        """An Event on the Workflow (best effort, as every Event)."""
        involved = WORKFLOW.reference(self.namespace, self.name, self.uid)
        await events.record(self._create_event, involved, reason, message[:1024], kind)

    async def _create_event(self, obj: dict[str, Any]) -> dict[str, Any]:
        return await self.api.create(f"/api/v1/namespaces/{self.namespace}/events", obj)

    def _set_phase(self, decision: plan.Decision, at: datetime) -> bool:
        assert self.spec is not None
        phase = decision.phase
        update: dict[str, Any] = {"phase": phase}
        if decision.finished:
            ok = phase == "Succeeded"
            update["conditions"] = [
                condition(
                    "Succeeded",
                    ok,
                    decision.reason,
                    decision.message,
                    self.status.observed_generation,
                    self.status.conditions,
                    at,
                )
            ]
            if decision.cleaned_up is not None:
                done, reason, message = decision.cleaned_up
                update["conditions"].append(
                    condition(
                        "CleanedUp",
                        done,
                        reason,
                        message,
                        self.status.observed_generation,
                        self.status.conditions,
                        at,
                    )
                )
                if not done:
                    self.pending_events.append(("CleanUpFailed", message))
            update["output"] = decision.output if ok else None
            if not self.status.finished_at:
                update["finished_at"] = stamp(at)
                update["duration"] = report.duration(
                    parse_stamp(self.status.started_at or stamp(at)), at
                )
        else:
            update["conditions"] = [
                condition(
                    "Succeeded",
                    None,
                    decision.reason or phase,
                    decision.message or f"{report.progress(self.steps)} steps done",
                    self.status.observed_generation,
                    self.status.conditions,
                    at,
                )
            ]
        before = self.status
        self.status = self.status.model_copy(update=update)
        return before != self.status

    def _take_approvals(self, body: dict[str, Any]) -> None:
        """Decisions people's door recorded in the status: the loop takes them."""
        try:
            known = WorkflowStatus.model_validate(body.get("status") or {}).approvals
        except ValidationError:
            return
        if known != self.status.approvals:
            self.status = self.status.model_copy(update={"approvals": known})
            self.woken.set()

    async def _watch_spec(self) -> None:
        """Spec changes (suspend, resume, parallelism) as they happen, from a watch on this
        Workflow alone (its Role names it); status writes do not change the generation."""
        backoff = Backoff(initial=0.5, maximum=10.0, jitter=True)
        generation = self.generation

        async def watch() -> None:
            nonlocal generation
            async for kind, obj in self.api.list_and_watch(
                WORKFLOW.path(self.namespace),
                {"fieldSelector": f"metadata.name={self.name}"},
                timeout_seconds=300,
            ):
                body = (obj.get("items") or [None])[0] if kind == "SYNC" else obj
                backoff.reset()
                if body is None or kind == "DELETED":
                    continue  # deleted: the runner goes with it
                self._take_approvals(body)
                if body["metadata"].get("generation", 0) == generation:
                    continue
                generation = body["metadata"].get("generation", 0)
                try:
                    own = WorkflowSpec.model_validate(body["spec"])
                    self.spec = templates.effective(own, self.status.template)
                except ValidationError as exc:  # the operator fails it: the old spec holds
                    logger.warning("workflow %s/%s: spec: %s", self.namespace, self.name, exc)
                self.woken.set()

        def failed(exc: Exception, _pause: float) -> None:
            # The API away for a moment: the old spec holds.
            logger.warning("watching workflow %s/%s: %s", self.namespace, self.name, exc)

        while True:
            await retrying(watch, backoff, retry_on=Exception, on_retry=failed)

    def _take_outcomes(self, at: datetime) -> bool:
        """Outcomes of attempts into the steps' (and items') status; failures queue an Event."""
        assert self.spec is not None
        changed = False
        self.woken.clear()
        taken, self.outcomes = self.outcomes, []
        for outcome in taken:
            self.following.pop(outcome.step, None)
            status = self._status(outcome.step)
            if status.task_id != outcome.task_id:
                continue
            after = settled(
                self._step(outcome.step), status, outcome, self.kept_bytes, self.budget, at
            )
            self._put(outcome.step, after)
            if after.phase == "Succeeded":
                self.kept_bytes += plan.result_size(after.result)
                self.done_at[outcome.step] = time.monotonic()
            elif after.phase == "Failed":
                self._failed_event(outcome.step)
            changed = True
        return changed

    # -- members -----------------------------------------------------------------------------

    async def _members(self, step: Step) -> Capability:
        if step.agent:
            return await self.directory.get(step.agent, wait=5.0, service=step.agent)
        assert step.capability is not None
        return await self.directory.get(step.capability, wait=5.0)

    async def _api(self) -> rest.Client:
        return self.api

    def _wake(self, step: Step) -> None:
        """No ready member for the step: its Agent (or its capability's) may be asleep."""
        if step.agent:
            self.waker.soon(self.waker.agent(step.agent))
        elif step.capability:
            self.waker.soon(self.waker.capability(step.capability))

    async def _choose(self, step: Step, task_id: str) -> tuple[str, str] | None:
        """(agent, member) for a new attempt: a ready member, by the task id's affinity."""
        members = await self._members(step)
        member = members.pick(affinity=task_id)
        if member is None:
            self._wake(step)
            return None
        agent = step.agent or member.name.rsplit("-", 1)[0]
        return agent, member.name

    def _follow(self, step: Step, status: StepStatus, ready_at: float | None = None) -> None:
        self.following[step.name] = asyncio.get_running_loop().create_task(
            self._attempt(step, status, ready_at), name=f"step {step.name}"
        )

    def _ready_at(self, name: str) -> float:
        """When this runner saw the step's dependencies done (monotonic), for dispatch latency;
        a map's items count from the map's."""
        step = self._step(plan.map_of(name))
        return max(
            (self.done_at.get(d, self.run_started) for d in step.depends_on),
            default=self.run_started,
        )

    async def _attempt(self, step: Step, status: StepStatus, ready_at: float | None) -> None:
        """Follow one attempt (`attempts.Attempts.follow`); its outcome goes to the main loop."""
        assert self.spec is not None
        outcome = Outcome(step.name, status.task_id)
        try:
            task_input = (
                step.input  # an item's: resolved once, never read for references again
                if plan.is_item(step.name)
                else plan.attempt_input(self.spec, step, self.steps, self.status.outcome)
            )
            with (
                tracing.span(
                    f"invoke_agent {step.agent or step.capability}",
                    kind="CLIENT",
                    context=tracing.rooted(self.uid),
                    attributes={
                        "gen_ai.operation.name": "invoke_agent",
                        "gen_ai.agent.name": step.agent or step.capability,
                        tracing.NAMESPACE: self.namespace,
                        tracing.WORKFLOW: self.name,
                        tracing.STEP: step.name,
                        tracing.TASK_ID: status.task_id,
                        tracing.ACTION: step.action,
                        tracing.ATTEMPT: status.attempts,
                    },
                )
                if tracing.enabled()
                else contextlib.nullcontext() as span
            ):
                outcome = await self.attempts.follow(step, status, task_input, ready_at)
                if span is not None:
                    ended = (outcome.record or {}).get("status")
                    if ended != "succeeded":
                        tracing.failed(span, str(ended or "timed out"))
        except Exception as exc:  # never lose the step: report it as a failed attempt
            logger.exception("step %s: attempt %s", step.name, status.task_id)
            outcome.record = {"status": "failed", "error": f"{type(exc).__name__}: {exc}"}
        self.outcomes.append(outcome)
        self.woken.set()
