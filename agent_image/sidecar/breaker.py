"""A circuit breaker per upstream: closed, open, half-open, and a gradual recovery.

A non-blocking state machine: `allow()` decides at once from the breaker's own state (no request
ever waits on another request's call), `record()` takes the outcome. Time comes from a clock
the caller passes, so every transition is testable.

- Closed: calls pass. It trips (opens) after `failure_threshold` consecutive failures, or when
  at least `minimum_requests` calls in the last `window_seconds` failed at `failure_ratio` or more.
- Open: calls are refused for `open_seconds`, doubled on each trip in a row, up to
  `max_open_seconds`.
- Half-open: up to `half_open_max_calls` probe calls pass at once; all others are refused. As
  many successful probes close it; one failed probe opens it again (for longer).
- Recovering (closed again): for `recovery_seconds` the share of calls let through grows
  linearly from `1 / (half_open_max_calls + 1)` to all, so a service that just came back is not
  hit by the full load at once. A trip while recovering opens it again. Once fully recovered,
  the trip count (and so the open time) starts over.

No library we looked at does the gradual recovery (aiobreaker and purgatory go from half-open
straight to closed), so this one is ours.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from foundation_common.sidecar import CircuitBreaker


class State(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"
    RECOVERING = "recovering"


@dataclass(frozen=True)
class BreakerConfig:
    failure_threshold: int | None = 5
    failure_ratio: float | None = None
    window_seconds: float = 10.0
    minimum_requests: int = 20
    open_seconds: float = 5.0
    max_open_seconds: float = 60.0
    half_open_max_calls: int = 1
    recovery_seconds: float = 10.0

    def __post_init__(self) -> None:
        if self.failure_threshold is None and self.failure_ratio is None:
            raise ValueError("a breaker needs failure_threshold, failure_ratio or both")
        if self.failure_ratio is not None and not 0 < self.failure_ratio <= 1:
            raise ValueError("failure_ratio must be in (0, 1]")
        if self.half_open_max_calls < 1 or self.open_seconds <= 0 or self.window_seconds <= 0:
            raise ValueError("half_open_max_calls, open_seconds and window_seconds must be > 0")

    @classmethod
    def of(cls, model: CircuitBreaker) -> BreakerConfig:
        """From an upstream's `circuitBreaker` configuration."""
        return cls(
            failure_threshold=model.failure_threshold,
            failure_ratio=model.failure_ratio,
            window_seconds=model.window_seconds,
            minimum_requests=model.minimum_requests,
            open_seconds=model.open_seconds,
            max_open_seconds=max(model.open_seconds, model.max_open_seconds),
            half_open_max_calls=model.half_open_max_calls,
            recovery_seconds=model.recovery_seconds,
        )


@dataclass(frozen=True)
class Permit:
    """A call let through: its outcome counts only in the phase that let it through."""

    epoch: int
    probe: bool = False


@dataclass(frozen=True)
class Refusal:
    state: State
    retry_after: float


class Window:
    """Calls and failures over the last `seconds`, in one-second buckets."""

    def __init__(self, seconds: float) -> None:
        self.size = max(1, math.ceil(seconds))
        self.buckets: list[tuple[int, int, int]] = [(-1, 0, 0)] * self.size  # (second, n, bad)

    def add(self, now: float, failed: bool) -> None:
        second = int(now)
        slot = second % self.size
        at, calls, failures = self.buckets[slot]
        if at != second:
            calls = failures = 0
        self.buckets[slot] = (second, calls + 1, failures + (1 if failed else 0))

    def totals(self, now: float) -> tuple[int, int]:
        oldest = int(now) - self.size + 1
        calls = failures = 0
        for at, n, bad in self.buckets:
            if at >= oldest:
                calls, failures = calls + n, failures + bad
        return calls, failures

    def clear(self) -> None:
        self.buckets = [(-1, 0, 0)] * self.size


Transition = Callable[[str, State, State], None]


class Breaker:
    def __init__(
        self,
        name: str,
        config: BreakerConfig,
        clock: Callable[[], float] = time.monotonic,
        chance: Callable[[], float] = random.random,
        on_transition: Transition | None = None,
    ) -> None:
        self.name, self.config, self.clock, self.chance = name, config, clock, chance
        self.on_transition = on_transition
        self.state = State.CLOSED
        self.epoch = 0  # grows on every transition
        self.since = clock()
        self.trips = 0  # trips in a row (reset once fully recovered)
        self.open_for = 0.0
        self.consecutive = 0
        self.window = Window(config.window_seconds)
        self.probes = 0  # probe calls in flight
        self.probe_successes = 0

    # -- decisions ---------------------------------------------------------------------------

    def allow(self) -> Permit | Refusal:
        now = self.clock()
        if self.state is State.OPEN:
            if now < self.since + self.open_for:
                return Refusal(State.OPEN, self.since + self.open_for - now)
            self._move(State.HALF_OPEN, now)
        if self.state is State.HALF_OPEN:
            if self.probes >= self.config.half_open_max_calls:
                return Refusal(State.HALF_OPEN, min(1.0, self.open_for))
            self.probes += 1
            return Permit(self.epoch, probe=True)
        if self.state is State.RECOVERING:
            share = self.share(now)
            if share >= 1.0:
                self.trips = 0
                self._move(State.CLOSED, now)
            elif self.chance() >= share:
                return Refusal(State.RECOVERING, 1.0)
        return Permit(self.epoch)

    def share(self, now: float | None = None) -> float:
        """The share of calls let through now (1 outside recovery)."""
        if self.state is not State.RECOVERING:
            return 0.0 if self.state is State.OPEN else 1.0
        now = self.clock() if now is None else now
        start = 1.0 / (self.config.half_open_max_calls + 1)
        if self.config.recovery_seconds <= 0:
            return 1.0
        elapsed = (now - self.since) / self.config.recovery_seconds
        return min(1.0, start + (1.0 - start) * elapsed)

    def record(self, permit: Permit, ok: bool) -> None:
        """The outcome of a call `allow()` let through."""
        now = self.clock()
        if permit.epoch != self.epoch:
            return  # let through before the last transition: it says nothing of now
        if permit.probe:
            self.probes = max(0, self.probes - 1)
            if not ok:
                self._trip(now)
                return
            self.probe_successes += 1
            if self.probe_successes >= self.config.half_open_max_calls:
                self._move(State.RECOVERING, now)
            return
        self.window.add(now, failed=not ok)
        self.consecutive = 0 if ok else self.consecutive + 1
        if not ok and self._should_trip(now):
            self._trip(now)

    def _should_trip(self, now: float) -> bool:
        config = self.config
        if config.failure_threshold is not None and self.consecutive >= config.failure_threshold:
            return True
        if config.failure_ratio is not None:
            calls, failures = self.window.totals(now)
            return calls >= config.minimum_requests and failures >= config.failure_ratio * calls
        return False

    def _trip(self, now: float) -> None:
        self.trips += 1
        self.open_for = min(
            self.config.max_open_seconds, self.config.open_seconds * 2 ** (self.trips - 1)
        )
        self._move(State.OPEN, now)

    def _move(self, state: State, now: float) -> None:
        before = self.state
        self.state, self.since = state, now
        self.epoch += 1
        self.consecutive = 0
        self.probes = self.probe_successes = 0
        if state in (State.OPEN, State.HALF_OPEN):
            self.window.clear()
        if self.on_transition is not None and before is not state:
            self.on_transition(self.name, before, state)
