"""One active operator among several replicas: a coordination.k8s.io Lease decides which.

The election itself is kubernetes_asyncio's (a port of client-go's: expiry judged by when this
replica last saw the Lease change, so clocks need not agree; writes guarded by resourceVersion).
Around it this module adds what an operator needs: run the supervisor only while leading, stop
it before the Lease could pass to another replica, and on a clean shutdown hand the Lease over at
once instead of making the standby wait for it to expire.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable

import aiohttp
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException
from kubernetes_asyncio.leaderelection import electionconfig, leaderelection
from kubernetes_asyncio.leaderelection.resourcelock.leaselock import LeaseLock

from foundation_common.kube import (  # the Lease is not counted with the supervisor's requests
    MERGE,
    call,
)
from foundation_operator import metrics
from foundation_operator.settings import Settings

logger = logging.getLogger(__name__)
UNREACHABLE = (aiohttp.ClientError, asyncio.TimeoutError, OSError)

# The election logs every failed renewal with a traceback; its outcome is logged here instead.
logging.getLogger("kubernetes_asyncio.leaderelection").setLevel(logging.CRITICAL)


class LostLeadership(RuntimeError):
    """The Lease could not be renewed in time: another replica may be active now."""


class _Lock(LeaseLock):
    """The Lease lock, with an unreachable API server counted as a failed attempt (retried)
    rather than an exception that ends the election."""

    async def get(self, name: str, namespace: str):  # type: ignore[no-untyped-def]
        try:
            return await super().get(name, namespace)
        except UNREACHABLE as exc:
            error = ApiException(status=0, reason=f"API server unreachable: {exc}")
            error.body = json.dumps({"code": 0})
            return False, error

    async def create(self, name, namespace, election_record):  # type: ignore[no-untyped-def]
        try:
            return await super().create(name, namespace, election_record)
        except UNREACHABLE:
            return False

    async def update(self, name, namespace, updated_record):  # type: ignore[no-untyped-def]
        try:
            return await super().update(name, namespace, updated_record)
        except UNREACHABLE:
            return False


class Leadership:
    def __init__(self, api: client.ApiClient, settings: Settings) -> None:
        self.api = api
        self.identity = settings.identity
        self.name = settings.lease_name
        self.namespace = settings.lease_namespace_or_own()
        self.settings = settings
        self.leading = False

    async def run(self, lead: Callable[[], Awaitable[None]]) -> None:
        """Campaign until elected, then run `lead` until it returns or the Lease is lost.

        Returns when `lead` returns (a shutdown), after releasing the Lease; raises
        LostLeadership when the Lease was lost, with `lead` already cancelled.
        """
        done = asyncio.Event()
        lost = asyncio.Event()
        outcome: list[BaseException] = []

        async def leading() -> None:
            self.leading = True
            metrics.LEADER.set(1)
            logger.info("%s leads (Lease %s/%s)", self.identity, self.namespace, self.name)
            try:
                await lead()
                done.set()
            except asyncio.CancelledError:
                raise  # the election cancels us when the Lease is lost: stopped_leading follows
            except BaseException as exc:
                outcome.append(exc)
                done.set()
            finally:
                self.leading = False
                metrics.LEADER.set(0)

        async def stopped_leading() -> None:
            lost.set()
            done.set()

        election = leaderelection.LeaderElection(
            electionconfig.Config(
                _Lock(self.name, self.namespace, self.identity, self.api),
                lease_duration=self.settings.lease_duration_seconds,
                renew_deadline=self.settings.renew_deadline_seconds,
                retry_period=self.settings.retry_period_seconds,
                onstarted_leading=leading,
                onstopped_leading=stopped_leading,
            )
        )
        logger.info("%s is standing for Lease %s/%s", self.identity, self.namespace, self.name)
        campaign = asyncio.create_task(election.run(), name="leader-election")
        waiter = asyncio.create_task(done.wait())
        try:
            await asyncio.wait({campaign, waiter}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
            campaign.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await campaign
        if not done.is_set() and not campaign.cancelled() and campaign.exception():
            raise campaign.exception()  # type: ignore[misc]
        if lost.is_set():
            raise LostLeadership(
                f"{self.identity} could not renew Lease {self.namespace}/{self.name} within "
                f"{self.settings.renew_deadline_seconds:.1f}s; stopping so that one replica "
                "alone is active"
            )
        await self.release()
        if outcome:
            raise outcome[0]

    async def release(self) -> None:
        """Give the Lease up if this replica holds it, so a standby takes over at once."""
        coordination = client.CoordinationV1Api(self.api)
        try:
            lease = await call(
                coordination.read_namespaced_lease(
                    self.name, self.namespace, _preload_content=False
                )
            )
            if (lease.get("spec") or {}).get("holderIdentity") != self.identity:
                return
            await call(
                coordination.patch_namespaced_lease(
                    self.name,
                    self.namespace,
                    {
                        "metadata": {"resourceVersion": lease["metadata"]["resourceVersion"]},
                        "spec": {"holderIdentity": None, "leaseDurationSeconds": 1},
                    },
                    _content_type=MERGE,
                    _preload_content=False,
                )
            )
            logger.info("%s released Lease %s/%s", self.identity, self.namespace, self.name)
        except ApiException as exc:
            # A standby then takes over when the Lease expires instead.
            logger.warning("could not release Lease %s/%s: %s", self.namespace, self.name, exc)
