"""Built-in agents: `CounterAgent` and `TaskAgent`, used by the examples, tests and benchmarks."""

from foundation_agent.agents.counter import CounterAgent
from foundation_agent.agents.tasks import TaskAgent

__all__ = ["CounterAgent", "TaskAgent"]
