"""`ChatAgent`: an LLM agent whose conversations survive any crash.

Sessions are the agent's durable state: a `chat` task's reply and the session's new messages
are stored in the same write that completes the task, so a member killed at any point either
has the turn or runs it again; the conversation goes on where it was. The model is called
through a sidecar upstream (circuit breaker, rate limits, retries); tools are other Agents'
actions, called as tasks with ids derived from the chat task's, so a re-run does not apply a
tool's effect twice. docs/llm-agents.md says how to run it.
"""

from __future__ import annotations

import os
import time
from typing import Any

from pydantic import BaseModel, Field

from foundation_agent.chat import history
from foundation_agent.chat.config import ChatConfig
from foundation_agent.chat.mcp_tools import McpTools
from foundation_agent.chat.model import ModelClient
from foundation_agent.chat.tools import Toolbox, ToolCall
from foundation_agent.client import DEFAULT_URL, Sidecar
from foundation_agent.model import Agent, action, current_task

Message = dict[str, Any]


class Session(BaseModel):
    messages: list[Message] = Field(default_factory=list)
    turns: int = 0
    dropped: int = Field(0, description="Messages dropped by config.maxHistoryMessages.")
    prompt_tokens: int = 0
    completion_tokens: int = 0
    updated_at: float = 0.0


class ChatState(BaseModel):
    sessions: dict[str, Session] = Field(default_factory=dict)


SessionName = Field(min_length=1, max_length=256)


class ChatInput(BaseModel):
    session: str = SessionName
    message: str = Field(min_length=1, max_length=100_000)


class SessionInput(BaseModel):
    session: str = SessionName


class ChatAgent(Agent[ChatState]):
    """Actions: `chat` {"session", "message"} -> {"reply", "usage", "toolCalls"}; `history`
    {"session"} -> its messages; `reset` {"session"} forgets one session."""

    State = ChatState

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        super().__init__(config)
        self.settings = ChatConfig.parse(self.config)
        self._sidecar: Sidecar | None = None
        self._model: ModelClient | None = None
        self._toolbox: Toolbox | None = None
        self._servers: list[McpTools] = []

    def _clients(self) -> tuple[ModelClient, Toolbox]:
        if self._model is None or self._toolbox is None:
            url = os.environ.get("FOUNDATION_SIDECAR_URL", DEFAULT_URL)
            self._sidecar = Sidecar(url, timeout=self.settings.timeout_seconds)
            self._model = ModelClient(
                self._sidecar, self.settings.upstream, self.name, self.settings.timeout_seconds
            )
            self._servers = [McpTools(c, url) for c in self.settings.mcp_servers]
            self._toolbox = Toolbox(self._sidecar, self.settings.tools, self.name, self._servers)
        return self._model, self._toolbox

    async def on_stop(self, state: ChatState) -> None:
        for server in self._servers:
            await server.close()
        if self._sidecar is not None:
            await self._sidecar.close()
        return None

    @action
    async def chat(self, state: ChatState, input: ChatInput) -> tuple[dict, ChatState]:
        """Say `message` in `session`; the model's reply, with the tools it called."""
        config = self.settings
        task = current_task()
        model, toolbox = self._clients()
        session = state.sessions.get(input.session) or Session()
        system = [{"role": "system", "content": config.system}] if config.system else []
        turn: list[Message] = [{"role": "user", "content": input.message}]
        tools = await toolbox.definitions() if config.tools or config.mcp_servers else []
        prompt = completion = 0
        calls: list[ToolCall] = []
        reply = ""
        for round_ in range(config.max_tool_rounds + 1):
            offered = tools if round_ < config.max_tool_rounds else []
            request: dict[str, Any] = {
                "model": config.model,
                "messages": [*system, *session.messages, *turn],
                "max_tokens": config.max_tokens,
                "temperature": config.temperature,
            }
            if offered:
                request["tools"] = offered
            answer = await model.complete(request, key=f"{task.id}.model.{round_}")
            prompt += answer.prompt_tokens
            completion += answer.completion_tokens
            if not (offered and answer.tool_calls):
                reply = str(answer.message.get("content") or "")
                turn.append({"role": "assistant", "content": reply})
                break
            asked = [
                {**c, "id": str(c.get("id") or f"call-{round_}-{i}")}
                for i, c in enumerate(answer.tool_calls)
            ]
            # "" rather than null: chat templates that concatenate content (llama.cpp's Jinja
            # ones) fail on null, and OpenAI's API takes either.
            content = str(answer.message.get("content") or "")
            turn.append({"role": "assistant", "content": content, "tool_calls": asked})
            for i, call in enumerate(asked):
                done = await toolbox.call(call, f"{task.id}.tool.{round_}.{i}")
                calls.append(done)
                turn.append({"role": "tool", "tool_call_id": done.id, "content": done.content})
        kept, dropped = history.trim(
            [*session.messages, *turn], config.max_history_messages, config.max_history_bytes
        )
        sessions = {
            **state.sessions,
            input.session: Session(
                messages=kept,
                turns=session.turns + 1,
                dropped=session.dropped + dropped,
                prompt_tokens=session.prompt_tokens + prompt,
                completion_tokens=session.completion_tokens + completion,
                updated_at=time.time(),
            ),
        }
        updated = {name: s.updated_at for name, s in sessions.items()}
        for name in history.least_recent(updated, config.max_sessions):
            del sessions[name]
        taken = {n: (s.updated_at, history.size(s.messages)) for n, s in sessions.items()}
        for name in history.over_bytes(taken, config.max_state_bytes, keep=input.session):
            del sessions[name]
        result = {
            "reply": reply,
            "usage": {
                "promptTokens": prompt,
                "completionTokens": completion,
                "totalTokens": prompt + completion,
            },
            "toolCalls": [c.summary() for c in calls],
        }
        return result, ChatState(sessions=sessions)

    @action
    async def history(self, state: ChatState, input: SessionInput) -> tuple[dict, ChatState]:
        """The session's kept messages (empty for a session never seen, or reset)."""
        session = state.sessions.get(input.session) or Session()
        return {
            "session": input.session,
            "messages": session.messages,
            "turns": session.turns,
            "dropped": session.dropped,
            "usage": {
                "promptTokens": session.prompt_tokens,
                "completionTokens": session.completion_tokens,
            },
        }, state

    @action
    async def reset(self, state: ChatState, input: SessionInput) -> tuple[dict, ChatState]:
        """Forget the session."""
        if input.session not in state.sessions:
            return {"session": input.session, "reset": False}, state
        sessions = {k: v for k, v in state.sessions.items() if k != input.session}
        return {"session": input.session, "reset": True}, ChatState(sessions=sessions)
