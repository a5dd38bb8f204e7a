"""Deciding a Workflow's approval step through people's door.

`POST .../workflows/NAME/approval` with `{"step", "decision": "approve"|"reject", "message",
"input"}`. The API server has authorized the caller (`create` on `workflows/approval` in
access.foundation.dev: an approver needs no right to edit the Workflow) and names them; the
door checks the step waits for a decision and that the input fits the step's schema, and
records the decision in `status.approvals`, over the version it read: of two decisions (or a
decision and the step's timeout, which the runner writes the same way) exactly one is taken,
and the other is told so. The runner takes the decision from there.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from jsonschema import Draft202012Validator
from pydantic import ValidationError

from foundation_common.resources import WORKFLOW
from foundation_common.rest import ApiError, Client
from foundation_common.workflows.api import Verdict, WorkflowSpec, WorkflowStatus
from foundation_common.workflows.transitions import WAITING
from foundation_operator.door import routes

MAX_BODY = 64 * 1024  # a decision's JSON, its input included
MAX_MESSAGE = 4096
TRIES = 5  # reads and writes when the Workflow changes in between (a runner's write)
DECISIONS = {"approve": "Approved", "reject": "Rejected"}


def problem(code: int, message: str, reason: str) -> web.Response:
    return web.json_response(routes.status(code, message, reason), status=code)


def request_of(body: bytes) -> dict[str, Any] | str:
    """The decision asked for, or what is wrong with it."""
    try:
        asked = json.loads(body or b"{}")
    except ValueError:
        return 'the body must be JSON: {"step", "decision": "approve"|"reject", "message", "input"}'
    if not isinstance(asked, dict):
        return "the body must be a JSON object"
    unknown = sorted(set(asked) - {"step", "decision", "message", "input"})
    if unknown:
        return f"unknown fields {', '.join(unknown)}; expected step, decision, message, input"
    if not isinstance(asked.get("step"), str) or not asked["step"]:
        return "step must name the approval step"
    if asked.get("decision") not in DECISIONS:
        return "decision must be approve or reject"
    message = asked.get("message", "")
    if not isinstance(message, str) or len(message) > MAX_MESSAGE:
        return f"message must be a string of at most {MAX_MESSAGE} characters"
    if asked["decision"] == "reject" and asked.get("input") is not None:
        return "a rejection takes no input"
    return asked


def verdict_for(
    workflow: dict[str, Any], asked: dict[str, Any], person: str, now: datetime
) -> Verdict | tuple[int, str, str]:
    """The decision to record on `workflow`, or (status, message, reason) refusing it."""
    name = workflow["metadata"]["name"]
    try:
        spec = WorkflowSpec.model_validate(workflow["spec"])
        status = WorkflowStatus.model_validate(workflow.get("status") or {})
    except ValidationError:
        return 409, f"Workflow {name} is not valid; it has no approval to decide", "Conflict"
    step_name = asked["step"]
    step = next((s for s in spec.steps if s.name == step_name), None)
    if step is None or step.approval is None:
        approvals = [s.name for s in spec.steps if s.approval is not None]
        known = f"its approval steps: {', '.join(approvals)}" if approvals else "it has none"
        return 404, f"Workflow {name} has no approval step {step_name!r} ({known})", "NotFound"
    earlier = next((v for v in status.approvals if v.step == step_name), None)
    if earlier is not None:
        return (
            409,
            f"step {step_name} of Workflow {name} was {earlier.decision.lower()} already, by "
            f"{earlier.by} at {earlier.at}",
            "AlreadyDecided",
        )
    current = next((s for s in status.steps if s.name == step_name), None)
    if current is None or current.phase != "Running" or current.reason != WAITING:
        phase = current.phase if current else "Pending"
        detail = f" ({current.reason}: {current.error})" if current and current.error else ""
        return (
            409,
            f"step {step_name} of Workflow {name} is not waiting for a decision: it is "
            f"{phase}{detail}",
            "NotWaiting",
        )
    given = asked.get("input")
    if given is not None:
        schema = step.approval.input_schema
        if schema is None:
            return (
                400,
                f"step {step_name} takes no input (its approval has no inputSchema)",
                ("BadRequest"),
            )
        errors = sorted(Draft202012Validator(schema).iter_errors(given), key=lambda e: e.path)
        if errors:
            where = "/".join(str(p) for p in errors[0].absolute_path) or "the input"
            return (
                422,
                f"input does not fit step {step_name}'s inputSchema: {where}: "
                + (errors[0].message),
                "Invalid",
            )
    return Verdict(
        step=step_name,
        decision=DECISIONS[asked["decision"]],  # type: ignore[arg-type]
        by=person,
        at=now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        message=asked.get("message", ""),
        input=given,
    )


async def decide(api: Client, namespace: str, name: str, person: str, body: bytes) -> web.Response:
    asked = request_of(body)
    if isinstance(asked, str):
        return problem(400, asked, "BadRequest")
    path = WORKFLOW.path(namespace, name)
    for _ in range(TRIES):
        try:
            workflow = await api.get(path)
        except ApiError as exc:
            if exc.status == 404:
                return problem(404, f"no Workflow {name} in {namespace}", "NotFound")
            raise
        verdict = verdict_for(workflow, asked, person, datetime.now(UTC))
        if not isinstance(verdict, Verdict):
            return problem(*verdict)
        kept = (workflow.get("status") or {}).get("approvals") or []
        patch = {
            "metadata": {"resourceVersion": workflow["metadata"]["resourceVersion"]},
            "status": {"approvals": [*kept, verdict.model_dump(exclude_none=True)]},
        }
        try:
            await api.merge_patch(f"{path}/status", patch)
        except ApiError as exc:
            if exc.status == 409:
                continue  # the Workflow changed since it was read: read it again
            raise
        return web.json_response(verdict.model_dump(exclude_none=True))
    return problem(409, f"Workflow {name} kept changing; try again", "Conflict")
