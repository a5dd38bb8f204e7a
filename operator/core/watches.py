"""Watches of the core kinds the controllers own, filtered on the server by a label selector.

kopf watches a resource whole and filters handlers' labels on the client, so every pod of the
cluster would cost the operator an event and a parse. These list-then-watch loops ask the API
server for the labelled objects only: pods of Agents and runners, and the objects an Agent
owns (for drift). One loop a kind and namespace (or one across the cluster), restarted with
back-off after errors; a relist (after 410 Gone, or an error) reports what vanished meanwhile
as DELETED, so an object deleted while the watch was down is not missed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from foundation_common.aio import cancel_all
from foundation_common.rest import Client
from foundation_common.retry import Backoff, retrying
from foundation_operator.core.client import path_of

logger = logging.getLogger(__name__)

Obj = dict[str, Any]
Observe = Callable[[str, Obj], None]  # (ADDED | MODIFIED | DELETED, object)


@dataclass(frozen=True)
class Kind:
    kind: str
    api_version: str


KINDS = {
    k.kind: k
    for k in (
        Kind("Pod", "v1"),
        Kind("Service", "v1"),
        Kind("ServiceAccount", "v1"),
        Kind("Role", "rbac.authorization.k8s.io/v1"),
        Kind("RoleBinding", "rbac.authorization.k8s.io/v1"),
        Kind("NetworkPolicy", "networking.k8s.io/v1"),
        Kind("Deployment", "apps/v1"),
    )
}


class LabelledWatch:
    """Events of `kind` objects matching `selector` in `namespaces` (empty: the cluster)."""

    def __init__(
        self,
        api: Client,
        kind: str,
        selector: str,
        namespaces: tuple[str, ...],
        observe: Observe,
    ) -> None:
        self.kind = KINDS[kind]
        self.selector = selector
        self.namespaces = namespaces
        self.observe = observe
        self.api = api
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        scopes: tuple[str | None, ...] = self.namespaces or (None,)
        self._tasks = [
            loop.create_task(self._run(ns), name=f"watch-{self.kind.kind}-{ns or 'all'}")
            for ns in scopes
        ]

    async def stop(self) -> None:
        await cancel_all(self._tasks)

    def _observe_typed(self, event: str, obj: Obj) -> None:
        self.observe(event, self._typed(obj))

    def _typed(self, obj: Obj) -> Obj:
        # List items carry neither kind nor apiVersion; the controllers' objects do.
        obj.setdefault("kind", self.kind.kind)
        obj.setdefault("apiVersion", self.kind.api_version)
        return obj

    async def _run(self, namespace: str | None) -> None:
        path = path_of(self.kind.kind, namespace)
        known: dict[tuple[str, str], Obj] = {}
        backoff = Backoff(initial=0.5, maximum=30.0)

        async def watch() -> None:
            nonlocal known
            async for event, obj in self.api.list_and_watch(
                path, {"labelSelector": self.selector}, timeout_seconds=240
            ):
                if event == "SYNC":
                    known = relisted(obj.get("items") or [], known, self._observe_typed)
                    backoff.reset()
                    continue
                key = (obj["metadata"]["namespace"], obj["metadata"]["name"])
                if event == "DELETED":
                    known.pop(key, None)
                else:
                    known[key] = identity(obj)
                self.observe(event, self._typed(obj))

        def failed(exc: Exception, _pause: float) -> None:
            # The API away or refusing: say so, keep trying.
            where = namespace or "all namespaces"
            logger.warning("watching %s (%s) in %s: %s", self.kind.kind, self.selector, where, exc)

        while True:
            await retrying(watch, backoff, retry_on=Exception, on_retry=failed)


def relisted(
    items: list[Obj], known: dict[tuple[str, str], Obj], observe: Observe
) -> dict[tuple[str, str], Obj]:
    """A (re)list: every item as ADDED, and what vanished since the last look as DELETED (with
    the identity it was last seen with: namespace, name, uid and labels). What is known now."""
    now: dict[tuple[str, str], Obj] = {}
    for item in items:
        now[(item["metadata"]["namespace"], item["metadata"]["name"])] = identity(item)
        observe("ADDED", item)
    for key in known.keys() - now.keys():
        observe("DELETED", {"metadata": dict(known[key])})
    return now


def identity(obj: Obj) -> Obj:
    """What a DELETED event synthesized after a relist needs: whose it was, and which."""
    meta = obj["metadata"]
    return {
        "namespace": meta["namespace"],
        "name": meta["name"],
        "uid": meta.get("uid"),
        "labels": meta.get("labels") or {},
    }
