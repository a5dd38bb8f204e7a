"""Workflows on the local cluster: the real operator gives each one a runner pod, which sends
the steps to real member pods of real Agents."""

from __future__ import annotations

import os
import signal

import httpx
import pytest

from kube import REPO, Kube, member_pids, phase

pytestmark = pytest.mark.usefixtures("operator")


def finished(workflow: dict) -> bool:
    return (workflow.get("status") or {}).get("phase") in ("Succeeded", "Failed")


def steps_of(workflow: dict) -> dict[str, dict]:
    return {s["name"]: s for s in (workflow.get("status") or {}).get("steps") or []}


def condition(workflow: dict, kind: str) -> dict:
    return next(c for c in workflow["status"]["conditions"] if c["type"] == kind)


async def count_of(kube: Kube, agent: str, member: int = 0) -> int:
    """The count a CounterAgent's member holds."""
    pod = await kube.get("Pod", f"{agent}-{member}")
    check = f"check-{agent}-{member}-{os.urandom(3).hex()}"
    async with await kube.member_client(timeout=5) as http:
        base = f"http://{pod['status']['podIP']}:8080/v1/tasks"
        answer = await http.post(base, json={"id": check, "action": "get"})
        record = (await http.get(f"{base}/{check}?wait=10")).json()
    assert answer.status_code in (200, 202)
    return record["result"]["count"]


async def two_agents(kube: Kube) -> None:
    no_sidecar = {"enabled": False}
    await kube.create_agent("alpha", sidecar=no_sidecar)
    await kube.create_agent("beta", capabilities=["tally"], sidecar=no_sidecar)
    for name in ("alpha", "beta"):
        await kube.wait_agent(name, lambda a: phase(a) == "Running", what=f"{name} Running")


FAN_OUT_IN = {
    "input": {"by": 2},
    "steps": [
        {
            "name": "seed",
            "agent": "alpha",
            "action": "increment",
            "input": {"by": "{{ input.by }}"},
        },
        {
            "name": "left",
            "agent": "alpha",
            "action": "increment",
            "dependsOn": ["seed"],
            "input": {"by": 10},
        },
        {
            # By capability, with the seed's count as a number.
            "name": "right",
            "capability": "tally",
            "action": "increment",
            "dependsOn": ["seed"],
            "input": {"by": "{{ steps.seed.result.count }}"},
        },
        {"name": "join", "agent": "beta", "action": "get", "dependsOn": ["left", "right"]},
    ],
    "output": {
        "left": "{{ steps.left.result.count }}",
        "joined": "{{ steps.join.result.count }}",
        "text": "alpha at {{ steps.left.result.count }}",
    },
}


async def test_a_dag_runs_across_two_agents_with_typed_results_once(kube: Kube) -> None:
    await two_agents(kube)
    await kube.create_workflow("pipeline", **FAN_OUT_IN)
    workflow = await kube.wait_workflow("pipeline", finished, timeout=90, what="finished")
    status = workflow["status"]
    assert status["phase"] == "Succeeded", status
    assert status["output"] == {"left": 12, "joined": 2, "text": "alpha at 12"}
    assert status["progress"] == "4/4"
    assert condition(workflow, "Succeeded")["status"] == "True"
    steps = steps_of(workflow)
    assert [steps[n]["phase"] for n in ("seed", "left", "right", "join")] == ["Succeeded"] * 4
    assert steps["right"]["agent"] == "beta" and steps["right"]["member"] == "beta-0"
    assert steps["seed"]["taskId"] == f"{workflow['metadata']['uid']}.seed.1"
    assert status["startedAt"] and status["finishedAt"] and status["duration"]
    # Every step's effect exactly once: alpha got 2 + 10, beta got 2.
    assert await count_of(kube, "alpha") == 12
    assert await count_of(kube, "beta") == 2
    # The runner exited: nothing keeps running for a finished Workflow.
    runner = await kube.wait_pod(
        "pipeline-runner", lambda p: p["status"].get("phase") == "Succeeded", timeout=30
    )
    assert runner["metadata"]["ownerReferences"][0]["kind"] == "Workflow"
    assert runner["spec"]["securityContext"]["runAsNonRoot"] is True
    async with httpx.AsyncClient() as http:
        scraped = (await http.get("http://127.0.0.1:19090/metrics")).text
    assert 'foundation_workflow_steps_total{outcome="Succeeded"}' in scraped
    assert 'foundation_workflow_finished_total{phase="Succeeded"}' in scraped
    assert 'foundation_workflow_workflows{phase="Succeeded"}' in scraped
    assert "foundation_workflow_stalled_seconds" in scraped
    assert "foundation_workflow_dispatch_latency_seconds_count" in scraped
    assert all(isinstance(s.get("dispatchMs"), int) for s in steps.values())


async def test_a_suspended_workflow_starts_nothing_until_resumed(kube: Kube) -> None:
    await two_agents(kube)
    await kube.create_workflow("paused", suspend=True, **FAN_OUT_IN)
    workflow = await kube.wait_workflow(
        "paused", lambda w: phase(w) == "Suspended", timeout=60, what="Suspended"
    )
    assert {s["phase"] for s in steps_of(workflow).values()} == {"Pending"}
    assert "spec.suspend is true" in condition(workflow, "Succeeded")["message"]
    # The runner learns of the change from its watch on this Workflow (its Role names it).
    await kube.patch_workflow("paused", {"spec": {"suspend": False}})
    workflow = await kube.wait_workflow("paused", finished, timeout=60, what="finished")
    assert workflow["status"]["phase"] == "Succeeded", workflow["status"]
    assert await count_of(kube, "alpha") == 12


async def test_an_invalid_dag_is_failed_naming_the_step_and_gets_no_runner(kube: Kube) -> None:
    await kube.create_workflow(
        "loop",
        steps=[
            {"name": "a", "agent": "x", "action": "get", "dependsOn": ["b"]},
            {"name": "b", "agent": "x", "action": "get", "dependsOn": ["a"]},
        ],
    )
    workflow = await kube.wait_workflow("loop", finished, what="Failed")
    verdict = condition(workflow, "Succeeded")
    assert (workflow["status"]["phase"], verdict["reason"]) == ("Failed", "InvalidSpec")
    assert "dependency cycle" in verdict["message"]
    assert await kube.get("Pod", "loop-runner") is None


async def test_a_runner_killed_mid_step_resumes_without_repeating_it(kube: Kube) -> None:
    await kube.create_agent(
        "worker", agent="foundation_agent.agents:TaskAgent", sidecar={"enabled": False}
    )
    await kube.wait_agent("worker", lambda a: phase(a) == "Running", what="worker Running")
    await kube.create_workflow(
        "slow",
        steps=[
            {"name": "nap", "agent": "worker", "action": "sleep", "input": {"seconds": 4}},
            {
                "name": "after",
                "agent": "worker",
                "action": "echo",
                "dependsOn": ["nap"],
                "input": "{{ steps.nap.result.slept }}",
            },
        ],
    )
    await kube.wait_workflow(
        "slow",
        lambda w: steps_of(w).get("nap", {}).get("phase") == "Running",
        what="nap sent",
    )
    runner = await kube.get("Pod", "slow-runner")
    await kube.delete_pod("slow-runner", grace=0)  # the runner gone mid-step
    await kube.wait(
        lambda: _replaced(kube, runner["metadata"]["uid"]), timeout=30, what="a new runner"
    )
    workflow = await kube.wait_workflow("slow", finished, timeout=60, what="finished")
    assert workflow["status"]["phase"] == "Succeeded", workflow["status"]
    steps = steps_of(workflow)
    assert steps["nap"]["attempts"] == 1 and steps["after"]["result"] == 4  # seconds slept
    # The member ran the sleep once: its state counts it once.
    pod = await kube.get("Pod", "worker-0")
    async with await kube.member_client(timeout=5) as http:
        base = f"http://{pod['status']['podIP']}:8080/v1/tasks"
        await http.post(base, json={"id": "slept", "action": "get", "input": {"key": "slept"}})
        record = (await http.get(f"{base}/slept?wait=10")).json()
    assert record["result"]["value"] == 1


async def _replaced(kube: Kube, old_uid: str) -> bool:
    pod = await kube.get("Pod", "slow-runner")
    return bool(pod and pod["metadata"]["uid"] != old_uid)


async def test_the_example_workflow_runs_as_the_docs_show(kube: Kube) -> None:
    kube.kubectl_apply(REPO / "examples/agent.yaml")
    kube.kubectl_apply(REPO / "examples/workflow.yaml")
    workflow = await kube.wait_workflow("tally", finished, timeout=90, what="tally finished")
    assert workflow["status"]["phase"] == "Succeeded", workflow["status"]
    assert workflow["status"]["output"] == {"count": 5, "message": "visitors: 5"}
    assert workflow["status"]["progress"] == "4/4"


async def slept(kube: Kube, agent: str) -> int:
    """How many sleep tasks the TaskAgent's state counts."""
    pod = await kube.wait_running(f"{agent}-0")
    async with await kube.member_client(timeout=5) as http:
        base = f"http://{pod['status']['podIP']}:8080/v1/tasks"
        check = f"check-{os.urandom(4).hex()}"
        await http.post(base, json={"id": check, "action": "get", "input": {"key": "slept"}})
        return (await http.get(f"{base}/{check}?wait=10")).json()["result"]["value"]


NAPS = {
    "steps": [
        {"name": "first", "agent": "worker", "action": "sleep", "input": {"seconds": 1}},
        {
            "name": "nap-a",
            "agent": "worker",
            "action": "sleep",
            "dependsOn": ["first"],
            "input": {"seconds": 2},
        },
        {
            "name": "nap-b",
            "capability": "naps",
            "action": "sleep",
            "dependsOn": ["first"],
            "input": {"seconds": 2},
        },
        {
            "name": "last",
            "agent": "worker",
            "action": "echo",
            "dependsOn": ["nap-a", "nap-b"],
            "input": ["{{ steps.nap-a.result.slept }}", "{{ steps.nap-b.result.slept }}"],
        },
    ]
}


async def test_a_member_killed_mid_step_runs_that_step_once(kube: Kube) -> None:
    await kube.create_agent(
        "worker",
        agent="foundation_agent.agents:TaskAgent",
        capabilities=["naps"],
        sidecar={"enabled": False},
    )
    await kube.wait_agent("worker", lambda a: phase(a) == "Running", what="worker Running")
    await kube.create_workflow("naps", **NAPS)
    await kube.wait_workflow(
        "naps",
        lambda w: steps_of(w).get("nap-a", {}).get("phase") == "Running",
        what="the naps sent",
    )
    for pid in member_pids(kube.ns, "worker-0"):
        os.kill(pid, signal.SIGKILL)  # the member dies with a task running and one queued
    workflow = await kube.wait_workflow("naps", finished, timeout=90, what="finished")
    assert workflow["status"]["phase"] == "Succeeded", workflow["status"]
    steps = steps_of(workflow)
    assert all(s["attempts"] == 1 for s in steps.values()), steps
    assert steps["last"]["result"] == [2, 2]  # each nap's seconds, as numbers
    # Three sleeps, each applied once, although one ran twice at the member (the killed run
    # committed nothing).
    assert await slept(kube, "worker") == 3


async def test_the_operator_killed_during_a_run_changes_nothing(kube: Kube, operator) -> None:
    await kube.create_agent(
        "worker",
        agent="foundation_agent.agents:TaskAgent",
        capabilities=["naps"],
        sidecar={"enabled": False},
    )
    await kube.wait_agent("worker", lambda a: phase(a) == "Running", what="worker Running")
    await kube.create_workflow("naps", **NAPS)
    await kube.wait_workflow(
        "naps",
        lambda w: steps_of(w).get("first", {}).get("phase") == "Running",
        what="the first step sent",
    )
    runner = await kube.get("Pod", "naps-runner")
    operator.stop(signal.SIGKILL)
    operator.start()
    workflow = await kube.wait_workflow("naps", finished, timeout=90, what="finished")
    assert workflow["status"]["phase"] == "Succeeded", workflow["status"]
    assert all(s["attempts"] == 1 for s in steps_of(workflow).values())
    assert (await kube.get("Pod", "naps-runner"))["metadata"]["uid"] == runner["metadata"]["uid"]
    assert await slept(kube, "worker") == 3


async def test_two_hundred_steps_of_4_kib_fit_and_an_oversized_result_fails_its_step(
    kube: Kube,
) -> None:
    await kube.create_agent(
        "echoes", agent="foundation_agent.agents:TaskAgent", sidecar={"enabled": False}
    )
    await kube.wait_agent("echoes", lambda a: phase(a) == "Running", what="echoes Running")
    page = "x" * 4096
    await kube.create_workflow(
        "wide",
        parallelism=32,
        input={"page": page},  # 4 KiB once in the spec, 4 KiB in each step's result
        steps=[
            {"name": f"s{i}", "agent": "echoes", "action": "echo", "input": "{{ input.page }}"}
            for i in range(200)
        ],
    )
    await kube.create_workflow(
        "huge",
        steps=[{"name": "big", "agent": "echoes", "action": "echo", "input": "y" * 70_000}],
    )
    wide = await kube.wait_workflow("wide", finished, timeout=180, what="wide finished")
    assert wide["status"]["phase"] == "Succeeded", wide["status"].get("conditions")
    assert wide["status"]["progress"] == "200/200"
    assert all(s["result"] == page for s in steps_of(wide).values())
    huge = await kube.wait_workflow("huge", finished, timeout=60, what="huge finished")
    big = steps_of(huge)["big"]
    assert (huge["status"]["phase"], big["reason"]) == ("Failed", "ResultTooLarge")
    assert "70002 bytes, over the 65536 a step may keep" in big["error"]
    # The runner says so in Events on the Workflow too.
    events = await kube.wait(
        lambda: _events(kube, "huge"), timeout=30, what="the runner's Events on huge"
    )
    assert {"StepFailed", "Failed"} <= {e.reason for e in events}


async def _events(kube: Kube, workflow: str) -> list:
    listing = await kube.core.list_namespaced_event(
        kube.ns, field_selector=f"involvedObject.kind=Workflow,involvedObject.name={workflow}"
    )
    reasons = {e.reason for e in listing.items}
    return listing.items if {"StepFailed", "Failed"} <= reasons else []
