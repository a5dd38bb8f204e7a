"""The operator's written-down permissions: enough to grant what Agents get, and no more."""

import io
from contextlib import redirect_stdout

import yaml

from foundation_operator.agents import objects
from foundation_operator.agents.api import AgentView
from foundation_operator.core import rbac
from foundation_operator.workflows import objects as workflow_objects
from foundation_operator.workflows.objects import WorkflowView


def allows(rules: list[dict], group: str, resource: str, verb: str) -> bool:
    return any(
        group in r["apiGroups"] and resource in r["resources"] and verb in r["verbs"] for r in rules
    )


def not_held(granted: list[dict]) -> list[tuple[str, str, str]]:
    """(group, resource, verb) of `granted` that the operator's own rules do not allow."""
    return [
        (group, resource, verb)
        for rule in granted
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
        if not allows(rbac.cluster_rules(), group, resource, verb)
    ]


def test_operator_holds_every_permission_it_grants_an_agent() -> None:
    # Kubernetes refuses to let a subject create a Role granting more than it holds.
    for store in ("ConfigMap", "PVC", "None"):
        view = AgentView.from_body(
            {
                "metadata": {"name": "a", "namespace": "n", "uid": "u", "generation": 1},
                "spec": {
                    "image": "i",
                    "agent": "m:C",
                    "replicas": 3,
                    "persistence": {"store": store},
                },
            }
        )
        assert not_held(objects.role(view)["rules"]) == []


def test_operator_holds_every_permission_it_grants_a_workflow_runner() -> None:
    view = WorkflowView.from_body(
        {
            "metadata": {"name": "w", "namespace": "n", "uid": "u", "generation": 1},
            "spec": {"steps": [{"name": "a", "agent": "x", "action": "get"}]},
        },
        "image",
    )
    assert not_held(workflow_objects.role(view)["rules"]) == []


def test_operator_may_not_touch_secrets_or_delete_agents() -> None:
    rules = rbac.cluster_rules()
    assert not any("secrets" in r["resources"] or "*" in r["resources"] for r in rules)
    assert not any("*" in r["verbs"] or "escalate" in r["verbs"] for r in rules)
    assert not allows(rules, "foundation.dev", "agents", "delete")
    assert not allows(rules, "coordination.k8s.io", "leases", "get")  # namespaced Role only
    assert allows(rbac.lease_rules(), "coordination.k8s.io", "leases", "update")


def test_manifests_bind_the_rules_to_one_account() -> None:
    out = io.StringIO()
    with redirect_stdout(out):
        rbac.main(["--namespace", "ops"])
    docs = list(yaml.safe_load_all(out.getvalue()))
    people = [d["metadata"]["name"] for d in docs[:4]]
    assert people == [
        "foundation-agent-caller",
        "foundation-agent-reader",
        "foundation-agent-canceller",
        "foundation-workflow-approver",
    ]
    docs = docs[4:]
    kinds = [d["kind"] for d in docs]
    assert kinds == [
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "ClusterRole",
        "Role",
        "RoleBinding",
        "RoleBinding",
    ]
    for binding in (docs[2], docs[5], docs[6]):
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": "foundation-operator", "namespace": "ops"}
        ]
    assert docs[3]["metadata"]["name"] == rbac.MEMBER_CLUSTER_ROLE
    assert docs[4]["metadata"]["namespace"] == "ops"
    # People's door reads the API server's relay settings, as every aggregated API server does.
    assert docs[6]["metadata"]["namespace"] == "kube-system"
    assert docs[6]["roleRef"]["name"] == "extension-apiserver-authentication-reader"
