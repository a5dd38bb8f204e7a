"""The Agent custom resource as pydantic models, the single source of truth for its schema,
and `AgentView`, the typed view the operator reasons about.

`crds/agents.foundation.dev.yaml` is generated from `Agent` (see `foundation_operator.crds`);
the operator parses every Agent it sees through `AgentView.from_body`. Field names are the API
contract: attributes are snake_case, their serialized names camelCase.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, WithJsonSchema, model_validator

from foundation_common.limits import (
    IN_FLIGHT,
    JSON_DEPTH,
    KEEP_COMPLETED_BYTES,
    MAX_QUEUED_BYTES,
    REQUEST_BYTES,
    RESULT_BYTES,
)
from foundation_common.resources import AGENT
from foundation_common.schema import Capability, FreeForm, Model, PodTemplate, Tracing
from foundation_common.sidecar import SidecarConfig
from foundation_common.status import Condition
from foundation_operator.core.defaults import Platform

EnvVar = Annotated[
    dict[str, Any],
    WithJsonSchema(
        {
            "type": "object",
            "required": ["name"],
            "properties": {"name": {"type": "string", "minLength": 1}},
            "x-kubernetes-preserve-unknown-fields": True,
        }
    ),
]
AGENT_CLASS_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*$"
DNS_SUBDOMAIN_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
DNS_LABEL_PATTERN = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"
QUANTITY_PATTERN = r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|k|M|G|T)?$"


class Supervision(Model):
    """How the operator supervises the members, as an OTP supervisor would."""

    strategy: Literal["OneForOne", "OneForAll", "RestForOne"] = Field(
        "OneForOne",
        description="OneForOne restarts the failed member; OneForAll restarts all members; "
        "RestForOne restarts the failed member and those after it.",
    )
    max_restarts: int = Field(
        3, ge=0, le=10_000, description="Restarts allowed within periodSeconds before Failed."
    )
    # 120 s, not OTP's 5: a kubelet's back-off (10 s, 20 s, 40 s...) spaces a crash loop's
    # crashes at about 0, 10, 30 and 70 s, so the 4th lands in the window (docs/agents.md).
    period_seconds: int = Field(120, ge=1, le=86_400, description="Window for maxRestarts.")
    on_exhausted: Literal["Stop", "Keep"] = Field(
        "Stop",
        description="When restart intensity is exceeded: Stop deletes the members; Keep leaves "
        "them for debugging.",
    )


class Persistence(Model):
    """Where each member keeps its durable state."""

    store: Literal["ConfigMap", "Secret", "PVC", "None"] = Field(
        "ConfigMap",
        description="ConfigMap (small state, < 1 MiB), Secret (the same, out of the view"
        " role's reach: for sensitive inputs, results and conversations), PVC (large), or"
        " None.",
    )
    size: str = Field("1Gi", pattern=QUANTITY_PATTERN, description="PVC size per member.")
    storage_class_name: str | None = Field(None, description="PVC storage class (default class).")
    retain_on_delete: bool = Field(
        False, description="Keep the members' state objects when the Agent is deleted."
    )
    group_commit: bool = Field(
        True,
        description="Write the tasks that arrive together in one write (a task is still "
        "acknowledged only after its write).",
    )

    @model_validator(mode="after")
    def _retained_where_possible(self) -> Persistence:
        if self.store == "Secret" and self.retain_on_delete:
            raise ValueError(
                "retainOnDelete needs store ConfigMap or PVC: finding a kept Secret again needs"
                " the right to list every Secret, which the operator does not take"
            )
        return self


class Inbox(Model):
    """Each member's durable task queue."""

    max_queued: int = Field(
        1000, ge=1, le=1_000_000, description="Queued tasks beyond which new ones get 429."
    )
    keep_completed: int = Field(
        1000,
        ge=0,
        le=1_000_000,
        description="Completion records kept, so a retried task id is recognised.",
    )
    keep_completed_seconds: int = Field(
        3600, ge=0, le=30 * 86_400, description="How long completion records are kept at most."
    )
    keep_completed_bytes: int = Field(
        KEEP_COMPLETED_BYTES,
        ge=0,
        le=1 << 30,
        description="Bytes of completion records kept at most (oldest dropped first); a store"
        " with a size limit also drops the oldest when the next write would not fit.",
    )
    max_queued_bytes: int = Field(
        MAX_QUEUED_BYTES,
        ge=1024,
        le=1 << 30,
        description="Bytes of queued tasks' inputs beyond which new ones get 429.",
    )


class Limits(Model):
    """What one request may cost a member (docs/limits.md). A request over a limit fails with
    a status and a message naming the limit; the member goes on."""

    request_bytes: int = Field(
        REQUEST_BYTES,
        ge=1024,
        le=64 << 20,
        description="The largest request body the task API, A2A and the sidecar read (413).",
    )
    result_bytes: int = Field(
        RESULT_BYTES,
        ge=1024,
        le=64 << 20,
        description="The largest result a task may return, as JSON; a larger one fails the task"
        " with ResultTooLarge and leaves the state as it was.",
    )
    json_depth: int = Field(
        JSON_DEPTH, ge=8, le=512, description="The deepest JSON nesting a request may have (400)."
    )
    in_flight: int = Field(
        IN_FLIGHT,
        ge=1,
        le=100_000,
        description="Requests each port serves at once; more get 429 with Retry-After.",
    )


class Code(Model):
    """The agent's own Python modules, from a ConfigMap: no image to build for an agent class."""

    config_map: str = Field(
        min_length=1,
        max_length=253,
        pattern=DNS_SUBDOMAIN_PATTERN,
        description="A ConfigMap in the Agent's namespace whose keys are files (greeter.py, "
        "or a package's files); mounted read-only and put first on the agent's PYTHONPATH. "
        "Members load it when they start: change podTemplate.annotations to roll a new "
        "version out.",
    )


class Sidecar(SidecarConfig):
    """The resilience sidecar in every member pod: upstreams with circuit breakers and rate
    limits, and calls to other agents by capability. Its configuration model is the sidecar's
    own, so what the CRD accepts is exactly what the sidecar runs."""

    enabled: bool = Field(True, description="Run the sidecar container in each member pod.")
    resources: FreeForm | None = Field(None, description="The sidecar container's resources.")

    def runtime_config(self) -> str:
        """The JSON the sidecar reads (FOUNDATION_SIDECAR_CONFIG)."""
        return self.model_dump_json(by_alias=True, exclude={"enabled", "resources"})


AgentName = Annotated[str, Field(min_length=1, max_length=63, pattern=DNS_LABEL_PATTERN)]


class Calls(Model):
    """What an Agent's members call (peers, tools), in its namespace: its account is granted
    `create` on exactly these Agents' tasks, and nothing else. Another namespace's Agents are
    granted there, by a RoleBinding of their own (docs/security.md)."""

    agents: list[AgentName] = Field(default_factory=list, max_length=64)
    capabilities: list[Capability] = Field(
        default_factory=list,
        max_length=32,
        description="Every Agent of the namespace that offers one of these, as they come and go.",
    )


class Callers(Model):
    """Who may call this Agent is RBAC's to say (docs/security.md); this says what its members
    do with a call that presents no token at all."""

    require_token: bool = Field(
        False,
        description="Refuse (401) every call without a token, even where the operator still"
        " lets tokenless calls through (its callerAuthentication: Permissive).",
    )


class AgentSpec(Model):
    image: str | None = Field(
        None,
        min_length=1,
        description="Container image of the agent runtime; default: the operator's agents image.",
    )
    command: list[str] | None = Field(None, description="Defaults to foundation-agent.")
    args: list[str] | None = None
    agent: str = Field(
        pattern=AGENT_CLASS_PATTERN,
        max_length=253,
        description="Import path of the agent class the runtime loads: module:Class.",
    )
    config: FreeForm = Field(default_factory=dict, description="Free-form config for the agent.")
    description: str | None = Field(
        None,
        max_length=1024,
        description="What the agent does, for people and other agents: its A2A card says it.",
    )
    code: Code | None = Field(
        None, description="The agent's modules from a ConfigMap, instead of an image of its own."
    )
    replicas: int = Field(1, ge=0, le=100, description="Members, each with its own state.")
    suspend: bool = Field(
        False,
        description="true: no member runs, and every member's state and task records are kept "
        "(calls are refused with 503 and the reason); false again: the members come back "
        "where they were.",
    )
    sleep_after_idle_seconds: int | None = Field(
        None,
        ge=1,
        le=30 * 24 * 3600,
        description="Sleep after this many seconds in which no member held a task: the members "
        "stop and keep their state (as spec.suspend does); the first task sent to the Agent "
        "wakes it, waits for a member, and is delivered once. Unset: never sleeps.",
    )
    warm_while_asleep: bool = Field(
        False,
        description="While asleep, keep each member's pod started but parked: its processes "
        "up and ready, no state loaded. The first call to a member loads its state and is "
        "served (a wake in a fraction of a second, not a pod's cold start); the pods cost "
        "their memory while the Agent sleeps. Needs sleepAfterIdleSeconds.",
    )
    warm_spares: int = Field(
        0,
        ge=0,
        le=16,
        description="Pods kept parked for the next ordinals (replicas, replicas+1, ...): started"
        " and ready, no state loaded, taking no calls. A scale-up claims them (their labels"
        " then put them in the Agent's Service) instead of starting new pods. Each costs a"
        " member pod's memory. None while suspended or asleep.",
    )
    capabilities: list[Capability] = Field(default_factory=list, max_length=32)
    calls: Calls = Field(
        default_factory=Calls,
        description="The Agents this one calls, by name or capability: what its account may"
        " send tasks to.",
    )
    callers: Callers = Field(default_factory=Callers)
    env: list[EnvVar] = Field(default_factory=list)
    resources: FreeForm | None = Field(None, description="The container's resources.")
    service_account_name: str | None = Field(
        None,
        description="Run the members as this existing ServiceAccount instead of the one the "
        "operator makes for the Agent.",
    )
    pod_template: PodTemplate = Field(default_factory=PodTemplate)
    supervision: Supervision = Field(default_factory=Supervision)
    persistence: Persistence = Field(default_factory=Persistence)
    inbox: Inbox = Field(default_factory=Inbox)
    limits: Limits = Field(default_factory=Limits)
    sidecar: Sidecar = Field(default_factory=Sidecar)
    tracing: Tracing = Field(default_factory=Tracing)


class LastExit(Model):
    exit_code: int | None = None
    reason: str = ""
    finished_at: str | None = None


class MemberStatus(Model):
    name: str
    pod: str = ""
    ready: bool = False
    restarts: int = 0
    last_exit: LastExit | None = None


class StateSummary(Model):
    store: str = ""
    key: str = ""
    version: int = 0
    last_saved_at: str | None = None
    size_bytes: int = 0


class MemberState(StateSummary):
    """What a member's runtime reports of its state (it writes only its own entry)."""

    queued: int = 0
    busy: int = Field(0, description="Tasks accepted and not ended (queued or running).")
    idle_since: str | None = Field(None, description="Since when the member held no task.")
    parked: str | None = Field(
        None,
        description="Parked, its state not loaded: the sleep it was made in (asleepSince), or "
        "spare (spec.warmSpares).",
    )
    woke_from: str | None = Field(
        None,
        description="A member parked while the Agent slept (spec.warmWhileAsleep) that a call "
        "woke: the sleep (status.asleepSince) it woke from.",
    )
    reason: str | None = Field(None, description="Why the state is not saved, if it is not.")
    message: str | None = None


class AgentStatus(Model):
    phase: Literal[
        "Pending", "Running", "Degraded", "Failed", "Suspended", "Sleeping", "Terminating"
    ] = "Pending"
    ready: str = Field("", description="Ready members / desired members, e.g. 2/3.")
    replicas: int = Field(
        0, description="Member pods that exist and are not being deleted (the scale subresource)."
    )
    selector: str = Field(
        "", description="The label selector of the members (the scale subresource, for HPAs)."
    )
    restarts: int = 0
    observed_generation: int = 0
    conditions: list[Condition] = Field(default_factory=list)
    members: list[MemberStatus] = Field(default_factory=list)
    state: StateSummary | None = Field(None, description="Member 0's state, as it reports it.")
    member_states: dict[str, MemberState] = Field(
        default_factory=dict, description="Each member's state, reported by its runtime."
    )
    recent_restarts: list[str] = Field(
        default_factory=list,
        description="Times of the restarts still inside the restart-intensity window.",
    )
    capabilities: list[str] = Field(
        default_factory=list, description="Capability Services the Agent has joined."
    )
    observed_restarted_at: str = Field(
        "", description="The foundation.dev/restartedAt annotation last acted on."
    )
    asleep_since: str = Field(
        "",
        description="When the Agent went to sleep (spec.sleepAfterIdleSeconds); empty while "
        "awake. A foundation.dev/wakeRequestedAt annotation from this time on wakes it.",
    )


class Agent(Model):
    """The whole resource, as the CRD describes it."""

    api_version: str = AGENT.api_version
    kind: str = AGENT.kind
    metadata: FreeForm = Field(default_factory=dict)
    spec: AgentSpec
    status: AgentStatus | None = None


class InvalidSpec(ValueError):
    """The spec cannot be carried out; the message says what to change."""


@dataclass(frozen=True)
class AgentView:
    """An Agent as the operator reasons about it: identity plus the validated spec."""

    name: str
    namespace: str
    uid: str
    generation: int
    spec: AgentSpec
    annotations: dict[str, str] = field(default_factory=dict)
    deleting: bool = False
    image: str = ""  # spec.image, else the operator's default agent image
    caller_auth: str = "Required"  # the operator's: what members do with a call without a token
    platform: Platform = field(default_factory=Platform)
    default_image: str = ""  # the operator's agents image (the sidecar's, unless one is given)

    @property
    def sidecar_image(self) -> str:
        """The platform's, never the Agent's: the sidecar holds the upstreams' API keys."""
        return self.platform.sidecar_image or self.default_image or self.image

    @classmethod
    def from_body(
        cls,
        body: dict[str, Any],
        default_image: str = "",
        caller_auth: str = "Required",
        platform: Platform | None = None,
    ) -> AgentView:
        meta = body["metadata"]
        try:
            spec = AgentSpec.model_validate(body.get("spec") or {})
        except ValidationError as exc:
            problems = "; ".join(
                f"spec.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
            )
            raise InvalidSpec(problems) from None
        platform = platform or Platform()
        if spec.persistence.store == "Secret" and not platform.secret_store:
            raise InvalidSpec(
                "spec.persistence.store: Secret is not enabled on this operator (it would need"
                " rights on Secrets: the chart's agents.secretStore.enabled); use ConfigMap or"
                " PVC, or ask your platform team"
            )
        image = spec.image or default_image
        if not image:
            raise InvalidSpec(
                "spec.image: set it, or give the operator a default agent image "
                "(FOUNDATION_AGENT_IMAGE; the Helm chart's agents.image)"
            )
        return cls(
            name=meta["name"],
            namespace=meta["namespace"],
            uid=meta["uid"],
            generation=int(meta.get("generation", 0)),
            spec=spec,
            annotations=dict(meta.get("annotations") or {}),
            deleting=bool(meta.get("deletionTimestamp")),
            image=image,
            caller_auth=caller_auth,
            platform=platform,
            default_image=default_image,
        )

    @property
    def service_account(self) -> str:
        return self.spec.service_account_name or self.name
