"""The LLM agent's metrics, on the runtime's registry (the member's /metrics)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from foundation_agent.runtime.metrics import REGISTRY

TOKENS = Counter(
    "foundation_llm_tokens_total",
    "Tokens the model counted, by agent and kind (prompt, completion).",
    ["agent", "kind"],
    registry=REGISTRY,
)
MODEL_CALLS = Counter(
    "foundation_llm_model_calls_total",
    "Model calls by outcome: ok, error, circuit_open, rate_limited, timeout, unreachable.",
    ["agent", "upstream", "outcome"],
    registry=REGISTRY,
)
MODEL_SECONDS = Histogram(
    "foundation_llm_model_call_duration_seconds",
    "One model call through the sidecar, its retries included.",
    ["agent", "upstream"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60, 120, 300),
    registry=REGISTRY,
)
TOOL_CALLS = Counter(
    "foundation_llm_tool_calls_total",
    "Tool calls by tool and outcome: succeeded, failed (the task failed), refused (the call "
    "was not a valid task), error (not delivered or not done in time), unknown (no such tool).",
    ["agent", "tool", "outcome"],
    registry=REGISTRY,
)
MODEL_UPSTREAM = Gauge(
    "foundation_llm_model_upstream",
    "1 for the sidecar upstream an LLM agent calls its model through (alerts join the "
    "sidecar's circuit state on it).",
    ["agent", "upstream"],
    registry=REGISTRY,
)
