"""Pure builders of a namespace's shared runner (`spec.runner.shared: true`): its account, what
it may do, and the Deployment that keeps one pod of it running (foundation_runner.shared).

It is made with the namespace's first shared Workflow and stays, so the next ones start at
once; deleted, it is made again at once if a shared Workflow of the namespace is unfinished
(which then goes on from its status), else with the next one. It owns no
Workflow and no Workflow owns it: it serves them all.
"""

from __future__ import annotations

from typing import Any

from foundation_common import access
from foundation_common.resources import AGENT
from foundation_common.workflows.api import WORKFLOW
from foundation_operator.core import defaults, security
from foundation_operator.core.rbac import DISCOVERY_RULE

Obj = dict[str, Any]
NAME = "foundation-shared-runner"
LABELS = {
    "app.kubernetes.io/name": NAME,
    "app.kubernetes.io/managed-by": "foundation-operator",
}
# Many Workflows' processes in one pod: more than one runner's memory.
RESOURCES: Obj = {"requests": {"cpu": "50m", "memory": "256Mi"}, "limits": {"memory": "4Gi"}}


def metadata(namespace: str) -> Obj:
    return {"name": NAME, "namespace": namespace, "labels": dict(LABELS)}


def service_account(namespace: str) -> Obj:
    return {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": metadata(namespace)}


def role(namespace: str) -> Obj:
    """Every Workflow of the namespace (it runs the shared ones) and their status; sending
    tasks to, and waking, every Agent of the namespace (a shared Workflow may name any: what
    a Workflow gives up by sharing); discovery; Events."""
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": metadata(namespace),
        "rules": [
            {
                "apiGroups": [WORKFLOW.group],
                "resources": [WORKFLOW.plural],
                "verbs": ["get", "list", "watch"],
            },
            {
                "apiGroups": [WORKFLOW.group],
                "resources": [f"{WORKFLOW.plural}/status"],
                "verbs": ["get", "patch"],
            },
            {"apiGroups": [""], "resources": ["endpoints"], "verbs": ["get", "list", "watch"]},
            DISCOVERY_RULE,
            {"apiGroups": [""], "resources": ["events"], "verbs": ["create"]},
            {
                "apiGroups": [access.GROUP],
                "resources": [f"{AGENT.plural}/{access.TASKS}", f"{AGENT.plural}/{access.WAKE}"],
                "verbs": [access.SEND],
            },
            # A capability's Agents are its Service's owners (to wake them).
            {"apiGroups": [""], "resources": ["services"], "verbs": ["get"]},
        ],
    }


def role_binding(namespace: str) -> Obj:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": metadata(namespace),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": NAME},
        "subjects": [{"kind": "ServiceAccount", "name": NAME, "namespace": namespace}],
    }


def deployment(namespace: str, image: str, platform: defaults.Platform) -> Obj:
    """One pod, replaced (not rolled: two would run the same Workflows) when it goes."""
    container: Obj = {
        "name": "runner",
        "image": image,
        "command": ["foundation-shared-runner"],
        "env": [
            {
                "name": "FOUNDATION_NAMESPACE",
                "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}},
            },
            # The forkserver's socket: the root filesystem is read-only.
            security.scratch_env(),
            *defaults.tracing_env(platform),
        ],
        "securityContext": security.container_context(),
        "volumeMounts": [security.caller_token_mount(), security.scratch_mount()],
        "resources": RESOURCES,
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(namespace),
        "spec": {
            "replicas": 1,
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": {"app.kubernetes.io/name": NAME}},
            "template": {
                "metadata": {"labels": dict(LABELS)},
                "spec": {
                    "serviceAccountName": NAME,
                    "terminationGracePeriodSeconds": 20,
                    "securityContext": security.pod_context(fs_group=False),
                    "containers": [container],
                    "volumes": [security.caller_token_volume(), security.scratch_volume()],
                },
            },
        },
    }


def objects(namespace: str, image: str, platform: defaults.Platform) -> list[Obj]:
    return [
        service_account(namespace),
        role(namespace),
        role_binding(namespace),
        deployment(namespace, image, platform),
    ]
