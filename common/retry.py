"""The one back-off, and the one retry loop over it.

`Backoff`: how long to wait before attempt N of something that failed. Exponential from
`initial` by `factor`, optionally jittered (a factor in [0.5, 1.5), so many clients that failed
together do not come back together), never more than `maximum`. The operator's work queue keeps
one per key; everything else that tries again goes through `retrying`, which takes one.

Why our own and not tenacity: the loops here need a deadline on the monotonic clock shared with
the call they serve, a server's Retry-After in place of the back-off, and a pause that sleeps on
the caller's loop (fake clocks in tests); tenacity gives each, but as another dependency in every
member and sidecar (whose start is measured), for forty lines.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

T = TypeVar("T")


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

    def fresh(self) -> Backoff:
        """The same policy with no failures counted: one for each loop that uses it."""
        return Backoff(self.initial, self.maximum, self.factor, self.jitter)


class Again(Exception):
    """An attempt's outcome that another attempt may change (a 503, a member not ready yet):
    raised by an attempt for `retrying` to try again. `after` is the pause the other side asked
    for (Retry-After), taken instead of the back-off's."""

    def __init__(self, why: str, after: float | None = None) -> None:
        super().__init__(why)
        self.after = after


Retryable = type[Exception] | tuple[type[Exception], ...] | Callable[[Exception], bool]


async def retrying(
    attempt: Callable[[], Awaitable[T]],
    backoff: Backoff,
    *,
    retry_on: Retryable = Again,
    deadline: float | None = None,
    on_retry: Callable[[Exception, float], None] | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> T:
    """The one retry loop: `attempt()` until it returns. An exception that `retry_on` accepts
    (a class, classes, or a predicate) is followed by the back-off's next pause (or the
    `Again.after` asked for), cut to what is left before `deadline` (a `clock()` time); any
    other exception, or one that comes when the deadline has passed, is raised as it is.
    `on_retry(exc, pause)` sees each retried failure (to log it). A success resets `backoff`."""
    while True:
        try:
            result = await attempt()
        except Exception as exc:
            if not _accepts(retry_on, exc):
                raise
            pause = exc.after if isinstance(exc, Again) and exc.after is not None else None
            pause = backoff.next() if pause is None else pause
            if deadline is not None:
                left = deadline - clock()
                if left <= 0:
                    raise
                pause = min(pause, left)
            if on_retry is not None:
                on_retry(exc, pause)
            await sleep(pause)
        else:
            backoff.reset()
            return result


def _accepts(retry_on: Retryable, exc: Exception) -> bool:
    if isinstance(retry_on, type | tuple):
        return isinstance(exc, retry_on)
    return retry_on(exc)


def retry_after(headers: Mapping[str, str]) -> float | None:
    """The pause an HTTP answer's Retry-After asks for, in seconds (None: none, or a date)."""
    value = headers.get("Retry-After") or headers.get("retry-after")
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None
