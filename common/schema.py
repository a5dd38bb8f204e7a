"""Pydantic pieces the Agent's and the Workflow's models share: the camelCase model base,
Kubernetes objects kept as they are, capability names, and the pod template overrides."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema
from pydantic.alias_generators import to_camel

# Kubernetes types the operator passes through to the pod: the API server validates them when
# the pod is made, so the CRD keeps them as objects without repeating their schemas.
FreeForm = Annotated[
    dict[str, Any],
    WithJsonSchema({"type": "object", "x-kubernetes-preserve-unknown-fields": True}),
]
# A capability becomes a label key `capability.foundation.dev/<name>` and a Service
# `foundation-cap-<name>`: a DNS label short enough for both.
CAPABILITY_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
Capability = Annotated[str, Field(min_length=1, max_length=48, pattern=CAPABILITY_PATTERN)]


class Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class PodTemplate(Model):
    """Overrides for the member pods."""

    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: list[FreeForm] = Field(default_factory=list)
    affinity: FreeForm | None = None
    security_context: FreeForm | None = Field(None, description="The pod's securityContext.")


class Tracing(Model):
    """Where a pod's traces go (OpenTelemetry, OTLP over HTTP), over the platform's default
    (the chart's tracing values): an Agent's members and sidecars, a Workflow's runner. Set as
    the standard OTEL_* variables (an Agent's spec.env may still override them)."""

    enabled: bool = Field(
        True, description="false: no traces from these pods, whatever the platform says."
    )
    endpoint: str | None = Field(
        None,
        max_length=2048,
        pattern=r"^https?://[^\s]+$",
        description="OTLP/HTTP endpoint, e.g. http://collector.observability:4318 (spans go to "
        "its /v1/traces); default: the platform's.",
    )
    sampling_ratio: float | None = Field(
        None,
        ge=0,
        le=1,
        description="Share of new traces kept (a caller's decision is followed); default: the "
        "platform's, else 1.",
    )
