"""Traces in a real trace store (Arize Phoenix, e2e/local/phoenix): a Workflow's step runs a
ChatAgent that calls a tool (another Agent), the ChatAgent's member is SIGKILLed in the middle,
and Phoenix holds one trace for all of it: the runner's step, the members' tasks (the run
after the crash in the same trace), the model calls with their token usage, the tool call and
the tool Agent's task, and the sidecar's calls between them."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from phoenix import Phoenix
from test_llm_agents import ScriptedServer, running, sigkill_member

from foundation_common import tracing
from kube import Kube
from scripted_model import ScriptedModel

pytestmark = pytest.mark.usefixtures("operator")


@pytest.fixture(scope="module")
def phoenix() -> Iterator[Phoenix]:
    store = Phoenix()
    store.start()
    yield store
    store.stop()


def named(spans: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [s for s in spans if s["name"] == name]


async def test_one_trace_from_a_workflow_step_through_a_chat_its_model_and_tool_across_a_crash(
    kube: Kube, phoenix: Phoenix
) -> None:
    traced = {"endpoint": phoenix.url}
    model = ScriptedModel(tool_call=("count_increment", {"by": 5}))
    model.gate = asyncio.Event()  # the round after the tool call waits here
    async with ScriptedServer(model) as url:
        await kube.create_agent(
            "tally", capabilities=["count"], sidecar={"enabled": False}, tracing=traced
        )
        await kube.create_agent(
            "planner",
            agent="foundation_agent.agents:ChatAgent",
            config={
                "upstream": "llm",
                "model": "scripted",
                "tools": [{"capability": "count", "action": "increment"}],
            },
            calls={"capabilities": ["count"]},
            sidecar={"upstreams": [{"name": "llm", "url": url}]},
            tracing=traced,
        )
        await kube.wait_agent("tally", running(), timeout=90, what="tally Running")
        await kube.wait_agent("planner", running(), timeout=90, what="planner Running")
        created = await kube.create_workflow(
            "traced",
            steps=[
                {
                    "name": "plan",
                    "agent": "planner",
                    "action": "chat",
                    "input": {"session": "s", "message": "add five"},
                    "timeoutSeconds": 240,
                }
            ],
            runner={"tracing": traced},
        )
        # The tool took effect; the model holds its next answer: kill the chat member once
        # Phoenix has the task's acceptance (a process killed loses the spans it ended in its
        # last second, not yet sent).
        await asyncio.wait_for(model.held.wait(), 120)

        async def accepted_in_phoenix() -> bool:
            return any(s["name"] == "accept_task planner" for s in await phoenix.spans())

        await kube.wait(accepted_in_phoenix, timeout=30, what="the acceptance in Phoenix")
        killed_at = datetime.now(UTC)
        await sigkill_member(kube, "planner-0")
        model.gate.set()
        workflow = await kube.wait_workflow(
            "traced",
            lambda w: (w.get("status") or {}).get("phase") in ("Succeeded", "Failed"),
            timeout=180,
            what="traced finished",
        )
    assert workflow["status"]["phase"] == "Succeeded", workflow["status"]
    trace_id = tracing.trace_id(tracing.rooted(created["metadata"]["uid"]))
    assert trace_id

    wanted = {
        "invoke_agent planner",  # the runner's step, and the chat member's runs
        "accept_task planner",
        "chat scripted",
        "execute_tool count_increment",
        "POST upstream llm",  # the sidecar's model calls
        "POST capability count",  # the sidecar's tool call
        "accept_task tally",
        "invoke_agent tally",
    }

    def after_the_crash(span: dict[str, Any]) -> bool:
        return datetime.fromisoformat(span["start_time"]) > killed_at

    def reruns(spans: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [
            s
            for s in named(spans, "invoke_agent planner")
            if "foundation.step" not in s["attributes"] and after_the_crash(s)
        ]

    def steps(spans: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [
            s for s in named(spans, "invoke_agent planner") if "foundation.step" in s["attributes"]
        ]

    async def complete() -> list[dict[str, Any]] | None:
        spans = await phoenix.spans(trace_id)
        done = wanted <= {s["name"] for s in spans} and reruns(spans) and steps(spans)
        return spans if done else None

    try:
        spans = await kube.wait(complete, timeout=60, what="the Workflow's spans in Phoenix")
    except AssertionError:
        every = await phoenix.spans()
        held = sorted(
            (s["context"]["trace_id"] == trace_id, s["name"], s["attributes"].get(tracing.ATTEMPT))
            for s in every
        )
        raise AssertionError(f"trace {trace_id}: Phoenix holds {held}") from None
    by_id = {s["context"]["span_id"]: s for s in spans}

    (step,) = steps(spans)
    assert step["attributes"]["foundation.workflow"] == "traced"
    assert step["attributes"]["foundation.task.id"].startswith(created["metadata"]["uid"])
    accepted = named(spans, "accept_task planner")
    assert len(accepted) == 1 and accepted[0]["parent_id"] == step["context"]["span_id"]
    # The chat's run after the crash hangs under the one acceptance, as the first did (whose
    # span was still open when its process was killed, so it never ended).
    (rerun,) = reruns(spans)
    assert rerun["parent_id"] == accepted[0]["context"]["span_id"]
    assert rerun["attributes"]["gen_ai.operation.name"] == "invoke_agent"
    assert rerun["attributes"]["foundation.member"] == "planner-0"
    assert rerun["attributes"]["foundation.task.id"] == step["attributes"]["foundation.task.id"]
    assert rerun["span_kind"] == "AGENT"  # Phoenix reads the GenAI operation

    # Spans the killed process had ended but not yet exported (the SDK sends them in batches)
    # are lost with it; the run after the crash has all of its own.
    def children(parent: dict[str, Any], name: str) -> list[dict[str, Any]]:
        return [s for s in named(spans, name) if s["parent_id"] == parent["context"]["span_id"]]

    chats = children(rerun, "chat scripted")
    assert len(chats) == 2  # the first round again, then the round after the tool's answer
    assert all(c["attributes"]["gen_ai.usage.input_tokens"] > 0 for c in chats)
    assert all(c["attributes"]["gen_ai.usage.output_tokens"] > 0 for c in chats)
    assert all(c["attributes"]["gen_ai.request.model"] == "scripted" for c in chats)
    assert {c["span_kind"] for c in chats} == {"LLM"}
    assert all(len(children(c, "POST upstream llm")) == 1 for c in chats)  # via the sidecar
    # The tool: its span, the sidecar's call to the capability, the tool Agent's task.
    (tool,) = children(rerun, "execute_tool count_increment")
    assert tool["attributes"]["gen_ai.tool.name"] == "count_increment"
    assert children(tool, "POST capability count")
    tally = named(spans, "accept_task tally")
    assert len(tally) == 1 and by_id[tally[0]["parent_id"]]["name"] == "POST capability count"
    counted = named(spans, "invoke_agent tally")
    assert len(counted) == 1  # the tool's effect once, the crash notwithstanding
    assert counted[0]["parent_id"] == tally[0]["context"]["span_id"]
    # The task record shows the trace it belongs to.
    step_status = workflow["status"]["steps"][0]
    assert step_status["phase"] == "Succeeded"
