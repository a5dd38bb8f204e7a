"""Tools: actions of other Agents, found by capability, offered to the model and called as
tasks through the sidecar (`/agents/<capability>/`); and the tools of MCP servers
(`mcp_tools`), through sidecar upstreams.

A tool's JSON schema is its action's input schema, which a member of the capability lists at
`GET /v1/actions`; it is fetched when first needed, and again until it is known (a capability
with no member yet is offered with a schema that takes any object).

A call is a task whose id is derived from the chat task's and from its arguments
(`<chat task>.tool.<round>.<index>.<digest of the arguments>`): a chat task run again after a
crash sends the same ids for the same calls, and the receiving members answer with the records
they hold instead of acting twice; a call the model makes differently the second time is
another request, with an id of its own (an id sent again with other content is refused, 409).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

import httpx

from foundation_agent.chat import metrics
from foundation_agent.chat.config import ToolConfig
from foundation_agent.chat.mcp_tools import McpTools
from foundation_agent.client import DeliveryError, Sidecar
from foundation_common import tracing
from foundation_common.tasks import bound_id

logger = logging.getLogger("foundation_agent.chat")

ANY_OBJECT: dict[str, Any] = {"type": "object"}


@dataclass(frozen=True)
class ToolCall:
    """What one call did, as the chat task's result reports it."""

    id: str  # the model's id for the call
    tool: str
    task_id: str
    outcome: str  # succeeded, failed, refused, error, unknown
    content: str  # what the model is told

    def summary(self) -> dict[str, Any]:
        return {"tool": self.tool, "taskId": self.task_id, "outcome": self.outcome}


class Toolbox:
    def __init__(
        self,
        sidecar: Sidecar,
        tools: list[ToolConfig],
        agent: str,
        servers: list[McpTools] | None = None,
    ) -> None:
        self.sidecar = sidecar
        self.tools = {t.tool_name: t for t in tools}
        self.agent = agent
        self.schemas: dict[str, dict[str, Any]] = {}  # tool name -> its action's entry
        self.servers = servers or []

    def _server_of(self, name: str) -> McpTools | None:
        if name in self.tools:
            return None  # a configured tool wins over an MCP server's of the same name
        return next((s for s in self.servers if name in s.offered), None) or next(
            (s for s in self.servers if name.startswith(f"{s.config.prefix}_")), None
        )

    async def _learn(self, capability: str) -> None:
        try:
            listed = await self.sidecar.actions(capability)
        except (httpx.HTTPError, KeyError, ValueError) as exc:
            logger.warning("tools of capability %s: actions not known yet: %s", capability, exc)
            return
        by_action = {a.get("name"): a for a in listed}
        for name, tool in self.tools.items():
            if tool.capability == capability and tool.action in by_action:
                self.schemas[name] = by_action[tool.action]

    async def definitions(self) -> list[dict[str, Any]]:
        """The tools as chat completions APIs take them."""
        unknown = {t.capability for n, t in self.tools.items() if n not in self.schemas}
        for capability in sorted(unknown):
            await self._learn(capability)
        out = []
        for name, tool in self.tools.items():
            listed = self.schemas.get(name, {})
            description = (
                tool.description
                or listed.get("description")
                or (f"The action {tool.action} of the agents with capability {tool.capability}.")
            )
            out.append(
                {
                    "type": "function",
                    "function": {
                        "name": name,
                        "description": description,
                        "parameters": listed.get("inputSchema") or ANY_OBJECT,
                    },
                }
            )
        for server in self.servers:
            out.extend(
                d for d in await server.definitions() if d["function"]["name"] not in self.tools
            )
        return out

    async def call(self, call: dict[str, Any], task_id: str) -> ToolCall:
        """Call a tool the model asked for (an `execute_tool` span around it when tracing is
        on: the task it sends to another Agent joins the same trace)."""
        if not tracing.enabled():
            return await self._call(call, task_id)
        function = call.get("function") or {}
        name = str(function.get("name") or "")
        with tracing.span(
            f"execute_tool {name}",
            attributes={
                "gen_ai.operation.name": "execute_tool",
                "gen_ai.tool.name": name,
                "gen_ai.tool.call.id": str(call.get("id") or task_id),
                "gen_ai.tool.type": "function",
            },
        ) as span:
            done = await self._call(call, task_id)
            if span is not None:
                span.set_attributes(
                    {tracing.TASK_ID: done.task_id, "foundation.tool.outcome": done.outcome}
                )
                if done.outcome != "succeeded":
                    tracing.failed(span, done.content)
            return done

    async def _call(self, call: dict[str, Any], task_id: str) -> ToolCall:
        function = call.get("function") or {}
        name = str(function.get("name") or "")
        call_id = str(call.get("id") or task_id)
        tool = self.tools.get(name)

        server = self._server_of(name) if tool is None else None

        def done(outcome: str, content: str) -> ToolCall:
            # Only configured names as label values: a model may invent any number of others.
            known = tool is not None or (server is not None and name in server.offered)
            label = name if known else "(unknown)"
            metrics.TOOL_CALLS.labels(agent=self.agent, tool=label, outcome=outcome).inc()
            return ToolCall(call_id, name, task_id, outcome, content)

        if tool is None and server is None:
            known = ", ".join(sorted(self.tools)) or "none"
            return done("unknown", f"error: there is no tool named {name!r} (tools: {known})")
        raw = function.get("arguments")
        try:
            arguments = json.loads(raw) if isinstance(raw, str) and raw.strip() else raw or {}
        except ValueError as exc:
            return done("refused", f"error: the arguments are not JSON: {exc}")
        # The id is bound to the arguments too: a chat run again after a crash asks the model
        # again, and a call it makes differently is another request (its own id), while the
        # same call is the same task, never a second effect.
        task_id = bound_id(task_id, arguments)
        if server is not None:
            return done(*await server.call(name, arguments, task_id))
        assert tool is not None
        try:
            delivered = await self.sidecar.send_task(
                tool.capability,
                tool.action,
                arguments,
                id=task_id,
                deadline_seconds=tool.timeout_seconds,
            )
            record = await self.sidecar.finished(delivered, tool.timeout_seconds)
        except DeliveryError as exc:
            if exc.status in (400, 413):
                return done("refused", f"error: {_refusal(exc)}")
            return done("error", f"error: {exc}")
        if record.get("status") == "succeeded":
            return done("succeeded", json.dumps(record.get("result"), separators=(",", ":")))
        return done("failed", f"error: {record.get('error') or record.get('status')}")


def _refusal(exc: DeliveryError) -> str:
    try:
        return str(json.loads(exc.body).get("error") or exc)
    except (TypeError, ValueError, AttributeError):
        return str(exc)
