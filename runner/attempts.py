"""One attempt of a step (or of a map's item) at its member, and what its outcome makes of the
step: the runner's dealings with members, apart from its loop and its status writes.

An attempt is sent to the member it is pinned to (recorded in the status before it is sent),
again with the same id after a crash, and followed by waiting on the member
(`GET /v1/tasks/{id}?wait=`) until its record ends or the step's timeout comes.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx

from foundation_common import tracing
from foundation_common.discovery import Capability
from foundation_common.retry import Again, Backoff, retrying
from foundation_common.status import now, parse_stamp
from foundation_common.tasks import ENDED
from foundation_common.workflows import plan, transitions
from foundation_common.workflows.api import Step, StepStatus


@dataclass
class Outcome:
    """What following an attempt came to."""

    step: str
    task_id: str
    record: dict[str, Any] | None = None  # the member's record, once done
    gone: str = ""  # set if the pinned member went away for good
    timed_out: bool = False
    cancelled: bool = False
    task_status: str | None = None  # at the timeout
    dispatch_ms: int | None = None  # from its dependencies done to the member's acceptance


class Attempts:
    """Attempts over `http` (which carries the runner's token), to the members `members`
    finds for a step."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        members: Callable[[Step], Awaitable[Capability]],
        wake: Callable[[Step], None] = lambda step: None,
    ) -> None:
        self.http = http
        self.members = members
        self.wake = wake  # asked when the pinned member is not ready: its Agent may sleep

    async def follow(
        self, step: Step, status: StepStatus, task_input: Any, ready_at: float | None
    ) -> Outcome:
        """Send the attempt to its pinned member (again, after a crash: the same id) and wait
        for its record, within the step's timeout."""
        # The attempt's deadline counts from when it was recorded as sent, also after a crash.
        sent_at = parse_stamp(status.started_at) if status.started_at else now()
        deadline = sent_at.timestamp() + step.timeout_seconds
        members = await self.members(step)
        body = {"id": status.task_id, "action": step.action, "input": task_input}
        backoff = Backoff(initial=0.05, maximum=2.0, jitter=True)
        sent = False
        dispatch_ms: int | None = None

        async def attempt() -> Outcome | None:
            """Send, then wait on the member, until the record ends (None: the deadline came
            first); a passing failure is `Again`, after which `retrying` pauses."""
            nonlocal sent, dispatch_ms
            while time.time() < deadline:
                member = members.pinned(status.member)
                if member is None:
                    # Pinned and gone (scaled down, deleted, not ready, asleep): wait for it,
                    # never another.
                    self.wake(step)
                    raise Again(f"member {status.member} is not ready")
                base = f"http://{member.address}/v1/tasks"
                try:
                    if not sent:
                        answer = await self.http.post(base, json=body, headers=tracing.headers())
                        if answer.status_code in (429, 503):
                            raise Again(f"{answer.status_code} {answer.text[:200]}")
                        if answer.status_code not in (200, 202):
                            return Outcome(
                                step.name,
                                status.task_id,
                                record={"status": "refused", "error": answer.text[:500]},
                            )
                        sent = True
                        record = answer.json()
                        if ready_at is not None and dispatch_ms is None:
                            dispatch_ms = round((time.monotonic() - ready_at) * 1000)
                    else:
                        wait = max(0.0, min(30.0, deadline - time.time()))
                        answer = await self.http.get(
                            f"{base}/{status.task_id}",
                            params={"wait": f"{wait:.3f}"},
                            timeout=wait + 5,
                        )
                        if answer.status_code == 404:
                            sent = False  # the member lost it (expired record): send again
                            continue
                        answer.raise_for_status()
                        record = answer.json()
                except httpx.HTTPError as exc:
                    raise Again(f"{type(exc).__name__}: {exc}") from None
                if record.get("status") in ENDED:
                    return Outcome(
                        step.name, status.task_id, record=record, dispatch_ms=dispatch_ms
                    )
                backoff.reset()
            return None

        with contextlib.suppress(Again):
            outcome = await retrying(attempt, backoff, deadline=deadline, clock=time.time)
            if outcome is not None:
                return outcome
        return await self.timed_out(step, status, members)

    async def timed_out(self, step: Step, status: StepStatus, members: Capability) -> Outcome:
        outcome = Outcome(step.name, status.task_id, timed_out=True)
        member = members.pinned(status.member)
        if member is None:
            outcome.gone = (
                f"member {status.member} of {step.target} went away with attempt "
                f"{status.attempts} ({status.task_id}) and did not come back within "
                f"timeoutSeconds {step.timeout_seconds}; the attempt is not sent elsewhere"
            )
            return outcome
        base = f"http://{member.address}/v1/tasks/{status.task_id}"
        with contextlib.suppress(httpx.HTTPError):
            answer = await self.http.post(f"{base}/cancel")
            if answer.status_code == 200:
                outcome.cancelled, outcome.task_status = True, "queued"
            else:
                current = await self.http.get(base)
                if current.status_code == 200:
                    outcome.task_status = current.json().get("status")
                    if outcome.task_status in ENDED:
                        return Outcome(step.name, status.task_id, record=current.json())
        return outcome


def settled(
    step: Step,
    status: StepStatus,
    outcome: Outcome,
    kept_bytes: int,
    budget: int,
    at: datetime,
) -> StepStatus:
    """The step (or item) after an attempt's outcome: succeeded (if its result fits the
    status), failed, or pending its next attempt."""
    record = outcome.record or {}
    if outcome.gone:
        after = transitions.failed(status, "MemberGone", outcome.gone, at)
    elif outcome.timed_out:
        after = transitions.attempt_timed_out(
            step, status, outcome.task_status, outcome.cancelled, at
        )
    elif record.get("status") == "succeeded":
        result = record.get("result")
        problem = plan.result_problem(step.name, result, kept_bytes, budget)
        if problem:
            after = transitions.failed(status, "ResultTooLarge", problem, at)
        else:
            after = transitions.succeeded(status, result, at)
    elif record.get("status") == "cancelled":
        after = transitions.failed(
            status,
            "Cancelled",
            f"attempt {status.attempts} ({status.task_id}) was cancelled at "
            f"{status.member} before it ran; it is not sent again",
            at,
        )
    elif record.get("status") == "refused":
        after = transitions.failed(status, "Refused", record.get("error") or "refused", at)
    else:
        after = transitions.attempt_failed(
            step, status, record.get("error") or record.get("status", "failed"), at
        )
    update: dict[str, Any] = {}
    if outcome.dispatch_ms is not None:
        update["dispatch_ms"] = outcome.dispatch_ms
    if record.get("sender"):
        update["sender"] = record["sender"]
    return after.model_copy(update=update) if update else after
