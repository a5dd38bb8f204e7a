"""Pure builders: the objects a Workflow wants (its runner pod and the runner's identity), from
its typed view. No API calls here."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from foundation_common import access
from foundation_common.discovery import SERVICE_PREFIX
from foundation_common.resources import AGENT
from foundation_common.workflows import templates
from foundation_common.workflows.api import WORKFLOW, WorkflowSpec, WorkflowStatus
from foundation_operator.core import defaults, security
from foundation_operator.core.labels import WORKFLOW_LABEL
from foundation_operator.core.owned import owner_reference
from foundation_operator.core.rbac import DISCOVERY_RULE
from foundation_operator.workflows import dag

Obj = dict[str, Any]
MANAGED_BY = {"app.kubernetes.io/managed-by": "foundation-operator"}


class InvalidWorkflow(ValueError):
    """The spec cannot be run; the message names the step and field and what to change."""


@dataclass(frozen=True)
class WorkflowView:
    name: str
    namespace: str
    uid: str
    generation: int
    spec: WorkflowSpec
    deleting: bool = False
    image: str = ""
    runner_resources: Obj = field(default_factory=lambda: defaults.RUNNER_RESOURCES)
    platform: defaults.Platform = field(default_factory=defaults.Platform)  # its tracing

    @classmethod
    def from_body(
        cls,
        body: Obj,
        default_image: str = "",
        runner_resources: Obj | None = None,
        platform: defaults.Platform | None = None,
    ) -> WorkflowView:
        meta = body["metadata"]
        try:
            spec = WorkflowSpec.model_validate(body.get("spec") or {})
        except ValidationError as exc:
            raise InvalidWorkflow(
                "; ".join(
                    f"spec.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
                )
            ) from None
        if spec.template is not None and (spec.steps or spec.on_exit or spec.output is not None):
            found = ["spec: a Workflow with a template takes its steps, onExit and output from it"]
        elif spec.template is None and not spec.steps:
            found = ["spec.steps: at least one step, or a template (spec.template)"]
        else:
            try:
                kept = WorkflowStatus.model_validate(body.get("status") or {}).template
            except ValidationError:
                kept = None
            spec = templates.effective(spec, kept)
            found = dag.problems(spec) if spec.steps else []
        if len(meta["name"]) > 50:
            found.append(
                f"the Workflow's name {meta['name']!r} is longer than 50 characters: it names "
                "the runner's pod and account"
            )
        if not default_image:
            found.append(
                "the operator has no image to run the Workflow with: set FOUNDATION_AGENT_IMAGE "
                "(the Helm chart's agents.image)"
            )
        if found:
            raise InvalidWorkflow("; ".join(found))
        return cls(
            name=meta["name"],
            namespace=meta["namespace"],
            uid=meta["uid"],
            generation=int(meta.get("generation", 0)),
            spec=spec,
            deleting=bool(meta.get("deletionTimestamp")),
            image=default_image,
            runner_resources=defaults.RUNNER_RESOURCES
            if runner_resources is None
            else runner_resources,
            platform=platform or defaults.Platform(),
        )

    @property
    def runner_name(self) -> str:
        return f"{self.name}-runner"


def owner(view: WorkflowView) -> Obj:
    return owner_reference(WORKFLOW.api_version, WORKFLOW.kind, view.name, view.uid, True)


def labels(view: WorkflowView) -> dict[str, str]:
    return {"app.kubernetes.io/name": "foundation-runner", WORKFLOW_LABEL: view.name, **MANAGED_BY}


def metadata(view: WorkflowView, name: str) -> Obj:
    return {
        "name": name,
        "namespace": view.namespace,
        "labels": labels(view),
        "ownerReferences": [owner(view)],
    }


def service_account(view: WorkflowView) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": metadata(view, view.runner_name),
    }


def role(view: WorkflowView) -> Obj:
    """Its own Workflow and status; reads for discovery; Events; nothing else."""
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": metadata(view, f"foundation-runner-{view.name}"),
        "rules": [
            {
                # Read and watched (a metadata.name field selector: this one only).
                "apiGroups": [WORKFLOW.group],
                "resources": [WORKFLOW.plural],
                "resourceNames": [view.name],
                "verbs": ["get", "list", "watch"],
            },
            {
                "apiGroups": [WORKFLOW.group],
                "resources": [f"{WORKFLOW.plural}/status"],
                "resourceNames": [view.name],
                "verbs": ["get", "patch"],
            },
            {
                "apiGroups": [""],
                "resources": ["endpoints"],
                "verbs": ["get", "list", "watch"],
            },
            DISCOVERY_RULE,
            # Events on its Workflow: step failures and the end.
            {"apiGroups": [""], "resources": ["events"], "verbs": ["create"]},
            callees(view),
            *capability_services(view),
        ],
    }


def capability_services(view: WorkflowView) -> list[Obj]:
    """Reading its capabilities' Services: their owners are the Agents to wake when none of
    them has a ready member (foundation_common.wake)."""
    names = sorted({SERVICE_PREFIX + s.capability for s in view.spec.steps if s.capability})
    if not names:
        return []
    return [
        {"apiGroups": [""], "resources": ["services"], "resourceNames": names, "verbs": ["get"]}
    ]


def callees(view: WorkflowView) -> Obj:
    """Sending tasks to the Agents its steps name; to any Agent of the namespace when a step
    names a capability (whose Agents come and go while the Workflow runs)."""
    rule: Obj = {
        "apiGroups": [access.GROUP],
        "resources": [f"{AGENT.plural}/{access.TASKS}", f"{AGENT.plural}/{access.WAKE}"],
        "verbs": [access.SEND],
    }
    if all(step.agent for step in view.spec.steps):
        rule["resourceNames"] = sorted({step.agent for step in view.spec.steps if step.agent})
    return rule


def role_binding(view: WorkflowView) -> Obj:
    name = f"foundation-runner-{view.name}"
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": metadata(view, name),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
        "subjects": [
            {"kind": "ServiceAccount", "name": view.runner_name, "namespace": view.namespace}
        ],
    }


def runner_tracing(view: WorkflowView) -> list[Obj]:
    """OTEL_* for the runner: the Workflow's spec.runner.tracing over the platform's."""
    tracing = view.spec.runner.tracing
    return defaults.tracing_env(
        view.platform, tracing.enabled, tracing.endpoint, tracing.sampling_ratio
    )


def runner_pod(view: WorkflowView) -> Obj:
    """The runner: restarted by the kubelet when it crashes (OnFailure), done when it exits 0,
    under the restricted Pod Security Standard."""
    runner = view.spec.runner
    container: Obj = {
        "name": "runner",
        "image": view.image,
        "command": ["foundation-runner"],
        "env": [
            {"name": "FOUNDATION_WORKFLOW", "value": view.name},
            {
                "name": "FOUNDATION_NAMESPACE",
                "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}},
            },
            *runner_tracing(view),
        ],
        "securityContext": security.container_context(),
        # Its Foundation token: the members authorize its steps' tasks by it.
        "volumeMounts": [security.caller_token_mount()],
    }
    container["resources"] = defaults.merged(view.runner_resources, runner.resources)
    template = runner.pod_template
    meta = metadata(view, view.runner_name)
    meta["labels"] = {**template.labels, **meta["labels"]}
    if template.annotations:
        meta["annotations"] = dict(template.annotations)
    spec: Obj = {
        "serviceAccountName": view.runner_name,
        "restartPolicy": "OnFailure",
        "terminationGracePeriodSeconds": 10,
        # Restricted by default (it writes no volume: no fsGroup); the template may replace it.
        "securityContext": template.security_context or security.pod_context(fs_group=False),
        "containers": [container],
        "volumes": [security.caller_token_volume()],
    }
    if template.node_selector:
        spec["nodeSelector"] = dict(template.node_selector)
    if template.tolerations:
        spec["tolerations"] = list(template.tolerations)
    if template.affinity:
        spec["affinity"] = template.affinity
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec}
