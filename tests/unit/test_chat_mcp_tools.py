"""ChatAgent's tools from an MCP server (the `mcp` package's server on loopback) through the real
sidecar proxy: a server that is down at start is picked up when it comes up, a call carries its
task id, a changed tool list is fetched again when the server says so."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import mcp_types as types
import pytest
from aiohttp.test_utils import TestServer
from mcp.server import Server
from mcp.server.subscriptions import InMemorySubscriptionBus, ListenHandler
from mcp.shared.subscriptions import ToolsListChanged
from test_a2a_server import free_port
from test_chat_agent import run, served, started

from foundation_agent.agents import ChatAgent
from foundation_agent.chat import mcp_tools
from foundation_agent.protocols.asgi import serve
from foundation_agent.sidecar.proxy import Proxy
from foundation_common.sidecar import SidecarConfig
from foundation_common.tasks import bound_id
from scripted_model import ScriptedModel
from waiting import until

SUM = types.Tool(
    name="add",
    description="a + b",
    input_schema={
        "type": "object",
        "properties": {"a": {"type": "number"}, "b": {"type": "number"}},
    },
)
PRODUCT = types.Tool(name="mul", description="a * b", input_schema=SUM.input_schema)


class Calculator:
    """An MCP server whose tools the test changes; it records each call's arguments and meta."""

    def __init__(self) -> None:
        self.tools = [SUM]
        self.calls: list[tuple[str, dict[str, Any], Any]] = []
        self.bus = InMemorySubscriptionBus()

    async def list_tools(self, ctx: Any, params: Any) -> types.ListToolsResult:
        return types.ListToolsResult(tools=self.tools)

    async def call_tool(
        self, ctx: Any, params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        arguments = params.arguments or {}
        self.calls.append((params.name, arguments, params.meta))
        value = (
            arguments["a"] + arguments["b"]
            if params.name == "add"
            else arguments["a"] * arguments["b"]
        )
        return types.CallToolResult(
            content=[types.TextContent(text=str(value))], structured_content={"value": value}
        )

    def app(self) -> Any:
        server = Server(
            "calculator",
            on_list_tools=self.list_tools,
            on_call_tool=self.call_tool,
            on_subscriptions_listen=ListenHandler(self.bus),
        )
        return server.streamable_http_app(host="127.0.0.1")

    @contextlib.asynccontextmanager
    async def serving(self, port: int) -> AsyncIterator[None]:
        stop = asyncio.Event()
        task = asyncio.create_task(serve(self.app(), "127.0.0.1", port, stop, lifespan="on"))
        try:
            yield
        finally:
            stop.set()
            await task


@pytest.fixture
def quick_reconnect(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mcp_tools, "RECONNECT", mcp_tools.Backoff(initial=0.1, maximum=0.5))
    monkeypatch.setattr(mcp_tools, "FIRST_CONNECT_WAIT", 2.0)


async def test_tools_of_an_mcp_server_that_comes_up_after_the_agent(
    monkeypatch: pytest.MonkeyPatch, quick_reconnect: None
) -> None:
    model = ScriptedModel(tool_call=("calc_add", {"a": 2, "b": 3}))
    model_server = await served(model.app())
    port = free_port()  # nothing listens there yet
    config = SidecarConfig.model_validate(
        {
            "upstreams": [
                {"name": "llm", "url": str(model_server.make_url("")).rstrip("/")},
                {"name": "calc", "url": f"http://127.0.0.1:{port}", "retries": 0},
            ]
        }
    )
    proxy: TestServer = await served(Proxy(config).app())
    monkeypatch.setenv("FOUNDATION_SIDECAR_URL", str(proxy.make_url("")).rstrip("/"))
    agent = ChatAgent(
        {"upstream": "llm", "model": "scripted", "mcpServers": [{"upstream": "calc"}]}
    )
    agent.name = "assistant"
    chat = await started(agent, "assistant-0")
    calculator = Calculator()
    try:
        # Down at start: the chat goes on without its tools.
        first = await run(chat, "c-1", "chat", {"session": "s", "message": "2+3?"})
        assert first["status"] == "succeeded", first
        assert "tools" not in model.requests[-1] and first["result"]["toolCalls"] == []

        async with calculator.serving(port):
            server = agent._servers[0]
            await until(lambda: server.client is not None, timeout=10, what="the MCP connection")
            second = await run(chat, "c-2", "chat", {"session": "s", "message": "2+3?"})
            assert second["status"] == "succeeded", second
            offered = [t["function"]["name"] for t in model.requests[-2]["tools"]]
            tool_id = bound_id("c-2.tool.0.0", {"a": 2, "b": 3})
            assert offered == ["calc_add"]
            assert second["result"]["toolCalls"] == [
                {"tool": "calc_add", "taskId": tool_id, "outcome": "succeeded"}
            ]
            assert second["result"]["reply"].endswith("the tool said 5")
            name, arguments, meta = calculator.calls[-1]
            assert (name, arguments) == ("add", {"a": 2, "b": 3})
            assert meta["foundation.dev/taskId"] == tool_id

            # The server's tools change and it says so: the next chat offers the new list.
            calculator.tools = [SUM, PRODUCT]
            await until(lambda: not server.stale, what="the list fetched")
            await calculator.bus.publish(ToolsListChanged())
            await until(lambda: server.stale, timeout=5, what="the change heard")
            model.tool_call = ("calc_mul", {"a": 2, "b": 3})
            third = await run(chat, "c-3", "chat", {"session": "s", "message": "2*3?"})
            offered = [t["function"]["name"] for t in model.requests[-2]["tools"]]
            tool_id = bound_id("c-2.tool.0.0", {"a": 2, "b": 3})
            assert offered == ["calc_add", "calc_mul"]
            assert third["result"]["reply"].endswith("the tool said 6")
    finally:
        await chat.stop()
        for server in (proxy, model_server):
            await server.close()
