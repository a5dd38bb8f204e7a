"""Tools from MCP servers (the `mcp` package's client), for ChatAgent.

Each configured server is reached through a sidecar upstream. One background task per server
owns its connection: it connects on first use, and after any failure connects again with
back-off, whether or not a chat is waiting; a server that was down at start has its tools
offered from the first chat after it comes up. The tool list is fetched again when the server
says it changed (a `subscriptions/listen` stream on 2026-07-28 servers, the
`tools/list_changed` notification on earlier ones), after a reconnection, and when the model
names a tool the last list did not have.

A call carries `_meta["foundation.dev/taskId"]`, derived from the chat task's id: a Foundation
MCP server (`foundation mcp`) answers a re-run's call with the task it already ran.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from typing import Any

from foundation_agent.chat.config import McpServerConfig
from foundation_common.aio import cancel_all
from foundation_common.resources import TASK_ID_META
from foundation_common.retry import Again, Backoff, retrying

logger = logging.getLogger("foundation_agent.chat")

TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
FIRST_CONNECT_WAIT = 5.0  # how long the first chat waits for a server's first connection
RECONNECT = Backoff(initial=0.5, maximum=10.0, jitter=True)


class McpTools:
    """One MCP server's tools, offered as `<prefix>_<tool>`."""

    def __init__(self, config: McpServerConfig, sidecar_url: str) -> None:
        self.config = config
        self.url = f"{sidecar_url.rstrip('/')}/upstream/{config.upstream}{config.path}"
        self.client: Any = None  # mcp.Client while connected
        self.offered: dict[str, Any] = {}  # offered name -> mcp_types.Tool
        self.stale = True
        self.problem = "not connected yet"
        self._owner: asyncio.Task[None] | None = None
        self._tried = asyncio.Event()  # the first connection attempt has ended, either way
        self._broken = asyncio.Event()
        self._backoff = Backoff(RECONNECT.initial, RECONNECT.maximum, jitter=True)

    def start(self) -> None:
        if self._owner is None:
            self._owner = asyncio.get_running_loop().create_task(
                self._own(), name=f"mcp-{self.config.prefix}"
            )

    async def definitions(self) -> list[dict[str, Any]]:
        """Its tools as chat completions APIs take them; none while it cannot be reached."""
        self.start()
        if not self._tried.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._tried.wait(), FIRST_CONNECT_WAIT)
        client = self.client
        if client is None:
            return []
        if self.stale:
            try:
                listed = await client.list_tools()
            except Exception as exc:  # the connection broke: reconnect, offer nothing now
                self._lost(f"listing its tools: {exc}")
                return []
            allowed = set(self.config.tools) if self.config.tools is not None else None
            offered = {}
            for tool in listed.tools:
                name = f"{self.config.prefix}_{tool.name}"
                if allowed is not None and tool.name not in allowed:
                    continue
                if not TOOL_NAME.fullmatch(name):
                    logger.warning("MCP server %s: tool %r left out: %r is not a valid tool "
                                   "name", self.config.prefix, tool.name, name)  # fmt: skip
                    continue
                offered[name] = tool
            self.offered, self.stale = offered, False
        return [
            {
                "type": "function",
                "function": {
                    "name": name,
                    "description": tool.description or f"The tool {tool.name}.",
                    "parameters": tool.input_schema,
                },
            }
            for name, tool in self.offered.items()
        ]

    async def call(self, name: str, arguments: Any, task_id: str) -> tuple[str, str]:
        """(outcome, what the model is told) of one call of offered tool `name`."""
        tool = self.offered.get(name)
        client = self.client
        if tool is None:
            self.stale = True
            return "unknown", f"error: the MCP server has no tool {name!r} now"
        if client is None:
            return "error", f"error: the MCP server {self.config.prefix} is away: {self.problem}"
        from mcp.shared.exceptions import MCPError

        try:
            result = await client.call_tool(
                tool.name,
                arguments if isinstance(arguments, dict) else {"input": arguments},
                read_timeout_seconds=self.config.timeout_seconds,
                meta={TASK_ID_META: task_id},
            )
        except MCPError as exc:
            return "refused", f"error: {exc.error.message}"
        except Exception as exc:
            self._lost(f"calling {tool.name}: {exc}")
            return "error", f"error: the MCP server {self.config.prefix} failed: {exc}"
        texts = [c.text for c in result.content if getattr(c, "type", "") == "text"]
        if result.structured_content is not None and not texts:
            texts = [json.dumps(result.structured_content, separators=(",", ":"))]
        content = "\n".join(texts) or "(no content)"
        if result.is_error:
            return "failed", f"error: {content}"
        return "succeeded", content

    def _lost(self, problem: str) -> None:
        self.problem = problem
        self._broken.set()

    async def _on_message(self, message: Any) -> None:
        """A notification from an earlier-protocol server: its tool list changed."""
        import mcp_types  # loaded with the client that calls this

        if isinstance(message, mcp_types.ToolListChangedNotification):
            self.stale = True

    async def _own(self) -> None:
        """Connect, keep the connection (listening for tool changes), reconnect after any
        failure with back-off."""
        from mcp import Client

        async def connection() -> None:
            """One connection, held until it breaks: always ends in an exception."""
            try:
                async with Client(
                    self.url,
                    read_timeout_seconds=self.config.timeout_seconds,
                    message_handler=self._on_message,
                    cache=None,
                ) as client:
                    self.client, self.stale = client, True
                    self._backoff.reset()
                    self._tried.set()
                    logger.info("MCP server %s: connected at %s", self.config.prefix, self.url)
                    await self._hold(client)
            except Exception as exc:
                self.problem = f"{type(exc).__name__}: {exc}"
                raise
            finally:
                self.client = None
                self._broken.clear()
                self._tried.set()
            raise Again(self.problem)  # found broken while held

        def failed(exc: Exception, _pause: float) -> None:
            logger.warning("MCP server %s at %s: %s", self.config.prefix, self.url, self.problem)

        await retrying(connection, self._backoff, retry_on=Exception, on_retry=failed)

    async def _hold(self, client: Any) -> None:
        """Until the connection is found broken: listen for tool list changes where the
        server offers that, again after a dropped stream."""
        listening = asyncio.get_running_loop().create_task(self._listen(client))
        try:
            await self._broken.wait()
        finally:
            await cancel_all([listening])

    async def _listen(self, client: Any) -> None:
        from mcp.client.subscriptions import ListenNotSupportedError

        backoff = Backoff(initial=0.5, maximum=10.0)

        async def listening() -> None:
            """One stream of notifications, until it drops: always ends in an exception."""
            try:
                async with client.listen(tools_list_changed=True) as events:
                    backoff.reset()
                    async for _ in events:
                        self.stale = True
            finally:
                self.stale = True  # changes while not listening are not replayed
            raise Again("the stream ended")

        def dropped(exc: Exception, _pause: float) -> None:
            # The stream dropped (the sidecar's timeout, say).
            logger.debug("MCP server %s: listening again: %s", self.config.prefix, exc)

        with contextlib.suppress(ListenNotSupportedError):
            # An earlier protocol: its notifications come to _on_message.
            await retrying(
                listening,
                backoff,
                retry_on=lambda exc: not isinstance(exc, ListenNotSupportedError),
                on_retry=dropped,
            )

    async def close(self) -> None:
        if self._owner is not None:
            await cancel_all([self._owner])
