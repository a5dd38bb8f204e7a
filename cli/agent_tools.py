"""Foundation Agents as MCP tools: `foundation mcp --agent NAME ...` (the `mcp` package's server,
streamable HTTP on loopback, or stdio for a client that launches it).

Each action of each chosen Agent is a tool named `<agent>__<action>` (Agent names hold no `_`,
so the split is unambiguous), with the action's input JSON schema and the Agent's description.
A call is a task, delivered through people's door exactly as `foundation send` does:
its id is the call's `_meta["foundation.dev/taskId"]` when the client gives one (a client that
calls again after a lost answer with the same id gets the same task, never a second run), else
a new one; delivery is retried with that id. The call answers when the task is done: its result
as structured content and as JSON text, or its error with `isError`.

It runs beside the MCP client, with the user's kubeconfig: the user's own RBAC decides what it
may reach, and no identity or open port is added to the cluster.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Mapping
from typing import Any

import mcp_types as types

from foundation_cli.tasks import Problem, Tasks
from foundation_common import tracing
from foundation_common.resources import TASK_ID_META
from foundation_common.tasks import ENDED

SEPARATOR = "__"
TOOLS_TTL = 5.0  # seconds a listing of the Agents' actions is reused


def tool_name(agent: str, action: str) -> str:
    return f"{agent}{SEPARATOR}{action}"


def split_tool_name(name: str) -> tuple[str, str] | None:
    agent, separator, action = name.partition(SEPARATOR)
    return (agent, action) if separator and agent and action else None


def input_schema(schema: Mapping[str, Any] | None) -> dict[str, Any]:
    """An action's input schema as a tool's (an object at the root, as MCP requires): an action
    that takes any JSON gets any object."""
    if not schema:
        return {"type": "object", "description": "The task's input: any JSON object."}
    return dict(schema)


def tool_of(agent: str, description: str, action: Mapping[str, Any]) -> types.Tool:
    about = action.get("description") or f"The {action['name']} action"
    if description:
        about = f"{about} (Agent {agent}: {description})"
    return types.Tool(
        name=tool_name(agent, action["name"]),
        description=about,
        input_schema=input_schema(action.get("inputSchema")),
        annotations=types.ToolAnnotations(title=f"{agent}: {action['name']}"),
    )


def task_id_of(meta: Any) -> str:
    """The task id of a call: the client's `_meta["foundation.dev/taskId"]`, else a new one."""
    given = meta.get(TASK_ID_META) if isinstance(meta, Mapping) else None
    return str(given) if given else f"mcp-{uuid.uuid4().hex}"


def result_of(agent: str, record: Mapping[str, Any]) -> types.CallToolResult:
    """A task record as a tool's result: its result, or why it did not succeed."""
    status = record.get("status")
    if status == "succeeded":
        result = record.get("result")
        return types.CallToolResult(
            content=[types.TextContent(text=json.dumps(result))],
            structured_content=result if isinstance(result, dict) else {"result": result},
        )
    if status in ENDED:
        problem = record.get("error") or status
        text = f"task {record.get('id')} of Agent {agent} {status}: {problem}"
    else:
        text = (
            f"task {record.get('id')} of Agent {agent} is still {status}; call again with "
            f'_meta {{"{TASK_ID_META}": "{record.get("id")}"}} to wait for it'
        )
    return types.CallToolResult(content=[types.TextContent(text=text)], is_error=True)


class AgentTools:
    """The tools of the chosen Agents, listed afresh at most every `TOOLS_TTL` seconds."""

    def __init__(self, tasks: Tasks, agents: list[str], timeout: float) -> None:
        self.tasks = tasks
        self.agents = agents
        self.timeout = timeout
        self._tools: list[types.Tool] = []
        self._listed_at = float("-inf")

    async def tools(self) -> list[types.Tool]:
        if time.monotonic() - self._listed_at < TOOLS_TTL:
            return self._tools
        found: list[types.Tool] = []
        deadline = time.monotonic() + 10
        for agent in self.agents:
            description, actions = await self.tasks.actions(agent, deadline)
            found.extend(tool_of(agent, description, a) for a in actions)
        self._tools, self._listed_at = found, time.monotonic()
        return found

    async def list_tools(self, ctx: Any, params: Any) -> types.ListToolsResult:
        try:
            return types.ListToolsResult(tools=await self.tools())
        except Problem as exc:
            raise _error(str(exc)) from None

    async def call_tool(
        self, ctx: Any, params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        named = split_tool_name(params.name)
        if named is None or named[0] not in self.agents:
            raise _error(
                f"no tool {params.name!r}: tools are <agent>__<action> of Agents "
                f"{', '.join(self.agents)}"
            )
        agent, action = named
        task_id = task_id_of(params.meta)
        deadline = time.monotonic() + self.timeout
        # An MCP client's trace, as its call's _meta carries it (traceparent, tracestate).
        meta = params.meta if isinstance(params.meta, Mapping) else {}
        tracing.INCOMING.set(tracing.carried({k: str(v) for k, v in meta.items()}))
        with tracing.span(
            f"execute_tool {params.name}",
            kind="CLIENT",
            context=tracing.INCOMING.get(),
            attributes={
                "gen_ai.operation.name": "execute_tool",
                "gen_ai.tool.name": params.name,
                tracing.AGENT: agent,
                tracing.TASK_ID: task_id,
            },
        ) as span:
            try:
                arguments = dict(params.arguments or {})
                member, record = await self.tasks.send(agent, task_id, action, arguments, deadline)
                _, record = await self.tasks.sent_until_done(
                    agent, member, record, deadline, arguments
                )
            except Problem as exc:
                if span is not None:
                    tracing.failed(span, str(exc))
                return types.CallToolResult(
                    content=[types.TextContent(text=f"task {task_id}: {exc}")], is_error=True
                )
            return result_of(agent, record)

    def server(self, version: str) -> Any:
        from mcp.server import Server

        return Server(
            "foundation",
            version=version,
            description="Foundation Agents' actions as tools; each call is an exactly-once task.",
            on_list_tools=self.list_tools,
            on_call_tool=self.call_tool,
        )


def _error(message: str) -> Exception:
    from mcp.shared.exceptions import MCPError

    return MCPError(types.INVALID_PARAMS, message)
