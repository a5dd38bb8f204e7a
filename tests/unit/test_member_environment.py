"""The environment the operator writes into a member pod is what the runtime and the sidecar
parse: a variable renamed on one side only fails here, not in a pod at start."""

from __future__ import annotations

import re

import pytest

from foundation_agent.runtime.settings import Settings
from foundation_agent.sidecar.server import SidecarSettings
from foundation_common.resources import A2A_PORT, AGENT_METRICS_PORT, AGENT_PORT, SIDECAR_URL
from foundation_operator.agents import objects, pods
from foundation_operator.agents.api import AgentView

Obj = dict


def environment(pod: Obj, container: str) -> dict[str, str]:
    """A container's environment as the kubelet gives it: values, the pod's own fields, and a
    stand-in for each Secret (the kubelet reads those)."""
    (spec,) = [c for c in pod["spec"]["containers"] if c["name"] == container]
    out = {}
    for var in spec.get("env") or []:
        if "value" in var:
            out[var["name"]] = var["value"]
            continue
        source = var["valueFrom"]
        if "secretKeyRef" in source:
            out[var["name"]] = "a-secret"
            continue
        path = source["fieldRef"]["fieldPath"]
        if label := re.fullmatch(r"metadata\.(labels|annotations)\['(.+)'\]", path):
            # A key the pod does not have is "" (as the kubelet gives it).
            out[var["name"]] = pod["metadata"].get(label.group(1), {}).get(label.group(2), "")
        else:
            section, field = path.split(".")
            out[var["name"]] = pod[section][field]
    return out


def agent(**spec: object) -> AgentView:
    body = {
        "apiVersion": "foundation.dev/v1alpha1",
        "kind": "Agent",
        "metadata": {"name": "writer", "namespace": "team", "uid": "u-1", "generation": 1},
        "spec": {"image": "img", "agent": "pkg.mod:Writer", **spec},
    }
    return AgentView.from_body(body)


@pytest.mark.parametrize("store", ["ConfigMap", "PVC", "None"])
def test_the_runtime_parses_what_the_operator_sets(store: str) -> None:
    view = agent(
        config={"greeting": "hi"},
        persistence={"store": store, "groupCommit": False},
        inbox={"maxQueued": 7, "keepCompleted": 9, "keepCompletedSeconds": 60},
    )
    pod = pods.member_pod(view, 2)
    settings = Settings.from_env(environment(pod, "agent"))
    assert settings.parked_for == ""  # made awake: loads at once
    parked = Settings.from_env(environment(pods.member_pod(view, 2, "2026-12-04T10:00Z"), "agent"))
    assert parked.parked_for == "2026-12-04T10:00Z"
    assert (settings.agent_name, settings.namespace) == ("writer", "team")
    assert (settings.member_name, settings.member) == ("writer-2", 2)
    assert settings.agent_class == "pkg.mod:Writer" and settings.agent_config == {"greeting": "hi"}
    assert settings.state_store == store and settings.group_commit is False
    assert (settings.inbox_max_queued, settings.keep_completed) == (7, 9)
    assert settings.keep_completed_seconds == 60
    assert settings.report_status is True
    # The state object the runtime opens is the one the operator makes for this member.
    assert settings.configmap == objects.state_key(view, 2)
    # The ports the pod declares are the ones the runtime listens on.
    (container,) = [c for c in pod["spec"]["containers"] if c["name"] == "agent"]
    declared = {p["containerPort"] for p in container["ports"]}
    ports = {settings.agent_port, settings.a2a_port, settings.metrics_port}
    assert ports == declared == {AGENT_PORT, A2A_PORT, AGENT_METRICS_PORT}
    # Its door: the operator's mode, and the account whose forwarded calls it trusts.
    assert settings.caller_auth == "Required"
    assert settings.service_account == "writer"


def test_the_sidecar_parses_what_the_operator_sets() -> None:
    view = agent(
        sidecar={
            "upstreams": [
                {
                    "name": "llm",
                    "url": "http://model.team.svc:8000/v1",
                    "authorization": {"secretKeyRef": {"name": "llm-key", "key": "token"}},
                }
            ]
        }
    )
    pod = pods.member_pod(view, 0)
    settings = SidecarSettings.from_env(environment(pod, "sidecar"))
    assert settings.namespace == "team" and settings.agent_port == AGENT_PORT
    assert [u.name for u in settings.sidecar_config.upstreams] == ["llm"]
    # The agent finds its sidecar where the sidecar listens.
    agent_env = environment(pod, "agent")
    assert agent_env["FOUNDATION_SIDECAR_URL"] == SIDECAR_URL
    assert SIDECAR_URL.endswith(f":{settings.sidecar_port}")
