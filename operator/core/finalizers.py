"""A controller's finalizer: on before it makes anything that must be released, off once
released. Both are metadata patches of the object itself."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

Obj = dict[str, Any]
Patch = Callable[[Obj], Awaitable[Obj]]  # a merge patch of the object -> its answer


def has(body: Obj, finalizer: str) -> bool:
    return finalizer in (body["metadata"].get("finalizers") or [])


async def add(body: Obj, finalizer: str, patch: Patch) -> Obj | None:
    """The patch's answer, or None if the finalizer was there."""
    if has(body, finalizer):
        return None
    finalizers = body["metadata"].get("finalizers") or []
    return await patch({"metadata": {"finalizers": [*finalizers, finalizer]}})


async def release(body: Obj, finalizer: str, patch: Patch) -> Obj | None:
    """The patch's answer, or None if the finalizer was not there."""
    if not has(body, finalizer):
        return None
    rest = [f for f in body["metadata"]["finalizers"] if f != finalizer]
    return await patch({"metadata": {"finalizers": rest or None}})
