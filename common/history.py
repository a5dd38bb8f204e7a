"""An Agent's task history: which records a listing shows, in what order, a page at a time, and
how the pages of several members make one list. Pure: the member selects from its records, the
door and A2A merge what the members answered, the CLI and the console read the result.

- Order: newest first, by when a task was accepted (`order=accepted`, a time that never
  changes, so paging never skips or repeats a task), or by its last change (`order=updated`:
  when it finished, else when it was accepted; what A2A's ListTasks requires). Ties go by id.
- Times are whole microseconds, as the records show them (`acceptedAt`, `finishedAt` in
  RFC 3339 with six decimals), so a position read from a shown record is the member's own.
- Pages: a page token is the position of the last task shown (order, time, id), opaque to
  the caller. Each member answers the tasks after that position, so the pages of an Agent's
  members merge into one list by a k-way merge, whatever the members hold: a member's page of
  `pageSize` tasks holds every task of the merged page that it holds.
"""

from __future__ import annotations

import base64
import binascii
import heapq
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from foundation_common.tasks import TASK_ID

ORDERS = ("accepted", "updated")
STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")
DEFAULT_PAGE = 50
MAX_PAGE = 500
MAX_TOKEN = 512  # characters of a page token read: it holds a time and a task id
MAX_VALUE = 256  # characters of a filter's value (a context is at most 256 too)
# The query parameters a listing takes; anything else is refused, naming it.
PARAMETERS = frozenset(
    {"status", "action", "context", "sender", "since", "until", "updatedSince", "order"}
    | {"pageSize", "pageToken"}
)

Record = Mapping[str, Any]


class BadQuery(ValueError):
    """A listing's parameter that cannot be taken; the message names it and says what fits."""


@dataclass(frozen=True)
class Cursor:
    """Where a page ended: the last task's time (in its order) and id."""

    order: str
    at: int  # microseconds since the epoch
    id: str

    def token(self) -> str:
        raw = json.dumps([self.order, self.at, self.id], separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def parse(cls, token: str, order: str) -> Cursor:
        problem = BadQuery(
            f"pageToken {token[:40]!r} is not a token a listing of these tasks gave; "
            "start again without it"
        )
        if len(token) > MAX_TOKEN:
            raise problem
        try:
            order_, at, task_id = json.loads(
                base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
            )
        except (ValueError, TypeError, binascii.Error):
            raise problem from None
        if (
            order_ != order
            or not isinstance(at, int)
            or isinstance(at, bool)
            or not isinstance(task_id, str)
            or not TASK_ID.fullmatch(task_id)
        ):
            raise problem
        return cls(order, at, task_id)


@dataclass(frozen=True)
class Query:
    """What a listing asks for. Times are seconds since the epoch; `sender` None is anyone's."""

    status: frozenset[str] = frozenset()
    action: str = ""
    context: str = ""
    sender: str | None = None
    since: float | None = None  # accepted at or after
    until: float | None = None  # accepted before
    updated_since: float | None = None  # last changed at or after (A2A's statusTimestampAfter)
    order: str = "accepted"
    page_size: int = DEFAULT_PAGE
    after: Cursor | None = None

    @classmethod
    def of(cls, params: Mapping[str, str], max_page: int = MAX_PAGE) -> Query:
        """The query of a listing's URL parameters; BadQuery naming the first that does not fit."""
        unknown = sorted(set(params) - PARAMETERS)
        if unknown:
            raise BadQuery(
                f"unknown query parameters {', '.join(unknown)}; a listing takes "
                f"{', '.join(sorted(PARAMETERS))}"
            )
        for name, value in params.items():
            if len(value) > MAX_VALUE and name != "pageToken":
                raise BadQuery(f"{name} is over {MAX_VALUE} characters")
        named = params["status"].split(",") if "status" in params else []
        if "" in named:
            raise BadQuery(
                f"status {params['status']!r} names an empty status; use one or more of "
                f"{', '.join(STATUSES)}, separated by commas"
            )
        statuses = frozenset(named)
        wrong = sorted(statuses - set(STATUSES))
        if wrong:
            raise BadQuery(
                f"status {', '.join(wrong)} is not a task status; use one or more of "
                f"{', '.join(STATUSES)}, separated by commas"
            )
        order = params.get("order", "accepted")
        if order not in ORDERS:
            raise BadQuery(f"order {order!r}: use accepted (the default) or updated")
        size = params.get("pageSize", str(DEFAULT_PAGE))
        if not size.isdigit() or not 1 <= int(size) <= max_page:
            raise BadQuery(f"pageSize {size!r}: a whole number from 1 to {max_page}")
        token = params.get("pageToken", "")
        return cls(
            status=statuses,
            action=params.get("action", ""),
            context=params.get("context", ""),
            sender=params.get("sender") or None,
            since=_time("since", params.get("since")),
            until=_time("until", params.get("until")),
            updated_since=_time("updatedSince", params.get("updatedSince")),
            order=order,
            page_size=int(size),
            after=Cursor.parse(token, order) if token else None,
        )

    def params(self) -> dict[str, str]:
        """This query as URL parameters (what `of` reads back): to ask a member for it."""
        out: dict[str, str] = {"order": self.order, "pageSize": str(self.page_size)}
        if self.status:
            out["status"] = ",".join(sorted(self.status))
        for name, value in (("action", self.action), ("context", self.context)):
            if value:
                out[name] = value
        if self.sender is not None:
            out["sender"] = self.sender
        for name, when in (
            ("since", self.since),
            ("until", self.until),
            ("updatedSince", self.updated_since),
        ):
            if when is not None:
                out[name] = rfc3339(when)
        if self.after is not None:
            out["pageToken"] = self.after.token()
        return out

    def own(self, user: str) -> Query:
        """This query narrowed to the tasks `user` sent (for a caller who may read no one
        else's): a sender filter naming someone else finds nothing."""
        if self.sender is not None and self.sender != user:
            return replace(self, sender="\x00nobody")
        return replace(self, sender=user)

    def key(self, record: Record) -> tuple[int, str]:
        """Where a stored record stands in this query's order (larger: newer, listed first)."""
        at = updated(record) if self.order == "updated" else record.get("acceptedAt") or 0.0
        return micro(at), str(record["id"])

    def shown_key(self, task: Mapping[str, Any]) -> tuple[int, str]:
        """Where a record as the task API shows it stands (the same as its stored record's)."""
        stamp = task.get("acceptedAt")
        if self.order == "updated":
            stamp = task.get("finishedAt") or stamp
        return (parse_micro(stamp) if stamp else 0), str(task["id"])

    def matches(self, record: Record) -> bool:
        if self.status and record.get("status") not in self.status:
            return False
        if self.action and record.get("action") != self.action:
            return False
        if self.context and record.get("context") != self.context:
            return False
        if self.sender is not None and record.get("sender") != self.sender:
            return False
        accepted = record.get("acceptedAt") or 0.0
        if self.since is not None and accepted < self.since:
            return False
        if self.until is not None and accepted >= self.until:
            return False
        if self.updated_since is not None and updated(record) < self.updated_since:
            return False
        return True


def updated(record: Record) -> float:
    """When a record last changed: when it finished, else when it was accepted."""
    return float(record.get("finishedAt") or record.get("acceptedAt") or 0.0)


def micro(seconds: float) -> int:
    return round(seconds * 1_000_000)


def stamp(seconds: float | None) -> str | None:
    """A stored time as records show it: RFC 3339, UTC, in whole microseconds."""
    if seconds is None:
        return None
    whole, part = divmod(micro(seconds), 1_000_000)
    return datetime.fromtimestamp(whole, UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{part:06d}Z"


def parse_micro(text: str) -> int:
    when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return int((when.replace(microsecond=0) - EPOCH).total_seconds()) * 1_000_000 + when.microsecond


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Page:
    """One member's answer (or the merged one): the tasks, newest first; how many match in all;
    how many of those come after the position asked from; and the next page's token, "" at
    the end."""

    tasks: list[dict[str, Any]]
    total: int
    remaining: int
    next_token: str

    def body(self) -> dict[str, Any]:
        return {
            "tasks": self.tasks,
            "totalSize": self.total,
            "remaining": self.remaining,
            "nextPageToken": self.next_token,
        }

    @classmethod
    def of_body(cls, body: Mapping[str, Any]) -> Page:
        tasks = body.get("tasks")
        if not isinstance(tasks, list):
            raise ValueError("the answer has no list of tasks")
        return cls(
            tasks=tasks,
            total=int(body.get("totalSize") or 0),
            remaining=int(body.get("remaining") or 0),
            next_token=str(body.get("nextPageToken") or ""),
        )


def select(records: Iterable[Record], query: Query) -> tuple[list[Record], int, int]:
    """The records of one member that a page of `query` shows, newest first; with how many
    match in all and how many come after the page's start. One pass, and a heap of the page's
    size: 10,000 records cost no sort of them all (and records given newest first, as a
    member keeps them, barely touch the heap)."""
    total = 0
    candidates: list[tuple[tuple[int, str], Record]] = []
    after = (query.after.at, query.after.id) if query.after else None
    by_update = query.order == "updated"
    everything = query == replace(Query(), order=query.order, page_size=query.page_size)
    for record in records:
        if not (everything or query.matches(record)):
            continue
        total += 1
        at = record.get("acceptedAt")
        if by_update:
            at = record.get("finishedAt") or at
        key = (round((at or 0.0) * 1_000_000), str(record["id"]))
        if after is None or key < after:
            candidates.append((key, record))
    # Keys hold the id, which is unique: two records are never compared themselves.
    page = heapq.nlargest(query.page_size, candidates)
    return [record for _, record in page], total, len(candidates)


def page_of(shown: list[dict[str, Any]], query: Query, total: int, remaining: int) -> Page:
    """A page of `shown` (records as the task API shows them, in order), with the token of its
    last task if more remain."""
    token = ""
    if remaining > len(shown) and shown:
        at, task_id = query.shown_key(shown[-1])
        token = Cursor(query.order, at, task_id).token()
    return Page(shown, total, remaining, token)


def merge(pages: Sequence[Page], query: Query, source: Sequence[str]) -> Page:
    """One list of several members' pages for the same `query`: the newest `page_size` tasks
    of all, each named with the member (`source[i]`) that holds it."""
    streams = [
        [(query.shown_key(t), name, t) for t in page.tasks]
        for page, name in zip(pages, source, strict=True)
    ]
    merged = heapq.merge(*streams, key=lambda item: item[0], reverse=True)
    shown = []
    for _, name, task in merged:
        if len(shown) == query.page_size:
            break
        shown.append({**task, "member": name})
    remaining = sum(page.remaining for page in pages)
    return page_of(shown, query, sum(page.total for page in pages), remaining)


def rfc3339(seconds: float) -> str:
    return (
        datetime.fromtimestamp(seconds, UTC)
        .isoformat(timespec="microseconds")
        .replace("+00:00", "Z")
    )


def _time(name: str, value: str | None) -> float | None:
    if value is None:
        return None
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00").replace(" ", "+"))
    except ValueError:
        raise BadQuery(
            f"{name} {value[:40]!r} is not a time: use RFC 3339, e.g. 2026-12-04T10:00:00Z"
        ) from None
    if when.tzinfo is None:
        raise BadQuery(f"{name} {value[:40]!r} needs a time zone, e.g. Z for UTC")
    return when.timestamp()
