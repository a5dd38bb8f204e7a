"""Loading agents and their actions: what a wrong spec.agent or config says."""

from __future__ import annotations

import pytest

from foundation_agent.agents import CounterAgent, TaskAgent
from foundation_agent.model import AgentError, InvalidInput, load_agent


def test_load_agent_makes_the_named_class_with_its_config() -> None:
    agent = load_agent("foundation_agent.agents:CounterAgent", {"x": 1})
    assert isinstance(agent, CounterAgent) and agent.config == {"x": 1}
    assert sorted(agent.actions()) == ["get", "increment"]


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("no_colon", "must be an import path module:Class"),
        ("not_a_module_here:Thing", "cannot import not_a_module_here"),
        ("foundation_agent.model:action", "is not a foundation_agent Agent class"),
    ],
)
def test_load_agent_says_what_is_wrong(path: str, message: str) -> None:
    with pytest.raises(AgentError) as error:
        load_agent(path, {})
    assert message in str(error.value)


async def test_task_agent_runs_the_handlers_its_config_names() -> None:
    agent = TaskAgent({"handlers": {"say": "foundation_agent.agents.tasks:echo"}})
    actions = agent.actions()
    assert list(actions) == ["say"]
    result, state = await actions["say"].fn(agent.initial_state(), "hello")
    assert result == "hello" and state.data == {}
    with pytest.raises(AgentError) as missing:
        TaskAgent({"handlers": {"x": "foundation_agent.agents.tasks:nothing"}}).actions()
    assert "config.handlers.x: cannot load" in str(missing.value)


def test_inputs_are_validated_by_the_action_model() -> None:
    increment = CounterAgent().actions()["increment"]
    assert increment.parse(None).by == 1  # no input: the model's defaults
    with pytest.raises(InvalidInput) as invalid:
        increment.parse({"by": 10**12})
    assert "action 'increment': input.by" in str(invalid.value)
