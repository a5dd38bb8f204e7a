"""Owned objects: owner references, create-or-adopt, and owner lists edited safely.

Owner lists are always patched with the resourceVersion they were read at, so two controllers
(or two Agents sharing a capability Service) editing the same list at once get a conflict and
retry, instead of one dropping the other's entry.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from foundation_operator.core.client import Api, ApiError

Obj = dict[str, Any]


def owner_reference(api_version: str, kind: str, name: str, uid: str, controller: bool) -> Obj:
    return {
        "apiVersion": api_version,
        "kind": kind,
        "name": name,
        "uid": uid,
        "controller": controller,
        "blockOwnerDeletion": True,
    }


def owners_of(obj: Obj) -> list[Obj]:
    return list(obj["metadata"].get("ownerReferences") or [])


def owned_by(obj: Obj, uid: str) -> bool:
    return any(o.get("uid") == uid for o in owners_of(obj))


async def create_or_read(kube: Api, want: Obj) -> tuple[Obj, bool]:
    """(the object, whether we created it): `want` created, or what already has its name.

    Raises a 409 ApiError if it exists and vanishes before it can be read; the next pass
    decides again."""
    try:
        return await kube.create(want), True
    except ApiError as exc:
        if exc.status != 409:
            raise
    meta = want["metadata"]
    have = await kube.read(want["kind"], meta.get("namespace"), meta["name"])
    if have is None:
        raise ApiError(status=409, reason=f"{want['kind']} {meta['name']} went away")
    return have, False


async def create_if_missing(kube: Api, want: Obj) -> Obj | None:
    """`want` created, or None if an object of its name exists (the cache is behind)."""
    try:
        return await kube.create(want)
    except ApiError as exc:
        if exc.status != 409:
            raise
        return None


def field_patch(want: Obj, have: Obj, fields: Iterable[str]) -> Obj:
    """A merge patch setting each of `fields` (top-level names or dotted paths) that differs in
    `have` to its value in `want`."""
    patch: Obj = {}
    for path in fields:
        parts = path.split(".")
        wanted, held = want, have
        for part in parts:
            wanted = wanted.get(part) if isinstance(wanted, dict) else None
            held = held.get(part) if isinstance(held, dict) else None
        if held != wanted:
            node = patch
            for part in parts[:-1]:
                node = node.setdefault(part, {})
            node[parts[-1]] = wanted
    return patch


async def ensure(kube: Api, want: Obj, fields: Iterable[str] = ()) -> None:
    """Create `want`; or patch what exists where `fields` (top-level names or dotted paths)
    differ, and put back the owner references of `want` it lost (under its resourceVersion)."""
    try:
        have, created = await create_or_read(kube, want)
    except ApiError as exc:
        if exc.status == 409:
            return  # gone again at once; the next pass creates it
        raise
    if created:
        return
    meta = want["metadata"]
    patch = field_patch(want, have, fields)
    if patch:
        have = await kube.patch(want["kind"], meta["namespace"], meta["name"], patch)
    lost = [o for o in meta.get("ownerReferences") or [] if not owned_by(have, o["uid"])]
    if lost:
        await set_owners(kube, have, [*owners_of(have), *lost])


async def set_owners(kube: Api, have: Obj, owners: list[Obj]) -> Obj:
    """Replace `have`'s owner list, if it is still at the version it was read at."""
    meta = have["metadata"]
    return await kube.patch(
        have["kind"],
        meta["namespace"],
        meta["name"],
        {
            "metadata": {
                "ownerReferences": owners or None,
                "resourceVersion": meta["resourceVersion"],
            }
        },
    )


async def adopt(kube: Api, have: Obj, mine: Obj, replacing_kind: str | None = None) -> bool:
    """Add owner reference `mine` to `have` (dropping owners of `replacing_kind`, whose object
    `mine` takes over); False if it was there already."""
    if owned_by(have, mine["uid"]):
        return False
    kept = [o for o in owners_of(have) if replacing_kind is None or o.get("kind") != replacing_kind]
    await set_owners(kube, have, [*kept, mine])
    return True


async def disown(kube: Api, have: Obj, uid: str, *, delete_when_last: bool = False) -> bool:
    """Drop owner `uid` from `have`; with `delete_when_last`, the last owner deletes it (under
    the same precondition). False if `uid` was no owner.

    Raises a 409 ApiError if the object changed since it was read."""
    if not owned_by(have, uid):
        return False
    owners = [o for o in owners_of(have) if o.get("uid") != uid]
    meta = have["metadata"]
    if owners or not delete_when_last:
        await set_owners(kube, have, owners)
    elif not await kube.delete(
        have["kind"],
        meta["namespace"],
        meta["name"],
        uid=meta["uid"],
        resource_version=meta["resourceVersion"],
    ):
        raise ApiError(status=409, reason=f"{have['kind']} {meta['name']} changed")
    return True
