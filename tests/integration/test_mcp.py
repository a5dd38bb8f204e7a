"""Agents as MCP tools on the local cluster: `foundation mcp` (the console script, a
kubeconfig), called by the `mcp` package's own client over streamable HTTP and over stdio."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import AsyncIterator

import pytest
from mcp import Client, StdioServerParameters
from mcp.shared.exceptions import MCPError
from test_llm_agents import ScriptedServer, task

from foundation_common.discovery import rendezvous
from foundation_common.tasks import bound_id
from kube import REPO, Kube, phase
from localcluster.layout import BRIDGE_IP
from scripted_model import ScriptedModel

pytestmark = pytest.mark.usefixtures("operator")
CLI = str(REPO / ".venv/bin/foundation")
ENV = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}


async def running(kube: Kube, name: str, replicas: int, **spec: object) -> None:
    await kube.create_agent(name, replicas=replicas, **spec)
    await kube.wait_agent(
        name,
        lambda a: phase(a) == "Running" and a["status"].get("ready") == f"{replicas}/{replicas}",
        timeout=90,
        what=f"{name} Running",
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.asynccontextmanager
async def mcp_server(
    cluster: str, namespace: str, *agents: str, host: str = "127.0.0.1", port: int = 0
) -> AsyncIterator[str]:
    """`foundation mcp` serving `agents` on `host`:`port` (default a free loopback port); its
    URL once it answers."""
    port = port or free_port()
    chosen = [arg for agent in agents for arg in ("--agent", agent)]
    if host != "127.0.0.1":  # pods reach it on the node's address: said so, as a user must
        chosen.append("--unauthenticated-non-loopback")
    process = await asyncio.create_subprocess_exec(
        CLI, "--kubeconfig", cluster, "-n", namespace, "mcp", *chosen,
        "--listen", f"{host}:{port}",
        stderr=asyncio.subprocess.PIPE,
        env=ENV,
    )  # fmt: skip
    try:
        assert process.stderr is not None
        line = await asyncio.wait_for(process.stderr.readline(), 30)
        assert b"serving MCP at" in line, line
        for _ in range(100):  # the banner comes just before the socket is bound
            with contextlib.suppress(OSError):
                _, writer = await asyncio.open_connection(host, port)
                writer.close()
                break
            await asyncio.sleep(0.05)
        yield f"http://{host}:{port}/mcp"
    finally:
        process.terminate()
        await asyncio.wait_for(process.wait(), 30)


async def test_agents_actions_are_tools_and_a_call_with_the_same_id_runs_once(
    kube: Kube, cluster: str
) -> None:
    await running(kube, "tally", 2, description="Counts what it is told to.")
    await running(kube, "jobs", 1, agent="foundation_agent.agents:TaskAgent")
    async with mcp_server(cluster, kube.ns, "tally", "jobs") as url, Client(url) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
        assert {"tally__increment", "tally__get", "jobs__echo", "jobs__sleep"} <= set(tools)
        increment = tools["tally__increment"]
        assert increment.input_schema["properties"]["by"]["type"] == "integer"
        assert "Counts what it is told to." in (increment.description or "")
        assert tools["jobs__echo"].input_schema["type"] == "object"

        meta = {"foundation.dev/taskId": "mcp-add-1"}
        first = await client.call_tool("tally__increment", {"by": 5}, meta=meta)
        assert not first.is_error and first.structured_content == {"count": 5}
        # The answer was lost; the client calls again with the same id: the same task.
        again = await client.call_tool("tally__increment", {"by": 5}, meta=meta)
        assert again.structured_content == {"count": 5}
        # Without an id, each call is a new task.
        echoed = await client.call_tool("jobs__echo", {"say": "hi"})
        assert echoed.structured_content == {"say": "hi"}

        bad = await client.call_tool("tally__increment", {"by": "many"})
        assert bad.is_error and "input.by" in bad.content[0].text
        with pytest.raises(MCPError, match="no tool 'nobody__get'"):
            await client.call_tool("nobody__get", {})

    # Over stdio, as a desktop client launches it: a read on the member that took the
    # increment (ids go to members by the same hash) shows it counted once.
    members = ["tally-0", "tally-1"]
    read_id = next(
        f"read-{i}"
        for i in range(100)
        if rendezvous(f"read-{i}", members) == rendezvous("mcp-add-1", members)
    )
    stdio = StdioServerParameters(
        command=CLI,
        args=["--kubeconfig", cluster, "-n", kube.ns, "mcp", "--agent", "tally", "--stdio"],
        env=ENV,
    )
    async with Client(stdio) as client:
        read = await client.call_tool("tally__get", {}, meta={"foundation.dev/taskId": read_id})
        assert read.structured_content == {"count": 5}


async def test_a_chat_agent_takes_up_an_mcp_server_that_starts_after_it(
    kube: Kube, cluster: str
) -> None:
    """ChatAgent -> its sidecar -> `foundation mcp` (on the bridge, started later) -> the API
    server's proxy -> Agent tally: the tool's effect happens once, as task <chat>.tool.0.0."""
    await running(kube, "tally", 1)
    port = free_port()
    model = ScriptedModel(tool_call=("agents_tally__increment", {"by": 4}))
    async with ScriptedServer(model) as llm:
        await running(
            kube,
            "planner",
            1,
            agent="foundation_agent.agents:ChatAgent",
            config={"upstream": "llm", "model": "scripted", "mcpServers": [{"upstream": "agents"}]},
            sidecar={
                "upstreams": [
                    {"name": "llm", "url": llm},
                    # Down until the server starts: its breaker opens meanwhile, and must not
                    # then ramp traffic back up slowly (turning a call away) once it is there.
                    {
                        "name": "agents",
                        "url": f"http://{BRIDGE_IP}:{port}",
                        "retries": 0,
                        "circuitBreaker": {"recoverySeconds": 0},
                    },
                ]
            },
        )
        say = {"session": "s", "message": "+4"}
        alone = await task(kube, "planner-0", "plan-0", "chat", say)
        assert alone["status"] == "succeeded" and alone["result"]["toolCalls"] == []
        async with mcp_server(cluster, kube.ns, "tally", host=BRIDGE_IP, port=port):
            deadline = asyncio.get_running_loop().time() + 60
            for attempt in range(1, 1000):  # until the member's reconnection finds the server
                record = await task(kube, "planner-0", f"plan-{attempt}", "chat", say)
                if record["result"]["toolCalls"]:
                    break
                assert asyncio.get_running_loop().time() < deadline, "tools never offered"
        assert record["result"]["toolCalls"] == [
            {
                "tool": "agents_tally__increment",
                "taskId": bound_id(f"plan-{attempt}.tool.0.0", {"by": 4}),
                "outcome": "succeeded",
            }
        ]
        assert record["result"]["reply"].endswith('the tool said {"count": 4}')
    tool_id = bound_id(f"plan-{attempt}.tool.0.0", {"by": 4})
    tool_task = await task(kube, "tally-0", tool_id, "increment", {"by": 4})
    assert tool_task["result"] == {"count": 4} and tool_task["attempts"] == 1
    count = await task(kube, "tally-0", "read", "get", {})
    assert count["result"] == {"count": 4}
