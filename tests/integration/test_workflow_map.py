"""A map step on the local cluster (issue 27, point 1): a planner's list fanned out over two
Agents' members by capability, through runner and member kills, every item counted once and
every result in its item's place."""

from __future__ import annotations

import itertools

import httpx
import pytest
from test_workflows import count_of, finished, steps_of

from kube import REPO, Kube, phase

pytestmark = pytest.mark.usefixtures("operator")

ITEMS = list(range(1, 201))  # each item adds itself: a repeat of item k adds k again


def map_progress(workflow: dict) -> int:
    """Items of the map that have ended."""
    done = (workflow.get("status") or {}).get("itemProgress") or "0/0"
    return int(done.split("/")[0])


async def kill_runner(kube: Kube, name: str) -> None:
    """The runner pod deleted without grace (its process SIGKILLed), and a new one running."""
    old = (await kube.get("Pod", f"{name}-runner"))["metadata"]["uid"]
    await kube.delete_pod(f"{name}-runner", grace=0)

    async def replaced() -> bool:
        pod = await kube.get("Pod", f"{name}-runner")
        return bool(pod and pod["metadata"]["uid"] != old)

    await kube.wait(replaced, timeout=60, what="a new runner")


async def test_a_map_over_a_planners_list_counts_every_item_once_through_kills(
    kube: Kube,
) -> None:
    await kube.create_agent("planner", agent="foundation_agent.agents:TaskAgent")
    for name in ("left", "right"):
        await kube.create_agent(name, replicas=2, capabilities=["tally"])
    for name in ("planner", "left", "right"):
        await kube.wait_agent(name, lambda a: phase(a) == "Running", what=f"{name} Running")
    await kube.create_workflow(
        "fan",
        input={"items": ITEMS},
        steps=[
            {"name": "plan", "agent": "planner", "action": "echo", "input": "{{ input }}"},
            {
                "name": "count",
                "capability": "tally",
                "action": "increment",
                "dependsOn": ["plan"],
                "input": {"by": "{{ item }}"},
                "map": {"items": "{{ steps.plan.result.items }}", "parallelism": 8},
            },
        ],
        output={"last": "{{ steps.count.result.199.count }}"},
    )
    # The runner killed twice and a member deleted while the map runs.
    await kube.wait_workflow("fan", lambda w: map_progress(w) >= 20, timeout=120, what="20 done")
    await kill_runner(kube, "fan")
    await kube.wait_workflow("fan", lambda w: map_progress(w) >= 70, timeout=120, what="70 done")
    await kube.delete_pod("left-1", grace=0)
    await kube.wait_workflow("fan", lambda w: map_progress(w) >= 120, timeout=120, what="120")
    await kill_runner(kube, "fan")
    workflow = await kube.wait_workflow("fan", finished, timeout=240, what="finished")
    status = workflow["status"]
    assert status["phase"] == "Succeeded", status.get("conditions")
    count = steps_of(workflow)["count"]
    assert (count["items"], count["progress"]) == (200, "200/200")
    assert status["itemProgress"] == "200/200"
    async with httpx.AsyncClient() as http:
        scraped = (await http.get("http://127.0.0.1:19090/metrics")).text
    assert 'foundation_workflow_items_total{outcome="Succeeded"}' in scraped
    # Exactly once: the four members' counts add up to the items' sum, and no item went twice.
    totals = [await count_of(kube, agent, i) for agent in ("left", "right") for i in (0, 1)]
    assert sum(totals) == sum(ITEMS), totals
    items = {i["name"]: i for i in status["items"]}
    assert all(items[f"count.{k}"]["attempts"] == 1 for k in range(200))
    # Each result in its item's place: on each member, the counts its items left, in order,
    # differ by those items' own values.
    results = count["result"]
    assert len(results) == 200 and status["output"] == {"last": results[199]["count"]}
    by_member: dict[str, list[tuple[int, int]]] = {}
    for index, result in enumerate(results):
        by_member.setdefault(items[f"count.{index}"]["member"], []).append(
            (result["count"], ITEMS[index])
        )
    assert len(by_member) >= 2, by_member.keys()
    for member, seen in by_member.items():
        seen.sort()
        counts = [0] + [c for c, _ in seen]
        assert [b - a for a, b in itertools.pairwise(counts)] == [v for _, v in seen], member


async def test_the_map_example_runs_as_its_comments_say(kube: Kube) -> None:
    kube.kubectl_apply(REPO / "examples/agent.yaml")
    kube.kubectl_apply(REPO / "examples/workflow-map.yaml")
    workflow = await kube.wait_workflow("visits", finished, timeout=120, what="visits finished")
    status = workflow["status"]
    assert status["phase"] == "Succeeded", status.get("conditions")
    counts = [r["count"] for r in status["output"]["counts"]]
    assert len(counts) == 5 and status["itemProgress"] == "5/5"
    assert status["output"]["report"] == f"fri: the count reached {counts[4]}"
    # The counter's two members together counted the five days' visitors once each.
    assert await count_of(kube, "counter", 0) + await count_of(kube, "counter", 1) == 14
