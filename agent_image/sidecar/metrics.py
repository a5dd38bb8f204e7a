"""The sidecar's metrics, on its own registry (served at /metrics on the admin port)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry()

# target: "upstream" or "capability"; name: the upstream's or capability's name.
REQUESTS = Counter(
    "foundation_sidecar_requests_total",
    "Calls through the sidecar by target, outcome (ok, error, circuit_open, rate_limited, "
    "no_member, timeout) and the status code answered.",
    ["target", "name", "outcome", "code"],
    registry=REGISTRY,
)
SECONDS = Histogram(
    "foundation_sidecar_request_duration_seconds",
    "Time from a call's arrival to its answer's headers.",
    ["target", "name"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    registry=REGISTRY,
)
CIRCUIT_STATE = Gauge(
    "foundation_sidecar_circuit_state",
    "1 for the state each upstream's circuit is in (closed, open, half_open, recovering).",
    ["upstream", "state"],
    registry=REGISTRY,
)
TRANSITIONS = Counter(
    "foundation_sidecar_circuit_transitions_total",
    "Circuit state changes by upstream and the state entered.",
    ["upstream", "to"],
    registry=REGISTRY,
)
RATE_LIMITED = Counter(
    "foundation_sidecar_rate_limited_total",
    "Calls refused with 429 by scope (agent, upstream) and upstream.",
    ["upstream", "scope"],
    registry=REGISTRY,
)
RETRIES = Counter(
    "foundation_sidecar_retries_total",
    "Attempts after the first, by target and name.",
    ["target", "name"],
    registry=REGISTRY,
)
MEMBERS = Gauge(
    "foundation_sidecar_capability_members",
    "Ready members of a capability as the sidecar last saw them.",
    ["capability"],
    registry=REGISTRY,
)
EJECTIONS = Counter(
    "foundation_sidecar_ejections_total",
    "Members ejected by outlier detection, by capability.",
    ["capability"],
    registry=REGISTRY,
)

ASYNCIO_TASKS = Gauge(
    "foundation_sidecar_asyncio_tasks",
    "The sidecar's asyncio tasks (a number that only grows is a leak).",
    registry=REGISTRY,
)
