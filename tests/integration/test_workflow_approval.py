"""Approval steps on the local cluster (issue 27, point 2): a person decides with the CLI,
through people's door, with nothing but the right to approve; one without it is refused; a
decision is taken once; a rejection fails the Workflow and its clean-up steps run."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from test_access import account, bind, token
from test_door import API_AUDIENCE, CLI, kubeconfig
from test_workflows import condition, finished, steps_of

from kube import REPO, Kube, phase

KUBECTL = str(REPO / "e2e/local/kubectl")

pytestmark = pytest.mark.usefixtures("operator")


async def approvals_waiting(at_least: int = 0, at_most: int | None = None) -> bool:
    """Whether the tests' operator's gauge of waiting approvals is within the bounds."""
    async with httpx.AsyncClient() as http:
        scraped = (await http.get("http://127.0.0.1:19090/metrics")).text
    for family in text_string_to_metric_families(scraped):
        if family.name == "foundation_workflow_waiting_approvals":
            value = family.samples[0].value
            return value >= at_least and (at_most is None or value <= at_most)
    return False


def waiting(workflow: dict) -> bool:
    return steps_of(workflow).get("review", {}).get("reason") == "WaitingForApproval"


async def cli(config: str, namespace: str, *args: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(
        subprocess.run,
        [CLI, "--kubeconfig", config, "-n", namespace, *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_a_person_who_may_only_approve_decides_with_the_cli_once(
    kube: Kube, tmp_path: Path
) -> None:
    await kube.create_agent("notes", agent="foundation_agent.agents:TaskAgent")
    await kube.wait_agent("notes", lambda a: phase(a) == "Running", what="notes Running")
    for name in ("approver", "stranger"):
        await account(kube, name)
    await bind(kube, "approver", "foundation-workflow-approver")
    approver = kubeconfig(tmp_path / "approver", await token(kube, "approver", API_AUDIENCE))
    stranger = kubeconfig(tmp_path / "stranger", await token(kube, "stranger", API_AUDIENCE))
    review = {
        "name": "review",
        "dependsOn": ["draft"],
        "approval": {
            "message": "send '{{ steps.draft.result.value }}'?",
            "inputSchema": {"type": "object", "properties": {"to": {"type": "string"}}},
        },
    }
    await kube.create_workflow(
        "mail",
        steps=[
            {"name": "draft", "agent": "notes", "action": "echo", "input": {"value": "hi"}},
            review,
            {"name": "send", "agent": "notes", "action": "put", "dependsOn": ["review"],
             "input": {"key": "sent-to", "value": "{{ steps.review.result.input.to }}"}},
        ],
    )  # fmt: skip
    workflow = await kube.wait_workflow("mail", waiting, timeout=60, what="waiting")
    assert steps_of(workflow)["review"]["prompt"] == "send 'hi'?"
    await kube.wait(lambda: approvals_waiting(at_least=1), timeout=30, what="the gauge")

    # Who may not approve is refused by RBAC, naming the permission; nothing is recorded.
    refused = await cli(stranger, kube.ns, "approve", "mail", "review")
    assert refused.returncode == 7, refused.stderr
    assert 'cannot create resource "workflows/approval"' in refused.stderr
    # The approver may not edit the Workflow, yet decides it: once.
    edit = await cli(approver, kube.ns, "approve", "mail", "review", "--input", '{"to": 5}')
    assert edit.returncode == 2 and "is not of type 'string'" in edit.stderr
    may_edit = subprocess.run(
        [KUBECTL, "--kubeconfig", approver, "-n", kube.ns, "auth", "can-i", "patch",
         "workflows.foundation.dev"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert may_edit.stdout.strip() == "no"
    given = await cli(
        approver, kube.ns, "approve", "mail", "review", "--message", "ok", "--input",
        '{"to": "bob"}',
    )  # fmt: skip
    assert given.returncode == 0, given.stderr
    verdict = json.loads(given.stdout)
    assert verdict["by"] == f"system:serviceaccount:{kube.ns}:approver"
    again = await cli(approver, kube.ns, "reject", "mail", "review")
    assert again.returncode == 8 and "was approved already" in again.stderr
    workflow = await kube.wait_workflow("mail", finished, timeout=60, what="finished")
    assert workflow["status"]["phase"] == "Succeeded", workflow["status"]
    steps = steps_of(workflow)
    assert steps["review"]["result"]["input"] == {"to": "bob"}
    assert steps["review"]["result"]["message"] == "ok"
    assert steps["send"]["attempts"] == 1
    await kube.wait(lambda: approvals_waiting(at_most=0), timeout=30, what="none waiting")

    # A rejection fails the Workflow, and its clean-up steps run and see why.
    await kube.create_workflow(
        "risky",
        steps=[{"name": "draft", "agent": "notes", "action": "echo", "input": {"value": "x"}},
               review],
        onExit=[{"name": "tidy", "agent": "notes", "action": "echo",
                 "input": "{{ workflow.failures.0.error }}"}],
    )  # fmt: skip
    await kube.wait_workflow("risky", waiting, timeout=60, what="waiting")
    no = await cli(approver, kube.ns, "reject", "risky", "review", "--message", "too risky")
    assert no.returncode == 0, no.stderr
    workflow = await kube.wait_workflow("risky", finished, timeout=60, what="finished")
    assert workflow["status"]["phase"] == "Failed"
    assert condition(workflow, "Succeeded")["reason"] == "StepFailed"
    said = f"rejected by system:serviceaccount:{kube.ns}:approver: too risky"
    assert steps_of(workflow)["review"]["error"] == said
    assert steps_of(workflow)["tidy"]["result"] == said
