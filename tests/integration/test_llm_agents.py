"""LLM agents on the local cluster: `ChatAgent` on a real model (SmolLM2-135M served by
llama-cpp-python, examples/model-server.yaml, reached through a Service upstream), and the tool
loop against a scripted model, with members SIGKILLed mid-conversation.

A 135M model's answers are often odd: these tests assert structure (replies, history, token
counts, errors), never what the model says."""

from __future__ import annotations

import asyncio
import copy
import os
import re
import signal
import time

import httpx
import pytest
import yaml
from aiohttp import web

from foundation_common.tasks import bound_id
from kube import REPO, Kube, container_status, is_ready, member_pids, phase
from localcluster.layout import BRIDGE_IP
from scripted_model import ScriptedModel

pytestmark = pytest.mark.usefixtures("operator")


def running(n: int = 1):
    return lambda a: phase(a) == "Running" and a["status"].get("ready") == f"{n}/{n}"


async def member_url(kube: Kube, pod: str) -> str:
    ready = await kube.wait_running(pod, timeout=90)
    return f"http://{ready['status']['podIP']}:8080"


async def task(kube: Kube, pod: str, task_id: str, action: str, input: dict) -> dict:
    """Send a task to a member and wait for its record (across the member's restarts)."""
    async with await kube.member_client(timeout=90) as http:
        deadline = time.monotonic() + 180
        while True:
            try:
                base = await member_url(kube, pod)
                await http.post(
                    f"{base}/v1/tasks", json={"id": task_id, "action": action, "input": input}
                )
                record = (await http.get(f"{base}/v1/tasks/{task_id}?wait=60")).json()
                if record.get("status") in ("succeeded", "failed"):
                    return record
            except httpx.TransportError:
                pass  # restarting: the same id again
            assert time.monotonic() < deadline, f"task {task_id} not done"
            await asyncio.sleep(0.2)


async def metric(kube: Kube, pod: str, name: str, **labels: str) -> float:
    async with httpx.AsyncClient(timeout=10) as http:
        ready = await kube.wait_running(pod, timeout=90)
        text = (await http.get(f"http://{ready['status']['podIP']}:8082/metrics")).text
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith(f"{name}{{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no {name}{{{wanted}}} in {pod}'s metrics")


async def sigkill_member(kube: Kube, pod: str) -> None:
    """Kill the agent container's processes as a crash would; wait for its restart."""
    before = container_status(await kube.pod(pod), "agent").get("restartCount", 0)
    pids = member_pids(kube.ns, pod)
    assert pids, f"no processes of {pod}"
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    await kube.wait_pod(
        pod,
        lambda p: container_status(p, "agent").get("restartCount", 0) > before and is_ready(p),
        timeout=90,
        what=f"{pod} restarted and ready",
    )


def chat_agent(open_seconds: float) -> dict:
    """examples/chat-agent.yaml, with a short circuit open time to keep the test short."""
    agent = yaml.safe_load((REPO / "examples/chat-agent.yaml").read_text())
    agent = copy.deepcopy(agent)
    agent["spec"]["sidecar"]["upstreams"][0]["circuitBreaker"]["openSeconds"] = open_seconds
    return agent


async def test_a_conversation_on_a_real_model_survives_a_crash_and_a_model_outage(
    kube: Kube, tmp_path
) -> None:
    kube.kubectl_apply(REPO / "examples/model-server.yaml")
    manifest = tmp_path / "chat-agent.yaml"
    manifest.write_text(yaml.safe_dump(chat_agent(open_seconds=2)))
    kube.kubectl_apply(manifest)
    kube.kubectl("wait", "--for=condition=Available", "deployment/model-server", "--timeout=120s")
    await kube.wait_agent("assistant", running(), timeout=120, what="assistant Running")

    # Two turns: the second is sent with the first (its prompt counts more tokens).
    say = {"session": "ada"}
    first = await task(kube, "assistant-0", "t1", "chat", {**say, "message": "My name is Ada."})
    assert first["status"] == "succeeded", first
    assert isinstance(first["result"]["reply"], str) and first["result"]["toolCalls"] == []
    one = first["result"]["usage"]
    second = await task(kube, "assistant-0", "t2", "chat", {**say, "message": "What is my name?"})
    assert second["status"] == "succeeded", second
    two = second["result"]["usage"]
    assert two["promptTokens"] > one["promptTokens"] + one["completionTokens"]

    # The member SIGKILLed between turns: the session is intact, and the third turn sees it.
    await sigkill_member(kube, "assistant-0")
    kept = await task(kube, "assistant-0", "h1", "history", say)
    assert [m["role"] for m in kept["result"]["messages"]] == ["user", "assistant"] * 2
    assert kept["result"]["messages"][0]["content"] == "My name is Ada."
    third = await task(kube, "assistant-0", "t3", "chat", {**say, "message": "Thanks!"})
    assert third["status"] == "succeeded", third
    three = third["result"]["usage"]
    assert three["promptTokens"] > two["promptTokens"] + two["completionTokens"]
    # Tokens counted since the restart: exactly the third turn's.
    labels = {"agent": "assistant"}
    prompt = await metric(
        kube, "assistant-0", "foundation_llm_tokens_total", kind="prompt", **labels
    )
    assert prompt == three["promptTokens"]
    completion = await metric(
        kube, "assistant-0", "foundation_llm_tokens_total", kind="completion", **labels
    )
    assert completion == three["completionTokens"]

    # The model server stopped: chat fails at once, naming the upstream; the circuit opens.
    kube.kubectl("scale", "deployment/model-server", "--replicas=0")

    async def no_endpoints() -> bool:
        endpoints = await kube.get("Endpoints", "model-server")
        return not any(s.get("addresses") for s in (endpoints or {}).get("subsets") or [])

    await kube.wait(no_endpoints, 60, "model-server without endpoints")
    errors = []
    for i in range(4):
        started = time.monotonic()
        failed = await task(kube, "assistant-0", f"down-{i}", "chat", {**say, "message": "Hi?"})
        errors.append((failed["status"], failed.get("error", ""), time.monotonic() - started))
    assert all(status == "failed" and took < 3 for status, _, took in errors), errors
    assert "no ready endpoint of service model-server for upstream model" in errors[0][1]
    assert any("its circuit is open" in error for _, error, _ in errors), errors
    assert (
        await metric(
            kube,
            "assistant-0",
            "foundation_llm_model_calls_total",
            upstream="model",
            outcome="circuit_open",
            **labels,
        )
        >= 1
    )
    # The failed turns changed nothing.
    kept = await task(kube, "assistant-0", "h2", "history", say)
    assert len(kept["result"]["messages"]) == 6

    # Started again: the circuit lets a probe through after openSeconds, and chat recovers.
    kube.kubectl("scale", "deployment/model-server", "--replicas=1")
    kube.kubectl("wait", "--for=condition=Available", "deployment/model-server", "--timeout=120s")
    deadline = time.monotonic() + 60
    for attempt in range(1000):
        back = await task(kube, "assistant-0", f"up-{attempt}", "chat", {**say, "message": "Hi"})
        if back["status"] == "succeeded":
            break
        assert time.monotonic() < deadline, back
        await asyncio.sleep(0.5)
    kept = await task(kube, "assistant-0", "h3", "history", say)
    assert len(kept["result"]["messages"]) == 8


class ScriptedServer:
    """The scripted model on the bridge address, where the members' sidecars reach it."""

    def __init__(self, model: ScriptedModel) -> None:
        self.model = model

    async def __aenter__(self) -> str:
        self.runner = web.AppRunner(self.model.app(), access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, BRIDGE_IP, 0)
        await site.start()
        return f"http://{BRIDGE_IP}:{site._server.sockets[0].getsockname()[1]}"

    async def __aexit__(self, *_: object) -> None:
        await self.runner.cleanup()


async def test_the_tool_loop_repeats_no_effect_when_the_chat_member_is_killed_mid_loop(
    kube: Kube,
) -> None:
    model = ScriptedModel(tool_call=("count_increment", {"by": 5}))
    model.gate = asyncio.Event()  # the round after the tool call waits here
    async with ScriptedServer(model) as url:
        await kube.create_agent(
            "tally", capabilities=["count"], sidecar={"enabled": False}, replicas=1
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
        )
        await kube.wait_agent("tally", running(), timeout=90, what="tally Running")
        await kube.wait_agent("planner", running(), timeout=90, what="planner Running")
        base = await member_url(kube, "planner-0")
        async with await kube.member_client(timeout=30) as http:
            accepted = await http.post(
                f"{base}/v1/tasks",
                json={"id": "plan-1", "action": "chat", "input": {"session": "s", "message": "+5"}},
            )
            assert accepted.status_code == 202, accepted.text
        # The tool took effect; the model holds its next answer: kill the chat member now.
        await asyncio.wait_for(model.held.wait(), 60)
        await sigkill_member(kube, "planner-0")
        model.gate.set()
        record = await task(kube, "planner-0", "plan-1", "chat", {"session": "s", "message": "+5"})
    assert record["status"] == "succeeded", record
    # It ran again after the crash: the model was asked for the first round twice.
    first_rounds = [r for r in model.requests if r["messages"][-1]["role"] == "user"]
    tool_id = bound_id("plan-1.tool.0.0", {"by": 5})  # the same call both times: one id
    assert len(first_rounds) == 2
    assert record["result"]["toolCalls"] == [
        {"tool": "count_increment", "taskId": tool_id, "outcome": "succeeded"}
    ]
    assert re.search(r'the tool said \{"count":5\}$', record["result"]["reply"])
    count = await task(kube, "tally-0", "read", "get", {})
    assert count["result"] == {"count": 5}  # once, not twice
    tool_task = await task(kube, "tally-0", tool_id, "increment", {"by": 5})
    assert tool_task["attempts"] == 1
