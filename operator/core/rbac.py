"""The operator's own permissions, written down once.

`cluster_rules()` is everything the operator does across the namespaces it watches;
`lease_rules()` what leader election needs in the operator's own namespace. The Helm chart and
the integration test that runs the operator as a pod use these and nothing else.

Kubernetes lets a subject create a Role only with permissions it holds itself, so the operator
holds every permission it grants to an Agent's account (see `agents.objects.role`).

    python -m foundation_operator.core.rbac --namespace foundation-system   # YAML for kubectl apply
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import yaml

from foundation_common.resources import AGENT, GROUP, WORKFLOW

Obj = dict[str, Any]
RBAC = "rbac.authorization.k8s.io"


# Discovery (members' sidecars, Workflow runners, the operator granting it) reads EndpointSlices
# where the API serves them (foundation_common.discovery).
DISCOVERY_RULE: Obj = {
    "apiGroups": ["discovery.k8s.io"],
    "resources": ["endpointslices"],
    "verbs": ["get", "list", "watch"],
}


def cluster_rules() -> list[Obj]:
    return [
        # The Agents themselves: watched; finalizer and status patched.
        {
            "apiGroups": [GROUP],
            "resources": [AGENT.plural],
            "verbs": ["get", "list", "watch", "patch"],
        },
        {"apiGroups": [GROUP], "resources": [f"{AGENT.plural}/status"], "verbs": ["get", "patch"]},
        # Workflows: watched; status patched where the runner cannot; deleted after their TTL.
        # get and patch (with the status) are also granted to each Workflow's runner.
        {
            "apiGroups": [GROUP],
            "resources": [WORKFLOW.plural],
            "verbs": ["get", "list", "watch", "patch", "delete"],
        },
        {
            "apiGroups": [GROUP],
            "resources": [f"{WORKFLOW.plural}/status"],
            "verbs": ["get", "patch"],
        },
        # Members and runners: created and deleted, watched for restarts and readiness.
        {
            "apiGroups": [""],
            "resources": ["pods"],
            "verbs": ["get", "list", "watch", "create", "delete"],
        },
        # The Agent's and capabilities' Services (list/watch too: Agents are granted them).
        {
            "apiGroups": [""],
            "resources": ["services"],
            "verbs": ["get", "list", "watch", "create", "patch", "delete"],
        },
        {"apiGroups": [""], "resources": ["endpoints"], "verbs": ["get", "list", "watch"]},
        DISCOVERY_RULE,
        # Each Agent's and each runner's account and its Role and RoleBinding.
        # list/watch: the operator's own objects (its label, filtered on the server) are
        # watched so that a change or deletion by anyone else is repaired.
        {
            "apiGroups": [""],
            "resources": ["serviceaccounts"],
            "verbs": ["get", "list", "watch", "create"],
        },
        {
            "apiGroups": [RBAC],
            "resources": ["roles", "rolebindings"],
            "verbs": ["get", "list", "watch", "create", "patch"],
        },
        # Members' state objects: made (and adopted) by the supervisor; get/update/patch on
        # their own ConfigMaps is also granted to the members.
        # list: to release them all under persistence.retainOnDelete.
        {
            "apiGroups": [""],
            "resources": ["configmaps"],
            "verbs": ["get", "list", "create", "update", "patch"],
        },
        {
            "apiGroups": [""],
            "resources": ["persistentvolumeclaims"],
            "verbs": ["get", "list", "create", "patch"],
        },
        # Warning Events on Agents (the supervisor's and kopf's).
        {"apiGroups": ["", "events.k8s.io"], "resources": ["events"], "verbs": ["create"]},
        # kopf notices CRDs and namespaces appearing while it runs.
        {
            "apiGroups": ["apiextensions.k8s.io"],
            "resources": ["customresourcedefinitions"],
            "verbs": ["list", "watch"],
        },
        {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["list", "watch"]},
    ]


def lease_rules() -> list[Obj]:
    return [
        {
            "apiGroups": ["coordination.k8s.io"],
            "resources": ["leases"],
            "verbs": ["get", "create", "update", "patch"],
        }
    ]


def manifests(namespace: str, name: str = "foundation-operator") -> list[Obj]:
    """ServiceAccount, ClusterRole and binding, and the leader-election Role and binding."""
    labels = {"app.kubernetes.io/name": "foundation-operator"}
    subject = {"kind": "ServiceAccount", "name": name, "namespace": namespace}

    def meta(namespaced: bool) -> Obj:
        out: Obj = {"name": name, "labels": labels}
        if namespaced:
            out["namespace"] = namespace
        return out

    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta(True)},
        {
            "apiVersion": f"{RBAC}/v1",
            "kind": "ClusterRole",
            "metadata": meta(False),
            "rules": cluster_rules(),
        },
        {
            "apiVersion": f"{RBAC}/v1",
            "kind": "ClusterRoleBinding",
            "metadata": meta(False),
            "roleRef": {"apiGroup": RBAC, "kind": "ClusterRole", "name": name},
            "subjects": [subject],
        },
        {
            "apiVersion": f"{RBAC}/v1",
            "kind": "Role",
            "metadata": meta(True),
            "rules": lease_rules(),
        },
        {
            "apiVersion": f"{RBAC}/v1",
            "kind": "RoleBinding",
            "metadata": meta(True),
            "roleRef": {"apiGroup": RBAC, "kind": "Role", "name": name},
            "subjects": [subject],
        },
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--namespace", default="foundation-system")
    parser.add_argument("--name", default="foundation-operator")
    args = parser.parse_args(argv)
    yaml.safe_dump_all(manifests(args.namespace, args.name), sys.stdout, sort_keys=False)


if __name__ == "__main__":
    main()
