"""A task as every side of the task API reads it: the runtime that keeps its record, the
runner and the CLI that send it, agents' clients through the sidecar, A2A."""

from __future__ import annotations

import re

# A task id as the task API takes it (also an A2A message id, an MCP call's _meta id).
TASK_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
# The states a task's record ends in: it changes no more.
ENDED = ("succeeded", "failed", "cancelled")
# Answers of a member (or the API server's proxy in front of it) that a later try may change.
RETRY_STATUSES = frozenset({429, 502, 503, 504})
