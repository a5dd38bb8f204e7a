"""`ChatAgent`'s configuration: the Agent's `spec.config`, validated when the member starts (a
bad one stops the member with a message naming the field)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic.alias_generators import to_camel

from foundation_agent.model import AgentError

# A tool's name as chat completions APIs accept it.
TOOL_NAME_PATTERN = r"^[a-zA-Z0-9_-]{1,64}$"
CAPABILITY_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"


class Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class ToolConfig(Model):
    """An action of other Agents, offered to the model as a tool: the call is a task sent to a
    member with that capability, through the sidecar."""

    capability: str = Field(min_length=1, max_length=48, pattern=CAPABILITY_PATTERN)
    action: str = Field(min_length=1, max_length=128)
    name: str | None = Field(
        None, pattern=TOOL_NAME_PATTERN, description="The tool's name; <capability>_<action>."
    )
    description: str | None = Field(
        None, max_length=2000, description="For the model; default: the action's docstring."
    )
    timeout_seconds: float = Field(
        60, gt=0, le=3600, description="Delivery and completion of one call."
    )

    @property
    def tool_name(self) -> str:
        return self.name or f"{self.capability}_{self.action}".replace(".", "_")[:64]


class McpServerConfig(Model):
    """An MCP server whose tools are offered to the model, reached through a sidecar upstream
    (so its breaker, rate limits and pool apply): `http://127.0.0.1:15000/upstream/<upstream>
    <path>`. Connected on first use; a server that is down is tried again with back-off, and its
    tools appear once it is up."""

    upstream: str = Field(min_length=1, max_length=63, description="The sidecar upstream.")
    name: str | None = Field(
        None,
        pattern=r"^[a-zA-Z0-9-]{1,32}$",
        description="Prefix of its tools' names (<name>_<tool>); default: the upstream's name.",
    )
    path: str = Field("/mcp", pattern=r"^/", max_length=1024, description="Its MCP endpoint.")
    tools: list[str] | None = Field(
        None, max_length=1024, description="Only these of its tools (default: all)."
    )
    timeout_seconds: float = Field(60, gt=0, le=3600, description="One tool call at most.")

    @property
    def prefix(self) -> str:
        return self.name or self.upstream


class ChatConfig(Model):
    upstream: str = Field(
        min_length=1,
        max_length=63,
        description="The sidecar upstream (spec.sidecar.upstreams[].name) that serves the "
        "OpenAI-compatible chat completions API.",
    )
    model: str = Field("default", min_length=1, max_length=256)
    system: str | None = Field(None, max_length=100_000, description="The system prompt.")
    max_tokens: int = Field(512, ge=1, le=1_000_000)
    temperature: float = Field(0.7, ge=0, le=2)
    tools: list[ToolConfig] = Field(default_factory=list, max_length=128)
    mcp_servers: list[McpServerConfig] = Field(default_factory=list, max_length=32)
    max_tool_rounds: int = Field(
        4,
        ge=0,
        le=32,
        description="Rounds of tool calls in one chat task before the model "
        "must answer without tools.",
    )
    max_history_messages: int = Field(
        40,
        ge=2,
        le=10_000,
        description="Messages kept per session; past it the oldest turns are dropped whole.",
    )
    max_history_bytes: int = Field(
        64 * 1024,
        ge=1024,
        le=64 << 20,
        description="Bytes of messages (as JSON) kept per session; past it the oldest turns"
        " are dropped whole (the newest is always kept).",
    )
    max_sessions: int = Field(
        100, ge=1, le=100_000, description="Sessions kept; past it the least recent goes."
    )
    max_state_bytes: int = Field(
        384 * 1024,
        ge=4096,
        le=1 << 30,
        description="Bytes of all sessions' messages kept; past it the least recent go. With"
        " the defaults, sessions and kept task records fit a ConfigMap together.",
    )
    timeout_seconds: float = Field(
        300,
        gt=0,
        le=3600,
        description="How long one model call may take at most, the sidecar's retries "
        "included (the upstream's own timeoutSeconds is its budget there).",
    )

    @model_validator(mode="after")
    def _unique_tools(self) -> ChatConfig:
        names = [t.tool_name for t in self.tools]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"tool names must be unique: {', '.join(twice)}")
        prefixes = [s.prefix for s in self.mcp_servers]
        twice = sorted({p for p in prefixes if prefixes.count(p) > 1})
        if twice:
            raise ValueError(f"mcpServers need distinct names: {', '.join(twice)}")
        return self

    @classmethod
    def parse(cls, raw: dict) -> ChatConfig:
        try:
            return cls.model_validate(raw)
        except ValidationError as exc:
            problems = "; ".join(
                f"config{''.join(f'.{p}' for p in e['loc'])}: {e['msg']}" for e in exc.errors()
            )
            raise AgentError(f"ChatAgent: {problems}") from None
