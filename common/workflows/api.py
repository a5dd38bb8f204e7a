"""The Workflow custom resource as pydantic models: the single source of truth for its schema.

A Workflow is a DAG of steps, each a task on an Agent (by name) or on any ready member of any
Agent offering a capability. Field names are the API contract: attributes are snake_case,
their serialized names camelCase. What the schema cannot say (a cycle, an unknown dependency,
a reference to a step that is not a dependency) the operator's `workflows.dag.problems` says,
naming the step and the field.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, WithJsonSchema

from foundation_common.resources import GROUP, WORKFLOW, WORKFLOW_TEMPLATE
from foundation_common.schema import Capability, FreeForm, Model, PodTemplate, Tracing
from foundation_common.status import Condition

# Any JSON value (object, list, string, number, boolean): a step's input and result, the
# Workflow's output. The API server keeps it as it is.
Json = Annotated[Any, WithJsonSchema({"x-kubernetes-preserve-unknown-fields": True})]
STEP_NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
StepName = Annotated[str, Field(min_length=1, max_length=63, pattern=STEP_NAME_PATTERN)]
MAX_STEPS = 500
MAX_EXIT_STEPS = 50
MAX_ITEMS = 5000  # a map's items at most; the status's size rules may allow fewer


class Retry(Model):
    """Attempts after the first one fails, with a growing pause between them."""

    limit: int = Field(2, ge=0, le=100, description="Retries after the first attempt.")
    backoff_seconds: float = Field(1, ge=0, le=3600, description="Pause before the 1st retry.")
    factor: float = Field(2, ge=1, le=10, description="Growth of the pause per retry.")
    max_backoff_seconds: float = Field(60, ge=0, le=86_400, description="Cap of the pause.")

    def pause(self, retry: int) -> float:
        """The pause before retry number `retry` (1 for the first)."""
        return min(self.max_backoff_seconds, self.backoff_seconds * self.factor ** (retry - 1))


class Map(Model):
    """Run the step once per item of a list: a task per item, its input the step's with
    {{ item }} and {{ index }}; the step's result is the list of the items' results, in order."""

    items: Json = Field(
        description="A list, or a reference to one: {{ input.<path> }} or a dependency's "
        "{{ steps.<name>.result.<path> }} (e.g. a planner's answer). Read when the step starts."
    )
    parallelism: int = Field(16, ge=1, le=1000, description="The items' tasks in flight at most.")
    on_item_failure: Literal["FailFast", "Continue"] = Field(
        "FailFast",
        description="Once more items fail than tolerated: FailFast starts no more (those in "
        "flight finish) and fails the step; Continue runs every item and fails it at the end.",
    )
    tolerated_failures: int = Field(
        0,
        ge=0,
        le=MAX_ITEMS,
        description="Items that may fail (after their retries) with the step still succeeding; "
        "their places in the result are null.",
    )


class Approval(Model):
    """A person decides before the Workflow goes on: approve (with optional input) or reject."""

    message: str = Field(
        min_length=1,
        max_length=4096,
        description="What the approver is shown; may hold references.",
    )
    timeout_seconds: int | None = Field(
        None, ge=1, le=30 * 86_400, description="How long to wait for a decision; none: forever."
    )
    on_timeout: Literal["Reject", "Approve"] = Field(
        "Reject", description="The decision taken when the timeout passes first."
    )
    input_schema: FreeForm | None = Field(
        None,
        description="The JSON schema of what an approver may supply (foundation approve "
        "--input), referenced as {{ steps.<name>.result.input }}; none: no input.",
    )


class Step(Model):
    name: StepName
    agent: str | None = Field(
        None, min_length=1, max_length=59, description="An Agent in the Workflow's namespace."
    )
    capability: Capability | None = Field(
        None, description="Any ready member of any Agent offering it (instead of agent)."
    )
    action: str | None = Field(
        None, min_length=1, max_length=253, description="The task's action (not for approvals)."
    )
    input: Json = Field(None, description="The task's input; may hold references.")
    depends_on: list[StepName] = Field(
        default_factory=list, max_length=MAX_STEPS, description="Steps that finish first."
    )
    retry: Retry = Field(default_factory=Retry)
    timeout_seconds: int = Field(600, ge=1, le=7 * 86_400, description="Per attempt.")
    when: str | None = Field(
        None,
        min_length=1,
        max_length=1024,
        description='A reference ("{{ steps.x.result.ok }}"): the step runs if it is truthy '
        "(not false, null, 0, an empty string, list or object), else it is Skipped.",
    )
    map: Map | None = Field(None, description="Run the step once per item of a list.")
    approval: Approval | None = Field(
        None, description="Instead of a task: wait for a person to approve or reject."
    )

    @property
    def target(self) -> str:
        if self.approval is not None:
            return "an approver"
        return f"agent {self.agent}" if self.agent else f"capability {self.capability}"


class Runner(Model):
    """The runner pod the operator gives the Workflow."""

    shared: bool = Field(
        False,
        description="Run on the namespace's shared runner, already running: the Workflow "
        "starts at once in a process of its own (no pod of its own), and its steps are sent as "
        "the shared runner's account. resources, podTemplate and tracing do not apply.",
    )
    resources: FreeForm | None = Field(None, description="The runner container's resources.")
    pod_template: PodTemplate = Field(default_factory=PodTemplate)
    tracing: Tracing = Field(default_factory=Tracing)


PARAMETER_PATTERN = r"^[A-Za-z_][A-Za-z0-9_-]*$"


class Parameter(Model):
    """One of a template's parameters: a Workflow's argument, referenced {{ input.<name> }}."""

    name: str = Field(min_length=1, max_length=63, pattern=PARAMETER_PATTERN)
    type: Literal["string", "number", "integer", "boolean", "object", "array"] = "string"
    value: Json = Field(
        None, description="Its default: the value when no argument is given; none: required."
    )
    description: str | None = Field(None, max_length=1024)


class TemplateSpec(Model):
    """A WorkflowTemplate's spec: its parameters, and the steps of the Workflows made from it."""

    parameters: list[Parameter] = Field(default_factory=list, max_length=100)
    steps: list[Step] = Field(min_length=1, max_length=MAX_STEPS)
    on_exit: list[Step] = Field(default_factory=list, max_length=MAX_EXIT_STEPS)
    output: Json = Field(None, description="What a Workflow's status.output holds on success.")
    parallelism: int = Field(16, ge=1, le=1000)
    timeout_seconds: int | None = Field(None, ge=1, le=30 * 86_400)


class WorkflowTemplate(Model):
    """Steps to run again and again: a Workflow names it (spec.template) with its arguments."""

    api_version: str = WORKFLOW_TEMPLATE.api_version
    kind: str = WORKFLOW_TEMPLATE.kind
    metadata: FreeForm = Field(default_factory=dict)
    spec: TemplateSpec


class TemplateRef(Model):
    name: str = Field(min_length=1, max_length=253, description="A WorkflowTemplate here.")
    arguments: FreeForm = Field(
        default_factory=dict, description="Its parameters' values, referenced {{ input.<name> }}."
    )


class WorkflowSpec(Model):
    input: FreeForm = Field(default_factory=dict, description="Referenced as {{ input.<path> }}.")
    template: TemplateRef | None = Field(
        None,
        description="Run a WorkflowTemplate's steps with these arguments (instead of steps); "
        "the template as it was when the Workflow started.",
    )
    steps: list[Step] = Field(default_factory=list, max_length=MAX_STEPS)
    parallelism: int = Field(16, ge=1, le=1000, description="Steps in flight at most.")
    timeout_seconds: int | None = Field(
        None, ge=1, le=30 * 86_400, description="Of the whole run; none if unset."
    )
    suspend: bool = Field(
        False, description="True: no new step starts (in-flight ones finish); false resumes."
    )
    ttl_seconds_after_finished: int | None = Field(
        None, ge=0, le=365 * 86_400, description="Delete the Workflow this long after it ends."
    )
    output: Json = Field(None, description="What status.output holds on success (references).")
    on_exit: list[Step] = Field(
        default_factory=list,
        max_length=MAX_EXIT_STEPS,
        description="Clean-up: steps that run once the steps have ended, whatever the "
        "outcome, which they reference as {{ workflow.phase }}, {{ workflow.reason }}, "
        "{{ workflow.message }} and {{ workflow.failures }}. Their failures are reported "
        "(condition CleanedUp) without changing the outcome.",
    )
    runner: Runner = Field(default_factory=Runner)


StepPhase = Literal["Pending", "Running", "Succeeded", "Failed", "Skipped"]


class StepStatus(Model):
    name: str
    phase: StepPhase = "Pending"
    attempts: int = 0
    agent: str = Field("", description="The Agent the current attempt went to.")
    member: str = Field("", description="The member pod the current attempt is pinned to.")
    task_id: str = Field("", description="The current attempt's task id.")
    sender: str = Field("", description="Who the member says sent the task: the runner's account.")
    started_at: str | None = Field(None, description="When the current attempt was sent.")
    finished_at: str | None = None
    next_attempt_at: str | None = Field(None, description="When the next attempt may start.")
    dispatch_ms: int | None = Field(
        None, description="From its dependencies done to the attempt accepted by its member."
    )
    result: Json = None
    reason: str = ""
    error: str = ""
    items: int | None = Field(None, description="A map's items, counted when it started.")
    prompt: str = Field("", description="An approval's message, as shown to approvers.")
    progress: str = Field("", description="A map's items finished / items, e.g. 412/1000.")


class Verdict(Model):
    """A person's decision on an approval step, as people's door records it (once: a second
    decision is refused)."""

    step: str
    decision: Literal["Approved", "Rejected"]
    by: str = Field(description="Who decided, as the API server authenticated them.")
    at: str
    message: str = ""
    input: Json = None


class UsedTemplate(Model):
    """The template a Workflow runs, kept in its status when it starts: later changes to the
    WorkflowTemplate change only Workflows made after them."""

    name: str
    resource_version: str = ""
    spec: FreeForm = Field(default_factory=dict, description="Its spec, as it was.")


class Outcome(Model):
    """How the Workflow's steps ended, recorded before its clean-up steps run: the phase it
    ends in whatever they do."""

    phase: Literal["Succeeded", "Failed"]
    reason: str
    message: str = ""
    output: Json = None


# Who created a Workflow, as the API server authenticated them: written at creation by the
# admission webhook people's door serves, whatever the request said; kept in status.createdBy.
CREATOR = f"{GROUP}/created-by"


class WorkflowStatus(Model):
    phase: Literal["Pending", "Running", "Suspended", "Succeeded", "Failed"] = "Pending"
    progress: str = Field("", description="Steps finished / steps, e.g. 3/5.")
    observed_generation: int = 0
    conditions: list[Condition] = Field(default_factory=list)
    steps: list[StepStatus] = Field(
        default_factory=list,
        json_schema_extra={
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["name"],
        },
    )
    items: list[StepStatus] = Field(
        default_factory=list,
        description="The items of map steps that have started or ended, each named "
        "<step>.<index>: as a step's, their attempts and results (a map's results move to "
        "its step's result once it ends).",
        json_schema_extra={
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["name"],
        },
    )
    approvals: list[Verdict] = Field(
        default_factory=list,
        description="Decisions on approval steps, written by people's door (never by the "
        "runner), each taken by the runner once.",
        json_schema_extra={
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["step"],
        },
    )
    outcome: Outcome | None = Field(
        None, description="How the steps ended, once they have (clean-up steps run after)."
    )
    template: UsedTemplate | None = Field(
        None, description="The WorkflowTemplate as it was when the Workflow started."
    )
    item_progress: str = Field(
        "", description="The items of its maps finished / items, e.g. 412/1000."
    )
    output: Json = None
    started_at: str | None = None
    finished_at: str | None = None
    duration: str = Field("", description="From start to finish, once finished (e.g. 1m5s).")
    created_by: str = Field(
        "",
        description="Who created the Workflow, as the API server authenticated them (from the"
        " annotation foundation.dev/created-by that people's door's admission webhook writes"
        " at creation; empty without the webhook). Its steps run as its runner's account.",
    )


class Workflow(Model):
    """The whole resource, as the CRD describes it."""

    api_version: str = WORKFLOW.api_version
    kind: str = WORKFLOW.kind
    metadata: FreeForm = Field(default_factory=dict)
    spec: WorkflowSpec
    status: WorkflowStatus | None = None
