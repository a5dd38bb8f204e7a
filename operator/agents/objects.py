"""Pure builders: the Kubernetes objects an Agent wants besides its pods (`pods` builds
those), made from its typed view: names and labels, state objects, Services, identity and
rights, NetworkPolicies; and the comparison that finds drift in what exists.

No API calls here: the controller compares these with what exists and applies the difference.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from foundation_common import access, resources
from foundation_common.resources import (
    A2A_PORT,
    AGENT,
    AGENT_METRICS_PORT,
    AGENT_PORT,
    state_name,
)
from foundation_operator.agents.api import AgentView
from foundation_operator.core import owned
from foundation_operator.core.labels import AGENT_LABEL, WORKFLOW_LABEL
from foundation_operator.core.rbac import DISCOVERY_RULE, MEMBER_CLUSTER_ROLE

Obj = dict[str, Any]

MEMBER_LABEL = "foundation.dev/member"
CAPABILITY_LABEL = "foundation.dev/capability"  # on capability Services
CAPABILITY_PREFIX = "capability.foundation.dev/"
TEMPLATE_HASH = "foundation.dev/template-hash"
RESTARTED_AT = "foundation.dev/restartedAt"
# Set by the door when a call finds the Agent asleep: a time at or after status.asleepSince
# wakes it (kept in etcd, so a wake asked for survives the operator that was to act on it).
WAKE_REQUESTED_AT = "foundation.dev/wakeRequestedAt"
# On a member pod made while its Agent sleeps with spec.warmWhileAsleep: the sleep
# (status.asleepSince) it was made in; its runtime starts parked (FOUNDATION_PARKED_FOR).
PARKED_FOR = "foundation.dev/parkedFor"
# A spare (spec.warmSpares): a pod for a member still to come, parked, out of every Service;
# a scale-up claims it by giving it the member's labels (and taking this one off).
SPARE_LABEL = "foundation.dev/spare-of"
SPARE = "spare"  # its PARKED_FOR
MANAGED_BY = {"app.kubernetes.io/managed-by": "foundation-operator"}
STATE_VOLUME = "state"
STATE_MOUNT = "/var/lib/foundation/state"
CODE_VOLUME = "code"
CODE_MOUNT = "/var/lib/foundation/code"
DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
# Pod names are <agent>-<ordinal> (ordinals below 100) and label values stop at 63 characters.
MAX_AGENT_NAME = 59


def problems(view: AgentView) -> list[str]:
    """What the schema cannot express but the objects need, as messages for the user."""
    found = []
    if not DNS_1035.fullmatch(view.name) or len(view.name) > MAX_AGENT_NAME:
        found.append(
            f"the Agent's name {view.name!r} must be a DNS-1035 label (lower case letters, digits"
            f" and '-', starting with a letter) of at most {MAX_AGENT_NAME} characters: it names"
            " the Agent's Service and pods"
        )
    duplicates = sorted({c for c in view.spec.capabilities if view.spec.capabilities.count(c) > 1})
    if duplicates:
        found.append(f"spec.capabilities lists {', '.join(duplicates)} more than once")
    names = [e["name"] for e in view.spec.env]
    reserved = sorted({n for n in names if n.startswith("FOUNDATION_")})
    if reserved:
        found.append(
            f"spec.env sets {', '.join(reserved)}: FOUNDATION_* variables are the operator's"
        )
    if view.spec.warm_while_asleep and view.spec.sleep_after_idle_seconds is None:
        found.append(
            "spec.warmWhileAsleep keeps members' pods parked while the Agent sleeps: it needs "
            "spec.sleepAfterIdleSeconds"
        )
    return found


def owner_reference(view: AgentView, controller: bool = True) -> Obj:
    return owned.owner_reference(AGENT.api_version, AGENT.kind, view.name, view.uid, controller)


def agent_labels(view: AgentView) -> dict[str, str]:
    return {"app.kubernetes.io/name": "foundation-agent", AGENT_LABEL: view.name, **MANAGED_BY}


def member_selector(view: AgentView) -> str:
    """The label selector of the Agent's members, as the scale subresource gives it."""
    return f"{AGENT_LABEL}={view.name}"


def member_name(view: AgentView, ordinal: int) -> str:
    return resources.member_name(view.name, ordinal)


def state_key(view: AgentView, ordinal: int) -> str:
    """Name of a member's state object (ConfigMap or PVC)."""
    return state_name(member_name(view, ordinal))


def spares_network_policy(view: AgentView) -> Obj:
    """Spares take no calls: no ingress at all until a scale-up claims one (then the members'
    policy is its)."""
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {
            "name": f"foundation-agent-{view.name}-spares",
            "namespace": view.namespace,
            "labels": agent_labels(view),
            "ownerReferences": [owner_reference(view)],
        },
        # Ingress as a policy type with no rule: none is allowed (no `ingress: []`, which
        # the API server drops: the drift repair would then see a change on every look).
        "spec": {
            "podSelector": {"matchLabels": {SPARE_LABEL: view.name}},
            "policyTypes": ["Ingress"],
        },
    }


def state_object(view: AgentView, ordinal: int) -> Obj | None:
    """A member's state object: an empty ConfigMap its runtime fills, or its PVC; owned by the
    Agent, so it goes with it (persistence.retainOnDelete aside) but outlives the pod."""
    persistence = view.spec.persistence
    meta = {
        "name": state_key(view, ordinal),
        "namespace": view.namespace,
        "labels": {**agent_labels(view), MEMBER_LABEL: str(ordinal)},
        "ownerReferences": [owner_reference(view)],
    }
    if persistence.store == "ConfigMap":
        return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta}
    if persistence.store == "Secret":
        return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque", "metadata": meta}
    if persistence.store == "PVC":
        spec: Obj = {
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": persistence.size}},
        }
        if persistence.storage_class_name:
            spec["storageClassName"] = persistence.storage_class_name
        return {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": meta,
            "spec": spec,
        }
    return None


# Discovery Services are headless: clients (the sidecar) balance over the Endpoints themselves,
# and a ClusterIP would cost an allocation that every Service create in the cluster serializes
# on (one etcd key before Kubernetes 1.27; about 5 s a create with 1,000 Agents arriving).
HEADLESS = "None"
# With the protocol the API server would default, so what it holds compares equal.
SERVICE_PORTS = [{"name": "http", "protocol": "TCP", "port": AGENT_PORT, "targetPort": "http"}]
AGENT_SERVICE_PORTS = [
    *SERVICE_PORTS,
    {"name": "a2a", "protocol": "TCP", "port": A2A_PORT, "targetPort": "a2a"},
]


def agent_service(view: AgentView) -> Obj:
    """The Agent's Service: its ready members, by the Agent's name (headless)."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": view.name,
            "namespace": view.namespace,
            "labels": agent_labels(view),
            "ownerReferences": [owner_reference(view)],
        },
        "spec": {
            "clusterIP": HEADLESS,
            "selector": {AGENT_LABEL: view.name},
            "ports": AGENT_SERVICE_PORTS,
        },
    }


def capability_service_name(capability: str) -> str:
    return f"foundation-cap-{capability}"


def capability_service(namespace: str, capability: str, owners: list[Obj]) -> Obj:
    """Ready members of every Agent with `capability`; owned by all those Agents, so the
    garbage collector removes it when the last of them goes. Headless, like the Agent's."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": capability_service_name(capability),
            "namespace": namespace,
            "labels": {CAPABILITY_LABEL: capability, **MANAGED_BY},
            "ownerReferences": owners,
        },
        "spec": {
            "clusterIP": HEADLESS,
            "selector": {CAPABILITY_PREFIX + capability: "true"},
            "ports": SERVICE_PORTS,
        },
    }


def service_account(view: AgentView) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {
            "name": view.name,
            "namespace": view.namespace,
            "labels": agent_labels(view),
            "ownerReferences": [owner_reference(view)],
        },
    }


def callees(view: AgentView, offering: Mapping[str, Iterable[str]]) -> list[str]:
    """The Agents `view` may send tasks to: those its spec.calls names, and those of its
    namespace offering a capability it calls (`offering`: capability -> Agents' names)."""
    names = set(view.spec.calls.agents)
    for capability in view.spec.calls.capabilities:
        names.update(offering.get(capability, ()))
    return sorted(names)


def account_of(agent: Obj) -> tuple[str, str]:
    """(namespace, name) of the account an Agent's members run as."""
    meta = agent["metadata"]
    return meta["namespace"], (agent.get("spec") or {}).get("serviceAccountName") or meta["name"]


def merged_subjects(
    have: Obj, mine: Iterable[tuple[str, str]], manages: Callable[[str], bool]
) -> list[Obj]:
    """The members' binding's subjects: `mine` for the namespaces this operator manages, and
    what `have` names elsewhere (other operators' Agents) as it is."""
    kept = {
        (s.get("namespace", ""), s.get("name", ""))
        for s in have.get("subjects") or []
        if not manages(s.get("namespace", ""))
    }
    return list(members_binding({*mine, *kept})["subjects"])


def members_binding(accounts: Iterable[tuple[str, str]]) -> Obj:
    """The one ClusterRoleBinding that lets every Agent's account, and no other, review a
    caller's token (core.rbac.MEMBER_CLUSTER_ROLE)."""
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": MEMBER_CLUSTER_ROLE, "labels": dict(MANAGED_BY)},
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": MEMBER_CLUSTER_ROLE,
        },
        "subjects": [
            {"kind": "ServiceAccount", "name": name, "namespace": namespace}
            for namespace, name in sorted(set(accounts))
        ],
    }


def role(view: AgentView, calls: Sequence[str] = ()) -> Obj:
    """Exactly the Agent's own state objects and status (not its spec: a member cannot change
    what it runs or holds), discovery reads, asking whether a caller may call it, and sending
    tasks to the Agents it `calls`."""
    states = [state_key(view, i) for i in range(view.spec.replicas)]
    rules: list[Obj] = [
        {
            "apiGroups": [AGENT.group],
            "resources": [AGENT.plural],
            "resourceNames": [view.name],
            "verbs": ["get"],
        },
        {
            "apiGroups": [AGENT.group],
            "resources": [f"{AGENT.plural}/status"],
            "resourceNames": [view.name],
            "verbs": ["get", "patch"],
        },
        {
            "apiGroups": [""],
            "resources": ["services", "endpoints"],
            "verbs": ["get", "list", "watch"],
        },
        DISCOVERY_RULE,
        # The member's door: may this caller call this Agent (in its own namespace only).
        {
            "apiGroups": ["authorization.k8s.io"],
            "resources": ["localsubjectaccessreviews"],
            "verbs": ["create"],
        },
    ]
    if calls:
        # Sending them tasks, and reading their actions' schemas (tools found by capability)
        # and their A2A cards.
        rules += [
            {
                "apiGroups": [access.GROUP],
                "resources": [f"{AGENT.plural}/{access.TASKS}", f"{AGENT.plural}/{access.WAKE}"],
                "resourceNames": list(calls),
                "verbs": [access.SEND],
            },
            {
                "apiGroups": [access.GROUP],
                "resources": [f"{AGENT.plural}/{access.ACTIONS}", f"{AGENT.plural}/{access.A2A}"],
                "resourceNames": list(calls),
                "verbs": ["get"],
            },
        ]
    if states and view.spec.persistence.store in ("ConfigMap", "Secret"):
        rules.insert(
            0,
            {
                "apiGroups": [""],
                "resources": [
                    "configmaps" if view.spec.persistence.store == "ConfigMap" else "secrets"
                ],
                "resourceNames": states,
                "verbs": ["get", "update", "patch"],
            },
        )
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {
            "name": f"foundation-agent-{view.name}",
            "namespace": view.namespace,
            "labels": agent_labels(view),
            "ownerReferences": [owner_reference(view)],
        },
        "rules": rules,
    }


def network_policy(view: AgentView, callers_from: Sequence[Obj]) -> Obj:
    """Who may reach the members: on the task API and A2A ports, Foundation's own pods of the
    namespace (members, which call each other and forward within an Agent, and Workflow
    runners) and the peers the operator is given (`callers_from`: the API server, the path
    people come through; callers in other namespaces); Prometheus on the metrics port, from
    anywhere. RBAC still decides which of them may call (docs/security.md): this keeps out
    everything that is not Foundation's."""

    def having(label: str) -> Obj:
        return {"podSelector": {"matchExpressions": [{"key": label, "operator": "Exists"}]}}

    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {
            "name": f"foundation-agent-{view.name}",
            "namespace": view.namespace,
            "labels": agent_labels(view),
            "ownerReferences": [owner_reference(view)],
        },
        "spec": {
            "podSelector": {"matchLabels": {AGENT_LABEL: view.name}},
            "policyTypes": ["Ingress"],
            "ingress": [
                {
                    "ports": [
                        {"protocol": "TCP", "port": AGENT_PORT},
                        {"protocol": "TCP", "port": A2A_PORT},
                    ],
                    "from": [having(AGENT_LABEL), having(WORKFLOW_LABEL), *callers_from],
                },
                {"ports": [{"protocol": "TCP", "port": AGENT_METRICS_PORT}]},
            ],
        },
    }


# What drift repair restores in objects the Agent owns (besides their existence and owner):
# top-level fields or dotted paths. Others (labels, fields the API server fills in) are left
# as they are. A Service's ports are restored too: an Agent's Service made by an earlier
# version gains the ports added since (a2a).
OWNED_FIELDS: dict[str, tuple[str, ...]] = {
    "Role": ("rules",),
    "RoleBinding": ("subjects",),  # its roleRef cannot change
    "Service": ("spec.selector", "spec.ports"),
    "NetworkPolicy": ("spec",),
}


def owned_objects(
    view: AgentView, calls: Sequence[str] = (), callers_from: Sequence[Obj] | None = None
) -> list[Obj]:
    """The objects the Agent owns besides its members and their state: its identity, its
    rights (with the Agents it `calls`), its Service (capability Services are shared: see
    capability_service), and its NetworkPolicy (unless `callers_from` is None: off)."""
    wanted = [role(view, calls), role_binding(view), agent_service(view)]
    if callers_from is not None:
        wanted.append(network_policy(view, callers_from))
        if view.spec.warm_spares:
            wanted.append(spares_network_policy(view))
    if not view.spec.service_account_name:
        wanted.insert(0, service_account(view))
    return wanted


def field_at(obj: Obj, path: str) -> Any:
    for part in path.split("."):
        if not isinstance(obj, dict):
            return None
        obj = obj.get(part)
    return obj


@dataclass(frozen=True)
class Difference:
    """One field where what the cluster holds departs from what we want."""

    field: str
    want: Any
    have: Any

    def __str__(self) -> str:
        return f"{self.field}: want {brief(self.want)}, was {brief(self.have)}"


def brief(value: Any, limit: int = 200) -> str:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"))
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


def drifted(want: Obj, have: Obj) -> list[Difference]:
    """Where `have` (what the cluster holds) departs from `want` where it matters: the fields
    drift repair restores, and the owner references `want` names (none: no drift)."""
    found = [
        Difference(f, field_at(want, f), field_at(have, f))
        for f in OWNED_FIELDS.get(want["kind"], ())
        if field_at(have, f) != field_at(want, f)
    ]
    have_refs = have["metadata"].get("ownerReferences") or []
    held = {o.get("uid") for o in have_refs}
    missing = [o for o in want["metadata"].get("ownerReferences") or [] if o["uid"] not in held]
    if missing:
        owners = [f"{o['kind']}/{o['name']} ({o['uid']})" for o in missing]
        had = [f"{o.get('kind')}/{o.get('name')} ({o.get('uid')})" for o in have_refs]
        found.append(Difference("metadata.ownerReferences", owners, had))
    return found


def role_binding(view: AgentView) -> Obj:
    name = f"foundation-agent-{view.name}"
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {
            "name": name,
            "namespace": view.namespace,
            "labels": agent_labels(view),
            "ownerReferences": [owner_reference(view)],
        },
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
        "subjects": [
            {"kind": "ServiceAccount", "name": view.service_account, "namespace": view.namespace}
        ],
    }
