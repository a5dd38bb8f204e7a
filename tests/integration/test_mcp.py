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

from foundation_common.discovery import rendezvous
from kube import REPO, Kube, phase

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
async def mcp_server(cluster: str, namespace: str, *agents: str) -> AsyncIterator[str]:
    """`foundation mcp` serving `agents` on a loopback port; its URL once it answers."""
    port = free_port()
    chosen = [arg for agent in agents for arg in ("--agent", agent)]
    process = await asyncio.create_subprocess_exec(
        CLI, "--kubeconfig", cluster, "-n", namespace, "mcp", *chosen,
        "--listen", f"127.0.0.1:{port}",
        stderr=asyncio.subprocess.PIPE,
        env=ENV,
    )  # fmt: skip
    try:
        assert process.stderr is not None
        line = await asyncio.wait_for(process.stderr.readline(), 30)
        assert b"serving MCP at" in line, line
        for _ in range(100):  # the banner comes just before the socket is bound
            with contextlib.suppress(OSError):
                _, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.close()
                break
            await asyncio.sleep(0.05)
        yield f"http://127.0.0.1:{port}/mcp"
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
