"""The sidecar's circuit breaker and rate limiter, on a clock the tests move."""

from __future__ import annotations

import pytest

from foundation_agent.sidecar.breaker import Breaker, BreakerConfig, Permit, Refusal, State
from foundation_agent.sidecar.limiter import TokenBucket


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def breaker(clock: Clock, chance: float = 0.0, **config: object) -> tuple[Breaker, list]:
    moves: list[tuple[State, State]] = []
    made = Breaker(
        "llm",
        BreakerConfig(**config),
        clock=clock,
        chance=lambda: chance,
        on_transition=lambda name, a, b: moves.append((a, b)),
    )
    return made, moves


def fail(b: Breaker, times: int = 1) -> None:
    for _ in range(times):
        permit = b.allow()
        assert isinstance(permit, Permit)
        b.record(permit, ok=False)


def test_consecutive_failures_open_it_and_a_success_resets_the_count() -> None:
    clock = Clock()
    b, moves = breaker(clock, failure_threshold=3)
    fail(b, 2)
    b.record(b.allow(), ok=True)
    fail(b, 2)
    assert b.state is State.CLOSED
    fail(b)
    assert b.state is State.OPEN and moves == [(State.CLOSED, State.OPEN)]
    refused = b.allow()
    assert isinstance(refused, Refusal) and refused.retry_after == pytest.approx(5.0)


def test_failure_ratio_over_the_window_needs_minimum_requests() -> None:
    clock = Clock()
    b, _ = breaker(
        clock, failure_threshold=None, failure_ratio=0.5, window_seconds=10, minimum_requests=10
    )
    for i in range(9):
        b.record(b.allow(), ok=i % 2 == 0)  # 4 failures of 9: under the minimum
    assert b.state is State.CLOSED
    clock.now += 11  # the window forgets them
    for _ in range(6):
        b.record(b.allow(), ok=True)
    fail(b, 4)
    assert b.state is State.CLOSED  # 4 of 10 failed
    fail(b)
    assert b.state is State.CLOSED  # 5 of 11
    fail(b)
    assert b.state is State.OPEN  # 6 of 12: half


def test_open_then_half_open_probes_are_limited_then_recovery_ramps() -> None:
    clock = Clock()
    b, moves = breaker(
        clock, failure_threshold=1, half_open_max_calls=2, open_seconds=5, recovery_seconds=10
    )
    fail(b)
    clock.now += 5
    first, second, third = b.allow(), b.allow(), b.allow()
    assert b.state is State.HALF_OPEN
    assert isinstance(first, Permit) and first.probe and isinstance(second, Permit)
    assert isinstance(third, Refusal) and third.state is State.HALF_OPEN
    b.record(first, ok=True)
    assert b.state is State.HALF_OPEN
    b.record(second, ok=True)
    assert b.state is State.RECOVERING
    assert b.share() == pytest.approx(1 / 3)
    clock.now += 5
    assert b.share() == pytest.approx(1 / 3 + 2 / 3 * 0.5)
    clock.now += 5
    assert isinstance(b.allow(), Permit) and b.state is State.CLOSED
    assert moves == [
        (State.CLOSED, State.OPEN),
        (State.OPEN, State.HALF_OPEN),
        (State.HALF_OPEN, State.RECOVERING),
        (State.RECOVERING, State.CLOSED),
    ]
    assert b.trips == 0


def test_recovery_lets_through_its_share_of_calls() -> None:
    clock = Clock()
    b, _ = breaker(clock, chance=0.6, failure_threshold=1, recovery_seconds=10)
    fail(b)
    clock.now += 5
    b.record(b.allow(), ok=True)
    assert b.state is State.RECOVERING  # share 0.5 now: a draw of 0.6 is refused
    refused = b.allow()
    assert isinstance(refused, Refusal) and refused.state is State.RECOVERING
    clock.now += 3  # share 0.65
    assert isinstance(b.allow(), Permit)


def test_a_failed_probe_reopens_for_longer_up_to_the_cap() -> None:
    clock = Clock()
    b, _ = breaker(clock, failure_threshold=1, open_seconds=5, max_open_seconds=12)
    fail(b)
    opened = []
    for _ in range(3):
        opened.append(b.open_for)
        clock.now += b.open_for
        probe = b.allow()
        assert isinstance(probe, Permit) and probe.probe
        b.record(probe, ok=False)
    assert opened == [5, 10, 12]
    assert b.state is State.OPEN and b.open_for == 12


def test_outcomes_from_before_a_transition_are_ignored() -> None:
    clock = Clock()
    b, _ = breaker(clock, failure_threshold=2)
    slow = b.allow()
    fail(b, 2)
    assert b.state is State.OPEN
    clock.now += 5
    probe = b.allow()
    b.record(slow, ok=False)  # a call from the closed phase: not a failed probe
    assert b.state is State.HALF_OPEN
    b.record(probe, ok=True)
    assert b.state is State.RECOVERING


def test_a_breaker_needs_a_way_to_trip() -> None:
    with pytest.raises(ValueError, match="failure_threshold, failure_ratio"):
        BreakerConfig(failure_threshold=None, failure_ratio=None)


def test_token_bucket_allows_the_burst_then_the_rate_with_bounded_waits() -> None:
    clock = Clock()
    bucket = TokenBucket(rate=10, burst=3, clock=clock)
    assert [bucket.reserve().allowed for _ in range(3)] == [True, True, True]
    refused = bucket.reserve()
    assert not refused.allowed and refused.wait == pytest.approx(0.1)
    waited = bucket.reserve(max_wait=0.25)
    assert waited.allowed and waited.wait == pytest.approx(0.1)
    queued = bucket.reserve(max_wait=0.25)
    assert queued.allowed and queued.wait == pytest.approx(0.2)  # behind the first waiter
    assert not bucket.reserve(max_wait=0.25).allowed
    bucket.release()
    clock.now += 10
    assert [bucket.reserve().allowed for _ in range(4)] == [True, True, True, False]


def test_token_bucket_holds_its_rate_over_time() -> None:
    clock = Clock()
    bucket = TokenBucket(rate=50, burst=5, clock=clock)
    allowed = 0
    for _ in range(10_000):  # a call every millisecond for 10 s
        clock.now += 0.001
        allowed += bucket.reserve().allowed
    assert 500 <= allowed <= 505  # rate x seconds, plus the burst


def test_the_default_burst_is_a_second_of_calls_and_holds_the_rate_under_jitter() -> None:
    from foundation_common.sidecar import RateLimit

    assert RateLimit(requests_per_second=20).tokens == 20
    assert RateLimit(requests_per_second=0.5).tokens == 1
    assert RateLimit(requests_per_second=20, burst=3).tokens == 3
    # Calls every 7 ms for 10 s, as a busy agent makes them: a burst of 1 loses the jitter
    # between each token and the call that takes it; a second's worth does not.
    for burst, low, high in ((1, 160, 195), (20, 215, 221)):
        clock = Clock()
        bucket = TokenBucket(rate=20, burst=burst, clock=clock)
        allowed = 0
        for _ in range(int(10 / 0.007)):
            allowed += bucket.reserve().allowed
            clock.now += 0.007
        assert low <= allowed <= high, (burst, allowed)
