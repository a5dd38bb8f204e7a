"""The operator's configuration: one object, read once from the environment."""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator

from foundation_common import access
from foundation_common.settings import SettingsError, json_setting, settings_from_env
from foundation_operator.core import defaults

__all__ = ["Settings", "SettingsError"]

SERVICE_ACCOUNT_NAMESPACE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"


class Settings(BaseModel, frozen=True):
    """Everything the operator can be told. Environment: FOUNDATION_<FIELD> (upper case)."""

    namespaces: tuple[str, ...] = Field(
        default=(),
        description="Namespaces to watch (comma-separated); empty means cluster-wide.",
    )
    excluded_namespaces: tuple[str, ...] = Field(
        default=(),
        description="Namespaces left alone (comma-separated): another operator's, such as the "
        "demo's next to a cluster-wide one.",
    )
    health_host: str = "0.0.0.0"
    health_port: int = Field(default=8080, ge=1, le=65535)
    metrics_port: int = Field(default=9090, ge=0, le=65535, description="0 disables metrics.")
    workers: int = Field(
        default=64, ge=1, le=512, description="Agents reconciled at the same time."
    )
    agent_image: str = Field(
        default="",
        description="Image of Agents that name none in spec.image (the chart's agents.image).",
    )
    sidecar_image: str = Field(
        default="",
        description="Image of every member's sidecar, which holds the upstreams' API keys;"
        " never an Agent's own spec.image. Empty: agent_image (the chart's agents.sidecarImage).",
    )
    agent_resources: dict[str, Any] = Field(
        default_factory=lambda: dict(defaults.AGENT_RESOURCES),
        description="Default requests and limits of members' agent containers (JSON); an"
        " Agent's spec.resources wins name by name (the chart's agents.resources.agent).",
    )
    sidecar_resources: dict[str, Any] = Field(
        default_factory=lambda: dict(defaults.SIDECAR_RESOURCES),
        description="The same for sidecars (the chart's agents.resources.sidecar).",
    )
    runner_resources: dict[str, Any] = Field(
        default_factory=lambda: dict(defaults.RUNNER_RESOURCES),
        description="The same for Workflow runners (the chart's workflows.resources.runner).",
    )
    secret_store: bool = Field(
        default=False,
        description="Agents may keep their state in Secrets (persistence.store Secret): the"
        " operator then holds get/create/update/patch on Secrets, to make each member's and"
        " grant the member its own (the chart's agents.secretStore.enabled).",
    )
    tracing_endpoint: str = Field(
        default="",
        description="OTLP/HTTP endpoint every member, sidecar and runner sends traces to"
        " (an Agent's spec.tracing may name its own); empty: none (the chart's"
        " tracing.otlpEndpoint).",
    )
    tracing_sampling_ratio: float = Field(
        default=1.0, ge=0, le=1, description="Share of new traces kept (tracing.samplingRatio)."
    )
    caller_auth: Literal["Required", "Permissive"] = Field(
        default="Required",
        description="What members do with a call that presents no token: Required refuses it"
        " (401); Permissive lets it through as anonymous, for callers that still reach members"
        " through the API server's pod proxy. A call with a token is verified and authorized"
        " either way (the chart's agents.callerAuthentication).",
    )
    privileged_namespaces: tuple[str, ...] = Field(
        default=(),
        description="Namespaces whose Agents may run pods outside the restricted Pod Security"
        " Standard (comma-separated; the chart's agents.privilegedNamespaces).",
    )
    network_policy: bool = Field(
        default=True,
        description="Give each Agent a NetworkPolicy (docs/security.md); the chart's"
        " agents.networkPolicy.enabled.",
    )
    network_policy_from: list[dict[str, Any]] = Field(
        default_factory=list,
        description="NetworkPolicy peers (JSON list) admitted to members' task and A2A ports"
        " besides Foundation's pods and the API server: callers in other namespaces, say.",
    )
    door_port: int = Field(
        default=0,
        ge=0,
        le=65535,
        description="Port of people's door, the APIService the API server relays people's calls"
        " to (TLS; docs/security.md); 0 serves none.",
    )
    door_host: str = "0.0.0.0"
    door_public_url: str = Field(
        default="",
        description="The API server's URL as people reach it (https://host:port), for the"
        " URL in an Agent's A2A card read through the door; the API server does not say it."
        " `foundation card` puts the kubeconfig's in its stead.",
    )
    door_from: list[dict[str, Any]] = Field(
        default_factory=list,
        description="NetworkPolicy peers (JSON list) of the door's pods, which members admit:"
        " the chart names the operator's pods.",
    )
    door_cert_file: str = Field(
        default="/var/run/foundation.dev/door/tls.crt",
        description="The door's serving certificate (the APIService's caBundle signs it).",
    )
    door_key_file: str = "/var/run/foundation.dev/door/tls.key"
    door_token_file: str = Field(
        default=access.TOKEN_PATH,
        description="The token the door relays with (audience foundation.dev; RBAC lets its"
        " account `relay` Agents' tasks).",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["json", "text"] = "text"
    leader_election: bool = Field(
        default=True, description="Run active only while holding the Lease (several replicas)."
    )
    lease_name: str = Field(default="foundation-operator", min_length=1, max_length=253)
    lease_namespace: str = Field(
        default="", description="Namespace of the Lease; empty: the pod's own, else default."
    )
    lease_duration_seconds: int = Field(
        default=15, ge=2, le=300, description="How long a silent leader keeps the Lease."
    )
    identity: str = Field(
        default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}",
        description="This replica's name in the Lease (the pod name in a cluster).",
    )

    @field_validator("namespaces", "excluded_namespaces", "privileged_namespaces", mode="before")
    @classmethod
    def _split_namespaces(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    _json = field_validator(
        "network_policy_from",
        "door_from",
        "agent_resources",
        "sidecar_resources",
        "runner_resources",
        mode="before",
    )(json_setting)

    def manages(self, namespace: str) -> bool:
        """Whether this operator's watches cover `namespace`."""
        return namespace not in self.excluded_namespaces and (
            not self.namespaces or namespace in self.namespaces
        )

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @property
    def platform(self) -> defaults.Platform:
        return defaults.Platform(
            self.sidecar_image,
            self.agent_resources,
            self.sidecar_resources,
            self.runner_resources,
            self.secret_store,
            self.tracing_endpoint,
            self.tracing_sampling_ratio,
        )

    @property
    def renew_deadline_seconds(self) -> float:
        """A leader that cannot renew for this long stops, before its Lease can expire."""
        return self.lease_duration_seconds * 2 / 3

    @property
    def retry_period_seconds(self) -> float:
        # client-go's rule: renewDeadline > 1.2 x retryPeriod, and at least a second apart.
        return max(1.0, self.lease_duration_seconds / 7.5)

    def lease_namespace_or_own(self, own_namespace_file: str = SERVICE_ACCOUNT_NAMESPACE) -> str:
        if self.lease_namespace:
            return self.lease_namespace
        try:
            with open(own_namespace_file) as f:
                return f.read().strip() or "default"
        except OSError:
            return "default"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        return settings_from_env(cls, environ, "operator")
