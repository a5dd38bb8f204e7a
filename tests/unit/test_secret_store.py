"""persistence.store Secret (issue 26): the ConfigMap store's document in a Secret, base64 on
the wire; only on an operator the platform team gave rights on Secrets; the member granted
its own Secret by name, nothing else."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from test_agent_objects import agent
from test_chart import by_kind, render

from foundation_agent.agents import CounterAgent
from foundation_agent.runtime.member import Member
from foundation_agent.runtime.settings import Settings
from foundation_agent.stores import StateMissing
from foundation_agent.stores.secret import SecretStore
from foundation_common.rest import ApiError
from foundation_operator.agents import objects
from foundation_operator.agents.api import AgentView, InvalidSpec
from foundation_operator.core.defaults import Platform


class FakeSecretApi:
    """The API server's side of one Secret: base64 values, resourceVersion checks."""

    def __init__(self, exists: bool = True) -> None:
        self.exists = exists
        self.data: dict[str, str] = {}
        self.version = 1
        self.paths: set[str] = set()

    async def get(self, path: str) -> dict[str, Any]:
        self.paths.add(path)
        if not self.exists:
            raise ApiError(404, reason="NotFound")
        return {"metadata": {"resourceVersion": str(self.version)}, "data": dict(self.data)}

    async def merge_patch(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        for value in body["data"].values():
            base64.b64decode(value, validate=True)  # the API refuses anything else
        self.data.update(body["data"])
        self.version += 1
        return await self.get(path)


async def test_the_secret_store_keeps_the_document_base64_and_reads_it_back() -> None:
    api = FakeSecretApi()
    store = SecretStore(api, "team", "sealed-0-state")  # type: ignore[arg-type]
    member = Member(CounterAgent(), store, Settings(agent_class="x:Y"))
    await member.load()
    member.start()
    await member.submit("t1", "increment", {"by": 7})
    await member.finished("t1")
    await member.stop()
    assert api.paths == {"/api/v1/namespaces/team/secrets/sealed-0-state"}
    stored = json.loads(base64.b64decode(api.data["state.json"]))
    assert stored["state"] == {"count": 7}
    assert "t1" in json.loads(base64.b64decode(api.data["tasks.json"]))
    again = Member(
        CounterAgent(), SecretStore(api, "team", "sealed-0-state"), Settings(agent_class="x:Y")
    )  # type: ignore[arg-type]
    await again.load()
    assert again.state.count == 7 and again.task("t1")["result"] == {"count": 7}
    with pytest.raises(StateMissing, match="Secret team/gone does not exist"):
        await SecretStore(FakeSecretApi(exists=False), "team", "gone").load()  # type: ignore[arg-type]


def test_store_secret_needs_an_operator_with_rights_on_secrets() -> None:
    body = agent(persistence={"store": "Secret"})
    with pytest.raises(InvalidSpec, match="Secret is not enabled on this operator"):
        AgentView.from_body(body)
    view = AgentView.from_body(body, platform=Platform(secret_store=True))
    state = objects.state_object(view, 0)
    assert state is not None and (state["kind"], state["type"]) == ("Secret", "Opaque")
    with pytest.raises(InvalidSpec, match="retainOnDelete needs store ConfigMap or PVC"):
        AgentView.from_body(
            agent(persistence={"store": "Secret", "retainOnDelete": True}),
            platform=Platform(secret_store=True),
        )


def test_the_member_may_read_and_change_its_own_secret_only() -> None:
    view = AgentView.from_body(
        agent(replicas=2, persistence={"store": "Secret"}), platform=Platform(secret_store=True)
    )
    role = next(o for o in objects.owned_objects(view) if o["kind"] == "Role")
    secret_rules = [r for r in role["rules"] if "secrets" in r["resources"]]
    assert secret_rules == [
        {
            "apiGroups": [""],
            "resources": ["secrets"],
            "resourceNames": [f"{view.name}-0-state", f"{view.name}-1-state"],
            "verbs": ["get", "update", "patch"],
        }
    ]
    assert not [r for r in role["rules"] if "configmaps" in r["resources"]]


def test_the_chart_gives_the_operator_rights_on_secrets_only_when_asked() -> None:
    def secret_verbs(values: dict) -> list[list[str]]:
        roles = by_kind(render(values), "ClusterRole") + by_kind(render(values), "Role")
        return [
            sorted(rule["verbs"])
            for role in roles
            for rule in role.get("rules") or []
            if "secrets" in rule.get("resources", [])
        ]

    assert secret_verbs({}) == []
    assert secret_verbs({"agents": {"secretStore": {"enabled": True}}}) == [
        ["create", "get", "patch", "update"]
    ]
    namespaced = {"agents": {"secretStore": {"enabled": True}}, "watchNamespaces": ["a", "b"]}
    assert secret_verbs(namespaced) == [["create", "get", "patch", "update"]] * 2
