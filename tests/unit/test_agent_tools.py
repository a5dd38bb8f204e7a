"""Agents as MCP tools, the pure parts: names, schemas, task ids and results."""

from __future__ import annotations

from foundation_cli.agent_tools import (
    input_schema,
    result_of,
    split_tool_name,
    task_id_of,
    tool_name,
    tool_of,
)


def test_tool_names_split_back_into_agent_and_action() -> None:
    assert tool_name("my-agent", "read_all") == "my-agent__read_all"
    assert split_tool_name("my-agent__read_all") == ("my-agent", "read_all")
    assert split_tool_name("my-agent__") is None and split_tool_name("plain") is None


def test_a_tool_has_the_actions_schema_with_an_object_at_its_root() -> None:
    schema = {"type": "object", "properties": {"by": {"type": "integer"}}}
    tool = tool_of("tally", "Counts.", {"name": "increment", "inputSchema": schema})
    assert tool.name == "tally__increment" and tool.input_schema == schema
    assert tool.description == "The increment action (Agent tally: Counts.)"
    assert input_schema({})["type"] == "object"  # an action that takes any JSON


def test_the_call_names_its_task_or_gets_a_new_one() -> None:
    assert task_id_of({"foundation.dev/taskId": "t-1"}) == "t-1"
    fresh = {task_id_of(None), task_id_of({})}
    assert len(fresh) == 2 and all(t.startswith("mcp-") for t in fresh)


def test_records_become_results_or_errors_the_model_can_read() -> None:
    done = result_of("tally", {"id": "t", "status": "succeeded", "result": {"count": 2}})
    assert not done.is_error and done.structured_content == {"count": 2}
    assert done.content[0].text == '{"count": 2}'
    scalar = result_of("jobs", {"id": "t", "status": "succeeded", "result": 3})
    assert scalar.structured_content == {"result": 3}
    failed = result_of("tally", {"id": "t", "status": "failed", "error": "ValueError: no"})
    assert failed.is_error and "failed: ValueError: no" in failed.content[0].text
    running = result_of("tally", {"id": "t", "status": "running"})
    assert running.is_error and '"foundation.dev/taskId": "t"' in running.content[0].text
