"""How a step's status changes, as pure functions: an attempt sent, its outcomes (succeeded,
failed, retried after a pause, timed out), a map started, an approval waiting and decided.
`plan` decides which; the runner applies these."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from foundation_common.status import stamp
from foundation_common.workflows.api import Step, StepStatus, Verdict

if TYPE_CHECKING:
    from foundation_common.workflows.plan import Dispatch


WAITING = "WaitingForApproval"  # the reason of an approval step waiting for a person


def waiting(status: StepStatus, prompt: str, now: datetime) -> StepStatus:
    """An approval step waiting for a person, from now."""
    return status.model_copy(
        update={
            "phase": "Running",
            "reason": WAITING,
            "prompt": prompt,
            "started_at": stamp(now),
            "error": "",
        }
    )


def expiry(step: Step, now: datetime) -> Verdict:
    """The decision an approval's timeout takes."""
    assert step.approval is not None
    return Verdict(
        step=step.name,
        decision="Approved" if step.approval.on_timeout == "Approve" else "Rejected",
        by="timeout",
        at=stamp(now),
        message=f"no decision within timeoutSeconds {step.approval.timeout_seconds}",
    )


def decided(status: StepStatus, verdict: Verdict, now: datetime) -> StepStatus:
    """An approval step once decided: its result says what, who, when and with what input;
    a rejection fails it."""
    result = verdict.model_dump(exclude={"step"})
    if verdict.decision == "Approved":
        return succeeded(status.model_copy(update={"reason": ""}), result, now)
    said = f": {verdict.message}" if verdict.message else ""
    return failed(
        status.model_copy(update={"result": result}),
        "Rejected",
        f"rejected by {verdict.by}{said}",
        now,
    )


def attempt_sent(
    status: StepStatus, dispatch: Dispatch, agent: str, member: str, now: datetime
) -> StepStatus:
    """What is recorded before an attempt is sent: its id and the member it is pinned to, so a
    runner that crashes re-sends the same id to the same member."""
    return status.model_copy(
        update={
            "phase": "Running",
            "attempts": dispatch.attempt,
            "task_id": dispatch.task_id,
            "agent": agent,
            "member": member,
            "started_at": stamp(now),  # the current attempt's: its timeout counts from here
            "next_attempt_at": None,
            "reason": "",
            "error": "",
        }
    )


def map_started(status: StepStatus, count: int, now: datetime) -> StepStatus:
    """A map step starting: its items counted (their list is read again, never recounted)."""
    return status.model_copy(
        update={
            "phase": "Running",
            "items": count,
            "progress": f"0/{count}",
            "started_at": stamp(now),
            "reason": "",
            "error": "",
        }
    )


def succeeded(status: StepStatus, result: Any, now: datetime) -> StepStatus:
    update = {"phase": "Succeeded", "result": result, "finished_at": stamp(now), "reason": ""}
    if status.items is not None:
        update["progress"] = f"{status.items}/{status.items}"
    return status.model_copy(update=update)


def skipped(status: StepStatus, why: str, now: datetime) -> StepStatus:
    return status.model_copy(
        update={"phase": "Skipped", "reason": "WhenFalse", "error": why, "finished_at": stamp(now)}
    )


def failed(status: StepStatus, reason: str, message: str, now: datetime) -> StepStatus:
    return status.model_copy(
        update={"phase": "Failed", "reason": reason, "error": message, "finished_at": stamp(now)}
    )


def attempt_failed(step: Step, status: StepStatus, error: str, now: datetime) -> StepStatus:
    """The member reported the attempt failed: retry after its pause, or fail the step."""
    if status.attempts <= step.retry.limit:
        pause = step.retry.pause(status.attempts)
        return status.model_copy(
            update={
                "phase": "Pending",
                "reason": "Retrying",
                "error": f"attempt {status.attempts} failed: {error}",
                "next_attempt_at": stamp(now + timedelta(seconds=pause)),
            }
        )
    tries = status.attempts
    return failed(
        status,
        "AttemptsExhausted",
        f"{tries} attempt{'s' if tries != 1 else ''} failed (retry.limit {step.retry.limit}); "
        f"last: {error}",
        now,
    )


def attempt_timed_out(
    step: Step, status: StepStatus, task_status: str | None, cancelled: bool, now: datetime
) -> StepStatus:
    """An attempt ran past timeoutSeconds. One still queued at its member and cancelled there
    can take no effect: it counts as a failed attempt. One that is running (or whose state is
    unknown) is never duplicated: the step fails with reason Timeout."""
    if task_status == "queued" and cancelled:
        return attempt_failed(
            step, status, f"still queued after timeoutSeconds {step.timeout_seconds}", now
        )
    return failed(
        status,
        "Timeout",
        f"attempt {status.attempts} ({status.task_id} on {status.member or step.target}) did not "
        f"finish within timeoutSeconds {step.timeout_seconds}; it was "
        f"{task_status or 'not reachable'} and is not sent again, so its effect is not doubled",
        now,
    )
