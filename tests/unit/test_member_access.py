"""The member's door (runtime.access) over a stand-in for the API server's two reviews: who a
token is, and what RBAC allows whom. (The real API server answers them in
tests/integration/test_access.py.)"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from foundation_agent.agents import CounterAgent
from foundation_agent.runtime.access import Caller, Denied, Gate
from foundation_agent.runtime.member import Member
from foundation_agent.runtime.server import TaskApi
from foundation_agent.runtime.settings import Settings
from foundation_agent.stores import MemoryStore

TOKENS = {
    "alice-token": {"username": "alice", "groups": ["people"]},
    "bob-token": {"username": "bob", "groups": ["people"]},
    "runner-token": {"username": "system:serviceaccount:ns:runner", "groups": []},
    "sibling-token": {"username": "system:serviceaccount:ns:counter", "groups": []},
    "carol-token": {"username": "carol", "groups": []},
    "door-token": {"username": "system:serviceaccount:foundation:operator", "groups": []},
}
# user -> verbs on counter's tasks ("" subresource: the Agent itself)
GRANTS = {
    "alice": {("create", "tasks"), ("get", "actions"), ("get", "a2a")},
    "bob": {("create", "tasks"), ("get", "tasks"), ("delete", "tasks")},
    "system:serviceaccount:ns:runner": {("create", "tasks")},
    "system:serviceaccount:foundation:operator": {("relay", "tasks")},
}


class ApiServer:
    """Answers TokenReview and LocalSubjectAccessReview as the API server does; counts them."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.grants = {user: set(verbs) for user, verbs in GRANTS.items()}

    async def review(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        await asyncio.sleep(0.01)  # a round trip: concurrent misses overlap
        self.calls.append(body["kind"])
        spec = body["spec"]
        if body["kind"] == "TokenReview":
            assert spec["audiences"] == ["foundation.dev"]
            user = TOKENS.get(spec["token"])
            return {"status": {"authenticated": bool(user), "user": user or {}}}
        assert path == "/apis/authorization.k8s.io/v1/namespaces/ns/localsubjectaccessreviews"
        attributes = spec["resourceAttributes"]
        assert (attributes["group"], attributes["resource"], attributes["name"]) == (
            "access.foundation.dev",
            "agents",
            "counter",
        )
        wanted = (attributes["verb"], attributes.get("subresource", ""))
        return {"status": {"allowed": wanted in self.grants.get(spec["user"], set())}}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def served(mode: str = "Required") -> tuple[ApiServer, TaskApi, Member]:
    server = ApiServer()
    gate = Gate(server.review, "ns", "counter", "counter", mode, ttl=60, denied_ttl=60)  # type: ignore[arg-type]
    member = Member(CounterAgent(), MemoryStore(), Settings(agent_class="x:Y"))
    await member.load()
    member.start()
    return server, TaskApi(gate, member), member


async def test_no_token_bad_token_and_no_grant_are_401_401_and_403_in_the_api_servers_words() -> (
    None
):
    _, api, member = await served()
    async with TestClient(TestServer(api.app())) as http:
        task = {"id": "t1", "action": "increment", "input": {"by": 1}}
        missing = await http.post("/v1/tasks", json=task)
        assert missing.status == 401 and "bearer token" in (await missing.json())["error"]
        wrong = await http.post("/v1/tasks", json=task, headers=bearer("stolen"))
        assert wrong.status == 401 and "not valid for audience" in (await wrong.json())["error"]
        basic = await http.post("/v1/tasks", json=task, headers={"Authorization": "Basic x"})
        assert basic.status == 401
        # carol is someone, but holds no grant on this Agent.
        denied = await http.post("/v1/tasks", json=task, headers=bearer("carol-token"))
        assert denied.status == 403
        assert (await denied.json())["error"] == (
            'agents.access.foundation.dev "counter" is forbidden: User "carol" cannot create'
            ' resource "agents/tasks" in API group "access.foundation.dev" in the namespace "ns"'
        )
        # Probes stay open: the kubelet has no token.
        assert (await http.get("/readyz")).status == 200
        assert member.task("t1") is None  # nothing refused was kept
    await member.stop()


async def test_a_task_is_its_senders_to_read_and_cancel_and_its_id_cannot_be_taken() -> None:
    _, api, member = await served()
    async with TestClient(TestServer(api.app())) as http:
        task = {"id": "step-1", "action": "increment", "input": {"by": 1}}
        sent = await http.post("/v1/tasks", json=task, headers=bearer("runner-token"))
        assert sent.status == 202
        assert (await sent.json())["sender"] == "system:serviceaccount:ns:runner"
        # Someone else may send too, but not under the runner's id: 409, and no forged record.
        forged = await http.post(
            "/v1/tasks", json={**task, "input": {"by": 1000}}, headers=bearer("alice-token")
        )
        assert forged.status == 409 and "another caller" in (await forged.json())["error"]
        again = await http.post("/v1/tasks", json=task, headers=bearer("runner-token"))
        assert again.status == 200  # the sender's own retry is the same task
        record = await (
            await http.get("/v1/tasks/step-1?wait=5", headers=bearer("runner-token"))
        ).json()
        assert record["status"] == "succeeded" and record["result"] == {"count": 1}
        # alice sent nothing here and may not read tasks: 403 (whether or not it exists).
        for task_id in ("step-1", "no-such-task"):
            hidden = await http.get(f"/v1/tasks/{task_id}", headers=bearer("alice-token"))
            assert hidden.status == 403
        # bob holds get on agents/tasks: reads anyone's, and 404 for what does not exist.
        assert (await http.get("/v1/tasks/step-1", headers=bearer("bob-token"))).status == 200
        assert (await http.get("/v1/tasks/nope", headers=bearer("bob-token"))).status == 404
        # The list of actions is for whoever may read the Agent.
        assert (await http.get("/v1/actions", headers=bearer("alice-token"))).status == 200
        assert (await http.get("/v1/actions", headers=bearer("runner-token"))).status == 403
    await member.stop()


async def test_answers_are_cached_per_caller_and_concurrent_misses_ask_once() -> None:
    server, api, member = await served()
    alice = await api.gate.identify(bearer("alice-token"))
    await asyncio.gather(*(api.gate.identify(bearer("alice-token")) for _ in range(50)))
    assert await api.gate.allowed(alice, "create")
    await asyncio.gather(*(api.gate.require(alice, "create") for _ in range(50)))
    assert server.calls == ["TokenReview", "LocalSubjectAccessReview"]
    # A removed grant bites once the decision's time is up, not before.
    server.grants["alice"].clear()
    assert await api.gate.allowed(alice, "create")
    clock = [0.0]
    gate = Gate(server.review, "ns", "counter", "counter", ttl=10, clock=lambda: clock[0])  # type: ignore[arg-type]
    assert not await gate.allowed(alice, "create")
    server.grants["alice"].add(("create", "tasks"))
    clock[0] = 1.0
    assert not await gate.allowed(alice, "create")  # a refusal is kept 2 s
    clock[0] = 2.5
    assert await gate.allowed(alice, "create")
    server.grants["alice"].clear()
    clock[0] = 12.0
    assert await gate.allowed(alice, "create")
    clock[0] = 12.6
    assert not await gate.allowed(alice, "create")
    await member.stop()


async def test_the_agents_own_members_and_relayers_may_speak_for_another_caller() -> None:
    _, api, member = await served()
    named = {"X-Foundation-Sender": "bob", "X-Foundation-Sender-Groups": "people"}
    assert await api.gate.identify({**bearer("sibling-token"), **named}) == Caller(
        "bob", ("people",), via="system:serviceaccount:ns:counter"
    )
    # The door (the operator), which RBAC lets `relay` the Agent's tasks.
    assert await api.gate.identify({**bearer("door-token"), **named}) == Caller(
        "bob", ("people",), via="system:serviceaccount:foundation:operator"
    )
    # Anyone else naming a sender is refused, in the API server's words.
    with pytest.raises(Denied) as refused:
        await api.gate.identify({**bearer("alice-token"), "X-Foundation-Sender": "bob"})
    assert refused.value.status == 403
    assert 'User "alice" cannot relay resource "agents/tasks"' in refused.value.message
    await member.stop()


async def test_permissive_lets_a_call_without_a_token_through_but_verifies_one_with_a_token() -> (
    None
):
    _, api, member = await served("Permissive")
    async with TestClient(TestServer(api.app())) as http:
        task = {"id": "anon", "action": "increment"}
        assert (await http.post("/v1/tasks", json=task)).status == 202
        record = await (await http.get("/v1/tasks/anon")).json()
        assert "sender" not in record
        assert (await http.post("/v1/tasks", json=task, headers=bearer("stolen"))).status == 401
    await member.stop()


@pytest.mark.parametrize("verb", ["create", "get"])
async def test_without_api_access_a_token_cannot_be_believed(verb: str) -> None:
    gate = Gate(None, "ns", "counter", "counter")
    with pytest.raises(Denied) as refused:
        await gate.identify(bearer("alice-token"))
    assert refused.value.status == 401
    assert not await gate.allowed(Caller("alice"), verb)
