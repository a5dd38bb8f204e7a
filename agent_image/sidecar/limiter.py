"""Token buckets, decided without waiting: a call learns at once whether it may go now, after a
short wait (at most `max_wait`), or not at all.

`reserve()` is GCRA (the generic cell rate algorithm): the bucket is one timestamp, the
"theoretical arrival time" of the next call, so a decision is a few float operations. A call
that may go after a wait has its token reserved at once: the caller sleeps, nobody else decides
for it, and later calls queue behind it in time. `limits` (windows, storage backends) and
`aiolimiter` (a blocking `acquire()`) both decide differently, hence these twenty lines.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Decision:
    allowed: bool
    wait: float = 0.0  # seconds to sleep before the call (allowed), or until a retry (refused)


class TokenBucket:
    def __init__(
        self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.interval = 1.0 / rate
        self.tolerance = (burst - 1) * self.interval
        self.clock = clock
        self.tat = clock()  # theoretical arrival time of the next call

    def reserve(self, max_wait: float = 0.0) -> Decision:
        now = self.clock()
        tat = max(self.tat, now)
        earliest = tat - self.tolerance  # when this call conforms
        wait = max(0.0, earliest - now)
        if wait > max_wait:
            return Decision(False, wait)
        self.tat = tat + self.interval
        return Decision(True, wait)

    def release(self) -> None:
        """Give back a reservation that was not used (e.g. refused by another limiter)."""
        self.tat -= self.interval
