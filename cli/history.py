"""`foundation tasks AGENT`: an Agent's task history across its members, as a table (`-o wide`
adds columns) or as JSON or YAML, newest first, a page at a time or all of it (`--all`)."""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import yaml

from foundation_cli.tasks import USAGE, Problem, Tasks
from foundation_common import history

OUTPUTS = ("table", "wide", "json", "yaml")
AGO = re.compile(r"(\d+)([smhd])")
UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
COLUMNS = ["ID", "ACTION", "STATUS", "MEMBER", "ACCEPTED", "DURATION", "SENDER"]
WIDE = ["ATTEMPTS", "CONTEXT", "TRACE", "ERROR"]


def add_parser(commands: Any, timeout: float) -> None:
    tasks = commands.add_parser(
        "tasks",
        help="list an Agent's tasks across its members, newest first (needs get agents/tasks)",
    )
    tasks.add_argument("agent")
    tasks.add_argument(
        "--status", help=f"one or more of {', '.join(history.STATUSES)}, comma-separated"
    )
    tasks.add_argument("--action", help="only this action's tasks")
    tasks.add_argument("--context", help="only tasks sent with this context (a chat session)")
    tasks.add_argument("--sender", help="only tasks this user sent")
    tasks.add_argument(
        "--since", help="accepted since: RFC 3339, or an age such as 90s, 10m, 2h, 1d"
    )
    tasks.add_argument("--until", help="accepted before: RFC 3339, or an age")
    tasks.add_argument(
        "--limit",
        type=int,
        default=history.DEFAULT_PAGE,
        help=f"tasks per page (default {history.DEFAULT_PAGE}, at most {history.MAX_PAGE})",
    )
    tasks.add_argument("--page-token", help="the page after the one that printed this token")
    tasks.add_argument("--all", action="store_true", help="every page, not only the first")
    tasks.add_argument("-o", "--output", choices=OUTPUTS, default="table")
    tasks.add_argument("--timeout", type=float, default=timeout, help="seconds (default 60)")


def when(value: str | None, now: datetime) -> str | None:
    """An RFC 3339 time, or an age (`10m`) before `now` as one."""
    if not value:
        return None
    found = AGO.fullmatch(value)
    if found:
        ago = timedelta(**{UNITS[found[2]]: int(found[1])})
        return (now - ago).isoformat().replace("+00:00", "Z")
    return value  # the member says what is wrong with it, naming the parameter


def query_of(args: argparse.Namespace, now: datetime | None = None) -> list[tuple[str, str]]:
    now = now or datetime.now(UTC)
    params = {
        "status": args.status,
        "action": args.action,
        "context": args.context,
        "sender": args.sender,
        "since": when(args.since, now),
        "until": when(args.until, now),
        "pageSize": str(args.limit),
        "pageToken": args.page_token,
    }
    return [(k, v) for k, v in params.items() if v]


async def run(api: Tasks, args: argparse.Namespace, deadline: float) -> None:
    query = query_of(args)
    tasks: list[dict[str, Any]] = []
    unavailable: set[str] = set()
    total, token = 0, ""
    while True:
        page = await api.listing(args.agent, query, deadline)
        tasks += page.get("tasks") or []
        unavailable.update(page.get("unavailable") or [])
        total, token = int(page.get("totalSize") or 0), str(page.get("nextPageToken") or "")
        if not (args.all and token) or time.monotonic() > deadline:
            break
        query = [(k, v) for k, v in query if k != "pageToken"] + [("pageToken", token)]
    if unavailable:
        missing = ", ".join(sorted(unavailable))
        print(f"warning: members not ready, their tasks are not listed: {missing}", file=sys.stderr)
    if args.output == "json":
        print(json.dumps({"tasks": tasks, "totalSize": total, "nextPageToken": token}, indent=2))
    elif args.output == "yaml":
        print(
            yaml.safe_dump(
                {"tasks": tasks, "totalSize": total, "nextPageToken": token}, sort_keys=False
            ),
            end="",
        )
    else:
        print(table(tasks, wide=args.output == "wide"), end="")
        if token:
            print(
                f"{len(tasks)} of {total} shown; the next page: --page-token {token} (or --all)",
                file=sys.stderr,
            )
        elif not tasks:
            print(f"No tasks found for Agent {args.agent}.", file=sys.stderr)


def table(tasks: list[dict[str, Any]], wide: bool = False) -> str:
    """kubectl's plain table: columns padded to their widest cell, three spaces apart."""
    if not tasks:
        return ""
    header = COLUMNS + (WIDE if wide else [])
    rows = [header] + [row(t, wide) for t in tasks]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    return "".join(
        "   ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() + "\n"
        for r in rows
    )


def row(task: dict[str, Any], wide: bool) -> list[str]:
    took = task.get("durationMs")
    cells = [
        str(task.get("id", "")),
        str(task.get("action", "")),
        str(task.get("status", "")),
        str(task.get("member", "")),
        short_time(task.get("acceptedAt")),
        "" if took is None else duration(float(took)),
        str(task.get("sender") or ""),
    ]
    if wide:
        error = str(task.get("error") or "").replace("\n", " ")
        cells += [
            str(task.get("attempts", "")),
            str(task.get("context") or ""),
            str(task.get("traceId") or ""),
            error[:80] + ("…" if len(error) > 80 else ""),
        ]
    return cells


def short_time(stamp: str | None) -> str:
    """A record's time to the second: 2026-12-04T10:00:00Z."""
    return f"{stamp[:19]}Z" if stamp else ""


def duration(ms: float) -> str:
    if ms < 1000:
        return f"{ms:.0f}ms"
    if ms < 60_000:
        return f"{ms / 1000:.1f}s"
    return f"{int(ms // 60_000)}m{int(ms % 60_000 // 1000)}s"


def usage(limit: int) -> None:
    if not 1 <= limit <= history.MAX_PAGE:
        raise Problem(f"--limit {limit}: from 1 to {history.MAX_PAGE}", USAGE)
