"""Kubernetes Events on the object a controller is about (`kubectl describe` shows them)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from foundation_common.status import now, stamp

logger = logging.getLogger(__name__)
COMPONENT = "foundation-operator"
Obj = dict[str, Any]


# What records an Event: the operator's `Api.create`, or a POST by the runner's light client.
Create = Callable[[Obj], Awaitable[Obj]]


def event(involved: Obj, reason: str, message: str, kind: str = "Warning") -> Obj:
    """An Event about `involved` (apiVersion, kind, name, namespace, uid)."""
    moment = stamp(now())
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{involved['name']}.", "namespace": involved["namespace"]},
        "involvedObject": involved,
        "reason": reason,
        "message": message,
        "type": kind,
        "source": {"component": COMPONENT},
        "firstTimestamp": moment,
        "lastTimestamp": moment,
        "count": 1,
    }


async def record(
    create: Create,
    involved: Obj,
    reason: str,
    message: str,
    kind: str = "Warning",
    log_fields: dict[str, str] | None = None,
) -> None:
    """Best effort: losing an Event never stops a controller."""
    try:
        await create(event(involved, reason, message, kind))
    except Exception as exc:  # any answer or none: the Event is lost, said in the log
        logger.warning(
            "could not record event %s on %s/%s: %s",
            reason,
            involved["namespace"],
            involved["name"],
            getattr(exc, "reason", None) or exc,
            extra=log_fields or {},
        )
