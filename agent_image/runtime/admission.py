"""Admission: whether the inbox takes a new task, decided before anything is stored.

A task is refused with the HTTP status a client acts on: 400 (a bad id, an unknown action or
an input its model rejects, with the field named), 413 (it would not fit in the store beside
the state), 429 (the inbox is full; retry later).
"""

from __future__ import annotations

import json
from typing import Any

from foundation_agent.model import Action, InvalidInput
from foundation_agent.runtime import metrics
from foundation_agent.runtime.records import ID_TAKEN, MAX_CONTEXT, Refused
from foundation_agent.stores import Record, Store
from foundation_common.tasks import TASK_ID


def check_id(task_id: Any) -> str:
    if not isinstance(task_id, str) or not TASK_ID.fullmatch(task_id):
        raise Refused(
            400,
            "id must be a string of 1-128 letters, digits and . _ : - (starting with a letter"
            " or digit), chosen by the client so retries are recognised",
        )
    return task_id


def check_context(context: Any) -> None:
    if context is not None and not (isinstance(context, str) and len(context) <= MAX_CONTEXT):
        raise Refused(400, f"context must be a string of at most {MAX_CONTEXT} characters")


def check_same(known: Record, action: Any, digest: str) -> None:
    """Refused (409) unless a task sent again carries what its id was first sent with: the
    same action and input (a record from before digests were kept is checked by action)."""
    if known.get("action") != action:
        raise Refused(
            409,
            f"task id {known['id']} was sent with action {known.get('action')!r}, not "
            f"{action!r}: an id is one request; send another with another id",
            reason=ID_TAKEN,
        )
    stored = known.get("inputDigest")
    if stored is not None and stored != digest:
        raise Refused(
            409,
            f"task id {known['id']} was sent with another input (digest {stored}, this one "
            f"{digest}): an id is one request; send another with another id",
            reason=ID_TAKEN,
        )


def admit(
    action: Any,
    raw_input: Any,
    *,
    actions: dict[str, Action],
    store: Store,
    state_json: str,
    queued: int,
    max_queued: int,
    queued_bytes: int = 0,
    max_queued_bytes: int | None = None,
) -> None:
    """Refused unless a new task of `action` with `raw_input` may be accepted."""
    if not isinstance(action, str) or action not in actions:
        raise Refused(
            400,
            f"unknown action {action!r}; this agent's actions are {', '.join(sorted(actions))}",
        )
    try:
        actions[action].parse(raw_input)
    except InvalidInput as exc:
        raise Refused(400, str(exc)) from None
    input_bytes = len(json.dumps(raw_input))
    limit = store.max_bytes
    if limit:
        # Queued tasks are stored with their input, beside the state.
        size = store.size_with(state_json) + input_bytes + 512
        if size > limit:
            raise Refused(
                413,
                f"the task's input would not fit in {store.key} beside the state "
                f"({size} bytes, over the {store.kind} store's limit of {limit} bytes)",
            )
    if max_queued_bytes is not None and queued_bytes + input_bytes > max_queued_bytes:
        metrics.REFUSED.labels(reason="inbox_full").inc()
        raise Refused(
            429,
            f"the inbox is full: its queued tasks' inputs take {queued_bytes} bytes, and this "
            f"one's {input_bytes} would pass the limit of {max_queued_bytes} bytes "
            "(spec.inbox.maxQueuedBytes); retry later",
            retry_after=1,
        )
    if queued >= max_queued:
        metrics.REFUSED.labels(reason="inbox_full").inc()
        raise Refused(
            429, f"the inbox is full ({max_queued} tasks queued); retry later", retry_after=1
        )
