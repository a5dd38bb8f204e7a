"""The task API described as OpenAPI 3.1, built from the agent's actions (a pure function).

A member serves it at `GET /openapi.json`: a client generator, a contract tester (schemathesis)
or a person reads what each action takes — its `input` is the action's own JSON schema —
what a task record holds, and every refusal with its status. The models below are the
document's source; the handlers in `runtime.server` answer with them.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from foundation_agent.model import Action
from foundation_agent.runtime.records import MAX_CONTEXT
from foundation_common import history
from foundation_common import limits as common_limits
from foundation_common.tasks import TASK_ID

REF = "#/components/schemas/{model}"
TASK_PATH = "/v1/tasks/{id}"


class TaskRecord(BaseModel):
    """A task as the member keeps it: queued, running, then ended (succeeded, failed or
    cancelled) and kept for a while after (spec.inbox.keepCompleted*)."""

    id: str
    action: str
    status: Literal["queued", "running", "succeeded", "failed", "cancelled"]
    result: Any = Field(None, description="The action's return value, once succeeded.")
    error: str | None = Field(None, description="Why it failed: the exception and its message.")
    attempts: int = Field(description="Runs started; more than one after a member's crash.")
    acceptedAt: str | None = Field(None, description="RFC 3339, microseconds.")
    finishedAt: str | None = Field(None, description="RFC 3339, microseconds.")
    startedAt: str | None = Field(None, description="When its last run began, once it ran.")
    durationMs: float | None = Field(None, description="From its last start to its end.")
    input: Any = Field(
        None, description="What it was sent; kept after its end if at most 2 KiB as JSON."
    )
    inputBytes: int | None = Field(None, description="The size of an input not kept.")
    traceId: str | None = Field(None, description="The W3C trace it belongs to, if traced.")
    context: str | None = Field(None, description="The context it was sent with, if any.")
    sender: str | None = Field(None, description="Who sent it, where identities are known.")


class TaskPage(BaseModel):
    """A page of the member's tasks, newest first."""

    tasks: list[TaskRecord]
    totalSize: int = Field(description="How many tasks match the filters, in all pages.")
    remaining: int = Field(description="How many match from this page's start on.")
    nextPageToken: str = Field(description='The next page\'s pageToken; "" on the last page.')


class Problem(BaseModel):
    """Every refusal: what is wrong and, where the status alone does not say, what kind."""

    error: str
    reason: str | None = Field(None, description="e.g. IdTaken on a 409")


class ActionInfo(BaseModel):
    name: str
    description: str
    inputSchema: dict[str, Any]


class Actions(BaseModel):
    actions: list[ActionInfo]


def _request(name: str, description: str, input_schema: dict[str, Any]) -> dict[str, Any]:
    """`POST /v1/tasks`'s body for one action: its name as a constant, its input's schema."""
    properties: dict[str, Any] = {
        "id": {
            "type": "string",
            "pattern": TASK_ID.pattern,
            "description": "Chosen by the client, so a retry is recognised: the same id with "
            "the same action and input returns the task; with another, 409.",
        },
        "action": {"const": name},
        "context": {
            "type": "string",
            "maxLength": MAX_CONTEXT,
            "description": "Groups tasks, as an A2A context does; kept with the record.",
        },
    }
    # No input and null are the same: the action's defaults (refused if it has none).
    properties["input"] = (
        {"anyOf": [input_schema, {"type": "null"}], "description": "null or absent: the defaults"}
        if input_schema
        else {"description": "Any JSON."}
    )
    return {
        "type": "object",
        "title": f"{name} task",
        "description": description,
        "properties": properties,
        "required": ["id", "action"],
        "additionalProperties": False,
    }


def _hoisted(schema: dict[str, Any], prefix: str, into: dict[str, Any]) -> dict[str, Any]:
    """`schema` with its `$defs` moved into `into` as `<prefix><Name>` and every reference
    rewritten to them: in an OpenAPI document `#/$defs/…` would point at its root."""
    defs = schema.get("$defs", {})

    def rewrite(node: Any) -> Any:
        if isinstance(node, dict):
            out = {k: rewrite(v) for k, v in node.items() if k != "$defs"}
            ref = out.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                out["$ref"] = REF.format(model=prefix + ref.removeprefix("#/$defs/"))
            return out
        if isinstance(node, list):
            return [rewrite(v) for v in node]
        return node

    for name, definition in defs.items():
        into[prefix + name] = rewrite(definition)
    return rewrite(schema)


def _component(model: type[BaseModel], into: dict[str, Any]) -> dict[str, str]:
    into[model.__name__] = _hoisted(model.model_json_schema(ref_template=REF), "", into)
    return {"$ref": REF.format(model=model.__name__)}


def _answers(problems: dict[int, str], **ok: Any) -> dict[str, Any]:
    answers = {str(status): body for status, body in ok.items()}
    problem = {"application/json": {"schema": {"$ref": REF.format(model="Problem")}}}
    for status, why in problems.items():
        answers[str(status)] = {"description": why, "content": problem}
    if 400 in problems:
        # The HTTP parser refuses a request line or a header over 8 KiB before any route is
        # reached, and says so in plain text: it bounds what the port reads.
        answers["400"] = {
            "description": f"{problems[400]}; or a request line or header over 8 KiB "
            "(the HTTP parser's answer, in plain text)",
            "content": {**problem, "text/plain": {"schema": {"type": "string"}}},
        }
    return answers


def _json(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name)


def _listing_parameters() -> list[dict[str, Any]]:
    def query(name: str, description: str, **schema: Any) -> dict[str, Any]:
        return {
            "name": name,
            "in": "query",
            "description": description,
            "schema": {"type": "string", "maxLength": history.MAX_VALUE, **schema},
        }

    when = {"format": "date-time"}
    return [
        query(
            "status",
            f"One or more of {', '.join(history.STATUSES)}, separated by commas",
            pattern=rf"^({'|'.join(history.STATUSES)})(,({'|'.join(history.STATUSES)}))*$",
        ),
        query("action", "Only this action's tasks"),
        query("context", "Only tasks sent with this context (an A2A context, a chat session)"),
        query("sender", "Only tasks this user sent"),
        query("since", "Accepted at or after (RFC 3339)", **when),
        query("until", "Accepted before (RFC 3339)", **when),
        query("updatedSince", "Ended (else accepted) at or after (RFC 3339)", **when),
        query(
            "order",
            "accepted (newest accepted first, the default) or updated (last change first)",
            enum=list(history.ORDERS),
        ),
        {
            "name": "pageSize",
            "in": "query",
            "description": f"Tasks per page (default {history.DEFAULT_PAGE})",
            "schema": {"type": "integer", "minimum": 1, "maximum": history.MAX_PAGE},
        },
        query("pageToken", "The nextPageToken of the page before", maxLength=history.MAX_TOKEN),
    ]


def document(
    agent: str, version: str, actions: dict[str, Action], bounds: common_limits.Limits
) -> dict[str, Any]:
    """The OpenAPI 3.1 document of a member's task API for an agent with `actions`."""
    schemas: dict[str, Any] = {}
    record = _component(TaskRecord, schemas)
    _component(Problem, schemas)
    listing = _component(Actions, schemas)
    page = _component(TaskPage, schemas)
    bodies, mapping = [], {}
    for name in sorted(actions):
        action = actions[name]
        key = f"Task_{_safe(name)}"
        input_schema = _hoisted(action.input_schema(), f"{key}_", schemas)
        schemas[key] = _request(name, action.description, input_schema)
        bodies.append({"$ref": REF.format(model=key)})
        mapping[name] = REF.format(model=key)
    access = {
        400: "A query parameter the route does not take",
        401: "No identity, or one the cluster does not accept",
        403: "RBAC refuses",
    }
    busy = {
        413: f"The body is over {bounds.request_bytes} bytes (spec.limits.requestBytes), or "
        "the input would not fit in the store beside the state",
        429: f"The inbox is full, or {bounds.in_flight} requests are in flight; see Retry-After",
        503: "The member is loading its state or stopping; see Retry-After",
    }
    task_id = {
        "name": "id",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "pattern": TASK_ID.pattern},
    }
    wait = {
        "name": "wait",
        "in": "query",
        "description": "Seconds to wait for the task to end before answering (more waits 60)",
        "schema": {"type": "number", "minimum": 0},
    }
    paths = {
        "/v1/tasks": {
            "get": {
                "operationId": "listTasks",
                "summary": "A page of this member's tasks, newest first: anyone's for who may "
                "get the Agent's tasks, else the caller's own",
                "parameters": _listing_parameters(),
                "responses": _answers(
                    {
                        **access,
                        400: "A filter, page size or page token that does not fit (named), "
                        "or an unknown query parameter",
                        503: busy[503],
                    },
                    **{"200": _json("The page", page)},
                ),
            },
            "post": {
                "operationId": "sendTask",
                "summary": "Send a task; the same id again returns it",
                "parameters": [wait],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "oneOf": bodies,
                                "discriminator": {"propertyName": "action", "mapping": mapping},
                            }
                            if bodies
                            else {"type": "object"}
                        }
                    },
                },
                "responses": _answers(
                    {
                        **access,
                        400: "Not JSON, nested over "
                        f"{bounds.json_depth} levels, an unknown action, field or query "
                        "parameter, a bad id or wait, or an input the action's schema rejects "
                        "(the field named)",
                        409: "The id was sent before by another caller or with other content",
                        **busy,
                    },
                    **{
                        "202": _json("Accepted: stored before this answer", record),
                        "200": _json("Known: the task sent before with this id", record),
                    },
                ),
            },
        },
        TASK_PATH: {
            "get": {
                "operationId": "getTask",
                "summary": "A task's record; with wait, once it ends",
                "parameters": [task_id, wait],
                "responses": _answers(
                    {
                        **access,
                        400: "wait is not a number of seconds, or an unknown query parameter",
                        404: "No such task (or expired)",
                    },
                    **{"200": _json("The record", record)},
                ),
            }
        },
        f"{TASK_PATH}/cancel": {
            "post": {
                "operationId": "cancelTask",
                "summary": "Cancel a task that has not ended",
                "parameters": [task_id],
                "responses": _answers(
                    {
                        **access,
                        404: "No such task (or expired)",
                        409: "The task is running or has ended: it runs to its end",
                        503: busy[503],
                    },
                    **{"200": _json("The record after", record)},
                ),
            }
        },
        "/v1/actions": {
            "get": {
                "operationId": "listActions",
                "summary": "The agent's actions with their input schemas",
                "responses": _answers(
                    {**access, 503: busy[503]}, **{"200": _json("The actions", listing)}
                ),
            }
        },
        "/openapi.json": {
            "get": {
                "operationId": "openapi",
                "summary": "This document",
                "responses": _answers(access, **{"200": _json("OpenAPI 3.1", {"type": "object"})}),
            }
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": f"{agent}: a Foundation member's task API",
            "version": version,
            "description": "Every call but the probes carries a ServiceAccount token "
            "(Authorization: Bearer) that RBAC allows on agents/tasks in "
            "access.foundation.dev; people reach it through the API server's door "
            "(docs/security.md). docs/runtime.md says what each answer means.",
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
    }
