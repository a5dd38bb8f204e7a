"""The one back-off: how long to wait before attempt N of something that failed.

Exponential from `initial` by `factor`, optionally jittered (a factor in [0.5, 1.5), so many
clients that failed together do not come back together), never more than `maximum`. Used by the
operator's work queue (per key), the sidecar's retries and watches, the agent's client and the
runtime's state writes.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass
class Backoff:
    initial: float
    maximum: float
    factor: float = 2.0
    jitter: bool = False
    attempt: int = field(default=0, compare=False)

    def delay(self, attempt: int) -> float:
        """The pause after `attempt` failures in a row (0: the first retry)."""
        pause = self.initial * self.factor ** min(attempt, 64)
        if self.jitter:
            pause *= 0.5 + random.random()
        return min(self.maximum, pause)

    def next(self) -> float:
        """The pause before the next attempt; each call counts one failure more."""
        pause = self.delay(self.attempt)
        self.attempt += 1
        return pause

    def reset(self) -> None:
        """After a success: the next failure waits `initial` again."""
        self.attempt = 0
