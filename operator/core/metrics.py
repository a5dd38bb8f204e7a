"""Every metric the operator exports, defined once and named foundation_*."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, Info, start_http_server

from foundation_common import __version__

BUILD_INFO = Info("foundation_operator_build", "Version of the running Foundation operator.")
BUILD_INFO.info({"version": __version__})

RECONCILIATIONS = Counter(
    "foundation_operator_reconciliations_total",
    "Reconciliations by resource and result (ok, api_error, error).",
    ["resource", "result"],
)
RECONCILE_SECONDS = Histogram(
    "foundation_operator_reconcile_duration_seconds",
    "Time one reconciliation takes.",
    ["resource"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
API_REQUESTS = Counter(
    "foundation_operator_api_requests_total",
    "Requests the supervisor made to the Kubernetes API by verb, kind and HTTP status "
    "(watches and the Lease are not counted).",
    ["verb", "kind", "code"],
)
API_ERRORS = Counter(
    "foundation_operator_api_errors_total", "Kubernetes API errors by HTTP status.", ["code"]
)
MEMBER_RESTARTS = Counter(
    "foundation_operator_member_restarts_total",
    "Member restarts the supervisor counted (container restarts and pod re-creations).",
)
INTENSITY_EXHAUSTED = Counter(
    "foundation_operator_restart_intensity_exhausted_total",
    "Times an Agent failed because its restart intensity was exceeded.",
)
SPARES_CLAIMED = Counter(
    "foundation_operator_spares_claimed_total",
    "Spares (spec.warmSpares) a scale-up made members instead of starting new pods.",
)
AGENT_SLEEPS = Counter(
    "foundation_operator_agent_sleeps_total",
    "Agents put to sleep after spec.sleepAfterIdleSeconds idle, and woken.",
    ["transition"],
)
AGENTS = Gauge("foundation_operator_agents", "Agents by phase.", ["phase"])
LEADER = Gauge(
    "foundation_operator_leader",
    "1 while this replica holds the Lease and supervises; 0 while it stands by.",
)


# Workflows, counted by the operator from the status their runners write.
ASYNCIO_TASKS = Gauge(
    "foundation_operator_asyncio_tasks",
    "The operator's asyncio tasks (a number that only grows is a leak).",
)
WORKFLOWS = Gauge("foundation_workflow_workflows", "Workflows by phase.", ["phase"])
WORKFLOWS_FINISHED = Counter(
    "foundation_workflow_finished_total", "Workflows that finished, by phase.", ["phase"]
)
WORKFLOW_STEPS = Counter(
    "foundation_workflow_steps_total",
    "Steps that finished, by outcome (Succeeded, Failed, Skipped).",
    ["outcome"],
)
WORKFLOW_ITEMS = Counter(
    "foundation_workflow_items_total",
    "Items of map steps that finished, by outcome (Succeeded, Failed).",
    ["outcome"],
)
WORKFLOW_STEP_SECONDS = Histogram(
    "foundation_workflow_step_duration_seconds",
    "From a step's last attempt sent to its end (the status's second resolution).",
    buckets=(1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600),
)
WORKFLOW_DISPATCH_SECONDS = Histogram(
    "foundation_workflow_dispatch_latency_seconds",
    "From a step's dependencies done (as its runner saw them) to its task accepted.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
RUNNER_RESTARTS = Counter(
    "foundation_workflow_runner_restarts_total", "Restarts of Workflow runners."
)
WORKFLOW_STALLED = Gauge(
    "foundation_workflow_stalled_seconds",
    "Longest time any Running Workflow has gone without a step starting or finishing "
    "(Workflows waiting for an approval aside: see the approval gauges).",
)
SCHEDULED = Counter(
    "foundation_schedule_times_total",
    "Schedules' times taken: a Workflow created, or the time skipped (concurrency, deadline).",
    ["outcome"],
)
WAITING_APPROVALS = Gauge(
    "foundation_workflow_waiting_approvals",
    "Approval steps waiting for a person's decision.",
)
APPROVAL_WAIT = Gauge(
    "foundation_workflow_approval_wait_seconds",
    "The longest any approval step has waited for a decision.",
)


def serve(port: int) -> None:
    """Expose /metrics on a background thread (prometheus-client's own server)."""
    if port:
        start_http_server(port)


DOOR_WAKES = Counter(
    "foundation_door_wakes_total",
    "Sleeping Agents the door asked to wake (one write a sleep, whoever called).",
)
DOOR_REQUESTS = Counter(
    "foundation_door_requests_total",
    "Calls people made through the door (the API server's relay) by subresource and the"
    " HTTP status answered.",
    ["subresource", "code"],
)
