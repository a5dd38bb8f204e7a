"""Background tasks of a long-lived object (workers, watches): stopped the one way."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterable
from typing import Protocol


async def cancel_all(tasks: Iterable[asyncio.Task[object]]) -> None:
    """Cancel every task, then wait for each to end (their CancelledError is expected)."""
    tasks = list(tasks)
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task


class SettableGauge(Protocol):
    def set_function(self, f: Callable[[], float]) -> None: ...


def count_tasks(gauge: SettableGauge) -> None:
    """Have `gauge` report the running loop's tasks whenever it is read: a number that only
    grows is a leak (bench/soak.py watches it)."""
    loop = asyncio.get_running_loop()
    # The operator's metrics are served from prometheus-client's thread: all_tasks copies the
    # loop's task set (retrying if it changes meanwhile) and only counts, never touches a task.
    gauge.set_function(lambda: len(asyncio.all_tasks(loop)))
