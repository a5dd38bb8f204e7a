"""Memory handed back after many objects go: one trim once things are quiet."""

from __future__ import annotations

from pathlib import Path

from foundation_operator.core.trim import Trimmer, trim
from waiting import until


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def test_trim_gives_freed_heap_pages_back() -> None:
    # 200 MB in blocks glibc serves from its heap (above pymalloc's 512 B, below the mmap
    # threshold), one kept at the end so the heap's top cannot simply shrink.
    blocks = [bytearray(4096) for _ in range(50_000)]
    keep = bytearray(4096)
    peak = rss_mb()
    del blocks
    before = rss_mb()
    assert before > peak - 50, "glibc kept the freed pages (what trim is for)"
    assert trim() is True
    assert rss_mb() < before - 100, (before, rss_mb())
    del keep


async def test_many_drops_cost_one_trim_after_the_last() -> None:
    trimmer = Trimmer(delay=0.05)
    for _ in range(1000):
        trimmer.forgotten()
    assert trimmer.trims == 0 and trimmer.pending
    await until(lambda: not trimmer.pending, what="the trim after the last drop")
    assert trimmer.trims == 1
    trimmer.forgotten()
    assert trimmer.pending
    trimmer.cancel()
    assert not trimmer.pending, "cancelled: no second trim is scheduled"
    assert trimmer.trims == 1
