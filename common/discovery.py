"""Discovery: the ready members behind a Service (`foundation-cap-<capability>`, or an Agent's
own), kept from a watch on its Endpoints through the API (no cluster DNS or kube-proxy
needed), with balancing and outlier detection. The sidecar uses it for calls by capability,
the Workflow runner to reach the members its steps go to.

- Balancing: round robin over the ready members; a call with an affinity key (a task id) goes
  to the member that key hashes to (rendezvous hashing), so the retries of one task reach the
  member that may already hold it while that member stays ready.
- Outlier detection: `ejectAfterFailures` failures in a row (connection errors, timeouts, the
  configured status codes) eject a member for `ejectSeconds`, doubled on each ejection in a
  row up to `maxEjectSeconds`; a success resets it. When every member is ejected, all are used
  again (as Envoy's panic threshold does): better a member that may fail than none.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from foundation_common.retry import Backoff
from foundation_common.sidecar import Discovery

logger = logging.getLogger("foundation.discovery")

Obj = dict[str, Any]
SERVICE_PREFIX = "foundation-cap-"
PORT_NAME = "http"


@dataclass
class Member:
    name: str  # the pod's name
    address: str  # host:port
    failures: int = 0
    ejections: int = 0  # in a row
    ejected_until: float = 0.0


def ready_members(endpoints: Obj | None, number: int | None = None) -> dict[str, str]:
    """Pod name -> host:port of the ready addresses of an Endpoints object: on the port of that
    `number`, else the one named http, else the first."""
    found: dict[str, str] = {}
    for subset in (endpoints or {}).get("subsets") or []:
        ports = subset.get("ports") or []
        if number is not None:
            port = next((p for p in ports if p.get("port") == number), None)
        else:
            named = (p for p in ports if p.get("name") == PORT_NAME)
            port = next(named, ports[0] if ports else None)
        if port is None:
            continue
        for address in subset.get("addresses") or []:
            name = (address.get("targetRef") or {}).get("name") or address["ip"]
            found[name] = f"{address['ip']}:{port['port']}"
    return found


def rendezvous(key: str, names: list[str]) -> str:
    """The name `key` hashes highest with: stable while that name stays among `names`."""
    return max(names, key=lambda n: hashlib.blake2b(f"{key}/{n}".encode(), digest_size=8).digest())


class Observer:
    """What discovery tells its user (the sidecar counts it in its metrics); silent here."""

    def members(self, name: str, count: int) -> None:
        pass

    def ejected(self, name: str) -> None:
        pass


class Capability:
    """The members behind one Service, as the last Endpoints said, with their outlier state.
    `name` is what callers asked for (a capability, an Agent, an upstream); `port` the number
    the members serve on (default: the Service's port named http, else its first)."""

    def __init__(
        self,
        name: str,
        config: Discovery,
        clock: Callable[[], float] = time.monotonic,
        observer: Observer | None = None,
        service: str | None = None,
        port: int | None = None,
    ) -> None:
        self.name = name
        self.service = service or SERVICE_PREFIX + name
        self.port = port
        self.config = config
        self.clock = clock
        self.observer = observer or Observer()
        self.members: dict[str, Member] = {}
        self.listed = asyncio.Event()  # set once the first answer about the Endpoints came
        self._turn = 0

    def update(self, endpoints: Obj | None) -> None:
        now_ready = ready_members(endpoints, self.port)
        for name in list(self.members):
            if name not in now_ready:
                del self.members[name]
        for name, address in now_ready.items():
            member = self.members.get(name)
            if member is None or member.address != address:
                self.members[name] = Member(name, address)
        self.observer.members(self.name, len(self.members))
        self.listed.set()

    def pick(
        self, affinity: str | None = None, avoid: frozenset[str] = frozenset()
    ) -> Member | None:
        """A member for the next attempt: not ejected and not yet tried, if there is one."""
        now = self.clock()
        untried = [m for m in self.members.values() if m.name not in avoid]
        healthy = [m for m in untried if m.ejected_until <= now]
        candidates = healthy or untried
        if not candidates:
            return None
        if affinity:
            chosen = rendezvous(affinity, [m.name for m in candidates])
            return self.members[chosen]
        candidates.sort(key=lambda m: m.name)
        self._turn += 1
        return candidates[self._turn % len(candidates)]

    def pinned(self, name: str) -> Member | None:
        return self.members.get(name)

    def record(self, member: Member, ok: bool) -> None:
        if ok:
            member.failures = 0
            if member.ejected_until <= self.clock():
                member.ejections = 0
            return
        member.failures += 1
        if member.failures >= self.config.eject_after_failures:
            member.failures = 0
            seconds = min(
                self.config.max_eject_seconds, self.config.eject_seconds * 2**member.ejections
            )
            member.ejections += 1
            member.ejected_until = self.clock() + seconds
            self.observer.ejected(self.name)
            logger.warning(
                "%s: member %s ejected for %.0fs after %d failures in a row",
                self.name,
                member.name,
                seconds,
                self.config.eject_after_failures,
            )


class EndpointsSource(Protocol):
    """Where a Directory's watches come from: `kube.list_and_watch`'s events of one Endpoints."""

    def watch(self, namespace: str, service: str) -> AsyncIterator[tuple[str, Obj]]: ...

    async def close(self) -> None: ...


class KubeEndpoints:
    """Endpoints through kubernetes_asyncio (`connect` makes the client, on the first watch)."""

    def __init__(self, connect: Callable[[], Awaitable[Any]]) -> None:
        self._connect = connect
        self._lock = asyncio.Lock()
        self._api: Any = None

    async def watch(self, namespace: str, service: str) -> AsyncIterator[tuple[str, Obj]]:
        # Imported here: the API client's models are about 36 MB, which a sidecar that never
        # calls a capability (most of them, one per member pod) should not carry.
        from kubernetes_asyncio import client

        from foundation_common.kube import list_and_watch

        async with self._lock:
            if self._api is None:
                self._api = await self._connect()
        core = client.CoreV1Api(self._api)
        async for event in list_and_watch(
            core.list_namespaced_endpoints,
            namespace,
            field_selector=f"metadata.name={service}",
            timeout_seconds=300,
        ):
            yield event

    async def close(self) -> None:
        if self._api is not None:
            await self._api.close()


class RestEndpoints:
    """Endpoints through `foundation_common.rest` (a pod's light client; its owner closes it)."""

    def __init__(self, api: Any) -> None:
        self.api = api

    def watch(self, namespace: str, service: str) -> AsyncIterator[tuple[str, Obj]]:
        return self.api.list_and_watch(
            f"/api/v1/namespaces/{namespace}/endpoints",
            {"fieldSelector": f"metadata.name={service}"},
            timeout_seconds=300,
        )

    async def close(self) -> None:
        pass


class Directory:
    """Services' members by name, each kept current by its own watch once something asks."""

    def __init__(
        self,
        config: Discovery,
        namespace: str,
        source: EndpointsSource,
        observer: Observer | None = None,
    ) -> None:
        self.config = config
        self.namespace = namespace
        self.source = source
        self.observer = observer or Observer()
        self.capabilities: dict[str, Capability] = {}
        self._watches: dict[str, asyncio.Task[None]] = {}

    async def get(
        self, name: str, wait: float, service: str | None = None, port: int | None = None
    ) -> Capability:
        """The members of capability `name` (or of `service`, if given, on `port`), watched
        from now on; waits up to `wait` s for the first listing."""
        service = service or SERVICE_PREFIX + name
        key = service if port is None else f"{service}:{port}"
        capability = self.capabilities.get(key)
        if capability is None:
            capability = self.capabilities[key] = Capability(
                name, self.config, observer=self.observer, service=service, port=port
            )
            self._watches[key] = asyncio.get_running_loop().create_task(
                self._watch(capability), name=f"watch-{key}"
            )
        if not capability.listed.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(capability.listed.wait(), wait)
        return capability

    async def _watch(self, capability: Capability) -> None:
        """List, then watch from that version; start over after any error, with back-off."""
        service = capability.service
        backoff = Backoff(initial=0.5, maximum=10.0)
        while True:
            try:
                async for kind, obj in self.source.watch(self.namespace, service):
                    if kind == "SYNC":
                        items = obj.get("items") or []
                        capability.update(items[0] if items else None)
                        backoff.reset()
                    else:
                        capability.update(None if kind == "DELETED" else obj)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the API away or refusing: say so, keep trying
                logger.warning("%s: watching %s: %s", capability.name, service, exc)
                capability.listed.set()  # callers get "no member" instead of waiting on
                await asyncio.sleep(backoff.next())

    async def close(self) -> None:
        for task in self._watches.values():
            task.cancel()
        for task in self._watches.values():
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.source.close()
