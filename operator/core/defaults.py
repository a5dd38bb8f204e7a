"""What the platform team decides for every pod the operator makes, whatever an Agent or a
Workflow says: the sidecar's image, and default requests and memory limits.

Sizes come from measurements on the local cluster (docs/limits.md): a member's runtime holds
about 55-65 MiB resident (CounterAgent idle, TaskAgent after 40 results of 200 KB, ChatAgent
idle), its sidecar about 51 MiB, a Workflow's runner about 54 MiB. Requests are a little
above that; memory limits leave room for what the request limits allow in flight (in-flight
requests times the body limit). No CPU limit: throttling a member slows every caller, and
the request already shares the node fairly. An Agent's or Workflow's own `resources` win,
name by name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

Resources = dict[str, Any]

AGENT_RESOURCES: Resources = {
    "requests": {"cpu": "50m", "memory": "128Mi"},
    "limits": {"memory": "512Mi"},
}
SIDECAR_RESOURCES: Resources = {
    "requests": {"cpu": "20m", "memory": "64Mi"},
    "limits": {"memory": "256Mi"},
}
RUNNER_RESOURCES: Resources = {
    "requests": {"cpu": "20m", "memory": "64Mi"},
    "limits": {"memory": "256Mi"},
}


@dataclass(frozen=True)
class Platform:
    """The operator's defaults (its settings; the chart's values)."""

    sidecar_image: str = ""  # empty: the operator's agents image (never an Agent's own)
    agent_resources: Resources = field(default_factory=lambda: AGENT_RESOURCES)
    sidecar_resources: Resources = field(default_factory=lambda: SIDECAR_RESOURCES)
    runner_resources: Resources = field(default_factory=lambda: RUNNER_RESOURCES)
    secret_store: bool = False  # whether the operator holds rights on Secrets (store Secret)
    tracing_endpoint: str = ""  # OTLP/HTTP; empty: no traces unless an Agent names one
    tracing_sampling_ratio: float = 1.0


def tracing_env(
    platform: Platform,
    enabled: bool = True,
    endpoint: str | None = None,
    ratio: float | None = None,
) -> list[dict[str, str]]:
    """The standard OpenTelemetry variables a pod's containers trace by (none: no traces)."""
    endpoint = endpoint or platform.tracing_endpoint
    if not enabled or not endpoint:
        return []
    ratio = platform.tracing_sampling_ratio if ratio is None else ratio
    return [
        {"name": "OTEL_EXPORTER_OTLP_ENDPOINT", "value": endpoint},
        {"name": "OTEL_EXPORTER_OTLP_PROTOCOL", "value": "http/protobuf"},
        {"name": "OTEL_TRACES_SAMPLER", "value": "parentbased_traceidratio"},
        {"name": "OTEL_TRACES_SAMPLER_ARG", "value": f"{ratio:g}"},
    ]


UNITS = {
    "": 1,
    "m": 1e-3,
    "k": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
}
QUANTITY = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(m|k|M|G|T|Ki|Mi|Gi|Ti)?$")


def amount(quantity: Any) -> float | None:
    """A Kubernetes quantity's value (None if it is not one this knows)."""
    found = QUANTITY.fullmatch(str(quantity))
    if found is None:
        return None
    return float(found.group(1)) * UNITS[found.group(2) or ""]


def merged(default: Resources, given: Resources | None) -> Resources:
    """`given` over `default`, name by name in requests and limits. A request given above a
    default limit (and no limit given) raises the limit to it: the pod stays valid."""
    given = given or {}
    out: Resources = {k: v for k, v in given.items() if k not in ("requests", "limits")}
    requests = {**default.get("requests", {}), **(given.get("requests") or {})}
    limits = {**default.get("limits", {}), **(given.get("limits") or {})}
    for name, request in (given.get("requests") or {}).items():
        if name in (given.get("limits") or {}) or name not in limits:
            continue
        asked, limit = amount(request), amount(limits[name])
        if asked is not None and limit is not None and asked > limit:
            limits[name] = request
    for name, limit in (given.get("limits") or {}).items():
        # A limit given below a default request: the request comes down to it.
        request = requests.get(name)
        if name in (given.get("requests") or {}) or request is None:
            continue
        asked, most = amount(request), amount(limit)
        if asked is not None and most is not None and asked > most:
            requests[name] = limit
    if requests:
        out["requests"] = requests
    if limits:
        out["limits"] = limits
    return out
