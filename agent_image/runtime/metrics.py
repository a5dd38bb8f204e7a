"""The runtime's metrics, on its own registry (served at /metrics by the task API)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry()

TASKS = Counter(
    "foundation_agent_tasks_total",
    "Tasks finished, by action and outcome (succeeded, failed).",
    ["action", "outcome"],
    registry=REGISTRY,
)
TASK_SECONDS = Histogram(
    "foundation_agent_task_duration_seconds",
    "From a task's acceptance to its durable completion.",
    ["action"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    registry=REGISTRY,
)
REFUSED = Counter(
    "foundation_agent_tasks_refused_total",
    "Tasks refused, by reason (invalid, inbox_full, stopping, store).",
    ["reason"],
    registry=REGISTRY,
)
QUEUE_DEPTH = Gauge(
    "foundation_agent_queue_depth", "Tasks accepted and not yet finished.", registry=REGISTRY
)
CHECKPOINT_SECONDS = Histogram(
    "foundation_agent_checkpoint_duration_seconds",
    "Time of one durable write of the state and task records.",
    ["store"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
    registry=REGISTRY,
)
CHECKPOINT_BYTES = Gauge(
    "foundation_agent_checkpoint_bytes", "Size of the stored document.", registry=REGISTRY
)
CHECKPOINT_CHANGES = Histogram(
    "foundation_agent_checkpoint_changes",
    "Task acceptances and completions carried by one write (group commit).",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
    registry=REGISTRY,
)
STATE_VERSION = Gauge(
    "foundation_agent_state_version", "Version of the stored state.", registry=REGISTRY
)
