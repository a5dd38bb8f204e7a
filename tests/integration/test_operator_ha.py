"""Several operator replicas, one active: a Lease decides, and a standby takes over."""

from __future__ import annotations

import signal
import time

import httpx
import pytest

from kube import Kube, phase
from operators import OperatorProcess

pytestmark = pytest.mark.usefixtures("operator")


def running(agent: dict) -> bool:
    return phase(agent) == "Running"


async def leader_gauge(process: OperatorProcess) -> str:
    async with httpx.AsyncClient() as http:
        scraped = (await http.get(f"http://127.0.0.1:{process.metrics}/metrics")).text
    return next(
        line.split()[-1]
        for line in scraped.splitlines()
        if line.startswith("foundation_operator_leader ")
    )


async def test_one_replica_is_active_and_a_standby_takes_over(
    kube: Kube, operator: OperatorProcess, cluster: str
) -> None:
    standby = OperatorProcess(cluster, identity="tests-operator-b", health=18081, metrics=19091)
    standby.start()
    try:
        await kube.wait(lambda: _is(standby, "standby"), 30, "second replica standing by")
        assert await operator.role() == "leader"
        assert (await leader_gauge(operator), await leader_gauge(standby)) == ("1.0", "0.0")
        await kube.create_agent("before")
        await kube.wait_agent("before", running, what="Agent served by the first replica")

        # A clean stop hands the Lease over at once instead of letting it expire.
        stopped = time.monotonic()
        assert operator.stop(signal.SIGTERM) == 0
        await kube.wait(lambda: _is(standby, "leader"), 10, "standby leading")
        handover = time.monotonic() - stopped
        assert handover < OperatorProcess.LEASE_SECONDS, f"handover took {handover:.1f}s"
        await kube.create_agent("after")
        await kube.wait_agent("after", running, what="Agent served by the second replica")
        assert await leader_gauge(standby) == "1.0"

        # A leader that dies without a word is replaced once its Lease expires.
        operator.start()
        await kube.wait(lambda: _is(operator, "standby"), 30, "first replica standing by")
        killed = time.monotonic()
        standby.stop(signal.SIGKILL)
        await kube.wait(lambda: _is(operator, "leader"), 30, "first replica leading again")
        takeover = time.monotonic() - killed
        assert takeover >= OperatorProcess.LEASE_SECONDS * 0.9, "took an unexpired Lease"
        await kube.create_agent("late")
        await kube.wait_agent("late", running, what="Agent served after the takeover")
        print(f"handover {handover:.2f}s after SIGTERM, takeover {takeover:.2f}s after SIGKILL")
    finally:
        standby.stop()
        if operator.proc is None:
            operator.start()
        await kube.wait(lambda: _is(operator, "leader"), 30, "the tests' operator leading")


async def _is(process: OperatorProcess, role: str) -> bool:
    return await process.role() == role
