"""Who may call an Agent, decided by the local cluster's own TokenReview and RBAC.

Callers are ServiceAccounts with projected tokens as the kubelet would give their pods
(TokenRequest): bound to Foundation's audience, or not; bound to a pod that is then deleted; of
another namespace; of this namespace without a binding, with only `view`, and with the caller
role. The Agent requires a token (spec.callers.requireToken), as every member will once people
have their own door.
"""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from foundation_operator.core import rbac
from kube import Kube, agent_condition

pytestmark = pytest.mark.usefixtures("operator")


async def account(kube: Kube, name: str, namespace: str | None = None) -> None:
    await kube.core.create_namespaced_service_account(
        namespace or kube.ns, {"metadata": {"name": name}}
    )


async def bind(kube: Kube, name: str, cluster_role: str) -> None:
    await kube.create(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": f"{name}-{cluster_role}", "namespace": kube.ns},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": cluster_role,
            },
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": kube.ns}],
        }
    )


async def token(
    kube: Kube,
    name: str,
    audience: str = "foundation.dev",
    namespace: str | None = None,
    bound_pod: dict[str, str] | None = None,
) -> str:
    spec: dict[str, Any] = {"audiences": [audience], "expirationSeconds": 600}
    if bound_pod:
        spec["boundObjectRef"] = {"apiVersion": "v1", "kind": "Pod", **bound_pod}
    answer = await kube.core.create_namespaced_service_account_token(
        name,
        namespace or kube.ns,
        {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec},
    )
    return str(answer.status.token)


async def token_of_a_pod_that_is_gone(
    kube: Kube, name: str, audience: str = "foundation.dev"
) -> str:
    """A token of account `name` bound to a pod that is deleted at once."""
    holder = await kube.create(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "holder", "namespace": kube.ns},
            "spec": {
                "serviceAccountName": name,
                "containers": [{"name": "c", "image": "x", "command": ["sleep", "600"]}],
            },
        }
    )
    gone = await token(
        kube,
        name,
        audience=audience,
        bound_pod={"name": "holder", "uid": holder["metadata"]["uid"]},
    )
    await kube.delete_pod("holder", grace=0)
    return gone


def jsonrpc_send(message_id: str) -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "SendMessage",
        "params": {
            "message": {
                "role": "ROLE_USER",
                "messageId": message_id,
                "parts": [{"data": {"action": "increment", "input": {"by": 1}}}],
            },
            "configuration": {"returnImmediately": True},
        },
    }


async def test_every_door_answers_401_403_or_the_call_for_each_kind_of_caller(kube: Kube) -> None:
    await kube.create_agent("door", callers={"requireToken": True})
    other = f"{kube.ns[:50]}-other"
    await kube.core.create_namespace({"metadata": {"name": other}})
    try:
        for name in ("stranger", "viewer", "caller", "gone"):
            await account(kube, name)
        await account(kube, "outsider", other)
        await bind(kube, "viewer", "view")
        await bind(kube, "caller", "foundation-agent-caller")
        await bind(kube, "outsider-in-other", "foundation-agent-caller")  # binds no one here
        # A token bound to a pod that is then deleted: refused at once, as an expired one is.
        gone = await token_of_a_pod_that_is_gone(kube, "gone")
        callers = {
            "no credentials": None,
            "another audience": await token(
                kube, "caller", audience="https://kubernetes.default.svc"
            ),
            "a pod that is gone": gone,
            "another namespace": await token(kube, "outsider", namespace=other),
            "no binding": await token(kube, "stranger"),
            "only view": await token(kube, "viewer"),
            "the caller role": await token(kube, "caller"),
        }
        expected = {
            "no credentials": 401,
            "another audience": 401,
            "a pod that is gone": 401,
            "another namespace": 403,
            "no binding": 403,
            "only view": 403,
            "the caller role": 200,
        }
        pod = await kube.wait_running("door-0", timeout=90)
        await kube.wait_agent(
            "door", lambda a: (a.get("status") or {}).get("ready") == "1/1", what="door ready"
        )
        ip = pod["status"]["podIP"]
        seen: dict[str, dict[str, int]] = {}
        async with httpx.AsyncClient(timeout=30) as http:
            for who, bearer in callers.items():
                headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
                task_id = f"t-{uuid.uuid4().hex[:8]}"
                sent = await http.post(
                    f"http://{ip}:8080/v1/tasks",
                    json={"id": task_id, "action": "increment", "input": {"by": 1}},
                    headers=headers,
                )
                a2a = await http.post(
                    f"http://{ip}:8081/",
                    json=jsonrpc_send(f"m-{task_id}"),
                    headers={**headers, "A2A-Version": "1.0"},
                )
                seen[who] = {
                    "task API": 200 if sent.status_code == 202 else sent.status_code,
                    "A2A": a2a.status_code,
                }
                if sent.status_code == 403:
                    # In the API server's words, naming what is missing.
                    message = sent.json()["error"]
                    assert 'cannot create resource "agents/tasks"' in message
                    assert 'in API group "access.foundation.dev"' in message
                    assert '"door"' in message
                if a2a.status_code == 200:
                    assert "error" not in a2a.json(), a2a.json()
                    metadata = a2a.json()["result"]["task"]["metadata"]
                    assert metadata["foundation.dev/sender"] == (
                        f"system:serviceaccount:{kube.ns}:caller"
                    )
            assert seen == {who: {"task API": code, "A2A": code} for who, code in expected.items()}

            # The sender reads their own task; someone who may not read tasks cannot read it.
            caller = {"Authorization": f"Bearer {callers['the caller role']}"}
            viewer = {"Authorization": f"Bearer {callers['only view']}"}
            sent = await http.post(
                f"http://{ip}:8080/v1/tasks",
                json={"id": "mine", "action": "increment"},
                headers=caller,
            )
            assert sent.status_code == 202
            assert sent.json()["sender"] == f"system:serviceaccount:{kube.ns}:caller"
            read = await http.get(f"http://{ip}:8080/v1/tasks/mine?wait=10", headers=caller)
            assert read.status_code == 200 and read.json()["status"] == "succeeded"
            assert (
                await http.get(f"http://{ip}:8080/v1/tasks/mine", headers=viewer)
            ).status_code == 403
            # A forged id: a caller who may not send cannot take one (403, nothing kept)...
            stranger = {"Authorization": f"Bearer {callers['no binding']}"}
            forged = await http.post(
                f"http://{ip}:8080/v1/tasks",
                json={"id": "step-1", "action": "increment", "input": {"by": 1000}},
                headers=stranger,
            )
            assert forged.status_code == 403
            # The same account with another token is the same sender: the same request gets its
            # record, and the id with another input is refused (409), naming the input.
            again = {"Authorization": f"Bearer {await token(kube, 'caller')}"}
            same = await http.post(
                f"http://{ip}:8080/v1/tasks",
                json={"id": "mine", "action": "increment"},
                headers=again,
            )
            assert same.status_code == 200 and same.json()["status"] == "succeeded"
            changed = await http.post(
                f"http://{ip}:8080/v1/tasks",
                json={"id": "mine", "action": "increment", "input": {"by": 1000}},
                headers=again,
            )
            assert changed.status_code == 409
            assert "task id mine was sent with another input" in changed.json()["error"]
            # The network keeps out all but Foundation's pods and the API server (this test node
            # does not enforce NetworkPolicies: the object is what is checked here).
            policy = await client.NetworkingV1Api(kube.api).read_namespaced_network_policy(
                "foundation-agent-door", kube.ns
            )
            assert policy.spec.pod_selector.match_labels == {"foundation.dev/agent": "door"}
            admitted = [p.to_dict() for p in policy.spec.ingress[0]._from]
            # People's door (here this machine's address; the chart names the operator's pods),
            # and no API server address: members require tokens, no one comes by pods/proxy.
            assert [p for p in admitted if p["ip_block"]] == [
                {"ip_block": {"cidr": "10.244.0.1/32", "_except": None}, "namespace_selector": None,
                 "pod_selector": None}
            ]  # fmt: skip
            assert [p.port for p in policy.spec.ingress[1].ports] == [8082]
            # Probes and metrics need no token (the kubelet and Prometheus have none).
            assert (await http.get(f"http://{ip}:8080/readyz")).status_code == 200
            assert (await http.get(f"http://{ip}:8082/metrics")).status_code == 200
    finally:
        try:
            await kube.core.delete_namespace(other)
        except ApiException:
            pass


async def review(kube: Kube, user: str, check: str) -> bool:
    """Whether RBAC lets `user` do `check` ("verb group resource[/subresource] [name]", group
    "core" for the core group) in the test's namespace: a SubjectAccessReview."""
    verb, group, resource, *name = check.split()
    attributes = {"namespace": kube.ns, "verb": verb, "group": "" if group == "core" else group}
    attributes["resource"], _, subresource = resource.partition("/")
    if subresource:
        attributes["subresource"] = subresource
    if name:
        attributes["name"] = name[0]
    groups = ["system:serviceaccounts", f"system:serviceaccounts:{kube.ns}", "system:authenticated"]
    body = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SubjectAccessReview",
        "spec": {"user": user, "groups": groups, "resourceAttributes": attributes},
    }
    answer = await client.AuthorizationV1Api(kube.api).create_subject_access_review(body)
    return bool(answer.status.allowed)


async def test_each_identity_the_operator_makes_has_what_it_needs_and_nothing_more(
    kube: Kube,
) -> None:
    await kube.create_agent("counter", capabilities=["count"])
    await kube.create_agent("caller", calls={"capabilities": ["count"]})
    await kube.create_workflow(
        "flow", steps=[{"name": "one", "agent": "counter", "action": "increment"}]
    )
    member = f"system:serviceaccount:{kube.ns}:caller"
    runner = f"system:serviceaccount:{kube.ns}:flow-runner"
    # The operator's own account, as the chart binds it (cluster-wide), named for this test.
    operator_name = f"op-{kube.ns[-5:]}"
    operator = f"system:serviceaccount:{kube.ns}:{operator_name}"
    made = [
        d
        for d in rbac.manifests(kube.ns, operator_name)
        if d["kind"] in ("ClusterRole", "ClusterRoleBinding")
        and d["metadata"]["name"] == operator_name
    ]
    for doc in made:
        create = (
            kube.rbac.create_cluster_role
            if doc["kind"] == "ClusterRole"
            else kube.rbac.create_cluster_role_binding
        )
        await create(doc)
    must = {
        member: [
            "get foundation.dev agents caller",
            "patch foundation.dev agents/status caller",
            "update core configmaps caller-0-state",
            "create authorization.k8s.io localsubjectaccessreviews",
            "create access.foundation.dev agents/tasks counter",  # declared, by capability
            "create access.foundation.dev agents/wake counter",  # and waking it if it sleeps
            "get access.foundation.dev agents/actions counter",  # its tools' schemas
            "list discovery.k8s.io endpointslices",
        ],
        runner: [
            "patch foundation.dev workflows/status flow",
            "create access.foundation.dev agents/tasks counter",
            "create access.foundation.dev agents/wake counter",
        ],
        operator: [
            "create core pods",
            "patch foundation.dev agents/status caller",
            "create rbac.authorization.k8s.io roles",
            "patch rbac.authorization.k8s.io clusterrolebindings " + rbac.MEMBER_CLUSTER_ROLE,
            "create authentication.k8s.io tokenreviews",
            "relay access.foundation.dev agents/tasks counter",  # people's door
        ],
    }
    must_not = {
        member: [
            "patch foundation.dev agents caller",  # its own spec: image, env, upstreams
            "update foundation.dev agents caller",
            "get core secrets",
            "list core secrets",
            "create core pods",
            "create rbac.authorization.k8s.io rolebindings",
            "bind rbac.authorization.k8s.io clusterroles admin",
            "get core configmaps counter-0-state",  # another Agent's state
            "update core configmaps counter-0-state",
            "create access.foundation.dev agents/tasks caller",  # not declared
            "create access.foundation.dev agents/wake caller",
            "get access.foundation.dev agents/tasks counter",  # others' task records
            "relay access.foundation.dev agents/tasks counter",  # speak for others
            "create core pods/proxy",
        ],
        runner: [
            "patch foundation.dev workflows flow",
            "get core secrets",
            "create core pods",
            "create access.foundation.dev agents/tasks caller",  # no step names it
            "create access.foundation.dev agents/wake caller",
            "get core configmaps counter-0-state",
        ],
        operator: [
            "get core secrets",
            "list core secrets",
            "delete core namespaces",
            "create rbac.authorization.k8s.io clusterroles",
            "escalate rbac.authorization.k8s.io roles",
            "bind rbac.authorization.k8s.io clusterroles",
            "impersonate core users",
            "patch rbac.authorization.k8s.io clusterrolebindings cluster-admin",
            "create core pods/exec",
        ],
    }
    try:
        # The runner's Role comes with its pod, the member's with its Agent: wait for both.
        for who, check in ((runner, must[runner][1]), (member, must[member][4])):
            await kube.wait(lambda w=who, c=check: review(kube, w, c), what=f"{who}: {check}")
        found = {
            (who, check): await review(kube, who, check)
            for table in (must, must_not)
            for who, checks in table.items()
            for check in checks
        }
        wanted = {
            (who, check): table is must
            for table in (must, must_not)
            for who, checks in table.items()
            for check in checks
        }
        assert found == wanted

        # The members' one cluster-wide right, reviewing tokens, is for the Agents' accounts.
        async def bound() -> bool:
            binding = await kube.rbac.read_cluster_role_binding(rbac.MEMBER_CLUSTER_ROLE)
            subjects = {(s.namespace, s.name) for s in binding.subjects or []}
            return {(kube.ns, "caller"), (kube.ns, "counter")} <= subjects

        await kube.wait(bound, what="the Agents' accounts in the members' binding")
        assert await review(kube, member, "create authentication.k8s.io tokenreviews")
        assert not await review(kube, runner, "create authentication.k8s.io tokenreviews")
    finally:
        for doc in made:
            delete = (
                kube.rbac.delete_cluster_role
                if doc["kind"] == "ClusterRole"
                else kube.rbac.delete_cluster_role_binding
            )
            await delete(doc["metadata"]["name"])


async def test_a_pod_template_outside_the_restricted_profile_gets_a_condition_and_no_pod(
    kube: Kube,
) -> None:
    await kube.create_agent(
        "rooted", podTemplate={"securityContext": {"runAsUser": 0, "runAsNonRoot": False}}
    )
    agent = await kube.wait_agent(
        "rooted",
        lambda a: agent_condition(a, "Ready").get("reason") == "NotRestricted",
        what="rooted given NotRestricted",
    )
    message = agent_condition(agent, "Ready")["message"]
    assert "spec.securityContext.runAsUser: 0 (root) is not allowed" in message
    assert "agents.privilegedNamespaces" in message
    assert agent["status"]["phase"] == "Failed"
    assert await kube.names("Pod", "foundation.dev/agent=rooted") == []
