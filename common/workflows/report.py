"""What a Workflow run's status says of its progress, as pure functions: progress counts,
durations as kubectl shows them, and what finished between two statuses (for metrics)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from foundation_common.status import parse_stamp
from foundation_common.workflows.api import StepStatus
from foundation_common.workflows.plan import SETTLED, item_name


def duration(start: datetime, end: datetime) -> str:
    """As kubectl shows ages: 45s, 3m5s, 2h1m."""
    seconds = max(0, int((end - start).total_seconds()))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"


def progress(steps: dict[str, StepStatus]) -> str:
    return f"{sum(1 for s in steps.values() if s.phase in SETTLED)}/{len(steps)}"


def item_progress(steps: dict[str, StepStatus], items: dict[str, StepStatus]) -> str:
    """Items finished / items, over the maps that have started ("" if none has)."""
    total = sum(s.items or 0 for s in steps.values())
    if not any(s.items is not None for s in steps.values()):
        return ""
    return f"{sum(1 for s in items.values() if s.phase in SETTLED)}/{total}"


def map_progress(name: str, count: int, items: dict[str, StepStatus]) -> str:
    done = sum(
        1 for i in range(count) if (s := items.get(item_name(name, i))) and s.phase in SETTLED
    )
    return f"{done}/{count}"


def newly_finished(
    before: dict[str, Any] | None, after: dict[str, Any], part: str = "steps"
) -> list[tuple[str, str, float | None, float | None]]:
    """Steps (or, with part "items", maps' items) that finished between two observed
    statuses: (name, phase, seconds from the last attempt sent to its end, and from its
    dependencies done to its acceptance, where known)."""
    old = {s["name"]: s for s in (before or {}).get(part) or []}
    found = []
    for step in after.get(part) or []:
        phase = step.get("phase")
        was = old.get(step["name"], {})
        if phase not in SETTLED or (was.get("phase"), was.get("attempts")) == (
            phase,
            step.get("attempts"),
        ):
            continue
        seconds = None
        if step.get("startedAt") and step.get("finishedAt"):
            seconds = (
                parse_stamp(step["finishedAt"]) - parse_stamp(step["startedAt"])
            ).total_seconds()
        dispatch = step.get("dispatchMs")
        found.append(
            (step["name"], phase, seconds, dispatch / 1000 if dispatch is not None else None)
        )
    return found


def last_progress(status: dict[str, Any]) -> datetime | None:
    """When a step last started or finished (or the run started)."""
    stamps = [status.get("startedAt")] + [
        t for s in status.get("steps") or [] for t in (s.get("startedAt"), s.get("finishedAt"))
    ]
    known = [parse_stamp(t) for t in stamps if t]
    return max(known) if known else None
