"""One active operator among several replicas: a coordination.k8s.io Lease decides which.

The election follows client-go's `leaderelection` (kubernetes_asyncio's was a port of it, and
this replaces it so the operator need not load that client's models): a replica may take the
Lease when it has no holder, when it holds it already, or when the holder has not renewed it
for its duration *as measured on this replica's clock since it last saw the Lease change*, so
clocks need not agree; every write carries the resourceVersion it was read at, so two
replicas taking it at once conflict and one loses. Around it this module adds what an operator
needs: run the supervisor only while leading, stop it before the Lease could pass to another
replica, and on a clean shutdown hand the Lease over at once instead of making the standby
wait for it to expire.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from foundation_common.rest import ApiError, Client, Obj, Unreachable
from foundation_operator.core import metrics
from foundation_operator.core.client import path_of
from foundation_operator.settings import Settings

logger = logging.getLogger(__name__)
# A failed attempt, tried again: the API server away, slow, or refusing for now.
FAILED = (ApiError, Unreachable, asyncio.TimeoutError, OSError)


class LostLeadership(RuntimeError):
    """The Lease could not be renewed in time: another replica may be active now."""


@dataclass
class Observed:
    """The Lease as this replica last saw it change, and when (its own monotonic clock)."""

    spec: str = ""
    holder: str = ""
    duration: float = 0.0
    at: float = float("-inf")


def observe(observed: Observed, spec: Obj, now: float) -> Observed:
    """`observed` updated by a read of the Lease's spec: a change restarts its clock."""
    raw = json.dumps(spec, sort_keys=True)
    if raw == observed.spec:
        return observed
    return Observed(
        spec=raw,
        holder=spec.get("holderIdentity") or "",
        duration=float(spec.get("leaseDurationSeconds") or 0),
        at=now,
    )


def may_take(observed: Observed, identity: str, now: float) -> bool:
    """Whether `identity` may write itself into the Lease: it has no holder, it is ours, or its
    holder let it go unrenewed for its whole duration."""
    return (
        not observed.holder or observed.holder == identity or observed.at + observed.duration <= now
    )


def claimed(spec: Obj, identity: str, duration: int, stamp: str) -> Obj:
    """The Lease's spec with `identity` holding it, renewed at `stamp`."""
    ours = spec.get("holderIdentity") == identity
    return {
        "holderIdentity": identity,
        "leaseDurationSeconds": duration,
        "acquireTime": spec.get("acquireTime") if ours else stamp,
        "renewTime": stamp,
        # A new Lease starts at 0; every change of holder after counts one.
        "leaseTransitions": int(spec.get("leaseTransitions") or 0) + (0 if ours or not spec else 1),
    }


def micro_time(at: datetime | None = None) -> str:
    """A MicroTime as the API writes it."""
    return (at or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Election:
    """Acquire and renew one Lease for `identity`."""

    def __init__(
        self,
        api: Client,
        namespace: str,
        name: str,
        identity: str,
        duration: int,
        renew_deadline: float,
        retry_period: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.api = api
        self.path = path_of("Lease", namespace, name)
        self.collection = path_of("Lease", namespace)
        self.name = name
        self.identity = identity
        self.duration = duration
        self.renew_deadline = renew_deadline
        self.retry_period = retry_period
        self.clock = clock
        self.observed = Observed()

    async def try_acquire_or_renew(self) -> bool:
        """One attempt; True if this replica holds the Lease now."""
        stamp = micro_time()
        try:
            lease = await self.api.get(self.path)
        except ApiError as exc:
            if exc.status != 404:
                raise
            spec = claimed({}, self.identity, self.duration, stamp)
            body = {"metadata": {"name": self.name}, "spec": spec}
            await self.api.create(self.collection, body)
            self.observed = observe(self.observed, spec, self.clock())
            return True
        spec = lease.get("spec") or {}
        self.observed = observe(self.observed, spec, self.clock())
        if not may_take(self.observed, self.identity, self.clock()):
            return False
        mine = claimed(spec, self.identity, self.duration, stamp)
        lease["spec"] = mine
        await self.api.replace(self.path, lease)  # with the resourceVersion read: may conflict
        self.observed = observe(self.observed, mine, self.clock())
        return True

    async def _attempt(self) -> bool:
        try:
            return await asyncio.wait_for(self.try_acquire_or_renew(), self.retry_period * 2)
        except FAILED as exc:
            logger.debug("Lease %s: attempt failed: %s", self.name, exc)
            return False

    async def acquire(self) -> None:
        """Return once this replica holds the Lease."""
        while True:
            if await self._attempt():
                return
            await asyncio.sleep(self.retry_period * (1 + random.random() * 0.2))

    async def keep(self) -> None:
        """Renew every retry period; return when renewing failed for the renew deadline."""
        while True:
            deadline = self.clock() + self.renew_deadline
            while not await self._attempt():
                if self.clock() + self.retry_period / 2 >= deadline:
                    return
                await asyncio.sleep(self.retry_period / 2)
            await asyncio.sleep(self.retry_period)

    async def release(self) -> bool:
        """Give the Lease up if this replica holds it; True if it did."""
        lease = await self.api.get(self.path)
        if (lease.get("spec") or {}).get("holderIdentity") != self.identity:
            return False
        await self.api.merge_patch(
            self.path,
            {
                "metadata": {"resourceVersion": lease["metadata"]["resourceVersion"]},
                "spec": {"holderIdentity": None, "leaseDurationSeconds": 1},
            },
        )
        return True


class Leadership:
    def __init__(self, api: Client, settings: Settings) -> None:
        self.identity = settings.identity
        self.name = settings.lease_name
        self.namespace = settings.lease_namespace_or_own()
        self.settings = settings
        self.leading = False
        self.election = Election(
            api,
            self.namespace,
            self.name,
            self.identity,
            settings.lease_duration_seconds,
            settings.renew_deadline_seconds,
            settings.retry_period_seconds,
        )

    async def run(self, lead: Callable[[], Awaitable[None]]) -> None:
        """Campaign until elected, then run `lead` until it returns or the Lease is lost.

        Returns when `lead` returns (a shutdown), after releasing the Lease; raises
        LostLeadership when the Lease was lost, with `lead` already cancelled.
        """
        logger.info("%s is standing for Lease %s/%s", self.identity, self.namespace, self.name)
        await self.election.acquire()
        self.leading = True
        metrics.LEADER.set(1)
        logger.info("%s leads (Lease %s/%s)", self.identity, self.namespace, self.name)
        leading = asyncio.create_task(lead(), name="leading")
        renewing = asyncio.create_task(self.election.keep(), name="lease-renewal")
        try:
            await asyncio.wait({leading, renewing}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self.leading = False
            metrics.LEADER.set(0)
            renewing.cancel()
            if not leading.done():
                leading.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewing
            results = await asyncio.gather(leading, return_exceptions=True)
        if not leading.cancelled() and not isinstance(results[0], asyncio.CancelledError):
            await self.release()
            if isinstance(results[0], BaseException):
                raise results[0]
            return
        raise LostLeadership(
            f"{self.identity} could not renew Lease {self.namespace}/{self.name} within "
            f"{self.settings.renew_deadline_seconds:.1f}s; stopping so that one replica "
            "alone is active"
        )

    async def release(self) -> None:
        """Give the Lease up if this replica holds it, so a standby takes over at once."""
        try:
            if await self.election.release():
                logger.info("%s released Lease %s/%s", self.identity, self.namespace, self.name)
        except FAILED as exc:
            # A standby then takes over when the Lease expires instead.
            logger.warning("could not release Lease %s/%s: %s", self.namespace, self.name, exc)
