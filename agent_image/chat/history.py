"""What a session keeps: pure rules over its messages.

A session keeps at most `maxHistoryMessages` messages. Past that, the oldest **turns** go
whole — a turn is a user message and everything after it up to the next user message (the
assistant's replies, its tool calls and their results) — so no tool result is ever kept
without the call that asked for it, and the model never sees half an exchange. The newest turn
is kept whole even when it alone is longer. The system prompt is not part of the history: it
comes from the config on every call.

A session also keeps at most `maxHistoryBytes` of messages (as JSON), dropping whole turns the
same way. At most `maxSessions` sessions are kept, and at most `maxStateBytes` of them in all;
past either, the least recently used ones go.
"""

from __future__ import annotations

import json
from typing import Any

Message = dict[str, Any]


def size(messages: list[Message]) -> int:
    """What messages take as JSON, as the state stores them."""
    return len(json.dumps(messages, separators=(",", ":"), ensure_ascii=False).encode())


def trim(
    messages: list[Message], limit: int, max_bytes: int | None = None
) -> tuple[list[Message], int]:
    """The messages to keep (at most `limit`, and `max_bytes` as JSON), and how many were
    dropped from the front."""
    kept, dropped = _trim_count(messages, limit)
    if max_bytes is None or size(kept) <= max_bytes:
        return kept, dropped
    starts = [i for i, m in enumerate(kept) if m.get("role") == "user" and i > 0]
    for start in starts:
        if size(kept[start:]) <= max_bytes:
            return kept[start:], dropped + start
    last = starts[-1] if starts else 0  # the newest turn is kept whole, however large
    return kept[last:], dropped + last


def _trim_count(messages: list[Message], limit: int) -> tuple[list[Message], int]:
    if len(messages) <= limit:
        return messages, 0
    starts = [i for i, m in enumerate(messages) if m.get("role") == "user"]
    for start in starts:
        if len(messages) - start <= limit:
            return messages[start:], start
    last = starts[-1] if starts else max(0, len(messages) - limit)
    return messages[last:], last


def over_bytes(sessions: dict[str, tuple[float, int]], max_bytes: int, keep: str) -> list[str]:
    """The sessions to forget, least recently used first, so that those left take at most
    `max_bytes` ({name: (updated, bytes)}); never `keep`, the one just used."""
    total = sum(b for _, b in sessions.values())
    out = []
    for name, (_, taken) in sorted(sessions.items(), key=lambda kv: (kv[1][0], kv[0])):
        if total <= max_bytes:
            break
        if name == keep:
            continue
        out.append(name)
        total -= taken
    return out


def least_recent(updated: dict[str, float], keep: int) -> list[str]:
    """The sessions to forget so that `keep` remain: the least recently used first."""
    excess = len(updated) - keep
    if excess <= 0:
        return []
    return [name for name, _ in sorted(updated.items(), key=lambda kv: (kv[1], kv[0]))[:excess]]
