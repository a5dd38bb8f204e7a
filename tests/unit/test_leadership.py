"""The Lease election's decisions (client-go's rules), on an injected clock and a fake API."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import pytest

from foundation_common.rest import ApiError
from foundation_operator.leadership import Election, Observed, claimed, may_take, observe

Obj = dict[str, Any]


def test_a_change_restarts_the_clock_and_a_reread_does_not() -> None:
    spec = {"holderIdentity": "a", "leaseDurationSeconds": 15, "renewTime": "t1"}
    first = observe(Observed(), spec, now=100.0)
    assert (first.holder, first.duration, first.at) == ("a", 15.0, 100.0)
    assert observe(first, dict(spec), now=110.0) is first  # unchanged: clock kept
    renewed = observe(first, {**spec, "renewTime": "t2"}, now=112.0)
    assert renewed.at == 112.0


@pytest.mark.parametrize(
    ("holder", "seen_at", "now", "may"),
    [
        ("", 100.0, 100.0, True),  # no holder (released)
        ("me", 100.0, 100.0, True),  # ours
        ("other", 100.0, 114.9, False),  # renewed 14.9 s ago by our clock
        ("other", 100.0, 115.0, True),  # unrenewed for its whole duration
    ],
)
def test_who_may_take_the_lease(holder: str, seen_at: float, now: float, may: bool) -> None:
    observed = Observed(spec="x", holder=holder, duration=15.0, at=seen_at)
    assert may_take(observed, "me", now) is may


def test_claiming_keeps_acquire_time_when_renewing_and_counts_transitions() -> None:
    theirs = {"holderIdentity": "other", "acquireTime": "t0", "leaseTransitions": 3}
    taken = claimed(theirs, "me", 15, "t5")
    assert taken == {
        "holderIdentity": "me",
        "leaseDurationSeconds": 15,
        "acquireTime": "t5",
        "renewTime": "t5",
        "leaseTransitions": 4,
    }
    renewed = claimed(taken, "me", 15, "t6")
    assert (renewed["acquireTime"], renewed["renewTime"], renewed["leaseTransitions"]) == (
        "t5",
        "t6",
        4,
    )


class FakeLeases:
    """One Lease with resourceVersion checks, as the API server keeps it."""

    def __init__(self) -> None:
        self.lease: Obj | None = None
        self.version = 0
        self.down = False

    def _check(self) -> None:
        if self.down:
            raise ApiError(503, reason="ServiceUnavailable")

    async def get(self, path: str) -> Obj:
        self._check()
        if self.lease is None:
            raise ApiError(404, reason="NotFound")
        return copy.deepcopy(self.lease)

    async def create(self, path: str, body: Obj) -> Obj:
        self._check()
        if self.lease is not None:
            raise ApiError(409, reason="AlreadyExists")
        self.version += 1
        self.lease = {
            **body,
            "metadata": {**body["metadata"], "resourceVersion": str(self.version)},
        }
        return copy.deepcopy(self.lease)

    async def replace(self, path: str, body: Obj) -> Obj:
        self._check()
        assert self.lease is not None
        if body["metadata"]["resourceVersion"] != self.lease["metadata"]["resourceVersion"]:
            raise ApiError(409, reason="Conflict")
        self.version += 1
        self.lease = copy.deepcopy(body)
        self.lease["metadata"]["resourceVersion"] = str(self.version)
        return copy.deepcopy(self.lease)

    async def merge_patch(self, path: str, body: Obj) -> Obj:
        assert self.lease is not None
        self.lease["spec"].update(body["spec"])
        self.version += 1
        return copy.deepcopy(self.lease)


def election(api: FakeLeases, identity: str, clock: list[float]) -> Election:
    return Election(api, "ns", "lease", identity, 15, 10.0, 2.0, clock=lambda: clock[0])  # type: ignore[arg-type]


async def test_one_of_two_replicas_leads_and_the_other_takes_over_only_after_expiry() -> None:
    api, clock = FakeLeases(), [1000.0]
    a, b = election(api, "a", clock), election(api, "b", clock)
    assert await a.try_acquire_or_renew()
    assert not await b.try_acquire_or_renew()
    clock[0] += 14.0
    assert not await b.try_acquire_or_renew()  # b first saw it at 1000: not yet expired
    clock[0] += 1.0
    assert await b.try_acquire_or_renew()  # a never renewed within 15 s by b's clock
    assert api.lease is not None and api.lease["spec"]["holderIdentity"] == "b"
    assert api.lease["spec"]["leaseTransitions"] == 1


async def test_a_renewal_restarts_the_standbys_wait() -> None:
    api, clock = FakeLeases(), [0.0]
    a, b = election(api, "a", clock), election(api, "b", clock)
    assert await a.try_acquire_or_renew()
    assert not await b.try_acquire_or_renew()
    clock[0] = 10.0
    assert await a.try_acquire_or_renew()  # renewed
    clock[0] = 16.0
    assert not await b.try_acquire_or_renew()  # b saw the change at 16: waits till 31
    clock[0] = 31.0
    assert await b.try_acquire_or_renew()


async def test_a_released_lease_is_taken_at_once() -> None:
    api, clock = FakeLeases(), [0.0]
    a, b = election(api, "a", clock), election(api, "b", clock)
    assert await a.try_acquire_or_renew()
    assert not await b.try_acquire_or_renew()
    assert await a.release()
    assert await b.try_acquire_or_renew()
    assert not await a.release()  # not ours any more: left alone


async def test_two_writers_at_once_conflict_and_one_wins() -> None:
    api, clock = FakeLeases(), [0.0]
    a, b = election(api, "a", clock), election(api, "b", clock)
    assert await a.try_acquire_or_renew()
    clock[0] = 100.0  # both may take the expired Lease; both read the same version
    lease = await api.get("")
    await api.replace("", {**lease, "spec": claimed(lease["spec"], "b", 15, "t")})
    with pytest.raises(ApiError) as conflict:
        await api.replace("", {**lease, "spec": claimed(lease["spec"], "a", 15, "t")})
    assert conflict.value.status == 409
    assert await b.try_acquire_or_renew()


async def test_keep_returns_when_renewal_fails_for_the_deadline() -> None:
    api = FakeLeases()
    a = Election(api, "ns", "lease", "a", 15, 0.3, 0.1)  # type: ignore[arg-type]
    assert await a.try_acquire_or_renew()
    api.down = True
    await asyncio.wait_for(a.keep(), timeout=5)  # returns: lost
