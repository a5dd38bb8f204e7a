"""Every pod the operator builds, and every pod the chart renders, meets the "restricted" Pod
Security Standard (`core.security.violations`, Kubernetes 1.20 having no admission for it); and
the checker finds what breaks the profile."""

from __future__ import annotations

import pytest
from test_chart import VALUE_SETS, render

from foundation_operator.agents import pods as agent_pods
from foundation_operator.agents.api import AgentView
from foundation_operator.core.security import violations
from foundation_operator.workflows import objects as workflow_objects
from foundation_operator.workflows.objects import WorkflowView

SPECS = {
    "defaults": {},
    "pvc": {"persistence": {"store": "PVC"}},
    "no-sidecar": {"sidecar": {"enabled": False}},
    "store-none": {"persistence": {"store": "None"}, "replicas": 3},
    "code": {"code": {"configMap": "greeter-code"}},
}


def agent(**spec) -> AgentView:
    return AgentView.from_body(
        {
            "metadata": {"name": "a", "namespace": "n", "uid": "u", "generation": 1},
            "spec": {"image": "i", "agent": "m:C", **spec},
        }
    )


@pytest.mark.parametrize("spec", SPECS.values(), ids=SPECS.keys())
def test_member_pods_are_restricted(spec) -> None:
    pod = agent_pods.member_pod(agent(**spec), 0)
    assert violations(pod["spec"]) == []
    for container in pod["spec"]["containers"]:
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert {"name": "tmp", "mountPath": "/var/lib/foundation/tmp"} in container["volumeMounts"]


def test_a_pod_level_override_replaces_the_default_and_is_checked_too() -> None:
    own = {
        "runAsNonRoot": True,
        "runAsUser": 2000,
        "fsGroup": 3000,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    pod = agent_pods.member_pod(agent(podTemplate={"securityContext": own}), 0)
    assert pod["spec"]["securityContext"] == own and violations(pod["spec"]) == []
    rooted = agent_pods.member_pod(agent(podTemplate={"securityContext": {"runAsUser": 0}}), 0)
    assert "spec.securityContext.runAsUser: 0 (root) is not allowed" in violations(rooted["spec"])


def test_runner_pods_are_restricted() -> None:
    view = WorkflowView.from_body(
        {
            "metadata": {"name": "w", "namespace": "n", "uid": "u", "generation": 1},
            "spec": {"steps": [{"name": "a", "agent": "x", "action": "get"}]},
        },
        "image",
    )
    assert violations(workflow_objects.runner_pod(view)["spec"]) == []


@pytest.mark.parametrize("values", VALUE_SETS.values(), ids=VALUE_SETS.keys())
def test_the_charts_pods_are_restricted(values) -> None:
    deployments = [o for o in render(values) if o["kind"] == "Deployment"]
    assert deployments
    for deployment in deployments:
        assert violations(deployment["spec"]["template"]["spec"]) == []


def test_the_checker_names_what_breaks_the_profile() -> None:
    spec = {
        "hostNetwork": True,
        "volumes": [{"name": "h", "hostPath": {"path": "/"}}],
        "securityContext": {"seccompProfile": {"type": "Unconfined"}},
        "containers": [
            {
                "name": "c",
                "ports": [{"containerPort": 80, "hostPort": 80}],
                "securityContext": {
                    "privileged": True,
                    "capabilities": {"add": ["SYS_ADMIN"]},
                },
            }
        ],
    }
    found = "\n".join(violations(spec))
    for expected in (
        "spec.hostNetwork: host namespaces are not allowed",
        "volume h: hostPath not allowed",
        "spec.securityContext.seccompProfile: Unconfined is not allowed",
        "containers[c]: privileged is not allowed",
        "containers[c]: allowPrivilegeEscalation must be false",
        "containers[c]: capabilities must drop ALL",
        "containers[c]: capabilities may add NET_BIND_SERVICE only, not ['SYS_ADMIN']",
        "containers[c]: hostPort 80 is not allowed",
        "containers[c]: runAsNonRoot must be true",
        "containers[c]: seccompProfile must be RuntimeDefault or Localhost",
    ):
        assert expected in found, expected
