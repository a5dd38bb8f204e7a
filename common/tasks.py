"""A task as every side of the task API reads it: the runtime that keeps its record, the
runner and the CLI that send it, agents' clients through the sidecar, A2A."""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

# A task id as the task API takes it (also an A2A message id, an MCP call's _meta id); match
# with fullmatch: `$` alone also takes a trailing newline. The pattern is also JSON Schema's.
TASK_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
# The states a task's record ends in: it changes no more.
ENDED = ("succeeded", "failed", "cancelled")
# Answers of a member (or the API server's proxy in front of it) that a later try may change.
RETRY_STATUSES = frozenset({429, 502, 503, 504})


def input_digest(value: Any) -> str:
    """A digest of a task's input, as canonical JSON (keys sorted, no spaces): what a task id
    is bound to besides its action, so the same id with another input is told apart."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.blake2b(text.encode(), digest_size=12).hexdigest()


def bound_id(base: str, value: Any) -> str:
    """A task id made from `base` and a digest of `value`, within the id's 128 characters:
    calls derived from one task (a chat's tool calls) that differ in their input get ids of
    their own."""
    digest = input_digest(value)[:12]
    if len(base) + 13 > 128:
        base = hashlib.blake2b(base.encode(), digest_size=16).hexdigest()
    return f"{base}.{digest}"
