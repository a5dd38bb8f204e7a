"""Built-in agents: `CounterAgent` and `TaskAgent`, used by the examples, tests and
benchmarks, and `ChatAgent`, the LLM agent."""

from typing import Any

from foundation_agent.agents.counter import CounterAgent
from foundation_agent.agents.tasks import TaskAgent

__all__ = ["ChatAgent", "CounterAgent", "TaskAgent"]


def __getattr__(name: str) -> Any:
    # ChatAgent on first use: the other agents' members need not load its client and metrics.
    if name == "ChatAgent":
        from foundation_agent.agents.chat import ChatAgent

        return ChatAgent
    raise AttributeError(name)
