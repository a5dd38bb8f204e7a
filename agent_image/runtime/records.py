"""Task records as the runtime keeps them and as the task API shows them."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime

from foundation_agent.stores import Record
from foundation_common import history, tracing

MAX_CONTEXT = 256  # a task's context (an A2A context id): kept with its record, done or not


class ResultTooLarge(Exception):
    """A task's result over its Agent's budget, or too large for the store: the task fails
    with this, its state change is not kept, and the member goes on."""


def record_bytes(record: Record) -> int:
    """About what `record` takes in a store: its compact JSON, and its id as the key."""
    return len(json.dumps(record, separators=(",", ":")).encode()) + len(record["id"]) + 4


class Refused(Exception):
    """A task the inbox does not take: HTTP status, message and Retry-After seconds."""

    def __init__(
        self,
        status: int,
        message: str,
        retry_after: float | None = None,
        reason: str = "",
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.retry_after = retry_after
        self.reason = reason  # what kind of refusal, where the status alone does not say


ID_TAKEN = "IdTaken"  # 409: the id was sent before, by another caller or with other content


@dataclass
class Change:
    """A record to store: a task accepted or finished, with the state after it if it changed."""

    record: Record
    accepted: bool
    state: str | None = None
    done: asyncio.Future[None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


def stamp(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def duration_ms(record: Record) -> float | None:
    """How long a done task ran (from its start, else its acceptance, to its end), in ms."""
    finished = record.get("finishedAt")
    begun = record.get("startedAt") or record.get("acceptedAt")
    if finished is None or begun is None:
        return None
    return round(max(0.0, finished - begun) * 1000, 3)


def public(record: Record) -> Record:
    """A task record as the task API shows it (its context, sender, start, duration and input
    only where known; times in microseconds, which a listing's order and pages use)."""
    shown = {
        "id": record["id"],
        "action": record["action"],
        "status": record["status"],
        "result": record.get("result"),
        "error": record.get("error"),
        "attempts": record.get("attempts", 0),
        "acceptedAt": history.stamp(record.get("acceptedAt")),
        "finishedAt": history.stamp(record.get("finishedAt")),
    }
    for name in ("context", "sender"):
        if record.get(name):
            shown[name] = record[name]
    if record.get("startedAt"):
        shown["startedAt"] = history.stamp(record["startedAt"])
    trace = tracing.trace_id(record.get("trace"))
    if trace:
        shown["traceId"] = trace
    took = duration_ms(record)
    if took is not None:
        shown["durationMs"] = took
    if "input" in record:
        shown["input"] = record["input"]
    elif "inputBytes" in record:  # too large to keep once it ended
        shown["inputBytes"] = record["inputBytes"]
    return shown
