"""What the door serves, as pure functions: the paths, the discovery documents, and who the API
server says is calling."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from foundation_common import access
from foundation_common.resources import A2A_PORT, AGENT, AGENT_PORT, WORKFLOW
from foundation_common.workflows.api import CREATOR

GROUP_VERSION = f"{access.GROUP}/{access.DOOR_VERSION}"
MAX_WAIT = 50.0  # below the API server's 60 s for a call it relays
PREFIX = f"/apis/{GROUP_VERSION}"
# subresource -> (verbs, what it is): the API server authorizes these before the door is asked.
SUBRESOURCES: dict[str, tuple[list[str], str]] = {
    access.TASKS: (
        [access.SEND, access.READ, access.CANCEL_ANY],
        "POST sends a task; GET lists them (across the members); GET and DELETE "
        ".../tasks/ID read and cancel one",
    ),
    access.A2A: (["create", "get"], "A2A: JSON-RPC calls (POST) and the card (GET)"),
    access.ACTIONS: (["get"], "the actions the Agent takes, with their input schemas"),
    access.WAKE: (
        [access.SEND],
        "POST wakes a sleeping Agent (spec.sleepAfterIdleSeconds); with ?wait=S it answers "
        "once its members are ready. A task sent through the door wakes it by itself",
    ),
}
# A Workflow's: the API server authorizes `create` on it before the door is asked.
WORKFLOW_SUBRESOURCES: dict[str, tuple[list[str], str]] = {
    access.APPROVAL: (["create"], "POST decides an approval step: {step, decision, message, input}")
}
NAME = r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?"
APPROVAL_PATH = re.compile(
    rf"^{re.escape(PREFIX)}/namespaces/(?P<namespace>{NAME})/{WORKFLOW.plural}/(?P<name>{NAME})"
    rf"/{access.APPROVAL}$"
)
PATH = re.compile(
    rf"^{re.escape(PREFIX)}/namespaces/(?P<namespace>{NAME})/{AGENT.plural}/(?P<agent>{NAME})"
    r"/(?P<subresource>[a-z0-9]+)(?P<rest>/.*)?$"
)


@dataclass(frozen=True)
class Target:
    """One call through the door: an Agent, a subresource, and the path under it."""

    namespace: str
    agent: str
    subresource: str
    rest: str  # "" or "/..." (a task id, the card's well-known path)

    @property
    def port(self) -> int:
        return A2A_PORT if self.subresource == access.A2A else AGENT_PORT

    def member_path(self, method: str) -> str | None:
        """The member's path for `method` on this target; None if the door serves no such
        call."""
        rest = self.rest
        if self.subresource == access.TASKS:
            task = rest[1:]
            if not rest and method in ("POST", "GET"):  # send one; list them all
                return "/v1/tasks"
            if task and "/" not in task and method == "GET":
                return f"/v1/tasks/{task}"
            if task and "/" not in task and method == "DELETE":
                return f"/v1/tasks/{task}/cancel"
            return None
        if self.subresource == access.A2A:
            if method == "POST" and rest in ("", "/"):
                return "/"
            if method == "GET" and rest.startswith("/.well-known/"):
                return rest
            return None
        if self.subresource == access.ACTIONS and method == "GET":
            # The actions, and the task API as OpenAPI with each action's input schema.
            return {"": "/v1/actions", "/openapi.json": "/openapi.json"}.get(rest)
        return None

    @property
    def task_id(self) -> str:
        return self.rest[1:] if self.subresource == access.TASKS else ""


def target_of(path: str) -> Target | None:
    found = PATH.fullmatch(path)
    if found is None or found["subresource"] not in SUBRESOURCES:
        return None
    return Target(found["namespace"], found["agent"], found["subresource"], found["rest"] or "")


def approval_of(path: str) -> tuple[str, str] | None:
    """(namespace, Workflow) of a call deciding an approval, if it is one."""
    found = APPROVAL_PATH.fullmatch(path)
    return (found["namespace"], found["name"]) if found else None


def resource_list() -> dict[str, Any]:
    """The door's discovery document (`GET /apis/foundation.dev/access`)."""
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": GROUP_VERSION,
        "resources": [
            {
                "name": f"{AGENT.plural}/{sub}",
                "singularName": "",
                "namespaced": True,
                "kind": AGENT.kind,
                "verbs": verbs,
            }
            for sub, (verbs, _) in SUBRESOURCES.items()
        ]
        + [
            {
                "name": f"{WORKFLOW.plural}/{sub}",
                "singularName": "",
                "namespaced": True,
                "kind": WORKFLOW.kind,
                "verbs": verbs,
            }
            for sub, (verbs, _) in WORKFLOW_SUBRESOURCES.items()
        ],
    }


def openapi() -> dict[str, Any]:
    """An OpenAPI document for the aggregator to merge: the door adds no types."""
    return {
        "swagger": "2.0",
        "info": {"title": access.GROUP, "version": access.DOOR_VERSION},
        "paths": {},
    }


@dataclass(frozen=True)
class FrontProxy:
    """How the API server names the person it relays (kube-system's
    extension-apiserver-authentication ConfigMap), and whose certificate may do so."""

    ca: str  # PEM
    allowed_names: tuple[str, ...]
    username_headers: tuple[str, ...]
    group_headers: tuple[str, ...]

    @classmethod
    def from_config_map(cls, data: Mapping[str, str]) -> FrontProxy:
        def listed(key: str, default: list[str]) -> tuple[str, ...]:
            raw = data.get(key)
            return tuple(json.loads(raw) if raw else default)

        ca = data.get("requestheader-client-ca-file") or ""
        if not ca:
            raise ValueError(
                "the API server relays no requests (its extension-apiserver-authentication"
                " ConfigMap has no requestheader-client-ca-file): run it with"
                " --requestheader-client-ca-file and --proxy-client-cert-file"
            )
        return cls(
            ca,
            listed("requestheader-allowed-names", []),
            listed("requestheader-username-headers", ["X-Remote-User"]),
            listed("requestheader-group-headers", ["X-Remote-Group"]),
        )

    def person(self, headers: Any) -> tuple[str, tuple[str, ...]] | None:
        """(user, groups) the API server named, or None. `headers`: a multidict."""
        user = next((headers[h] for h in self.username_headers if headers.get(h)), "")
        if not user:
            return None
        groups: list[str] = []
        for header in self.group_headers:
            groups.extend(headers.getall(header, []))
        return user, tuple(groups)

    def trusts(self, common_name: str | None) -> bool:
        return not self.allowed_names or common_name in self.allowed_names


def status(code: int, message: str, reason: str) -> dict[str, Any]:
    """A Kubernetes Status, as kubectl and client libraries read errors."""
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }


# A Workflow's creator (foundation_common.workflows.api.CREATOR) is written by the admission
# webhook the door serves here when a Workflow is created.
MUTATE_WORKFLOWS = "/mutate/workflows"


def creator_review(review: Mapping[str, Any]) -> dict[str, Any]:
    """The answer to an AdmissionReview of a Workflow: on CREATE, a JSON patch setting the
    CREATOR annotation to the requesting user; anything else is let through unchanged."""
    request = review.get("request") or {}
    response: dict[str, Any] = {"uid": request.get("uid", ""), "allowed": True}
    obj = request.get("object") or {}
    user = (request.get("userInfo") or {}).get("username", "")
    if request.get("operation") == "CREATE" and user:
        annotations = (obj.get("metadata") or {}).get("annotations")
        key = CREATOR.replace("~", "~0").replace("/", "~1")
        patch = (
            [{"op": "add", "path": f"/metadata/annotations/{key}", "value": user}]
            if isinstance(annotations, dict)
            else [{"op": "add", "path": "/metadata/annotations", "value": {CREATOR: user}}]
        )
        response["patchType"] = "JSONPatch"
        response["patch"] = base64.b64encode(json.dumps(patch).encode()).decode()
    return {
        "apiVersion": review.get("apiVersion", "admission.k8s.io/v1"),
        "kind": "AdmissionReview",
        "response": response,
    }


def problem(code: int, message: str, reason: str, retry_after: float | None = None) -> web.Response:
    """An answer with a Status body, as the API server's own."""
    headers = {"Retry-After": str(max(1, round(retry_after)))} if retry_after else None
    return web.json_response(status(code, message, reason), status=code, headers=headers)


def number(value: str | None) -> float:
    try:
        return float(value or 0)
    except ValueError:
        return 0.0
