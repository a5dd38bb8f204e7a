"""Pure builders of an Agent's pods: its members' containers and pod template, a member's
pod, a spare's (spec.warmSpares) and the patch that claims one.

No API calls here; the names, labels and owned objects they use are in `objects`.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from foundation_common.resources import (
    A2A_PORT,
    AGENT_METRICS_PORT,
    AGENT_PORT,
    SIDECAR_ADMIN_PORT,
    SIDECAR_URL,
)
from foundation_common.sidecar import secret_env
from foundation_operator.agents.api import AgentView, Limits
from foundation_operator.agents.objects import (
    CAPABILITY_PREFIX,
    CODE_MOUNT,
    CODE_VOLUME,
    MANAGED_BY,
    MEMBER_LABEL,
    PARKED_FOR,
    SPARE,
    SPARE_LABEL,
    STATE_MOUNT,
    STATE_VOLUME,
    TEMPLATE_HASH,
    agent_labels,
    member_name,
    owner_reference,
    state_key,
)
from foundation_operator.core import defaults, security

Obj = dict[str, Any]


def limits_env(limits: Limits) -> list[Obj]:
    """What one request may cost, for the runtime and the sidecar alike (docs/limits.md)."""
    return [
        {"name": "FOUNDATION_REQUEST_MAX_BYTES", "value": str(limits.request_bytes)},
        {"name": "FOUNDATION_RESULT_MAX_BYTES", "value": str(limits.result_bytes)},
        {"name": "FOUNDATION_JSON_MAX_DEPTH", "value": str(limits.json_depth)},
        {"name": "FOUNDATION_MAX_IN_FLIGHT", "value": str(limits.in_flight)},
    ]


def tracing_env(view: AgentView) -> list[Obj]:
    """OTEL_* for the Agent's containers: its spec.tracing over the platform's."""
    tracing = view.spec.tracing
    return defaults.tracing_env(
        view.platform, tracing.enabled, tracing.endpoint, tracing.sampling_ratio
    )


def container(view: AgentView) -> Obj:
    spec = view.spec
    env = [
        {"name": "FOUNDATION_AGENT_NAME", "value": view.name},
        {"name": "FOUNDATION_AGENT_CLASS", "value": spec.agent},
        {"name": "FOUNDATION_AGENT_CONFIG", "value": json.dumps(spec.config, sort_keys=True)},
        {
            "name": "FOUNDATION_NAMESPACE",
            "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}},
        },
        {
            "name": "FOUNDATION_MEMBER_NAME",
            "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}},
        },
        {
            "name": "FOUNDATION_MEMBER",
            "valueFrom": {"fieldRef": {"fieldPath": f"metadata.labels['{MEMBER_LABEL}']"}},
        },
        # Set on a pod made while its Agent sleeps (spec.warmWhileAsleep): the runtime starts
        # parked, and loads its state on the first call.
        {
            "name": "FOUNDATION_PARKED_FOR",
            "valueFrom": {"fieldRef": {"fieldPath": f"metadata.annotations['{PARKED_FOR}']"}},
        },
        {"name": "FOUNDATION_STATE_STORE", "value": spec.persistence.store},
        {"name": "FOUNDATION_STATE_PATH", "value": f"{STATE_MOUNT}/agent.db"},
        {"name": "FOUNDATION_GROUP_COMMIT", "value": str(spec.persistence.group_commit).lower()},
        {"name": "FOUNDATION_INBOX_MAX_QUEUED", "value": str(spec.inbox.max_queued)},
        {"name": "FOUNDATION_KEEP_COMPLETED", "value": str(spec.inbox.keep_completed)},
        {
            "name": "FOUNDATION_KEEP_COMPLETED_SECONDS",
            "value": str(spec.inbox.keep_completed_seconds),
        },
        {"name": "FOUNDATION_KEEP_COMPLETED_BYTES", "value": str(spec.inbox.keep_completed_bytes)},
        {"name": "FOUNDATION_INBOX_MAX_QUEUED_BYTES", "value": str(spec.inbox.max_queued_bytes)},
        *limits_env(spec.limits),
        {"name": "FOUNDATION_REPORT_STATUS", "value": "true"},
        {
            "name": "FOUNDATION_CALLER_AUTH",
            "value": "Required" if spec.callers.require_token else view.caller_auth,
        },
        {
            "name": "FOUNDATION_SERVICE_ACCOUNT",
            "valueFrom": {"fieldRef": {"fieldPath": "spec.serviceAccountName"}},
        },
        security.scratch_env(),
        # spec.code's modules first on the import path (spec.env, after it, may still set it).
        *([{"name": "PYTHONPATH", "value": CODE_MOUNT}] if spec.code else []),
        *(
            [{"name": "FOUNDATION_SIDECAR_URL", "value": SIDECAR_URL}]
            if spec.sidecar.enabled
            else []
        ),
        *tracing_env(view),
        *spec.env,
    ]
    out: Obj = {
        "name": "agent",
        "image": view.image,
        "command": spec.command or ["foundation-agent"],
        "env": env,
        "ports": [
            {"name": "http", "containerPort": AGENT_PORT},
            {"name": "a2a", "containerPort": A2A_PORT},
            {"name": "metrics", "containerPort": AGENT_METRICS_PORT},
        ],
        "securityContext": security.container_context(),
        "volumeMounts": [security.scratch_mount(), security.caller_token_mount()],
        # Every second: a member (started, restarted, woken) takes calls within a second of
        # loading its state; it was up to 2 s more (5 s with the sidecar's) for the next probe.
        "readinessProbe": {"httpGet": {"path": "/readyz", "port": "http"}, "periodSeconds": 1},
        "livenessProbe": {
            "httpGet": {"path": "/healthz", "port": "http"},
            "periodSeconds": 10,
            "failureThreshold": 3,
        },
    }
    if spec.persistence.store == "PVC":
        out["volumeMounts"].append({"name": STATE_VOLUME, "mountPath": STATE_MOUNT})
    if spec.code:
        out["volumeMounts"].append({"name": CODE_VOLUME, "mountPath": CODE_MOUNT, "readOnly": True})
    if spec.args is not None:
        out["args"] = spec.args
    out["resources"] = defaults.merged(view.platform.agent_resources, spec.resources)
    return out


def sidecar_container(view: AgentView) -> Obj:
    """The resilience sidecar: the platform's image (it holds the upstreams' API keys: never
    the Agent's), its proxy on the pod's loopback only, its admin port (probes, metrics) on
    the pod's address."""
    sidecar = view.spec.sidecar
    out: Obj = {
        "name": "sidecar",
        "image": view.sidecar_image,
        "command": ["foundation-sidecar"],
        "env": [
            {"name": "FOUNDATION_SIDECAR_CONFIG", "value": sidecar.runtime_config()},
            {
                "name": "FOUNDATION_NAMESPACE",
                "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}},
            },
            {"name": "FOUNDATION_AGENT_PORT", "value": str(AGENT_PORT)},
            *limits_env(view.spec.limits),
            security.scratch_env(),
            # Upstreams' API keys: from their Secrets into the sidecar only (the kubelet reads
            # them; neither the agent nor the member's account can).
            *(
                {
                    "name": secret_env(u.name),
                    "valueFrom": {
                        "secretKeyRef": {
                            "name": u.authorization.secret_key_ref.name,
                            "key": u.authorization.secret_key_ref.key,
                        }
                    },
                }
                for u in sidecar.upstreams
                if u.authorization is not None
            ),
            *tracing_env(view),
        ],
        "ports": [{"name": "sidecar-admin", "containerPort": SIDECAR_ADMIN_PORT}],
        "securityContext": security.container_context(),
        "volumeMounts": [security.scratch_mount(), security.caller_token_mount()],
        "readinessProbe": {
            "httpGet": {"path": "/readyz", "port": "sidecar-admin"},
            "periodSeconds": 1,
        },
        "livenessProbe": {
            "httpGet": {"path": "/healthz", "port": "sidecar-admin"},
            "periodSeconds": 10,
            "failureThreshold": 3,
        },
    }
    out["resources"] = defaults.merged(view.platform.sidecar_resources, sidecar.resources)
    return out


def pod_template(view: AgentView) -> Obj:
    """Everything of a member pod that a spec change should roll out (no per-member parts)."""
    spec = view.spec
    template: Obj = {
        "labels": {
            **spec.pod_template.labels,
            **{CAPABILITY_PREFIX + c: "true" for c in spec.capabilities},
        },
        "annotations": dict(spec.pod_template.annotations),
        "spec": {
            "serviceAccountName": view.service_account,
            "restartPolicy": "Always",
            "terminationGracePeriodSeconds": 30,
            # Restricted by default; podTemplate.securityContext replaces the pod's level.
            "securityContext": spec.pod_template.security_context or security.pod_context(),
            "volumes": [
                security.scratch_volume(),
                security.caller_token_volume(),
                *(
                    [{"name": CODE_VOLUME, "configMap": {"name": spec.code.config_map}}]
                    if spec.code
                    else []
                ),
            ],
            "containers": [
                container(view),
                *([sidecar_container(view)] if spec.sidecar.enabled else []),
            ],
        },
    }
    pod_spec = template["spec"]
    if spec.pod_template.node_selector:
        pod_spec["nodeSelector"] = dict(spec.pod_template.node_selector)
    if spec.pod_template.tolerations:
        pod_spec["tolerations"] = list(spec.pod_template.tolerations)
    if spec.pod_template.affinity:
        pod_spec["affinity"] = spec.pod_template.affinity
    return template


def template_hash(view: AgentView) -> str:
    canonical = json.dumps(pod_template(view), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


def member_pod(view: AgentView, ordinal: int, parked_for: str = "") -> Obj:
    """Member `ordinal`'s pod; `parked_for` (the sleep it is made in, status.asleepSince) makes
    it a warm one: started, ready, its state loaded on the first call."""
    template = pod_template(view)
    name = member_name(view, ordinal)
    pod: Obj = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": view.namespace,
            "labels": member_labels(view, ordinal),
            "annotations": {
                **template["annotations"],
                TEMPLATE_HASH: template_hash(view),
                **({PARKED_FOR: parked_for} if parked_for else {}),
            },
            "ownerReferences": [owner_reference(view)],
        },
        # hostname + subdomain: <agent>-<i>.<agent>.<namespace>.svc resolves on a cluster's DNS.
        "spec": {**template["spec"], "hostname": name, "subdomain": view.name},
    }
    if view.spec.persistence.store == "PVC":
        pod["spec"]["volumes"] = [
            *pod["spec"]["volumes"],
            {
                "name": STATE_VOLUME,
                "persistentVolumeClaim": {"claimName": state_key(view, ordinal)},
            },
        ]
    return pod


def member_labels(view: AgentView, ordinal: int) -> dict[str, str]:
    return {**pod_template(view)["labels"], **agent_labels(view), MEMBER_LABEL: str(ordinal)}


def spare_pod(view: AgentView, ordinal: int) -> Obj:
    """A spare for member `ordinal` (spec.warmSpares): its pod, parked, but with none of the
    labels that put a member in a Service (the Agent's, its capabilities') or in the member
    index: only its ordinal (the runtime reads it) and whose spare it is."""
    pod = member_pod(view, ordinal, SPARE)
    pod["metadata"]["labels"] = {
        "app.kubernetes.io/name": "foundation-agent",
        **MANAGED_BY,
        SPARE_LABEL: view.name,
        MEMBER_LABEL: str(ordinal),
    }
    return pod


def claim(view: AgentView, ordinal: int) -> Obj:
    """The merge patch that makes a spare member `ordinal`: the member's labels on, the
    spare's off. The pod is ready already: the Endpoints take it at once."""
    return {"metadata": {"labels": {**member_labels(view, ordinal), SPARE_LABEL: None}}}
