"""What the watches delivered: each watched object by key, and owned objects by their owner.

Watch events only update an index and say which key to reconcile; controllers read the index,
never the API, to decide. An event older than what the index holds (the watch still delivering
what came before a write of ours whose answer was cached) is dropped: taking it would make the
next pass repeat that write.
"""

from __future__ import annotations

from typing import Any

Obj = dict[str, Any]
Key = tuple[str, str]  # (namespace, name)


def slim(body: Obj, keep_spec: bool = True) -> Obj:
    """What an index keeps of an object: all but `metadata.managedFields` (the server's field
    ownership, which no controller here reads and which is the larger part of a small object)
    and, for pods the controllers only observe, all but the spec (they read metadata and
    status; what a member should be is decided from its Agent and a template hash)."""
    meta = body.get("metadata")
    if not meta or ("managedFields" not in meta and keep_spec):
        return body
    out = dict(body)
    out["metadata"] = {k: v for k, v in meta.items() if k != "managedFields"}
    if not keep_spec and "spec" in out:
        out["spec"] = {k: v for k, v in out["spec"].items() if k == "nodeName"}
    return out


def key_of(body: Obj) -> Key:
    return (body["metadata"]["namespace"], body["metadata"]["name"])


def older_than(body: Obj, cached: Obj | None) -> bool:
    """Whether `body` is an older version of the same object than `cached`.

    resourceVersions are opaque to clients, but the API server serves etcd revisions, which
    only grow; anything that does not parse as such is taken as newer.
    """
    if cached is None or cached["metadata"].get("uid") != body["metadata"].get("uid"):
        return False
    try:
        return int(body["metadata"]["resourceVersion"]) < int(cached["metadata"]["resourceVersion"])
    except (KeyError, ValueError):
        return False


class Index:
    """The newest known version of each object of one kind."""

    def __init__(self) -> None:
        self.objects: dict[Key, Obj] = {}

    def __len__(self) -> int:
        return len(self.objects)

    def get(self, key: Key) -> Obj | None:
        return self.objects.get(key)

    def observe(self, event: str, body: Obj) -> Key | None:
        """Take a watch event; the key to reconcile, or None for a stale event."""
        key = key_of(body)
        if event == "DELETED":
            self.objects.pop(key, None)
        elif older_than(body, self.objects.get(key)):
            return None
        else:
            self.objects[key] = slim(body)
        return key

    def ahead(self, answer: Obj) -> None:
        """Our own write's answer: keep it ahead of the watch, so the next pass compares with
        what we wrote (only if the object is still known and the answer is not older)."""
        key = key_of(answer)
        cached = self.objects.get(key)
        if cached is not None and not older_than(answer, cached):
            self.objects[key] = slim(answer)


class OwnedIndex:
    """Objects grouped by the owner their `label` names (the owner is in the same namespace)."""

    def __init__(self, label: str) -> None:
        self.label = label  # pods: kept without their spec (`slim`)
        self.by_owner: dict[Key, dict[str, Obj]] = {}

    def owner_of(self, body: Obj) -> Key | None:
        owner = (body["metadata"].get("labels") or {}).get(self.label)
        return (body["metadata"]["namespace"], owner) if owner else None

    def of(self, owner: Key) -> dict[str, Obj]:
        return self.by_owner.get(owner, {})

    def observe(self, event: str, body: Obj) -> Key | None:
        """Take a watch event; the owner's key to reconcile, or None if it names no owner."""
        owner = self.owner_of(body)
        if owner is None:
            return None
        members = self.by_owner.setdefault(owner, {})
        if event == "DELETED":
            members.pop(body["metadata"]["name"], None)
        else:
            members[body["metadata"]["name"]] = slim(body, keep_spec=False)
        return owner

    def prune(self, owner: Key) -> None:
        """The owner is gone: forget its group once nothing is left in it."""
        if not self.by_owner.get(owner):
            self.by_owner.pop(owner, None)
