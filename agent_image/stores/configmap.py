"""The ConfigMap store: the whole document in the member's ConfigMap `<agent>-<i>-state`.

Small state only: Kubernetes limits a ConfigMap's data to 1 MiB, and every commit rewrites it.
Writes are replaces carrying the resourceVersion last read or written (optimistic concurrency):
a conflict means another writer, which is reported and never overwritten.
"""

from __future__ import annotations

import json
from typing import Any

from foundation_agent.stores import (
    Commit,
    Record,
    Snapshot,
    StateConflict,
    StateCorrupt,
    StateMissing,
    StateTooLarge,
    StoreError,
    StoreUnavailable,
)
from foundation_common.rest import ApiError, Client, Unreachable

STATE_KEY = "state.json"
TASKS_KEY = "tasks.json"
LIMIT = 1024 * 1024  # bytes of data, keys included (Kubernetes' ConfigMap limit)


def data_size(data: dict[str, str]) -> int:
    return sum(len(k.encode()) + len(v.encode()) for k, v in data.items())


def encode_state(version: int, saved_at: float, state: str) -> str:
    head = json.dumps({"version": version, "savedAt": saved_at}, separators=(",", ":"))
    # The state is spliced in as the JSON text the runtime validated, not re-encoded.
    return head[:-1] + ',"state":' + state + "}"


def encode(version: int, saved_at: float, state: str, tasks: dict[str, Record]) -> dict[str, str]:
    return {
        STATE_KEY: encode_state(version, saved_at, state),
        TASKS_KEY: json.dumps(tasks, separators=(",", ":"), sort_keys=True),
    }


def tasks_bytes(data: dict[str, str]) -> int:
    return len(TASKS_KEY.encode()) + len((data.get(TASKS_KEY) or "{}").encode())


def decode(name: str, data: dict[str, str], kind: str = "ConfigMap") -> Snapshot | None:
    """The document in a ConfigMap's (or Secret's) data; None when it holds none yet."""
    if not data.get(STATE_KEY):
        return None
    try:
        head = json.loads(data[STATE_KEY])
        tasks = json.loads(data.get(TASKS_KEY) or "{}")
        version = int(head["version"])
        state = head["state"]
        if not isinstance(tasks, dict) or not all(isinstance(r, dict) for r in tasks.values()):
            raise ValueError(f"{TASKS_KEY} must be an object of task records")
    except (ValueError, KeyError, TypeError) as exc:
        raise StateCorrupt(
            f"{kind} {name} does not hold a readable state ({exc}); repair it, or remove its"
            f" data to start from the initial state"
        ) from None
    return Snapshot(version, state, tasks, head.get("savedAt"), data_size(data))


def unavailable_or_forbidden(exc: ApiError, doing: str) -> StoreError:
    if exc.status in (401, 403):
        # Retrying will not help: the member's account lacks the permission.
        return StoreError(f"{doing}: the member's account is not allowed ({exc.message[:200]})")
    return StoreUnavailable(f"{doing}: {exc.status} {exc.reason}")


class ConfigMapStore:
    kind = "ConfigMap"
    max_bytes = LIMIT

    def __init__(self, api: Client, namespace: str, name: str) -> None:
        self.api = api
        self.path = f"/api/v1/namespaces/{namespace}/configmaps/{name}"
        self.namespace = namespace
        self.key = name
        self._resource_version = ""
        self._state = "null"
        self._tasks: dict[str, Record] = {}
        self._tasks_bytes = tasks_bytes({})  # what the records take in the stored data

    async def _call(self, method: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        """One request on the object (ApiError on error statuses); an unreachable API is
        StoreUnavailable."""
        try:
            if method == "GET":
                return await self.api.get(self.path)
            return await self.api.merge_patch(self.path, body or {})
        except (Unreachable, OSError) as exc:
            raise StoreUnavailable(f"the API server did not answer: {exc}") from None

    async def load(self) -> Snapshot | None:
        try:
            found = await self._call("GET")
        except ApiError as exc:
            if exc.status == 404:
                raise StateMissing(
                    f"{self.kind} {self.namespace}/{self.key} does not exist; the operator creates"
                    " it with the member"
                ) from None
            raise unavailable_or_forbidden(exc, f"reading {self.kind} {self.key}") from None
        self._resource_version = found["metadata"]["resourceVersion"]
        snapshot = decode(f"{self.namespace}/{self.key}", found.get("data") or {}, self.kind)
        if snapshot is not None:
            self._state = json.dumps(snapshot.state, separators=(",", ":"))
            self._tasks = dict(snapshot.tasks)
            self._tasks_bytes = tasks_bytes(found.get("data") or {})
        return snapshot

    def size_with(self, state: str) -> int:
        """The data size if the state became `state` with the records as they are."""
        # Per task, so the records are not encoded again: their size is kept from the last write.
        head = len(STATE_KEY.encode()) + len(encode_state(0, 0.0, state).encode())
        return head + self._tasks_bytes + 64

    async def commit(self, commit: Commit) -> int:
        state = commit.state if commit.state is not None else self._state
        dropped = set(commit.drop)
        tasks = {k: v for k, v in self._tasks.items() if k not in dropped}
        tasks.update(commit.put)
        data = encode(commit.version, commit.saved_at, state, tasks)
        size = data_size(data)
        if size > LIMIT:
            raise StateTooLarge(
                f"the state would take {size} bytes in {self.kind} {self.key}, over the"
                f" {self.kind} store's limit of {LIMIT} bytes (1 MiB); use persistence.store PVC"
                " for large state"
            )
        # A merge patch that carries the resourceVersion is refused (409) if anyone wrote since,
        # and leaves the metadata the operator owns (labels, owner references) alone.
        body = {"metadata": {"resourceVersion": self._resource_version}, "data": data}
        try:
            answer = await self._call("PATCH", body)
        except ApiError as exc:
            if exc.status == 409:
                raise StateConflict(
                    f"{self.kind} {self.namespace}/{self.key} was changed by another writer"
                    f" (version {self._resource_version} is no longer current); not overwriting"
                    " it"
                ) from None
            if exc.status == 404:
                raise StateMissing(f"{self.kind} {self.namespace}/{self.key} was deleted") from None
            if exc.status == 422:
                raise StateTooLarge(f"{self.kind} {self.key} refused: {exc.message}") from None
            raise unavailable_or_forbidden(exc, f"writing {self.kind} {self.key}") from None
        self._resource_version = answer["metadata"]["resourceVersion"]
        self._state, self._tasks = state, tasks
        self._tasks_bytes = tasks_bytes(data)
        return size

    async def close(self) -> None:
        return None
