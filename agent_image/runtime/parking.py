"""A member parked while its Agent sleeps (spec.warmWhileAsleep, issue 29).

The operator makes such a pod after the Agent fell asleep, so it holds no state: its processes
start, import and open their ports, and it is ready (the cluster routes calls to it as to any
member), but it loads nothing. The first call from an identified caller asks for the state
to be loaded and waits for it; the calls after it wait for the same load. The member's first
report to the Agent's status then says it woke (`wokeFrom`), and the operator counts the
Agent awake. A call held here is a call in flight like any other: if the member dies while
loading, its caller sees the connection fail and retries, and the task, once accepted, is the
task API's to run exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

logger = logging.getLogger(__name__)

HOLD_SECONDS = 30.0  # how long a call waits for the load before it is answered "not ready"


class Parking:
    def __init__(self, parked: bool = False) -> None:
        self.parked = parked
        self.wanted = asyncio.Event()  # a call asked for the state
        self.loaded = asyncio.Event()
        if not parked:
            self.wanted.set()

    @property
    def holding(self) -> bool:
        """Parked, and the state not loaded yet: calls wait for it."""
        return self.parked and not self.loaded.is_set()

    async def hold(self, seconds: float = HOLD_SECONDS) -> None:
        """Ask for the state to be loaded (the first call does) and wait for it, `seconds` at
        most: the call then goes on, to be answered as a member still loading answers."""
        if not self.holding:
            return
        if not self.wanted.is_set():
            logger.info("woken by a call: loading the state")
            self.wanted.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.loaded.wait(), seconds)

    async def until_wanted(self, stop: asyncio.Event) -> None:
        """While parked: until a call asks for the state, or `stop`."""
        if self.wanted.is_set():
            return
        logger.info("parked (the Agent sleeps): ready, the state loaded on the first call")
        waits = {asyncio.ensure_future(self.wanted.wait()), asyncio.ensure_future(stop.wait())}
        _, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        for wait in pending:
            wait.cancel()
