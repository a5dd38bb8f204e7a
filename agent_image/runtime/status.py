"""Reports the member's state summary into its Agent's status, at a bounded rate.

Each member merge-patches only its own key of `status.memberStates` (member 0 also the
`status.state` summary the printer column shows), so members and the operator never overwrite
each other. Problems (a corrupt state, a refused write) are reported at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from foundation_common.resources import AGENT
from foundation_common.rest import Client

logger = logging.getLogger("foundation_agent.status")


class StatusReporter:
    def __init__(
        self,
        api: Client,
        namespace: str,
        agent: str,
        member_name: str,
        ordinal: int,
        interval: float,
    ) -> None:
        self.api = api
        self.path = AGENT.path(namespace, agent, "status")
        self.namespace, self.agent = namespace, agent
        self.member_name, self.ordinal = member_name, ordinal
        self.interval = interval
        self.reported: dict[str, Any] | None = None

    async def report(self, summary: dict[str, Any]) -> bool:
        if summary == self.reported:
            return True
        status: dict[str, Any] = {"memberStates": {self.member_name: summary}}
        if self.ordinal == 0 and "version" in summary:  # not a parked member's report
            status["state"] = {k: summary[k] for k in ("store", "key", "version", "sizeBytes")}
            status["state"]["lastSavedAt"] = summary["lastSavedAt"]
        try:
            await self.api.merge_patch(self.path, {"status": status})
        except Exception as exc:  # reported again on the next round
            logger.warning("could not report the state to Agent %s: %s", self.agent, exc)
            return False
        self.reported = summary
        return True

    async def run(self, summary: Callable[[], dict[str, Any]], changed: asyncio.Event) -> None:
        """Report when the summary changes, at most once per interval; a problem (a summary
        with a reason) is reported at once, even in the middle of an interval."""
        loop = asyncio.get_running_loop()
        next_at = 0.0
        while True:
            await changed.wait()
            changed.clear()
            wait = next_at - loop.time()
            if wait > 0 and summary().get("reason") is None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(_until_problem(summary, changed), wait)
            await self.report(summary())
            next_at = loop.time() + self.interval


async def _until_problem(summary: Callable[[], dict[str, Any]], changed: asyncio.Event) -> None:
    while summary().get("reason") is None:
        await changed.wait()
        changed.clear()
