"""Drift repair without a cluster: what counts as drift in an owned object, the patches that
repair it, which Agent an owned object's event requeues, and relists that report deletions."""

from __future__ import annotations

import copy
import logging

import pytest

from foundation_operator.agents import objects
from foundation_operator.agents.api import AgentView
from foundation_operator.agents.controller import Supervisor
from foundation_operator.core.owned import field_patch
from foundation_operator.core.watches import relisted


def body(name: str = "writer", **spec: object) -> dict:
    return {
        "apiVersion": "foundation.dev/v1alpha1",
        "kind": "Agent",
        "metadata": {"name": name, "namespace": "team", "uid": f"u-{name}", "generation": 1},
        "spec": {"image": "i", "agent": "m:C", **spec},
    }


def owned(view: AgentView, kind: str) -> dict:
    (found,) = [o for o in objects.owned_objects(view) if o["kind"] == kind]
    return copy.deepcopy(found)


def test_drift_is_what_the_operator_manages_changed_or_its_owner_gone() -> None:
    view = AgentView.from_body(body())
    role = owned(view, "Role")
    assert not objects.drifted(role, copy.deepcopy(role))
    labelled = copy.deepcopy(role)
    labelled["metadata"]["labels"]["team"] = "x"  # not ours to manage
    assert not objects.drifted(role, labelled)
    widened = copy.deepcopy(role)
    widened["rules"][0]["verbs"].append("delete")
    (difference,) = objects.drifted(role, widened)
    assert difference.field == "rules"
    assert difference.want == role["rules"] and difference.have == widened["rules"]
    assert str(difference).startswith("rules: want [{") and '"delete"' in str(difference)
    orphaned = copy.deepcopy(role)
    orphaned["metadata"]["ownerReferences"] = []
    (difference,) = objects.drifted(role, orphaned)
    uid = role["metadata"]["ownerReferences"][0]["uid"]
    assert str(difference) == (
        f'metadata.ownerReferences: want ["Agent/{view.name} ({uid})"], was []'
    )
    service = owned(view, "Service")
    rerouted = copy.deepcopy(service)
    rerouted["spec"]["selector"] = {"app": "other"}
    rerouted["spec"]["ports"][0]["protocol"] = "TCP"  # the API server's default: not drift
    assert [d.field for d in objects.drifted(service, rerouted)] == ["spec.selector"]
    defaulted = copy.deepcopy(service)
    defaulted["spec"]["ports"][0]["protocol"] = "TCP"
    assert not objects.drifted(service, defaulted)


def test_repair_patches_only_the_fields_that_differ() -> None:
    want = {"spec": {"selector": {"a": "1"}, "ports": [1]}, "rules": [1]}
    have = {"spec": {"selector": {"a": "2"}, "ports": [2]}, "rules": [1]}
    assert field_patch(want, have, ("rules", "spec.selector")) == {"spec": {"selector": {"a": "1"}}}
    assert field_patch(want, want, ("rules", "spec.selector")) == {}


async def queued(supervisor: Supervisor) -> set[tuple[str, str]]:
    """The keys waiting in the supervisor's queue, taken out of it."""
    keys = set()
    while len(supervisor.queue):
        key = await supervisor.queue.get()
        supervisor.queue.done(key)
        keys.add(key)
    return keys


async def test_an_owned_objects_change_requeues_its_agent_only_when_it_drifted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    writer, reader = body("writer", capabilities=["search"]), body("reader", capabilities=["x"])
    supervisor = Supervisor(kube=None)  # observation only: no API call is made
    for agent in (writer, reader):
        supervisor.observe_agent("ADDED", agent)
    await queued(supervisor)
    view = AgentView.from_body(writer)
    role = owned(view, "Role")
    supervisor.remember(("team", "writer")).owned_applied = "applied"
    supervisor.observe_owned("ADDED", role)  # our own create
    supervisor.observe_owned("MODIFIED", copy.deepcopy(role))  # unchanged where it matters
    assert await queued(supervisor) == set()
    changed = copy.deepcopy(role)
    changed["rules"] = []
    with caplog.at_level(logging.INFO, logger="foundation_operator"):
        supervisor.observe_owned("MODIFIED", changed)
    assert await queued(supervisor) == {("team", "writer")}
    # The log says which object, which field, what we want and what was there.
    (said,) = [r.getMessage() for r in caplog.records if "by someone else" in r.getMessage()]
    assert said.startswith(f"agent team/writer: Role {role['metadata']['name']} changed by ")
    assert "; rules: want [{" in said and ", was []; making it right" in said
    assert supervisor.remember(("team", "writer")).owned_applied == ""
    # A shared capability Service deleted: every Agent with that capability, no other.
    shared = objects.capability_service("team", "search", [objects.owner_reference(view, False)])
    supervisor.observe_owned("DELETED", shared)
    assert await queued(supervisor) == {("team", "writer")}
    # Objects of nobody we know (another operator's, or an Agent already gone) are ignored.
    stranger = copy.deepcopy(role)
    stranger["metadata"]["labels"][objects.AGENT_LABEL] = "gone"
    supervisor.observe_owned("DELETED", stranger)
    assert await queued(supervisor) == set()


def test_a_relist_reports_what_vanished_while_the_watch_was_down() -> None:
    seen: list[tuple[str, str, str | None]] = []

    def observe(event: str, obj: dict) -> None:
        seen.append((event, obj["metadata"]["name"], obj["metadata"].get("uid")))

    def pod(name: str) -> dict:
        labels = {objects.AGENT_LABEL: "w"}
        return {
            "metadata": {"namespace": "team", "name": name, "uid": f"u-{name}", "labels": labels}
        }

    known = relisted([pod("w-0"), pod("w-1")], {}, observe)
    assert seen == [("ADDED", "w-0", "u-w-0"), ("ADDED", "w-1", "u-w-1")]
    seen.clear()
    known = relisted([pod("w-0")], known, observe)
    assert seen == [("ADDED", "w-0", "u-w-0"), ("DELETED", "w-1", "u-w-1")]
    assert list(known) == [("team", "w-0")]
