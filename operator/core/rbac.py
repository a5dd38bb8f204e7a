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

from foundation_common import access
from foundation_common.resources import AGENT, GROUP, SCHEDULE, WORKFLOW, WORKFLOW_TEMPLATE

Obj = dict[str, Any]
RBAC = "rbac.authorization.k8s.io"


# Discovery (members' sidecars, Workflow runners, the operator granting it) reads EndpointSlices
# where the API serves them (foundation_common.discovery).
DISCOVERY_RULE: Obj = {
    "apiGroups": ["discovery.k8s.io"],
    "resources": ["endpointslices"],
    "verbs": ["get", "list", "watch"],
}


# Every Agent's account may ask the API server who a caller is (TokenReview, which has no
# namespaced form): this ClusterRole, bound to exactly the Agents' accounts by one
# ClusterRoleBinding the operator keeps (agents.objects.members_binding).
MEMBER_CLUSTER_ROLE = "foundation-agent-member"
MEMBER_CLUSTER_RULES: list[Obj] = [
    {"apiGroups": ["authentication.k8s.io"], "resources": ["tokenreviews"], "verbs": ["create"]}
]


# With the chart's agents.secretStore.enabled only: members' Secret stores (persistence.store
# Secret), made by the supervisor, and get/update/patch on each its own granted to the member
# (a Role grants only what its maker holds). No list or watch.
SECRET_STORE_RULES: list[Obj] = [
    {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "create", "update", "patch"]}
]


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
            "verbs": ["get", "list", "watch", "create", "patch", "delete"],
        },
        {
            "apiGroups": [GROUP],
            "resources": [f"{WORKFLOW.plural}/status"],
            "verbs": ["get", "patch"],
        },
        # WorkflowTemplates: read once, when a Workflow made from one starts.
        {"apiGroups": [GROUP], "resources": [WORKFLOW_TEMPLATE.plural], "verbs": ["get"]},
        # Schedules: watched, their status written; they create their Workflows.
        {"apiGroups": [GROUP], "resources": [SCHEDULE.plural], "verbs": ["get", "list", "watch"]},
        {"apiGroups": [GROUP], "resources": [f"{SCHEDULE.plural}/status"], "verbs": ["patch"]},
        # Members and runners: created and deleted, watched for restarts and readiness; a
        # spare (spec.warmSpares) is claimed by patching the member's labels onto it.
        {
            "apiGroups": [""],
            "resources": ["pods"],
            "verbs": ["get", "list", "watch", "create", "patch", "delete"],
        },
        # The Agent's and capabilities' Services (list/watch too: Agents are granted them).
        {
            "apiGroups": [""],
            "resources": ["services"],
            "verbs": ["get", "list", "watch", "create", "patch", "delete"],
        },
        {"apiGroups": [""], "resources": ["endpoints"], "verbs": ["get", "list", "watch"]},
        # A namespace's shared runner (Workflows with spec.runner.shared): one Deployment.
        # Watched, so one deleted is made again for the shared Workflows it was running.
        {
            "apiGroups": ["apps"],
            "resources": ["deployments"],
            "verbs": ["get", "list", "watch", "create", "patch"],
        },
        # Each Agent's NetworkPolicy (watched, like the other owned objects, for repair).
        {
            "apiGroups": ["networking.k8s.io"],
            "resources": ["networkpolicies"],
            "verbs": ["get", "list", "watch", "create", "patch"],
        },
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
        # Held to be granted (a Role grants only what its maker holds): members ask this of
        # the API server about their callers; and members and runners send tasks.
        {
            "apiGroups": ["authorization.k8s.io"],
            "resources": ["localsubjectaccessreviews"],
            "verbs": ["create"],
        },
        # People's door relays the people the API server authorized to members, naming them;
        # members believe a named caller from whoever RBAC lets `relay` (foundation_operator.door).
        {
            "apiGroups": [access.GROUP],
            "resources": [f"{AGENT.plural}/{access.TASKS}"],
            "verbs": [access.SEND, access.RELAY],
        },
        # Held to be granted with the tasks: whoever may send an Agent tasks may wake it.
        {
            "apiGroups": [access.GROUP],
            "resources": [f"{AGENT.plural}/{access.WAKE}"],
            "verbs": [access.SEND],
        },
        {
            "apiGroups": [access.GROUP],
            "resources": [f"{AGENT.plural}/{access.ACTIONS}", f"{AGENT.plural}/{access.A2A}"],
            "verbs": ["get"],
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
        # Cluster-scoped, last (the chart keeps them in the ClusterRole when it grants the rest
        # per namespace):
        # The one binding of MEMBER_CLUSTER_ROLE to the Agents' accounts (create cannot be
        # limited to a name; what it may bind is limited by what the operator holds).
        {"apiGroups": [RBAC], "resources": ["clusterrolebindings"], "verbs": ["create"]},
        {
            "apiGroups": [RBAC],
            "resources": ["clusterrolebindings"],
            "resourceNames": [MEMBER_CLUSTER_ROLE],
            "verbs": ["get", "patch"],
        },
        # Held to be granted: members review their callers' tokens (cluster-scoped).
        *MEMBER_CLUSTER_RULES,
    ]


def people_roles() -> list[Obj]:
    """ClusterRoles for whoever calls Agents (people, workloads), to bind in a namespace or for
    one Agent (a Role of their own with resourceNames). Aggregated into the built-in roles:
    `edit` (and so `admin`) may send tasks and read task records; `view` may not read them,
    since they hold inputs, results and conversations; cancelling another's task is `admin`'s.
    """

    def role(name: str, rules: list[Obj], *aggregate_to: str) -> Obj:
        labels = {f"rbac.authorization.k8s.io/aggregate-to-{r}": "true" for r in aggregate_to}
        return {
            "apiVersion": f"{RBAC}/v1",
            "kind": "ClusterRole",
            "metadata": {"name": name, "labels": labels},
            "rules": rules,
        }

    tasks, a2a, actions, wake = (
        f"{AGENT.plural}/{sub}" for sub in (access.TASKS, access.A2A, access.ACTIONS, access.WAKE)
    )

    def rule(resource: str, *verbs: str) -> Obj:
        return {"apiGroups": [access.GROUP], "resources": [resource], "verbs": list(verbs)}

    # A2A's JSON-RPC is all POST (`create agents/a2a`); the member authorizes each method as
    # the task call it makes. The card is `get agents/a2a`.
    return [
        role(
            "foundation-agent-caller",
            [
                rule(tasks, "create"),
                rule(wake, "create"),
                rule(a2a, "create", "get"),
                rule(actions, "get"),
            ],
            "edit",
            "admin",
        ),
        role(
            "foundation-agent-reader",
            [rule(tasks, "get"), rule(a2a, "create", "get"), rule(actions, "get")],
            "edit",
            "admin",
        ),
        role(
            "foundation-agent-canceller",
            [rule(tasks, "delete"), rule(a2a, "create")],
            "admin",
        ),
        # Deciding a Workflow's approval steps, and seeing what waits: no right to edit it.
        role(
            "foundation-workflow-approver",
            [
                rule(f"{WORKFLOW.plural}/{access.APPROVAL}", "create"),
                {
                    "apiGroups": [WORKFLOW.group],
                    "resources": [WORKFLOW.plural],
                    "verbs": ["get", "list", "watch"],
                },
            ],
            "edit",
            "admin",
        ),
    ]


def agent_cluster_roles() -> list[Obj]:
    """What every Agent's member and every caller of Agents is bound to: the chart's, and what
    a cluster running the operator without it needs first."""
    member = {
        "apiVersion": f"{RBAC}/v1",
        "kind": "ClusterRole",
        "metadata": {"name": MEMBER_CLUSTER_ROLE},
        "rules": MEMBER_CLUSTER_RULES,
    }
    return [member, *people_roles()]


def lease_rules() -> list[Obj]:
    return [
        {
            "apiGroups": ["coordination.k8s.io"],
            "resources": ["leases"],
            "verbs": ["get", "create", "update", "patch"],
        }
    ]


# People's door reads how the API server relays (its client CA, the names it sends): the
# built-in Role in kube-system that every aggregated API server is bound to.
FRONT_PROXY_READER = "extension-apiserver-authentication-reader"


def door_binding(namespace: str, name: str) -> Obj:
    return {
        "apiVersion": f"{RBAC}/v1",
        "kind": "RoleBinding",
        "metadata": {"name": f"{name}-door", "namespace": "kube-system"},
        "roleRef": {"apiGroup": RBAC, "kind": "Role", "name": FRONT_PROXY_READER},
        "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}],
    }


def manifests(namespace: str, name: str = "foundation-operator") -> list[Obj]:
    """ServiceAccount, ClusterRole and binding, the Agents' members' ClusterRole, and the
    leader-election Role and binding."""
    labels = {"app.kubernetes.io/name": "foundation-operator"}
    subject = {"kind": "ServiceAccount", "name": name, "namespace": namespace}

    def meta(namespaced: bool) -> Obj:
        out: Obj = {"name": name, "labels": labels}
        if namespaced:
            out["namespace"] = namespace
        return out

    return [
        *people_roles(),
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
            "kind": "ClusterRole",
            "metadata": {"name": MEMBER_CLUSTER_ROLE, "labels": labels},
            "rules": MEMBER_CLUSTER_RULES,
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
        door_binding(namespace, name),
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--namespace", default="foundation-system")
    parser.add_argument("--name", default="foundation-operator")
    args = parser.parse_args(argv)
    yaml.safe_dump_all(manifests(args.namespace, args.name), sys.stdout, sort_keys=False)


if __name__ == "__main__":
    main()
