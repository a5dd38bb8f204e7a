"""`foundation-operator` under tracemalloc, for finding what holds memory.

    .venv/bin/python bench/traced_operator.py            # instead of foundation-operator
    kill -USR2 <pid>                                      # snapshot N -> $TRACE_DIR/N.snap

Compare two snapshots with `python -m bench.traced_operator A.snap B.snap` (top 25 sites by
growth). A tool for profiling, not a benchmark: it prints no JSON.
"""

from __future__ import annotations

import itertools
import os
import signal
import sys
import tracemalloc
from pathlib import Path

TRACE_DIR = Path(os.environ.get("TRACE_DIR", "/tmp/foundation-trace"))


def serve() -> None:
    tracemalloc.start(int(os.environ.get("TRACE_FRAMES", "4")))
    TRACE_DIR.mkdir(parents=True, exist_ok=True)
    counter = itertools.count()

    def snapshot(*_: object) -> None:
        path = TRACE_DIR / f"{next(counter)}.snap"
        partial = path.with_suffix(".partial")
        tracemalloc.take_snapshot().dump(str(partial))
        partial.rename(path)  # whole, for whoever waits on it
        print(f"tracemalloc snapshot {path}", file=sys.stderr, flush=True)

    signal.signal(signal.SIGUSR2, snapshot)
    from foundation_operator.__main__ import main

    main()


def compare(before: str, after: str, top: int = 25) -> None:
    old = tracemalloc.Snapshot.load(before)
    new = tracemalloc.Snapshot.load(after)
    for key in ("lineno", "traceback"):
        print(f"--- by {key}")
        for stat in new.compare_to(old, key)[:top]:
            print(stat)
            if key == "traceback":
                for line in stat.traceback.format()[:8]:
                    print("    ", line)
    print(
        f"total: {sum(s.size for s in old.statistics('filename')) / 2**20:.1f} MB -> "
        f"{sum(s.size for s in new.statistics('filename')) / 2**20:.1f} MB"
    )


if __name__ == "__main__":
    if len(sys.argv) == 3:
        compare(sys.argv[1], sys.argv[2])
    else:
        serve()
