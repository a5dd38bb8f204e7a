"""The one retry loop: what it retries, how long it pauses, when it gives up."""

from __future__ import annotations

import pytest

from foundation_common.retry import Again, Backoff, retry_after, retrying


class Clock:
    """A fake monotonic clock whose sleeps move it on, and which keeps the pauses."""

    def __init__(self) -> None:
        self.now = 100.0
        self.pauses: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.pauses.append(seconds)
        self.now += seconds


def failing(times: int, exc: Exception, result: str = "done"):
    calls = []

    async def attempt() -> str:
        calls.append(1)
        if len(calls) <= times:
            raise exc
        return result

    return attempt, calls


async def test_retries_what_it_is_told_with_the_backoffs_pauses_then_resets() -> None:
    clock, backoff = Clock(), Backoff(initial=0.1, maximum=0.3)
    attempt, calls = failing(3, Again("503"))
    assert await retrying(attempt, backoff, sleep=clock.sleep, clock=clock) == "done"
    assert len(calls) == 4
    assert clock.pauses == pytest.approx([0.1, 0.2, 0.3])
    assert backoff.attempt == 0  # a success resets it


async def test_a_server_asked_pause_replaces_the_backoff() -> None:
    clock, backoff = Clock(), Backoff(initial=0.1, maximum=5.0)
    attempt, _ = failing(1, Again("429", after=2.0))
    await retrying(attempt, backoff, sleep=clock.sleep, clock=clock)
    assert clock.pauses == [2.0]
    assert retry_after({"Retry-After": "3"}) == 3.0
    assert retry_after({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}) is None
    assert retry_after({}) is None


async def test_other_errors_are_raised_at_once() -> None:
    clock = Clock()
    attempt, calls = failing(5, ValueError("a bug"))
    with pytest.raises(ValueError, match="a bug"):
        await retrying(attempt, Backoff(0.1, 1.0), sleep=clock.sleep, clock=clock)
    assert len(calls) == 1 and clock.pauses == []


async def test_a_predicate_decides() -> None:
    clock = Clock()
    attempt, calls = failing(2, OSError("refused"))
    retry = lambda exc: isinstance(exc, OSError) and "refused" in str(exc)  # noqa: E731
    await retrying(attempt, Backoff(0.1, 1.0), retry_on=retry, sleep=clock.sleep, clock=clock)
    assert len(calls) == 3


async def test_the_deadline_cuts_the_last_pause_then_raises_the_last_failure() -> None:
    clock = Clock()
    attempt, calls = failing(100, Again("still 503"))
    with pytest.raises(Again, match="still 503"):
        await retrying(
            attempt, Backoff(1.0, 1.0), deadline=clock.now + 2.5, sleep=clock.sleep, clock=clock
        )
    assert clock.pauses == pytest.approx([1.0, 1.0, 0.5])
    assert len(calls) == 4


async def test_each_retried_failure_is_seen() -> None:
    clock, seen = Clock(), []
    attempt, _ = failing(2, Again("x"))
    await retrying(
        attempt,
        Backoff(0.1, 1.0),
        on_retry=lambda exc, pause: seen.append((str(exc), pause)),
        sleep=clock.sleep,
        clock=clock,
    )
    assert seen == [("x", pytest.approx(0.1)), ("x", pytest.approx(0.2))]
