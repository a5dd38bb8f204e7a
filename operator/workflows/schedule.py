"""The Schedule resource (the model: its CRD's source) and what a Schedule does next, as a pure
function of its spec, what it did last, its Workflows and the time.

A Schedule creates a Workflow per time of its cron expression (in its time zone), named after
the Schedule and the minute (`<schedule>-<unix minutes>`), so a Workflow for one time is
created once whatever happens to the operator: a second create of the same name is refused by
the API server, and the Schedule's status says the time was taken. Missed times are handled as
a CronJob's are: after downtime only the most recent missed time runs, and only within
`startingDeadlineSeconds` of it when that is set.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError
from pydantic import Field

from foundation_common.resources import GROUP, SCHEDULE
from foundation_common.schema import FreeForm, Model
from foundation_common.status import Condition
from foundation_common.workflows.api import WorkflowSpec

SCHEDULE_LABEL = f"{GROUP}/schedule"  # on its Workflows: the Schedule's name
SCHEDULED_AT = f"{GROUP}/scheduled-at"  # on its Workflows: the time they were made for
MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
MAX_MISSED = 100  # missed times counted at most (a CronJob's limit too)


class ScheduledWorkflow(Model):
    """What each Workflow is made of: labels and annotations, and its spec (inline steps or a
    template)."""

    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    spec: WorkflowSpec


class ScheduleSpec(Model):
    schedule: str = Field(
        min_length=1,
        max_length=256,
        description='Cron: five fields ("*/5 * * * *") or @hourly, @daily, @weekly, @monthly, '
        "@yearly.",
    )
    time_zone: str = Field("UTC", max_length=64, description="IANA name, e.g. Europe/Paris.")
    concurrency_policy: Literal["Allow", "Forbid", "Replace"] = Field(
        "Allow",
        description="When a time comes with a Workflow of this Schedule still running: Allow "
        "another, Forbid (skip this time) or Replace (delete the running one first).",
    )
    starting_deadline_seconds: int | None = Field(
        None, ge=1, le=30 * 86_400, description="A time missed by more than this is skipped."
    )
    successful_workflows_history_limit: int = Field(3, ge=0, le=1000)
    failed_workflows_history_limit: int = Field(1, ge=0, le=1000)
    suspend: bool = Field(False, description="True: no new Workflow (running ones go on).")
    workflow: ScheduledWorkflow


class ScheduleStatus(Model):
    last_schedule_time: str | None = Field(
        None, description="The last time taken (run or skipped)."
    )
    last_workflow: str = Field("", description="The Workflow made for it, if one was.")
    next_schedule_time: str | None = None
    active: list[str] = Field(default_factory=list, description="Its Workflows still running.")
    observed_generation: int = 0
    conditions: list[Condition] = Field(default_factory=list)


class Schedule(Model):
    """Workflows made on a cron schedule: the whole resource, as its CRD describes it."""

    api_version: str = SCHEDULE.api_version
    kind: str = SCHEDULE.kind
    metadata: FreeForm = Field(default_factory=dict)
    spec: ScheduleSpec
    status: ScheduleStatus | None = None


@dataclass(frozen=True)
class Made:
    """One of a Schedule's Workflows, as its controller sees it."""

    name: str
    scheduled_at: datetime
    phase: str  # "" until its runner writes one


@dataclass
class Next:
    """What a Schedule does now."""

    create: datetime | None = None  # a Workflow for this time
    delete: list[str] = field(default_factory=list)  # replaced, or past the history limits
    taken: datetime | None = None  # the time now taken (made, or skipped): lastScheduleTime
    skipped: str = ""  # why `taken` got no Workflow
    next_at: datetime | None = None  # the next time, for the status and the requeue
    problem: str = ""  # the spec cannot be scheduled: why


def expression(spec: ScheduleSpec) -> str:
    return MACROS.get(spec.schedule.strip(), spec.schedule.strip())


def problems(spec: ScheduleSpec) -> list[str]:
    """What makes `spec` impossible to schedule, naming the field."""
    found = []
    try:
        zone = ZoneInfo(spec.time_zone)
    except (ZoneInfoNotFoundError, ValueError):
        found.append(f"spec.timeZone: {spec.time_zone!r} is not an IANA time zone")
        zone = ZoneInfo("UTC")
    try:
        CronSim(expression(spec), datetime.now(zone))
    except CronSimError as exc:
        found.append(f"spec.schedule: {spec.schedule!r} is not a cron schedule: {exc}")
    return found


def workflow_name(schedule: str, at: datetime) -> str:
    """The Workflow for time `at`: the same name for the same minute, always."""
    return f"{schedule}-{int(at.timestamp()) // 60}"


def times_between(spec: ScheduleSpec, after: datetime, until: datetime) -> list[datetime]:
    """The schedule's times in (after, until], at most MAX_MISSED + 1 of the latest."""
    zone = ZoneInfo(spec.time_zone)
    found: list[datetime] = []
    for at in CronSim(expression(spec), after.astimezone(zone)):
        if at > until:
            break
        found.append(at)
        if len(found) > MAX_MISSED:
            found.pop(0)
    return found


def next_time(spec: ScheduleSpec, now: datetime) -> datetime:
    return next(CronSim(expression(spec), now.astimezone(ZoneInfo(spec.time_zone))))


def decide(
    name: str,
    spec: ScheduleSpec,
    since: datetime,
    made: list[Made],
    now: datetime,
) -> Next:
    """What the Schedule `name` does now: `since` is its last time taken (or its creation),
    `made` its Workflows."""
    found = problems(spec)
    if found:
        return Next(problem="; ".join(found))
    out = Next(next_at=next_time(spec, now))
    out.delete = past_history(spec, made)
    if spec.suspend:
        return out
    due = times_between(spec, since, now)
    if not due:
        return out
    at = due[-1]  # after downtime, only the most recent missed time runs (as a CronJob)
    out.taken = at
    late = (now - at).total_seconds()
    if spec.starting_deadline_seconds is not None and late > spec.starting_deadline_seconds:
        out.skipped = (
            f"the time {at.isoformat()} was missed by {late:.0f} s, more than "
            f"startingDeadlineSeconds {spec.starting_deadline_seconds}"
        )
        return out
    running = [m for m in made if m.phase not in ("Succeeded", "Failed")]
    mine = workflow_name(name, at)
    running = [m for m in running if m.name != mine]
    if running and spec.concurrency_policy == "Forbid":
        out.skipped = (
            f"concurrencyPolicy Forbid: {', '.join(m.name for m in running)} still running at "
            f"{at.isoformat()}"
        )
        return out
    if running and spec.concurrency_policy == "Replace":
        out.delete += [m.name for m in running if m.name not in out.delete]
    out.create = at
    return out


def past_history(spec: ScheduleSpec, made: list[Made]) -> list[str]:
    """Finished Workflows beyond the history limits, oldest first."""
    out = []
    for phase, keep in (
        ("Succeeded", spec.successful_workflows_history_limit),
        ("Failed", spec.failed_workflows_history_limit),
    ):
        ended = sorted((m for m in made if m.phase == phase), key=lambda m: m.scheduled_at)
        out += [m.name for m in ended[: max(0, len(ended) - keep)]]
    return out


def requeue_seconds(out: Next, now: datetime) -> float | None:
    """When to look again: at the next time (a little after, so it is due)."""
    if out.next_at is None:
        return None
    return max(0.05, (out.next_at - now).total_seconds() + 0.05)
