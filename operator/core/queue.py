"""A work queue of object keys, as client-go's rate-limited work queue: at most one worker
handles a key at a time, a key added while queued is queued once, a key added while it is
being handled is handled again after, and a key that failed comes back after a per-key
exponential back-off instead of holding a worker."""

from __future__ import annotations

import asyncio
from collections.abc import Hashable
from typing import Generic, TypeVar

from foundation_common.retry import Backoff

K = TypeVar("K", bound=Hashable)


class WorkQueue(Generic[K]):
    def __init__(self, backoff: Backoff | None = None) -> None:
        # client-go's default per-item limiter goes from 5 ms doubling to 1,000 s. Ours starts
        # at 50 ms (a conflict or a busy API server gets a moment) and stops at 5 min, so a
        # broken object is looked at again within minutes of being fixed by hand.
        self.backoff = backoff or Backoff(initial=0.05, maximum=300.0)
        self._ready: asyncio.Queue[K] = asyncio.Queue()
        self._queued: set[K] = set()
        self._processing: set[K] = set()
        self._dirty: set[K] = set()  # added again while being processed
        self._failures: dict[K, int] = {}
        self._timers: dict[K, asyncio.TimerHandle] = {}

    def __len__(self) -> int:
        return len(self._queued)

    def add(self, key: K) -> None:
        """Handle `key` soon (a watch event: something changed). A back-off or requeue pending
        for the key still fires later, as in client-go."""
        if key in self._processing:
            self._dirty.add(key)
        elif key not in self._queued:
            self._queued.add(key)
            self._ready.put_nowait(key)

    def add_after(self, key: K, delay: float) -> None:
        """Handle `key` after `delay` seconds (the earliest of several such requests wins)."""
        if delay <= 0:
            self.add(key)
            return
        loop = asyncio.get_running_loop()
        timer = self._timers.get(key)
        if timer is not None:
            if timer.when() <= loop.time() + delay:
                return
            timer.cancel()
        self._timers[key] = loop.call_later(delay, self._fire, key)

    def _fire(self, key: K) -> None:
        self._timers.pop(key, None)
        self.add(key)

    def add_rate_limited(self, key: K) -> float:
        """`key` failed: handle it again after its back-off, which grows with each failure in
        a row. Returns the delay."""
        failures = self._failures.get(key, 0)
        self._failures[key] = failures + 1
        delay = self.backoff.delay(failures)
        self.add_after(key, delay)
        return delay

    def failures(self, key: K) -> int:
        return self._failures.get(key, 0)

    def forget(self, key: K) -> None:
        """`key` succeeded: its next failure starts the back-off over."""
        self._failures.pop(key, None)

    def discard(self, key: K) -> None:
        """The object is gone: drop its back-off and pending requeue."""
        self.forget(key)
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer.cancel()

    async def get(self) -> K:
        """The next key to handle; the caller must call `done(key)` after."""
        key = await self._ready.get()
        self._queued.discard(key)
        self._processing.add(key)
        return key

    def done(self, key: K) -> None:
        self._processing.discard(key)
        if key in self._dirty:
            self._dirty.discard(key)
            self.add(key)

    def close(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
