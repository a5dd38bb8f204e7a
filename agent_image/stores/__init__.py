"""Where a member's durable state lives: a ConfigMap, a SQLite file on a PVC, or nowhere.

Every store keeps one document per member: the agent's state, its version, and the task records
(queued tasks and recent completions). A `Commit` changes the state and any number of records in
one atomic write, which is what makes a task's effect and its completion inseparable.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

Record = dict[str, Any]


@dataclass(frozen=True)
class Snapshot:
    """What a store holds, as loaded at start."""

    version: int
    state: Any  # the state as JSON data; None: nothing saved yet
    tasks: dict[str, Record]
    saved_at: float | None = None
    size_bytes: int = 0


@dataclass
class Commit:
    """One atomic write: a new state (JSON text; None if unchanged) and task record changes."""

    version: int
    saved_at: float
    state: str | None = None
    put: dict[str, Record] = field(default_factory=dict)
    drop: list[str] = field(default_factory=list)


class StoreError(Exception):
    """A store problem, with a condition reason (CamelCase) and a message for the user."""

    reason = "StoreError"
    fatal = True  # the runtime cannot go on from this; retrying the same write will not help

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class StateCorrupt(StoreError):
    reason = "StateCorrupt"


class StateTooLarge(StoreError):
    reason = "StateTooLarge"


class StateConflict(StoreError):
    reason = "StateConflict"


class StateMissing(StoreError):
    reason = "StateMissing"


class StoreUnavailable(StoreError):
    """The store could not be reached; the same write may succeed later."""

    reason = "StoreUnavailable"
    fatal = False


class Store(Protocol):
    kind: str  # ConfigMap, PVC or None, as in the Agent's persistence.store
    key: str  # the ConfigMap's name or the database file's path
    max_bytes: int | None  # the largest document the store takes, if it has a limit

    async def load(self) -> Snapshot | None: ...

    def size_with(self, state: str) -> int:
        """About the stored size if the state became `state` (what `max_bytes` is held to)."""
        ...

    async def commit(self, commit: Commit) -> int:
        """Write atomically; the document's size in bytes afterwards."""
        ...

    async def close(self) -> None: ...


class MemoryStore:
    """persistence.store None: nothing survives the process (tasks are not durable)."""

    kind = "None"
    key = ""
    max_bytes = None

    async def load(self) -> Snapshot | None:
        return None

    def size_with(self, state: str) -> int:
        return len(state.encode())

    async def commit(self, commit: Commit) -> int:
        return len(commit.state or "")

    async def close(self) -> None:
        return None
