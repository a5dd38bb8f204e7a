"""What a session keeps: pure rules over its messages.

A session keeps at most `maxHistoryMessages` messages. Past that, the oldest **turns** go
whole — a turn is a user message and everything after it up to the next user message (the
assistant's replies, its tool calls and their results) — so no tool result is ever kept
without the call that asked for it, and the model never sees half an exchange. The newest turn
is kept whole even when it alone is longer. The system prompt is not part of the history: it
comes from the config on every call.

At most `maxSessions` sessions are kept; past that, the least recently used one goes.
"""

from __future__ import annotations

from typing import Any

Message = dict[str, Any]


def trim(messages: list[Message], limit: int) -> tuple[list[Message], int]:
    """The messages to keep, and how many were dropped from the front."""
    if len(messages) <= limit:
        return messages, 0
    starts = [i for i, m in enumerate(messages) if m.get("role") == "user"]
    for start in starts:
        if len(messages) - start <= limit:
            return messages[start:], start
    last = starts[-1] if starts else max(0, len(messages) - limit)
    return messages[last:], last


def least_recent(updated: dict[str, float], keep: int) -> list[str]:
    """The sessions to forget so that `keep` remain: the least recently used first."""
    excess = len(updated) - keep
    if excess <= 0:
        return []
    return [name for name, _ in sorted(updated.items(), key=lambda kv: (kv[1], kv[0]))[:excess]]
