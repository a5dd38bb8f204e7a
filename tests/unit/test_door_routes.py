"""People's door's pure parts: which calls it serves and where they go, who the API server
says is calling, and the admission webhook's stamp of a Workflow's creator."""

from __future__ import annotations

import base64
import json

import pytest
from multidict import CIMultiDict

from foundation_operator.door import routes
from foundation_operator.door.routes import FrontProxy, Target

BASE = "/apis/access.foundation.dev/v1alpha1/namespaces/team/agents/counter"


@pytest.mark.parametrize(
    ("method", "path", "member_path", "port"),
    [
        ("POST", "/tasks", "/v1/tasks", 8080),
        ("GET", "/tasks/t-1", "/v1/tasks/t-1", 8080),
        ("DELETE", "/tasks/t-1", "/v1/tasks/t-1/cancel", 8080),
        ("GET", "/actions", "/v1/actions", 8080),
        ("GET", "/actions/openapi.json", "/openapi.json", 8080),
        ("POST", "/a2a/", "/", 8081),
        ("GET", "/a2a/.well-known/agent-card.json", "/.well-known/agent-card.json", 8081),
        # Not served: 404 from the door (the API server has authorized the verb already).
        ("GET", "/tasks", "/v1/tasks", 8080),
        ("PUT", "/tasks/t-1", None, 8080),
        ("GET", "/tasks/a/b", None, 8080),
        ("POST", "/actions", None, 8080),
        ("GET", "/actions/other", None, 8080),
        ("GET", "/a2a/", None, 8081),
    ],
)
def test_each_call_goes_to_one_member_path_or_none(
    method: str, path: str, member_path: str | None, port: int
) -> None:
    target = routes.target_of(BASE + path)
    assert target is not None and (target.namespace, target.agent) == ("team", "counter")
    assert target.member_path(method) == member_path
    assert target.port == port


@pytest.mark.parametrize(
    "path",
    [
        "/apis/access.foundation.dev/v1alpha1/namespaces/team/agents/counter",  # no subresource
        f"{BASE}/exec",  # not a door subresource
        "/apis/access.foundation.dev/v1alpha1/namespaces/Team/agents/counter/tasks",  # not a name
        "/apis/foundation.dev/v1alpha1/namespaces/team/agents/counter/tasks",  # the CRD's group
    ],
)
def test_other_paths_are_not_the_doors(path: str) -> None:
    assert routes.target_of(path) is None


def test_discovery_lists_the_subresources_rbac_knows() -> None:
    listed = routes.resource_list()
    assert listed["groupVersion"] == "access.foundation.dev/v1alpha1"
    assert {r["name"]: r["verbs"] for r in listed["resources"]} == {
        "agents/tasks": ["create", "get", "delete"],
        "agents/a2a": ["create", "get"],
        "agents/actions": ["get"],
        "agents/wake": ["create"],
        "workflows/approval": ["create"],
    }
    assert routes.approval_of(f"{routes.PREFIX}/namespaces/team/workflows/w-1/approval") == (
        "team",
        "w-1",
    )
    assert routes.approval_of(f"{routes.PREFIX}/namespaces/team/workflows/w-1/other") is None


def test_the_person_is_who_the_api_servers_configured_headers_name() -> None:
    front = FrontProxy.from_config_map(
        {
            "requestheader-client-ca-file": "PEM",
            "requestheader-allowed-names": '["front-proxy-client"]',
            "requestheader-username-headers": '["X-Remote-User"]',
            "requestheader-group-headers": '["X-Remote-Group"]',
        }
    )
    headers = CIMultiDict(
        [("x-remote-user", "alice"), ("X-Remote-Group", "team"), ("X-Remote-Group", "b")]
    )
    assert front.person(headers) == ("alice", ("team", "b"))
    assert front.person(CIMultiDict()) is None
    assert front.trusts("front-proxy-client") and not front.trusts("someone-else")
    assert not front.trusts(None)
    # A cluster without the aggregation layer: said plainly.
    with pytest.raises(ValueError, match="--requestheader-client-ca-file"):
        FrontProxy.from_config_map({})


def test_a_workflow_is_stamped_with_its_creator_whatever_the_request_said() -> None:
    def review(operation: str, annotations: dict | None) -> dict:
        metadata = {"name": "w"} | ({"annotations": annotations} if annotations is not None else {})
        return routes.creator_review(
            {
                "apiVersion": "admission.k8s.io/v1",
                "kind": "AdmissionReview",
                "request": {
                    "uid": "u-1",
                    "operation": operation,
                    "userInfo": {"username": "alice", "groups": ["team"]},
                    "object": {"metadata": metadata},
                },
            }
        )["response"]

    def patch(response: dict) -> list:
        return json.loads(base64.b64decode(response["patch"]))

    fresh = review("CREATE", None)
    assert fresh["uid"] == "u-1" and fresh["allowed"] is True
    assert patch(fresh) == [
        {"op": "add", "path": "/metadata/annotations", "value": {routes.CREATOR: "alice"}}
    ]
    forged = review("CREATE", {routes.CREATOR: "mallory", "keep": "me"})
    assert patch(forged) == [
        {"op": "add", "path": "/metadata/annotations/foundation.dev~1created-by", "value": "alice"}
    ]
    assert "patch" not in review("UPDATE", {routes.CREATOR: "mallory"})


def test_a_target_knows_its_task() -> None:
    assert Target("team", "counter", "tasks", "/t-1").task_id == "t-1"
    assert Target("team", "counter", "a2a", "/x").task_id == ""


async def test_the_door_answers_only_the_api_servers_relay_and_reads_nothing_before() -> None:
    """A call that does not come with the API server's client certificate gets 401 before its
    body is read: 64 MiB from no one costs the door nothing."""
    from aiohttp import web
    from aiohttp.test_utils import TestClient, TestServer

    from foundation_common.access import TokenFile
    from foundation_operator.door.server import MAX_BODY, Door

    front = FrontProxy("PEM", ("front-proxy-client",), ("X-Remote-User",), ("X-Remote-Group",))
    door = Door(None, front, TokenFile("/nonexistent", missing_ok=True))  # type: ignore[arg-type]
    app = web.Application(client_max_size=MAX_BODY)
    app.router.add_route("*", "/{tail:.*}", door.handle)
    async with TestClient(TestServer(app)) as http:
        answer = await http.post(
            f"{BASE}/tasks",
            data=b"x" * (64 * 1024 * 1024),
            headers={"X-Remote-User": "alice", "Content-Type": "application/json"},
        )
        assert answer.status == 401
        status = await answer.json()
        assert status["kind"] == "Status" and "the API server's relay only" in status["message"]
        # The admission webhook is the API server's too, and reads an AdmissionReview only.
        bad = await http.post(routes.MUTATE_WORKFLOWS, data=b"[]")
        assert bad.status == 400
    await door.close()
