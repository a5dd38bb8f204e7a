"""Schedules on the local cluster (issue 27, point 5): a Workflow every minute, the operator
SIGKILLed at a tick, and exactly one Workflow for each time."""

from __future__ import annotations

import asyncio
import itertools
import signal
import time
from datetime import datetime

import pytest
from test_workflows import finished

from kube import Kube, phase
from operators import OperatorProcess

pytestmark = pytest.mark.usefixtures("operator")

SCHEDULED_AT = "foundation.dev/scheduled-at"


async def scheduled(kube: Kube) -> dict[str, list[str]]:
    """The Schedule's Workflows by the time they were made for."""
    listed = await kube.custom.list_namespaced_custom_object(
        "foundation.dev", "v1alpha1", kube.ns, "workflows",
        label_selector="foundation.dev/schedule=every-minute",
    )  # fmt: skip
    out: dict[str, list[str]] = {}
    for item in listed["items"]:
        at = item["metadata"]["annotations"][SCHEDULED_AT]
        out.setdefault(at, []).append(item["metadata"]["name"])
    return out


async def test_one_workflow_per_minute_through_an_operator_sigkill_at_the_tick(
    kube: Kube, operator: OperatorProcess
) -> None:
    await kube.create_agent("notes", agent="foundation_agent.agents:TaskAgent")
    await kube.wait_agent("notes", lambda a: phase(a) == "Running", what="notes Running")
    await kube.custom.create_namespaced_custom_object(
        "foundation.dev", "v1alpha1", kube.ns, "schedules",
        {
            "apiVersion": "foundation.dev/v1alpha1",
            "kind": "Schedule",
            "metadata": {"name": "every-minute"},
            "spec": {
                "schedule": "* * * * *",
                "successfulWorkflowsHistoryLimit": 10,
                "workflow": {"spec": {"steps": [
                    {"name": "tick", "agent": "notes", "action": "echo", "input": "tick"}
                ]}},
            },
        },
    )  # fmt: skip
    first = await kube.wait(lambda: scheduled(kube), timeout=90, what="the first Workflow")
    (first_at,) = first
    # The operator SIGKILLed at the next tick, and started again a moment after.
    tick = datetime.fromisoformat(first_at.replace("Z", "+00:00")).timestamp() + 60
    await kube.wait(lambda: time.time() >= tick, timeout=75, what="the next tick")
    operator.stop(signal.SIGKILL)
    await asyncio.sleep(0)  # nothing in between: it is started again at once
    operator.start()
    made = await kube.wait(
        lambda: _ticks(kube, 3), timeout=150, what="three times, each with its Workflow"
    )
    assert all(len(names) == 1 for names in made.values()), made
    times = sorted(made)
    stamps = [datetime.fromisoformat(t.replace("Z", "+00:00")).timestamp() for t in times]
    assert [b - a for a, b in itertools.pairwise(stamps)] == [60.0] * (len(stamps) - 1)
    name = made[times[0]][0]
    done = await kube.wait_workflow(name, finished, timeout=60, what="the first one done")
    assert done["status"]["phase"] == "Succeeded"
    schedule = await kube.custom.get_namespaced_custom_object(
        "foundation.dev", "v1alpha1", kube.ns, "schedules", "every-minute"
    )
    status = schedule["status"]
    assert status["lastScheduleTime"] in made and status["nextScheduleTime"]
    assert status["conditions"][0]["reason"] == "Scheduled"


async def _ticks(kube: Kube, count: int) -> dict[str, list[str]] | None:
    made = await scheduled(kube)
    return made if len(made) >= count else None
