"""What the runner writes of a Workflow's status, and which refusals of it are final (pure)."""

from __future__ import annotations

from typing import Any

from foundation_common import rest
from foundation_common.status import without_empty_strings
from foundation_common.workflows import plan
from foundation_common.workflows.api import WorkflowStatus

REFUSED = (400, 413, 422)  # the status itself is refused: sending it again cannot help


def refused(exc: rest.ApiError) -> bool:
    """The API server refuses this status (not a passing failure): invalid, or too large
    (etcd's limit comes back as a 500 that says so)."""
    return exc.status in REFUSED or (exc.status == 500 and "too large" in exc.message)


# What a map's item keeps once it has ended: enough to show it and to gather its result.
ENDED_ITEM = {"name", "phase", "attempts", "member", "result", "reason", "error", "finishedAt"}


def dump(status: WorkflowStatus) -> dict[str, Any]:
    """A merge patch of the status; results and output are kept as they are ("" included).
    A map's ended items keep only what `ENDED_ITEM` names: a thousand of them stay small."""
    out = status.model_dump(by_alias=True, exclude_none=True)
    results = {s.name: s.result for s in [*status.steps, *status.items]}
    # Approvals are people's door's to write: a merge patch without them leaves them be.
    out = without_empty_strings({k: v for k, v in out.items() if k not in ("output", "approvals")})
    for entry in out.get("steps") or []:
        if results.get(entry["name"]) is not None:
            entry["result"] = results[entry["name"]]
    for index, entry in enumerate(out.get("items") or []):
        if entry.get("phase") in plan.SETTLED:
            entry = {k: v for k, v in entry.items() if k in ENDED_ITEM}
        if results.get(entry["name"]) is not None:
            entry["result"] = results[entry["name"]]
        out["items"][index] = entry
    if status.items == [] and "items" in out:
        del out["items"]
    out["output"] = status.output
    return out
