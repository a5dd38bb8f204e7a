"""Memory given back once many objects are gone.

CPython returns a 256 KiB arena only when every object in it is free, and glibc's malloc keeps
freed pages of its heap for reuse: after thousands of objects are forgotten, the process keeps
its peak size although little of it is used. A full collection followed by glibc's
`malloc_trim(0)` (which returns every free page, not only the heap's top) gives most of it back
(measured in bench/agents_at_scale.py: `rss_after_delete_mb`).
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import functools
import gc
import logging
import os
from collections.abc import Callable

logger = logging.getLogger(__name__)


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    return getattr(libc, "malloc_trim", None)


def resident_mb() -> float:
    """This process's resident set in MB (0.0 where /proc is not there)."""
    try:
        with open("/proc/self/statm") as statm:
            pages = int(statm.read().split()[1])
    except OSError:
        return 0.0
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def trim() -> bool:
    """Collect, then hand free pages back to the system; False where the C library has no
    malloc_trim (musl, other platforms), which is harmless. It runs on the event loop: a full
    collection pauses it (a fraction of a second at 10,000 Agents), once deletions are quiet."""
    gc.collect()
    malloc_trim = _malloc_trim()
    return bool(malloc_trim(0)) if malloc_trim is not None else False


class Trimmer:
    """`forgotten()` after an object is dropped; `trim()` runs once things are quiet again,
    `delay` seconds after the last drop (so deleting 10,000 objects costs one trim, not
    10,000)."""

    def __init__(self, delay: float = 5.0) -> None:
        self.delay = delay
        self.trims = 0
        self._handle: asyncio.TimerHandle | None = None

    def forgotten(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._handle = asyncio.get_running_loop().call_later(self.delay, self._run)

    def _run(self) -> None:
        self._handle = None
        self.trims += 1
        before = resident_mb()
        trim()
        logger.info(
            "memory handed back after deletions: RSS %.1f -> %.1f MB", before, resident_mb()
        )

    @property
    def pending(self) -> bool:
        """Whether a trim is scheduled."""
        return self._handle is not None

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
