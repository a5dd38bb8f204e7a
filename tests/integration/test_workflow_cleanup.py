"""Clean-up steps on the local cluster (issue 27, point 3): a Workflow whose step fails runs
its clean-up steps, which see the outcome, and it ends Failed as its steps decided, with the
clean-up's own result in the condition CleanedUp."""

from __future__ import annotations

import pytest
from test_workflows import condition, finished, steps_of

from kube import Kube, phase

pytestmark = pytest.mark.usefixtures("operator")


async def test_clean_up_runs_after_a_failure_sees_it_and_leaves_the_outcome(kube: Kube) -> None:
    await kube.create_agent("notes", agent="foundation_agent.agents:TaskAgent")
    await kube.wait_agent("notes", lambda a: phase(a) == "Running", what="notes Running")
    await kube.create_workflow(
        "breaks",
        steps=[
            {"name": "fine", "agent": "notes", "action": "put",
             "input": {"key": "work", "value": "done"}},
            {"name": "bad", "agent": "notes", "action": "nope", "dependsOn": ["fine"]},
        ],
        onExit=[
            {"name": "record", "agent": "notes", "action": "put",
             "input": {"key": "outcome", "value": "{{ workflow }}"}},
            {"name": "read", "agent": "notes", "action": "get", "dependsOn": ["record"],
             "input": {"key": "outcome"}},
            {"name": "refused", "agent": "notes", "action": "nope"},
        ],
    )  # fmt: skip
    workflow = await kube.wait_workflow("breaks", finished, timeout=90, what="finished")
    status = workflow["status"]
    assert status["phase"] == "Failed"
    assert status["outcome"]["reason"] == "StepFailed"
    assert condition(workflow, "Succeeded")["reason"] == "StepFailed"
    steps = steps_of(workflow)
    assert steps["bad"]["reason"] == "Refused"
    outcome = steps["read"]["result"]["value"]
    assert (outcome["phase"], outcome["reason"]) == ("Failed", "StepFailed")
    assert [f["step"] for f in outcome["failures"]] == ["bad"]
    assert all(steps[s]["attempts"] == 1 for s in ("record", "read"))
    cleaned = condition(workflow, "CleanedUp")
    assert (cleaned["status"], cleaned["reason"]) == ("False", "CleanUpFailed")
    assert "1 of 3 failed; refused: " in cleaned["message"]
