"""People's door on the local cluster: people and workloads call Agents through the API server
(`access.foundation.dev`), with nothing but what a kubeconfig holds, and the API server's own
authentication and RBAC decide. The member behind it requires a token: the door relays with
the operator's and names the person, whom the member authorizes again.

Callers: no credentials; ServiceAccount tokens for another audience, of a pod that is gone, of
another namespace, without a binding, with only `view`, with the caller role; and people (users
the admin impersonates, as a client certificate or an OIDC token would name them).
"""

from __future__ import annotations

import json
import os
import ssl
import uuid
from pathlib import Path
from typing import Any

import door
import httpx
import pytest
from mcp import Client, StdioServerParameters
from test_access import account, bind, jsonrpc_send, token, token_of_a_pod_that_is_gone

from kube import REPO, Kube
from localcluster.layout import API_URL

pytestmark = pytest.mark.usefixtures("operator")
DOOR = "/apis/access.foundation.dev/v1alpha1"
API_AUDIENCE = "https://kubernetes.default.svc"
CA = str(REPO / ".local-cluster" / "pki" / "ca.crt")
CLI = str(REPO / ".venv/bin/foundation")


def admin_token() -> str:
    config = json.loads((REPO / ".local-cluster" / "kubeconfig").read_text())
    return str(config["users"][0]["user"]["token"])


def as_person(user: str, *groups: str) -> dict[str, str]:
    """The admin impersonating `user`: the API server authorizes `user`, as if they came with
    their own client certificate, and the door is told `user`."""
    headers = {"Authorization": f"Bearer {admin_token()}", "Impersonate-User": user}
    return headers | ({"Impersonate-Group": groups[0]} if groups else {})


async def bind_user(kube: Kube, user: str, cluster_role: str) -> None:
    await kube.create(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": f"{user}-{cluster_role}", "namespace": kube.ns},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": cluster_role,
            },
            "subjects": [{"kind": "User", "name": user, "apiGroup": "rbac.authorization.k8s.io"}],
        }
    )


def kubeconfig(path: Path, bearer: str | None) -> str:
    path.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {"name": "c", "cluster": {"server": API_URL, "certificate-authority": CA}}
                ],
                "users": [{"name": "u", "user": {"token": bearer} if bearer else {}}],
                "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "c",
            }
        )
    )
    return str(path)


async def test_people_call_through_the_api_server_and_rbac_decides(
    kube: Kube, tmp_path: Path
) -> None:
    await kube.create_agent("door", callers={"requireToken": True})
    other = f"{kube.ns[:50]}-other"
    await kube.core.create_namespace({"metadata": {"name": other}})
    for name in ("stranger", "viewer", "caller", "gone"):
        await account(kube, name)
    await account(kube, "outsider", other)
    await bind(kube, "viewer", "view")
    await bind(kube, "caller", "foundation-agent-caller")
    await bind_user(kube, "alice", "foundation-agent-caller")
    await bind_user(kube, "bob", "foundation-agent-caller")
    await bind_user(kube, "rita", "foundation-agent-reader")
    gone = await token_of_a_pod_that_is_gone(kube, "gone", API_AUDIENCE)

    def bearer(value: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {value}"}

    callers: dict[str, dict[str, str]] = {
        "no credentials": {},
        "another audience": bearer(await token(kube, "caller")),  # foundation.dev's, not the API's
        "a pod that is gone": bearer(gone),
        "another namespace": bearer(await token(kube, "outsider", API_AUDIENCE, other)),
        "no binding": bearer(await token(kube, "stranger", API_AUDIENCE)),
        "only view": bearer(await token(kube, "viewer", API_AUDIENCE)),
        "the caller role": bearer(await token(kube, "caller", API_AUDIENCE)),
        "a person with the caller role": as_person("alice", "team"),
        "a person with nothing": as_person("mallory"),
    }
    expected = {
        # The local API server takes a call without credentials as system:anonymous, whom RBAC
        # refuses (403); one run with --anonymous-auth=false answers 401.
        "no credentials": 403,
        "another audience": 401,
        "a pod that is gone": 401,
        "another namespace": 403,
        "no binding": 403,
        "only view": 403,
        "the caller role": 200,
        "a person with the caller role": 200,
        "a person with nothing": 403,
    }
    senders = {
        "the caller role": f"system:serviceaccount:{kube.ns}:caller",
        "a person with the caller role": "alice",
    }
    await kube.wait_agent(
        "door", lambda a: (a.get("status") or {}).get("ready") == "1/1", what="door ready"
    )
    base = f"{API_URL}{DOOR}/namespaces/{kube.ns}/agents/door"
    seen: dict[str, dict[str, int]] = {}
    try:
        async with httpx.AsyncClient(
            timeout=30, verify=ssl.create_default_context(cafile=CA)
        ) as http:
            for who, headers in callers.items():
                task_id = f"t-{uuid.uuid4().hex[:8]}"
                sent = await http.post(
                    f"{base}/tasks?wait=10",
                    json={"id": task_id, "action": "increment", "input": {"by": 1}},
                    headers=headers,
                )
                a2a = await http.post(
                    f"{base}/a2a/",
                    json=jsonrpc_send(f"m-{task_id}"),
                    headers={**headers, "A2A-Version": "1.0"},
                )
                card = await http.get(f"{base}/a2a/.well-known/agent-card.json", headers=headers)
                seen[who] = {
                    "task API": sent.status_code,
                    "A2A": a2a.status_code,
                    "card": card.status_code,
                }
                if sent.status_code == 403:
                    # The API server's own words, naming what is missing.
                    assert 'cannot create resource "agents/tasks"' in sent.json()["message"]
                if sent.status_code == 200:
                    assert "result" in a2a.json(), a2a.json()
                    assert sent.json()["status"] == "succeeded"
                    assert sent.json()["sender"] == senders[who]
                    assert (
                        a2a.json()["result"]["task"]["metadata"]["foundation.dev/sender"]
                        == senders[who]
                    )
            assert seen == {
                who: {"task API": code, "A2A": code, "card": code} for who, code in expected.items()
            }

            # A sender reads their task by sending it again (the same id: never twice); reading
            # by id is `get agents/tasks`, a reader's; another sender is refused the id (409).
            alice, bob, rita = as_person("alice"), as_person("bob"), as_person("rita")
            task = {"id": "mine", "action": "increment", "input": {"by": 5}}
            first = await http.post(f"{base}/tasks?wait=10", json=task, headers=alice)
            again = await http.post(f"{base}/tasks?wait=10", json=task, headers=alice)
            assert first.json()["result"] == again.json()["result"]
            assert (await http.get(f"{base}/tasks/mine", headers=alice)).status_code == 403
            read = await http.get(f"{base}/tasks/mine", headers=rita)
            assert read.status_code == 200 and read.json()["sender"] == "alice"
            assert (await http.post(f"{base}/tasks", json=task, headers=bob)).status_code == 409
            # A forged id from someone who may not send: refused before the door is asked.
            forged = await http.post(
                f"{base}/tasks",
                json={"id": "step-1", "action": "increment", "input": {"by": 1000}},
                headers=callers["no binding"],
            )
            assert forged.status_code == 403
            assert (await http.get(f"{base}/tasks/step-1", headers=rita)).status_code == 404
            # The task API as OpenAPI, each action's input schema in it: a reader's to get.
            document = await http.get(f"{base}/actions/openapi.json", headers=rita)
            assert document.status_code == 200, document.text
            increment = document.json()["components"]["schemas"]["Task_increment"]
            assert increment["properties"]["action"] == {"const": "increment"}
            refused = await http.get(f"{base}/actions/openapi.json", headers=callers["no binding"])
            assert refused.status_code == 403
            # The door answers only the API server: a call straight to it has no identity.
            async with httpx.AsyncClient(
                verify=ssl.create_default_context(cafile=str(door.FILES / "ca.crt"))
            ) as straight:
                answer = await straight.get(
                    f"https://{door.HOST}:{door.PORT}{DOOR}/namespaces/{kube.ns}/agents/door"
                    "/tasks/mine",
                    headers={**alice, "X-Remote-User": "rita"},
                )
            assert answer.status_code == 401

        # `foundation mcp`, with a kubeconfig holding each kind of token (or none): the same
        # answers, as the tool call's result or its error.
        async def tool_call(bearer_token: str | None, name: str) -> Any:
            stdio = StdioServerParameters(
                command=CLI,
                args=["--kubeconfig", kubeconfig(tmp_path / name, bearer_token), "-n", kube.ns,
                      "mcp", "--agent", "door", "--stdio"],
                env={k: v for k, v in os.environ.items() if k != "KUBECONFIG"},
            )  # fmt: skip
            async with Client(stdio) as mcp:
                return await mcp.call_tool("door__increment", {"by": 1})

        answers = {}
        for who, headers in callers.items():
            if who.startswith("a person"):
                continue  # impersonation is the admin's, not a kubeconfig's
            bearer_token = headers["Authorization"].split()[1] if headers else None
            result = await tool_call(bearer_token, f"mcp-{len(answers)}")
            text = result.content[0].text
            answers[who] = (
                200
                if not result.is_error
                else 403
                if "cannot create resource" in text
                else 401
                if "Unauthorized" in text
                else text
            )
        assert answers == {who: code for who, code in expected.items() if who in answers}
    finally:
        await kube.core.delete_namespace(other)


async def test_a_workflow_records_who_created_it_and_its_steps_whom_they_ran_as(
    kube: Kube,
) -> None:
    await kube.create_agent("counter")
    await kube.create(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": "workflow-author"},
            "rules": [
                {"apiGroups": ["foundation.dev"], "resources": ["workflows"], "verbs": ["create"]}
            ],
        }
    )
    await kube.create(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "alice-writes-workflows"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "Role",
                "name": "workflow-author",
            },
            "subjects": [
                {"kind": "User", "name": "alice", "apiGroup": "rbac.authorization.k8s.io"}
            ],
        }
    )
    workflow = {
        "apiVersion": "foundation.dev/v1alpha1",
        "kind": "Workflow",
        # A forged creator in the request: the API server's word for who asked wins.
        "metadata": {"name": "tally", "annotations": {"foundation.dev/created-by": "mallory"}},
        "spec": {"steps": [{"name": "one", "agent": "counter", "action": "increment"}]},
    }
    async with httpx.AsyncClient(timeout=30, verify=ssl.create_default_context(cafile=CA)) as http:
        made = await http.post(
            f"{API_URL}/apis/foundation.dev/v1alpha1/namespaces/{kube.ns}/workflows",
            json=workflow,
            headers=as_person("alice", "team"),
        )
    assert made.status_code == 201, made.text
    assert made.json()["metadata"]["annotations"]["foundation.dev/created-by"] == "alice"
    done = await kube.wait_workflow(
        "tally", lambda w: (w.get("status") or {}).get("phase") == "Succeeded", timeout=90
    )
    assert done["status"]["createdBy"] == "alice"
    (step,) = done["status"]["steps"]
    assert step["sender"] == f"system:serviceaccount:{kube.ns}:tally-runner"
