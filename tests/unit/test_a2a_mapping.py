"""A2A in Foundation's terms (a2a-sdk's types): messages to tasks, records to A2A Tasks, the
agent card."""

from __future__ import annotations

import json
from typing import Any

import pytest
from a2a.types import Message
from a2a.utils.errors import InvalidParamsError
from google.protobuf.json_format import MessageToDict, ParseDict

from foundation_agent.protocols.a2a_mapping import ACTION_SCHEMAS, Ask, ask_of, card_of, task_of

ACTIONS = ["get", "increment"]


def message(**fields: Any) -> Message:
    return ParseDict({"role": "ROLE_USER", **fields}, Message())


def test_a_data_part_names_the_action_and_the_message_id_keys_the_task() -> None:
    asked = ask_of(
        message(messageId="m-1", parts=[{"data": {"action": "increment", "input": {"by": 2}}}]),
        ACTIONS,
    )
    assert asked == Ask(task_id="m-1", context_id="m-1", action="increment", input={"by": 2})


def test_a_named_task_id_wins_over_the_message_id_and_the_context_is_kept() -> None:
    asked = ask_of(
        message(
            messageId="m-2",
            taskId="t-9",
            contextId="c-1",
            parts=[{"data": {"action": "get"}}],
        ),
        ACTIONS,
    )
    assert (asked.task_id, asked.context_id, asked.input) == ("t-9", "c-1", {})


def test_text_is_a_chat_message_whose_session_is_the_context() -> None:
    asked = ask_of(
        message(messageId="m-3", contextId="conv-7", parts=[{"text": "hi"}, {"text": "there"}]),
        ["chat", "history", "reset"],
    )
    assert asked == Ask("m-3", "conv-7", "chat", {"session": "conv-7", "message": "hi\nthere"})


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        ({"parts": [{"data": {"action": "get"}}]}, "message.messageId is required"),
        ({"messageId": "has space", "parts": [{"data": {"action": "get"}}]}, "must be 1-128"),
        ({"messageId": "m", "parts": [{"text": "hi"}]}, "no chat action for text"),
        ({"messageId": "m", "parts": [{"data": {"input": {}}}]}, 'must be {"action": NAME'),
        ({"messageId": "m", "parts": [{"data": [1, 2]}]}, 'must be {"action": NAME'),
        ({"messageId": "m", "parts": [{"data": {"action": "get", "x": 1}}]}, "unknown fields x"),
        (
            {"messageId": "m", "parts": [{"data": {"action": "a"}}, {"data": {"action": "b"}}]},
            "one data part per message",
        ),
        (
            {"messageId": "m", "parts": [{"data": {"action": "explode"}}]},
            "unknown action 'explode'; this agent's actions are get, increment",
        ),
    ],
)
def test_what_cannot_be_a_task_is_refused_saying_what_to_send(fields: dict, says: str) -> None:
    with pytest.raises(InvalidParamsError) as refused:
        ask_of(message(**fields), ACTIONS)
    assert says in str(refused.value)


def record(status: str, **fields: Any) -> dict:
    return {
        "id": "t-1",
        "action": "increment",
        "status": status,
        "result": None,
        "error": None,
        "attempts": 1,
        "acceptedAt": "2026-12-02T10:00:00Z",
        "finishedAt": None,
        **fields,
    }


@pytest.mark.parametrize(
    ("status", "state"),
    [
        ("queued", "TASK_STATE_SUBMITTED"),
        ("running", "TASK_STATE_WORKING"),
        ("succeeded", "TASK_STATE_COMPLETED"),
        ("failed", "TASK_STATE_FAILED"),
        ("cancelled", "TASK_STATE_CANCELED"),
    ],
)
def test_every_task_status_has_its_a2a_state(status: str, state: str) -> None:
    task = MessageToDict(task_of(record(status), "c-1"))
    assert (task["id"], task["contextId"], task["status"]["state"]) == ("t-1", "c-1", state)
    assert task["metadata"] == {"foundation.dev/action": "increment", "foundation.dev/attempts": 1}


def test_a_result_is_an_artifact_and_a_chat_reply_also_text() -> None:
    done = record("succeeded", result={"count": 3}, finishedAt="2026-12-02T10:00:01Z")
    task = MessageToDict(task_of(done, "c"))
    assert task["artifacts"] == [
        {"artifactId": "t-1.result", "name": "result", "parts": [{"data": {"count": 3.0}}]}
    ]
    assert task["status"]["timestamp"] == "2026-12-02T10:00:01Z"
    chat = record("succeeded", action="chat", result={"reply": "Hello!", "usage": {}})
    parts = MessageToDict(task_of(chat, "c"))["artifacts"][0]["parts"]
    assert parts[0] == {"text": "Hello!"} and parts[1]["data"]["reply"] == "Hello!"


def test_a_failure_carries_the_members_message() -> None:
    task = MessageToDict(task_of(record("failed", error="by must be positive"), "c"))
    said = task["status"]["message"]
    assert (said["role"], said["parts"]) == ("ROLE_AGENT", [{"text": "by must be positive"}])
    assert "artifacts" not in task


def test_the_card_lists_actions_as_skills_with_their_schemas() -> None:
    schema = {"type": "object", "properties": {"by": {"type": "integer"}}}
    card = MessageToDict(
        card_of(
            "counter",
            "",
            "http://counter.team-a:8081/",
            "0.1.0",
            [
                {"name": "increment", "description": "Add by.", "inputSchema": schema},
                {"name": "get", "description": "", "inputSchema": {}},
            ],
            capabilities=["counting"],
        )
    )
    assert card["description"] == "Foundation Agent counter"
    assert card["supportedInterfaces"] == [
        {
            "url": "http://counter.team-a:8081/",
            "protocolBinding": "JSONRPC",
            "protocolVersion": "1.0",
        }
    ]
    assert [s["id"] for s in card["skills"]] == ["get", "increment"]
    assert card["skills"][1]["tags"] == ["counting"]
    assert json.loads(card["skills"][1]["examples"][0]) == {"action": "increment", "input": {}}
    (extension,) = card["capabilities"]["extensions"]
    assert extension["uri"] == ACTION_SCHEMAS
    assert extension["params"]["actions"]["increment"] == schema
    assert card["defaultInputModes"] == ["application/json"]


def test_a_chat_agent_takes_text() -> None:
    card = MessageToDict(
        card_of("bot", "Answers.", "http://bot:8081/", "0.1.0", [{"name": "chat"}])
    )
    assert card["defaultInputModes"] == ["application/json", "text/plain"]
    assert card["skills"][0]["inputModes"] == ["text/plain", "application/json"]
