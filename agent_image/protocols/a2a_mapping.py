"""A2A (the Agent2Agent protocol, 1.0, with a2a-sdk's types) in Foundation's terms. Pure.

- What a message asks: the task it keys (the task id it names, else its message id, so a
  client that resends a message after a lost answer gets the same task, never a second
  effect), the context (the session of a chat), the action and its input: a data part
  `{"action", "input"}`, or, for an agent with a `chat` action, text.
- A task record as an A2A Task: queued -> submitted, running -> working, succeeded ->
  completed (the result as an artifact), failed -> failed (the member's message), cancelled ->
  canceled.
- The agent card: the actions as skills, their input JSON schemas in an extension (A2A's
  skills carry no input schema of their own), the capabilities as tags.

Refusals are a2a-sdk's InvalidParamsError, with a message naming what to send instead.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from a2a.types import AgentCard, ListTasksRequest, Message, Task, TaskState
from a2a.utils.errors import InvalidParamsError
from google.protobuf.json_format import MessageToDict, ParseDict

from foundation_common import history
from foundation_common.tasks import TASK_ID

Obj = dict[str, Any]
PROTOCOL_VERSION = "1.0"
# The card's extension holding each action's input JSON schema (params: {"actions": {...}}).
ACTION_SCHEMAS = "https://foundation.dev/a2a/action-schemas/v1"
STATES = {
    "queued": "TASK_STATE_SUBMITTED",
    "running": "TASK_STATE_WORKING",
    "succeeded": "TASK_STATE_COMPLETED",
    "failed": "TASK_STATE_FAILED",
    "cancelled": "TASK_STATE_CANCELED",
}
CHAT = "chat"  # the action a text message is for (ChatAgent's)


@dataclass(frozen=True)
class Ask:
    """A message's request, in task terms."""

    task_id: str
    context_id: str
    action: str
    input: Any


def guidance(message: Message, actions: Iterable[Mapping[str, Any]]) -> Message | None:
    """The agent's answer to a text-only message it has no chat action for: a Message (which
    A2A lets an agent answer with instead of a task) saying what it takes, with each action's
    input schema as data; None for any other message (it is asked of a task)."""
    listed = sorted(actions, key=lambda a: a["name"])
    if any(a["name"] == CHAT for a in listed):
        return None
    parts = MessageToDict(message).get("parts") or []
    if not parts or any("text" not in p for p in parts):
        return None
    names = ", ".join(a["name"] for a in listed)
    first = listed[0]["name"] if listed else "NAME"
    text = (
        "This agent takes tasks, not chat: send one data part "
        f'{{"action": NAME, "input": {{...}}}} with NAME one of {names} (for example '
        f'{{"action": "{first}", "input": {{}}}}); each action\'s input schema is in the '
        "data part of this message and in the agent card."
    )
    reply = {
        "messageId": f"{message.message_id or 'message'}.reply"[:128],
        "role": "ROLE_AGENT",
        "parts": [
            {"text": text},
            {
                "data": {
                    "actions": [
                        {
                            "name": a["name"],
                            "description": a.get("description") or "",
                            "inputSchema": a.get("inputSchema") or {},
                        }
                        for a in listed
                    ]
                },
            },
        ],
    }
    if message.context_id:
        reply["contextId"] = message.context_id
    return ParseDict(reply, Message())


def ask_of(message: Message, actions: Iterable[str]) -> Ask:
    """What `message` asks of an agent with `actions`; InvalidParamsError if it asks nothing
    this agent does."""
    known = sorted(actions)
    task_id = message.task_id or message.message_id
    if not task_id:
        raise InvalidParamsError(
            "message.messageId is required: it keys the task, so a resent message gets the "
            "same task"
        )
    if not TASK_ID.fullmatch(task_id):
        raise InvalidParamsError(
            f"task id {task_id[:140]!r} (the message's taskId, else its messageId) must be 1-128"
            " letters, digits and . _ : - starting with a letter or digit"
        )
    context_id = message.context_id or task_id
    parts = MessageToDict(message).get("parts") or []
    data = [p["data"] for p in parts if "data" in p]
    texts = [p["text"] for p in parts if "text" in p]
    if data:
        if len(data) > 1:
            raise InvalidParamsError('one data part per message: {"action", "input"}')
        request = data[0]
        if not isinstance(request, dict) or not isinstance(request.get("action"), str):
            raise InvalidParamsError(
                f'the data part must be {{"action": NAME, "input": {{...}}}}, NAME one of '
                f"{', '.join(known)}"
            )
        extra = sorted(set(request) - {"action", "input"})
        if extra:
            raise InvalidParamsError(
                f"unknown fields {', '.join(extra)} in the data part; expected action, input"
            )
        action, given = request["action"], request.get("input", {})
    elif texts and CHAT in known:
        action, given = CHAT, {"session": context_id, "message": "\n".join(texts)}
    else:
        raise InvalidParamsError(
            f'send a data part {{"action": NAME, "input": {{...}}}}, NAME one of '
            f"{', '.join(known)}"
            + ("" if CHAT in known else " (this agent has no chat action for text)")
        )
    if action not in known:
        raise InvalidParamsError(
            f"unknown action {action!r}; this agent's actions are {', '.join(known)}"
        )
    return Ask(task_id, context_id, action, given)


STATUS_OF = {state: status for status, state in STATES.items()}
PAGE_SIZE, MAX_PAGE_SIZE = 50, 100  # ListTasks' default and largest page (A2A 1.0, 3.1.4)


def list_query(params: ListTasksRequest) -> history.Query:
    """A ListTasks request as a query of the task history (ordered by last update, as A2A
    requires); InvalidParamsError naming what does not fit."""
    if params.history_length < 0:
        raise InvalidParamsError("historyLength must be 0 or more")
    size = params.page_size if params.HasField("page_size") else PAGE_SIZE
    if not 1 <= size <= MAX_PAGE_SIZE:
        raise InvalidParamsError(f"pageSize must be from 1 to {MAX_PAGE_SIZE}, not {size}")
    statuses: frozenset[str] = frozenset()
    if params.status:
        state = TaskState.Name(params.status)
        # A state no Foundation task is ever in (input required, rejected...): none match.
        statuses = frozenset({STATUS_OF.get(state, "none")})
    after = None
    if params.page_token:
        try:
            after = history.Cursor.parse(params.page_token, "updated")
        except history.BadQuery as exc:
            raise InvalidParamsError(str(exc)) from None
    since = None
    if params.HasField("status_timestamp_after"):
        since = params.status_timestamp_after.ToNanoseconds() / 1e9
    return history.Query(
        status=statuses,
        context=params.context_id,
        updated_since=since,
        order="updated",
        page_size=size,
        after=after,
    )


def task_of(record: Obj, context_id: str) -> Task:
    """A task record (as the task API shows it) as an A2A Task."""
    status: Obj = {"state": STATES[record["status"]]}
    when = record.get("finishedAt") or record.get("acceptedAt")
    if when:
        status["timestamp"] = when
    if record["status"] == "failed":
        status["message"] = {
            "messageId": f"{record['id']}.error",
            "role": "ROLE_AGENT",
            "taskId": record["id"],
            "contextId": context_id,
            "parts": [{"text": record.get("error") or "failed"}],
        }
    task: Obj = {
        "id": record["id"],
        "contextId": context_id,
        "status": status,
        "metadata": {
            "foundation.dev/action": record["action"],
            "foundation.dev/attempts": record.get("attempts", 0),
        },
    }
    for name in ("sender", "member"):  # a listing names the member that holds it
        if record.get(name):
            task["metadata"][f"foundation.dev/{name}"] = record[name]
    if record["status"] == "succeeded":
        task["artifacts"] = [
            {
                "artifactId": f"{record['id']}.result",
                "name": "result",
                "parts": parts_of(record.get("result")),
            }
        ]
    return ParseDict(task, Task())


def parts_of(result: Any) -> list[Obj]:
    """A result as parts: its data; a chat's reply also as text, first, for clients that show
    text only."""
    parts: list[Obj] = []
    if isinstance(result, dict) and isinstance(result.get("reply"), str):
        parts.append({"text": result["reply"]})
    parts.append({"data": result})
    return parts


def card_of(
    name: str,
    description: str,
    url: str,
    version: str,
    actions: Iterable[Mapping[str, Any]],
    capabilities: Iterable[str] = (),
) -> AgentCard:
    """The agent card of an Agent: `actions` as the task API lists them (name, description,
    inputSchema); `url` where its JSON-RPC endpoint is reached."""
    actions = sorted(actions, key=lambda a: a["name"])
    tags = sorted(set(capabilities))
    modes = ["application/json"] + (
        ["text/plain"] if any(a["name"] == CHAT for a in actions) else []
    )
    card = {
        "name": name,
        "description": description or f"Foundation Agent {name}",
        "version": version,
        "supportedInterfaces": [
            {"url": url, "protocolBinding": "JSONRPC", "protocolVersion": PROTOCOL_VERSION}
        ],
        "capabilities": {
            "streaming": True,  # message/stream and tasks/resubscribe
            "pushNotifications": False,
            "extensions": [
                {
                    "uri": ACTION_SCHEMAS,
                    "description": "Each action's input as a JSON schema: send a data part "
                    '{"action": NAME, "input": ...} that it validates.',
                    "required": False,
                    "params": {"actions": {a["name"]: a.get("inputSchema") or {} for a in actions}},
                }
            ],
        },
        "defaultInputModes": modes,
        "defaultOutputModes": ["application/json"],
        "skills": [
            {
                "id": a["name"],
                "name": a["name"],
                "description": a.get("description") or f"the {a['name']} action",
                "tags": tags or [a["name"]],
                "examples": [json.dumps({"action": a["name"], "input": {}})],
                "inputModes": ["text/plain", "application/json"]
                if a["name"] == CHAT
                else ["application/json"],
                "outputModes": ["application/json"],
            }
            for a in actions
        ],
    }
    return ParseDict(card, AgentCard())


def card_url(headers: Mapping[str, str], path: str, default: str, trusted: bool = False) -> str:
    """The JSON-RPC URL to put in a card fetched at `path` with `headers`: where the client
    reached this server, else `default`. Forwarding headers say where only when `trusted`
    (the call came through a proxy the member believes: the operator's door); anyone else's
    would put any URL they like in the card others are given."""
    if not trusted:
        headers = {k: v for k, v in headers.items() if not k.lower().startswith("x-forwarded-")}
    host = headers.get("x-forwarded-host") or headers.get("host")
    if not host:
        return default
    forwarded_uri = (headers.get("x-forwarded-uri") or "").split("?")[0]
    prefix = headers.get("x-forwarded-prefix")
    if forwarded_uri and forwarded_uri.endswith(path):
        # The API server's proxy: the path it was asked for, and always HTTPS.
        base = forwarded_uri[: len(forwarded_uri) - len(path)]
        scheme = headers.get("x-forwarded-proto") or "https"
    elif prefix is not None:
        base, scheme = prefix.rstrip("/"), headers.get("x-forwarded-proto") or "http"
    else:
        base, scheme = "", headers.get("x-forwarded-proto") or "http"
    return f"{scheme}://{host}{base}/"
