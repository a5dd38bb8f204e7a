"""What the platform decides for every pod (issue 26): the sidecar's image is the operator's,
never an Agent's; members, sidecars and runners get default requests and memory limits that
an Agent's or Workflow's own resources override name by name; the chart sets them all and can
name images by digest."""

from __future__ import annotations

import pytest
from test_agent_objects import agent
from test_chart import by_kind, render

from foundation_operator.agents import pods
from foundation_operator.agents.api import AgentView
from foundation_operator.core.defaults import AGENT_RESOURCES, Platform, amount, merged
from foundation_operator.settings import Settings
from foundation_operator.workflows.objects import WorkflowView, runner_pod

DIGEST = "sha256:" + "ab" * 32


def containers(view: AgentView) -> dict[str, dict]:
    return {c["name"]: c for c in pods.member_pod(view, 0)["spec"]["containers"]}


def test_the_sidecar_runs_the_platforms_image_never_the_agents() -> None:
    body = agent(image="team.example/own-agent:1")
    view = AgentView.from_body(body, "registry.test/foundation:1")
    pod = containers(view)
    assert pod["agent"]["image"] == "team.example/own-agent:1"
    assert pod["sidecar"]["image"] == "registry.test/foundation:1"
    pinned = AgentView.from_body(
        body, "registry.test/foundation:1", platform=Platform(f"registry.test/sidecar@{DIGEST}")
    )
    assert containers(pinned)["sidecar"]["image"] == f"registry.test/sidecar@{DIGEST}"


def test_members_get_default_resources_that_their_spec_overrides_name_by_name() -> None:
    pod = containers(AgentView.from_body(agent()))
    assert pod["agent"]["resources"] == AGENT_RESOURCES
    assert pod["sidecar"]["resources"]["limits"] == {"memory": "256Mi"}
    own = containers(
        AgentView.from_body(
            agent(
                resources={"limits": {"cpu": "2"}, "requests": {"memory": "1Gi"}},
                sidecar={"resources": {"limits": {"memory": "128Mi"}}},
            )
        )
    )
    # The request above the default limit raises the limit to it: the pod stays valid.
    assert own["agent"]["resources"] == {
        "requests": {"cpu": "50m", "memory": "1Gi"},
        "limits": {"memory": "1Gi", "cpu": "2"},
    }
    assert own["sidecar"]["resources"] == {
        "requests": {"cpu": "20m", "memory": "64Mi"},
        "limits": {"memory": "128Mi"},
    }


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (None, AGENT_RESOURCES),
        ({}, AGENT_RESOURCES),
        (
            {"limits": {"memory": "64Mi"}},  # a limit below the default request lowers it
            {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "64Mi"}},
        ),
        (
            {"requests": {"memory": "2G"}, "limits": {"memory": "3G"}},
            {"requests": {"cpu": "50m", "memory": "2G"}, "limits": {"memory": "3G"}},
        ),
        (
            {"claims": [{"name": "gpu"}]},
            {**AGENT_RESOURCES, "claims": [{"name": "gpu"}]},
        ),
    ],
)
def test_merging_keeps_every_pod_valid(given: dict | None, expected: dict) -> None:
    assert merged(AGENT_RESOURCES, given) == expected
    out = merged(AGENT_RESOURCES, given)
    for name, limit in out.get("limits", {}).items():
        request = out.get("requests", {}).get(name)
        assert request is None or amount(request) <= amount(limit)


def test_runners_get_default_resources_too() -> None:
    body = {
        "apiVersion": "foundation.dev/v1alpha1",
        "kind": "Workflow",
        "metadata": {"name": "w", "namespace": "ns", "uid": "u", "generation": 1},
        "spec": {"steps": [{"name": "s", "agent": "a", "action": "get"}]},
    }
    pod = runner_pod(WorkflowView.from_body(body, "img:1"))
    assert pod["spec"]["containers"][0]["resources"]["limits"] == {"memory": "256Mi"}
    body["spec"]["runner"] = {"resources": {"limits": {"memory": "1Gi"}}}
    pod = runner_pod(WorkflowView.from_body(body, "img:1", {"requests": {"cpu": "1"}}))
    assert pod["spec"]["containers"][0]["resources"] == {
        "requests": {"cpu": "1"},
        "limits": {"memory": "1Gi"},
    }


def operator_env(values: dict) -> dict[str, str]:
    (deployment,) = by_kind(render(values), "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e.get("value", "") for e in container["env"]} | {"IMAGE": container["image"]}


def test_the_chart_sets_the_platforms_images_and_resources_and_names_images_by_digest() -> None:
    defaults = operator_env({})
    settings = Settings.from_env(defaults)
    assert settings.sidecar_image == settings.agent_image == defaults["IMAGE"]
    assert settings.agent_resources == AGENT_RESOURCES
    assert settings.runner_resources == {
        "requests": {"cpu": "20m", "memory": "64Mi"},
        "limits": {"memory": "256Mi"},
    }
    pinned = operator_env(
        {
            "image": {"repository": "registry.test/foundation", "digest": DIGEST},
            "agents": {
                "sidecarImage": f"registry.test/sidecar@{DIGEST}",
                "resources": {"agent": {"limits": {"memory": "1Gi"}}},
            },
        }
    )
    assert pinned["IMAGE"] == f"registry.test/foundation@{DIGEST}"
    assert pinned["FOUNDATION_AGENT_IMAGE"] == f"registry.test/foundation@{DIGEST}"
    settings = Settings.from_env(pinned)
    assert settings.sidecar_image == f"registry.test/sidecar@{DIGEST}"
    # Helm merges values: the default requests stay beside the limit given.
    assert settings.agent_resources == {
        "requests": {"cpu": "50m", "memory": "128Mi"},
        "limits": {"memory": "1Gi"},
    }
