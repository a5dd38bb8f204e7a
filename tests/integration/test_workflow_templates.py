"""WorkflowTemplates on the local cluster (issue 27, point 4): a Workflow names a template and
its arguments; a bad argument is refused naming it; a running Workflow keeps the template as
it was when it started."""

from __future__ import annotations

import pytest
from test_workflows import condition, finished, steps_of

from kube import REPO, Kube, phase

pytestmark = pytest.mark.usefixtures("operator")

TEMPLATE = {
    "apiVersion": "foundation.dev/v1alpha1",
    "kind": "WorkflowTemplate",
    "metadata": {"name": "greet"},
    "spec": {
        "parameters": [
            {"name": "who", "type": "string", "description": "whom to greet"},
            {"name": "times", "type": "integer", "value": 1},
        ],
        "steps": [
            {"name": "hold", "approval": {"message": "greet {{ input.who }}?"}},
            {
                "name": "say",
                "agent": "notes",
                "action": "echo",
                "dependsOn": ["hold"],
                "input": "hello {{ input.who }} x{{ input.times }}",
            },
        ],
        "output": "{{ steps.say.result }}",
    },
}


async def test_a_workflow_runs_the_template_as_it_was_when_it_started(kube: Kube) -> None:
    await kube.create_agent("notes", agent="foundation_agent.agents:TaskAgent")
    await kube.wait_agent("notes", lambda a: phase(a) == "Running", what="notes Running")
    await kube.custom.create_namespaced_custom_object(
        "foundation.dev", "v1alpha1", kube.ns, "workflowtemplates", TEMPLATE
    )

    # A bad argument: refused, naming it; no runner.
    await kube.create_workflow("wrong", template={"name": "greet", "arguments": {"who": 7}})
    workflow = await kube.wait_workflow("wrong", finished, timeout=30, what="refused")
    refused = condition(workflow, "Succeeded")
    assert refused["reason"] == "InvalidSpec"
    assert refused["message"].startswith("spec.template.arguments.who: 7 is not a string")
    assert await kube.get("Pod", "wrong-runner") is None

    # A good one starts; the template changes meanwhile; the Workflow keeps the old steps.
    await kube.create_workflow("ok", template={"name": "greet", "arguments": {"who": "ann"}})
    await kube.wait_workflow(
        "ok",
        lambda w: steps_of(w).get("hold", {}).get("reason") == "WaitingForApproval",
        what="started",
    )
    changed = {**TEMPLATE["spec"], "output": "changed"}
    await kube.patch_custom("workflowtemplates", "greet", {"spec": changed})
    # Approved as people's door records it (the door itself: test_workflow_approval.py).
    await kube.custom.patch_namespaced_custom_object_status(
        "foundation.dev", "v1alpha1", kube.ns, "workflows", "ok",
        {"status": {"approvals": [{"step": "hold", "decision": "Approved", "by": "test",
                                   "at": "2026-12-04T08:00:00Z"}]}},
        _content_type="application/merge-patch+json",
    )  # fmt: skip
    workflow = await kube.wait_workflow("ok", finished, timeout=60, what="finished")
    assert workflow["status"]["phase"] == "Succeeded", workflow["status"]
    assert workflow["status"]["output"] == "hello ann x1"  # not "changed"
    assert workflow["status"]["template"]["name"] == "greet"


async def test_the_template_example_runs_as_its_comments_say(kube: Kube) -> None:
    kube.kubectl_apply(REPO / "examples/agent.yaml")
    kube.kubectl_apply(REPO / "examples/workflow-template.yaml")
    workflow = await kube.wait_workflow("count-visitors", finished, timeout=120, what="done")
    assert workflow["status"]["phase"] == "Succeeded", workflow["status"]
    assert workflow["status"]["output"].startswith("visitors: ")


async def test_the_schedule_example_is_taken_as_its_comments_say(kube: Kube) -> None:
    kube.kubectl_apply(REPO / "examples/workflow-template.yaml")
    kube.kubectl_apply(REPO / "examples/schedule.yaml")
    listed = kube.kubectl("get", "schedules")
    assert "every-5-minutes" in listed and "*/5 * * * *" in listed

    async def next_time() -> str | None:
        found = await kube.custom.get_namespaced_custom_object(
            "foundation.dev", "v1alpha1", kube.ns, "schedules", "every-5-minutes"
        )
        return (found.get("status") or {}).get("nextScheduleTime")

    assert await kube.wait(next_time, timeout=30, what="its next time")
