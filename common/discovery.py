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
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from foundation_common.aio import cancel_all
from foundation_common.retry import Backoff, retrying
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
        self._updated = asyncio.Event()  # set on every answer
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
        self._updated.set()

    async def until_members(self, seconds: float) -> bool:
        """Wait up to `seconds` for a ready member (a sleeping Agent waking); whether one is."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while not self.members:
            left = deadline - loop.time()
            if left <= 0:
                return False
            self._updated.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._updated.wait(), left)
        return True

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


# EndpointSlices where the API serves them: discovery.k8s.io/v1 (Kubernetes 1.21+), or v1beta1
# on the clusters before it (1.20 serves both v1beta1 slices and Endpoints). v1 Endpoints, the
# fallback, is deprecated since Kubernetes 1.33.
SLICE_APIS = ("discovery.k8s.io/v1", "discovery.k8s.io/v1beta1")
SERVICE_NAME_LABEL = "kubernetes.io/service-name"


def endpoints_of_slices(slices: Iterable[Obj]) -> Obj:
    """The EndpointSlices of one Service as the Endpoints object `ready_members` reads: each
    slice's ready addresses, with their pods, on that slice's ports. An endpoint whose `ready`
    is unset counts as ready, as the API says consumers should take it."""
    subsets = []
    for piece in slices:
        addresses = [
            {"ip": ip, "targetRef": endpoint.get("targetRef") or {}}
            for endpoint in piece.get("endpoints") or []
            if (endpoint.get("conditions") or {}).get("ready") is not False
            for ip in endpoint.get("addresses") or []
        ]
        subsets.append({"addresses": addresses, "ports": piece.get("ports") or []})
    return {"subsets": subsets}


class RestEndpoints:
    """A Service's ready members through `foundation_common.rest` (a pod's light client: no
    kubernetes_asyncio, whose models would cost every sidecar about 36 MB). From its
    EndpointSlices where the API serves them, else from its Endpoints; either way the events
    carry an Endpoints-shaped object. `api` is the client, or a function that makes it on the
    first watch (a sidecar that never calls a capability never makes one)."""

    def __init__(
        self,
        api: Any = None,
        connect: Callable[[], Any] | None = None,
        slice_api: str | None = None,
    ) -> None:
        self._api = api  # given: its owner closes it
        self._connect = connect  # or made on the first watch, and closed here
        self._made = False
        self._lock = asyncio.Lock()
        # Which API serves the slices, if the caller knows ("v1" for none: Endpoints): asked
        # of the API server otherwise, once (two requests).
        self._slices: str | None = None if slice_api in (None, "v1") else slice_api
        self._decided = slice_api is not None

    async def _client(self) -> Any:
        async with self._lock:
            if self._api is None:
                assert self._connect is not None, "RestEndpoints needs api or connect"
                self._api = self._connect()
                self._made = True
            if not self._decided:
                self._slices = await self._slice_api(self._api)
                self._decided = True
                logger.info("discovery from %s", self._slices or "v1 Endpoints")
        return self._api

    @staticmethod
    async def slice_api(api: Any) -> str | None:
        """The EndpointSlice API the API server serves (None: v1 Endpoints only)."""
        return await RestEndpoints._slice_api(api)

    @staticmethod
    async def _slice_api(api: Any) -> str | None:
        from foundation_common.rest import ApiError

        for version in SLICE_APIS:
            try:
                await api.get(f"/apis/{version}")
            except ApiError as exc:
                if exc.status == 404:
                    continue
                raise
            return version
        return None

    async def watch(self, namespace: str, service: str) -> AsyncIterator[tuple[str, Obj]]:
        api = await self._client()
        if self._slices is None:
            async for event in api.list_and_watch(
                f"/api/v1/namespaces/{namespace}/endpoints",
                {"fieldSelector": f"metadata.name={service}"},
                timeout_seconds=300,
            ):
                yield event
            return
        slices: dict[str, Obj] = {}
        async for kind, obj in api.list_and_watch(
            f"/apis/{self._slices}/namespaces/{namespace}/endpointslices",
            {"labelSelector": f"{SERVICE_NAME_LABEL}={service}"},
            timeout_seconds=300,
        ):
            if kind == "SYNC":
                slices = {item["metadata"]["name"]: item for item in obj.get("items") or []}
                yield "SYNC", {"items": [endpoints_of_slices(slices.values())]}
                continue
            if kind == "DELETED":
                slices.pop(obj["metadata"]["name"], None)
            else:
                slices[obj["metadata"]["name"]] = obj
            yield "MODIFIED", endpoints_of_slices(slices.values())

    async def client(self) -> Any:
        """The API client the watches use (a waker asks the door with it)."""
        return await self._client()

    async def close(self) -> None:
        if self._made and self._api is not None:
            await self._api.close()


# A watch nobody has asked for in this long ends (and starts again when asked for).
IDLE_WATCH_SECONDS = 600.0


class Directory:
    """Services' members by name, each kept current by its own watch once something asks."""

    def __init__(
        self,
        config: Discovery,
        namespace: str,
        source: EndpointsSource,
        observer: Observer | None = None,
        idle_seconds: float = IDLE_WATCH_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.namespace = namespace
        self.source = source
        self.observer = observer or Observer()
        self.capabilities: dict[str, Capability] = {}
        self._watches: dict[str, asyncio.Task[None]] = {}
        self._used: dict[str, float] = {}  # when each was last asked for
        self.idle_seconds = idle_seconds
        self.clock = clock
        self._swept = clock()

    def _sweep(self, now: float) -> None:
        """End the watches nobody asked for in `idle_seconds`: a name asked for once (any name
        a caller invents) costs a watch for a while, not for the life of the pod."""
        if now - self._swept < min(30.0, self.idle_seconds):
            return
        self._swept = now
        for key, used in list(self._used.items()):
            if now - used > self.idle_seconds:
                self._watches.pop(key).cancel()
                del self.capabilities[key], self._used[key]
                logger.info("stopped watching %s: not asked for in %.0fs", key, self.idle_seconds)

    async def get(
        self, name: str, wait: float, service: str | None = None, port: int | None = None
    ) -> Capability:
        """The members of capability `name` (or of `service`, if given, on `port`), watched
        from now on; waits up to `wait` s for the first listing."""
        service = service or SERVICE_PREFIX + name
        key = service if port is None else f"{service}:{port}"
        now = self.clock()
        self._sweep(now)
        self._used[key] = now
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

        async def watch() -> None:
            async for kind, obj in self.source.watch(self.namespace, service):
                if kind == "SYNC":
                    items = obj.get("items") or []
                    capability.update(items[0] if items else None)
                    backoff.reset()
                else:
                    capability.update(None if kind == "DELETED" else obj)

        def failed(exc: Exception, _pause: float) -> None:
            # The API away or refusing: say so, keep trying.
            logger.warning("%s: watching %s: %s", capability.name, service, exc)
            capability.listed.set()  # callers get "no member" instead of waiting on

        while True:
            await retrying(watch, backoff, retry_on=Exception, on_retry=failed)

    async def close(self) -> None:
        await cancel_all(self._watches.values())
        await self.source.close()
