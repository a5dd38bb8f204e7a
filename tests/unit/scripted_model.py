"""A small OpenAI-compatible chat completions server whose answers the test scripts: the
stand-in for a model that calls tools reliably (a 135M model does not). Used by the unit tests
on loopback and by the integration tests on the local cluster's bridge address."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web


class ScriptedModel:
    """While the current turn has no tool result and tools are offered, it asks for
    `tool_call` (name, arguments); then it answers in text, quoting the last tool result.
    `failing` answers 500. With a `gate`, an answer to a turn that has a tool result (the
    round after a tool call) waits until the gate is open, `held` being set meanwhile: the
    moment to crash the agent between a tool's effect and the end of its task."""

    def __init__(self, tool_call: tuple[str, dict[str, Any]] | None = None) -> None:
        self.tool_call = tool_call
        self.failing = False
        self.gate: asyncio.Event | None = None
        self.requests: list[dict[str, Any]] = []
        self.held = asyncio.Event()  # set while an answer waits at the gate

    async def completions(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.requests.append(body)
        if self.failing:
            return web.json_response({"error": {"message": "the model is broken"}}, status=500)
        messages = body["messages"]
        last_user = max(i for i, m in enumerate(messages) if m["role"] == "user")
        results = [m for m in messages[last_user + 1 :] if m["role"] == "tool"]
        if results and self.gate is not None and not self.gate.is_set():
            self.held.set()
            await self.gate.wait()
        if self.tool_call and body.get("tools") and not results:
            name, arguments = self.tool_call
            call = {
                "id": f"call-{len(self.requests)}",
                "type": "function",
                "function": {"name": name, "arguments": json.dumps(arguments)},
            }
            return self.answer({"role": "assistant", "content": None, "tool_calls": [call]})
        text = f"you said {messages[last_user]['content']!r}; I have seen {len(messages)} messages"
        if results:
            text += f"; the tool said {results[-1]['content']}"
        return self.answer({"role": "assistant", "content": text})

    def answer(self, message: dict[str, Any]) -> web.Response:
        sent = self.requests[-1]["messages"]
        prompt = sum(len(str(m.get("content") or "").split()) for m in sent)
        completion = len(str(message.get("content") or "").split()) or 1
        return web.json_response(
            {
                "id": f"chatcmpl-{len(self.requests)}",
                "object": "chat.completion",
                "model": self.requests[-1].get("model", "scripted"),
                "choices": [
                    {
                        "index": 0,
                        "message": message,
                        "finish_reason": "tool_calls" if message.get("tool_calls") else "stop",
                    }
                ],
                "usage": {
                    "prompt_tokens": prompt,
                    "completion_tokens": completion,
                    "total_tokens": prompt + completion,
                },
            }
        )

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self.completions)
        return app
