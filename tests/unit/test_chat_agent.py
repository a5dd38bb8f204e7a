"""`ChatAgent` without a cluster: a scripted OpenAI-compatible model behind the real sidecar
proxy, tools on a real member runtime (CounterAgent) found by capability."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass

import pytest
from aiohttp.test_utils import TestServer
from test_sidecar_discovery import endpoints

from foundation_agent.agents import ChatAgent, CounterAgent
from foundation_agent.agents.chat import ChatInput, ChatState
from foundation_agent.chat import history, metrics
from foundation_agent.model import AgentError, TaskContext, running
from foundation_agent.runtime.access import Gate
from foundation_agent.runtime.member import Member, Refused
from foundation_agent.runtime.server import TaskApi
from foundation_agent.runtime.settings import Settings
from foundation_agent.sidecar.proxy import Proxy
from foundation_agent.stores import MemoryStore
from foundation_common.discovery import Capability, Directory, RestEndpoints
from foundation_common.sidecar import SidecarConfig
from foundation_common.tasks import bound_id
from scripted_model import ScriptedModel

# No API server here: callers without a token are let through, as Permissive members do.
OPEN = Gate(None, "ns", "agent", "agent", "Permissive")


@dataclass
class World:
    model: ScriptedModel
    counter: Member
    chat: Member
    agent: ChatAgent


async def served(app) -> TestServer:
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    return server


async def started(agent, name: str) -> Member:
    member = Member(agent, MemoryStore(), Settings(agent_class="x:Y", member_name=name))
    await member.load()
    member.start()
    return member


@pytest.fixture
async def world(monkeypatch):
    model = ScriptedModel(tool_call=("count_increment", {"by": 5}))
    model_server = await served(model.app())
    counter = await started(CounterAgent(), "tally-0")
    counter_server = await served(TaskApi(OPEN, counter).app())

    config = SidecarConfig.model_validate(
        {
            "upstreams": [
                {
                    "name": "llm",
                    "url": str(model_server.make_url("")).rstrip("/"),
                    "circuitBreaker": {"failureThreshold": 2, "openSeconds": 30},
                }
            ]
        }
    )

    def no_api():
        raise AssertionError("the test feeds the Endpoints itself")

    directory = Directory(config.discovery, "ns", RestEndpoints(connect=no_api))
    cap = directory.capabilities["foundation-cap-count"] = Capability("count", config.discovery)
    cap.update(endpoints({"tally-0": f"127.0.0.1:{counter_server.port}"}))
    cap.listed.set()
    proxy_server = await served(Proxy(config, directory).app())
    monkeypatch.setenv("FOUNDATION_SIDECAR_URL", str(proxy_server.make_url("")).rstrip("/"))

    agent = ChatAgent(
        {
            "upstream": "llm",
            "model": "scripted",
            "system": "Be brief.",
            "tools": [{"capability": "count", "action": "increment"}],
        }
    )
    agent.name = "assistant"
    chat = await started(agent, "assistant-0")
    yield World(model, counter, chat, agent)
    for member in (chat, counter):
        await member.stop()
    for server in (proxy_server, counter_server, model_server):
        await server.close()


async def run(member: Member, task_id: str, action: str, input: dict) -> dict:
    await member.submit(task_id, action, input)
    return await asyncio.wait_for(member.finished(task_id), 10)


def sample(name: str, **labels: str) -> float:
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


async def test_a_conversation_keeps_its_history_and_counts_tokens(world: World) -> None:
    world.model.tool_call = None
    before = sample("foundation_llm_tokens_total", agent="assistant", kind="completion")
    first = await run(world.chat, "c-1", "chat", {"session": "s", "message": "hello"})
    assert first["status"] == "succeeded", first
    assert first["result"]["reply"].startswith("you said 'hello'")
    usage = first["result"]["usage"]
    assert usage["totalTokens"] == usage["promptTokens"] + usage["completionTokens"] > 0
    second = await run(world.chat, "c-2", "chat", {"session": "s", "message": "again"})
    # The second call carried the system prompt, the first turn, and the new message.
    sent = world.model.requests[-1]["messages"]
    assert [m["role"] for m in sent] == ["system", "user", "assistant", "user"]
    assert sent[1]["content"] == "hello" and sent[2]["content"] == first["result"]["reply"]
    assert "seen 4 messages" in second["result"]["reply"]
    # Another session does not see it.
    await run(world.chat, "c-3", "chat", {"session": "other", "message": "hi"})
    assert [m["role"] for m in world.model.requests[-1]["messages"]] == ["system", "user"]
    kept = await run(world.chat, "h-1", "history", {"session": "s"})
    assert [m["content"] for m in kept["result"]["messages"]][::2] == ["hello", "again"]
    assert kept["result"]["turns"] == 2
    after = sample("foundation_llm_tokens_total", agent="assistant", kind="completion")
    assert after - before >= usage["completionTokens"] * 2
    assert (
        sample("foundation_llm_model_calls_total", agent="assistant", upstream="llm", outcome="ok")
        >= 3
    )
    reset = await run(world.chat, "r-1", "reset", {"session": "s"})
    assert reset["result"] == {"session": "s", "reset": True}
    gone = await run(world.chat, "h-2", "history", {"session": "s"})
    assert gone["result"]["messages"] == []
    # A bad input names the field, before anything runs.
    with pytest.raises(Refused, match=r"input\.message"):
        await world.chat.submit("bad", "chat", {"session": "s", "message": ""})


async def test_the_tool_loop_calls_another_agent_once_per_call(world: World) -> None:
    done = await run(world.chat, "c-9", "chat", {"session": "t", "message": "add five"})
    assert done["status"] == "succeeded", done
    result = done["result"]
    assert result["toolCalls"] == [
        {
            "tool": "count_increment",
            "taskId": bound_id("c-9.tool.0.0", {"by": 5}),
            "outcome": "succeeded",
        }
    ]
    assert result["reply"].endswith('the tool said {"count":5}')
    assert world.counter.state.count == 5
    # The model was offered the action's input schema as the tool's parameters.
    offered = world.model.requests[0]["tools"][0]["function"]
    assert offered["name"] == "count_increment"
    assert offered["parameters"]["properties"]["by"]["type"] == "integer"
    # CounterAgent's increment has no docstring: the description says what the tool calls.
    assert offered["description"] == "The action increment of the agents with capability count."
    # The session keeps the call and its result together, in order.
    kept = (await run(world.chat, "h-9", "history", {"session": "t"}))["result"]["messages"]
    assert [m["role"] for m in kept] == ["user", "assistant", "tool", "assistant"]
    assert kept[2]["tool_call_id"] == kept[1]["tool_calls"][0]["id"]


async def test_a_chat_task_run_again_after_a_crash_does_not_repeat_a_tool_effect(
    world: World,
) -> None:
    """The crash: the chat task is cancelled after its tool call took effect, while the model
    holds its next answer; the runtime would run the task again, with the same id."""
    world.model.gate = asyncio.Event()  # closed: round 1 (after the tool call) waits
    state = ChatState()
    chat = ChatInput(session="crash", message="add five")

    async def attempt(number: int):
        running(TaskContext("c-crash", "chat", number))
        return await world.agent.chat(state, chat)

    first = asyncio.create_task(attempt(1))
    await asyncio.wait_for(world.model.held.wait(), 5)  # round 1 waits at the gate
    assert world.counter.task(bound_id("c-crash.tool.0.0", {"by": 5}))["status"] == "succeeded"
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    world.model.gate.set()
    result, _ = await attempt(2)
    assert result["toolCalls"][0]["outcome"] == "succeeded"
    assert world.counter.state.count == 5  # once, not twice
    assert world.counter.task(bound_id("c-crash.tool.0.0", {"by": 5}))["attempts"] == 1


async def test_a_failing_model_opens_the_circuit_and_chat_fails_fast(world: World) -> None:
    world.model.failing = True
    first = await run(world.chat, "f-1", "chat", {"session": "s", "message": "hi"})
    assert first["status"] == "failed"
    # Its retries failed and opened the circuit: the error says both.
    assert "model upstream 'llm' answered 502: upstream llm: answered 500" in first["error"]
    assert "the circuit is now open" in first["error"]
    started = time.monotonic()
    refused = await run(world.chat, "f-2", "chat", {"session": "s", "message": "hi"})
    assert time.monotonic() - started < 1.0
    assert refused["status"] == "failed"
    assert "model upstream 'llm': its circuit is open" in refused["error"], refused["error"]
    assert (
        sample(
            "foundation_llm_model_calls_total",
            agent="assistant",
            upstream="llm",
            outcome="circuit_open",
        )
        >= 1
    )
    # The failed turns left the session as it was.
    kept = await run(world.chat, "h-f", "history", {"session": "s"})
    assert kept["result"]["messages"] == []


async def test_unknown_tools_and_bad_arguments_are_told_to_the_model(world: World) -> None:
    world.model.tool_call = ("nope", {})
    done = await run(world.chat, "u-1", "chat", {"session": "u", "message": "x"})
    assert done["result"]["toolCalls"][0]["outcome"] == "unknown"
    assert "there is no tool named 'nope' (tools: count_increment)" in done["result"]["reply"]
    world.model.tool_call = ("count_increment", {"by": "many"})
    done = await run(world.chat, "u-2", "chat", {"session": "u", "message": "x"})
    assert done["result"]["toolCalls"][0]["outcome"] == "refused"
    assert "input.by" in done["result"]["reply"]
    assert world.counter.state.count == 0


async def test_the_runtime_lists_its_actions_with_their_input_schemas(world: World) -> None:
    server = await served(TaskApi(OPEN, world.counter).app())
    async with __import__("httpx").AsyncClient(base_url=str(server.make_url(""))) as http:
        listed = (await http.get("/v1/actions")).json()["actions"]
    await server.close()
    by_name = {a["name"]: a for a in listed}
    assert set(by_name) == {"get", "increment"}
    assert by_name["increment"]["inputSchema"]["properties"]["by"]["maximum"] == 10**9
    assert by_name["get"]["inputSchema"]["additionalProperties"] is False


def test_history_drops_whole_turns_from_the_oldest() -> None:
    turn = lambda n: [  # noqa: E731
        {"role": "user", "content": f"u{n}"},
        {"role": "assistant", "tool_calls": [{"id": f"t{n}"}]},
        {"role": "tool", "tool_call_id": f"t{n}", "content": "r"},
        {"role": "assistant", "content": f"a{n}"},
    ]
    messages = turn(1) + turn(2) + turn(3)
    assert history.trim(messages, 12) == (messages, 0)
    kept, dropped = history.trim(messages, 9)
    assert dropped == 4 and kept == turn(2) + turn(3)
    kept, dropped = history.trim(messages, 5)
    assert dropped == 8 and kept == turn(3)
    # The newest turn is kept whole even when it alone is longer than the bound.
    assert history.trim(messages, 2) == (turn(3), 8)
    assert history.least_recent({"a": 3.0, "b": 1.0, "c": 2.0}, 1) == ["b", "c"]
    assert history.least_recent({"a": 1.0}, 5) == []


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({}, "config.upstream: Field required"),
        ({"upstream": "llm", "maxToolRounds": -1}, "config.maxToolRounds"),
        (
            {
                "upstream": "llm",
                "tools": [
                    {"capability": "count", "action": "increment"},
                    {"capability": "count", "action": "increment"},
                ],
            },
            "tool names must be unique: count_increment",
        ),
        ({"upstream": "llm", "temperature": "hot"}, "config.temperature"),
    ],
)
def test_a_bad_config_stops_the_agent_with_the_field_named(config: dict, message: str) -> None:
    with pytest.raises(AgentError, match=message):
        ChatAgent(config)
    json.dumps(config)
