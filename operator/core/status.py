"""Status: a writer that patches a status only when it changed, and progress-only changes at a
bounded rate (conditions and timestamps themselves: `foundation_common.status`).

"Changed" ignores transition times and empty fields, and the fields that others write (an
Agent's members report their state into its status themselves), so an unchanged object costs
no write.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from foundation_common.status import without_empty_strings
from foundation_operator.core.index import Key, key_of

Obj = dict[str, Any]


def comparable(status: Obj, ignore: Iterable[str] = ()) -> Obj:
    """A status without transition times, empty fields and `ignore`d fields, to decide whether
    anything changed."""
    skip = set(ignore)
    out = {k: v for k, v in status.items() if v not in ("", None) and k not in skip}
    out["conditions"] = [
        {k: v for k, v in c.items() if k != "lastTransitionTime" and v not in ("", None)}
        for c in status.get("conditions") or []
    ]
    for name, value in out.items():
        if isinstance(value, list) and name != "conditions":
            out[name] = without_empty_strings(value, in_list=True)
    return out


Patch = Callable[[str, str, Obj], Awaitable[Obj]]  # (namespace, name, patch) -> answer


class StatusWriter:
    """Patches an object's status when it changed.

    An urgent change (something counted, a phase that needs attention) goes out at once. Other
    changes wait until `interval` has passed since the last write, and `requeue` brings the key
    back then. An object whose status holds nothing of ours yet (a new one) waits longer for
    its first write while it is still in progress (`settled` false: members starting): up to
    `patience` from when the writer first saw it. So members that become ready within it cost
    one status write (the settled one) instead of one per step, and a burst of new objects does
    not spend the API server's writes on statuses that are out of date a moment later.
    """

    def __init__(
        self,
        patch: Patch,
        requeue: Callable[[Key, float], None],
        *,
        interval: float = 1.0,
        patience: float | None = None,
        others: Iterable[str] = (),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.patch = patch
        self.requeue = requeue
        self.interval = interval
        self.patience = interval if patience is None else max(patience, interval)
        self.others = tuple(others)  # status fields others write: never compared or written
        self.clock = clock
        self._seen_at: dict[Key, float] = {}
        self._written_at: dict[Key, float] = {}

    async def write(
        self, body: Obj, new: Obj, *, urgent: bool = True, settled: bool = True
    ) -> Obj | None:
        """The patch's answer if it was written; None if unchanged or deferred."""
        key = key_of(body)
        seen_at = self._seen_at.setdefault(key, self.clock())
        old = comparable(body.get("status") or {}, self.others)
        if comparable(new, self.others) == old:
            return None
        if not urgent:
            since = self._written_at.get(key, seen_at)
            first = old == {"conditions": []}
            wait = since + (self.patience if first and not settled else self.interval)
            wait -= self.clock()
            if wait > 0:
                self.requeue(key, wait)
                return None
        mine = {k: v for k, v in new.items() if k not in self.others}
        answer = await self.patch(key[0], key[1], {"status": without_empty_strings(mine)})
        self._written_at[key] = self.clock()
        return answer

    def forget(self, key: Key) -> None:
        self._seen_at.pop(key, None)
        self._written_at.pop(key, None)
