"""The sidecar's configuration: the Agent's `spec.sidecar`, as the operator renders it into the
pod (one JSON document in FOUNDATION_SIDECAR_CONFIG); the CRD's schema is generated from it.
Defaults suit a production LLM API: a few seconds of patience, few retries, a breaker that
opens on a run of failures and comes back slowly."""

from __future__ import annotations

import ipaddress
import math
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"

# The headers of the sidecar's protocol, for the sidecar and its callers alike.
CIRCUIT_HEADER = "X-Foundation-Circuit"  # on a 503 the breaker gave: open, half_open, recovering
LIMIT_HEADER = "X-Foundation-Rate-Limited"  # on a 429 a limiter gave: agent or upstream
MEMBER_HEADER = "X-Foundation-Member"  # the member that answered, or the one to call
AFFINITY_HEADER = "X-Foundation-Affinity"  # a key (a task id) that picks the member


class Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class CircuitBreaker(Model):
    failure_threshold: int | None = Field(5, ge=1, le=10_000)
    failure_ratio: float | None = Field(None, gt=0, le=1)
    window_seconds: float = Field(10, gt=0, le=3600)
    minimum_requests: int = Field(20, ge=1, le=1_000_000)
    open_seconds: float = Field(5, gt=0, le=3600)
    max_open_seconds: float = Field(60, gt=0, le=86_400)
    half_open_max_calls: int = Field(1, ge=1, le=1000)
    recovery_seconds: float = Field(10, ge=0, le=3600)
    failure_status_codes: list[Annotated[int, Field(ge=100, le=599)]] = Field(
        default_factory=lambda: [500, 502, 503, 504],
        description="Answers that count as failures (timeouts and connection errors always do).",
    )

    @model_validator(mode="after")
    def _can_trip(self) -> CircuitBreaker:
        if self.failure_threshold is None and self.failure_ratio is None:
            raise ValueError("set failureThreshold, failureRatio or both")
        return self


class RateLimit(Model):
    requests_per_second: float = Field(gt=0, le=1_000_000)
    burst: int | None = Field(
        None,
        ge=1,
        le=1_000_000,
        description="Calls that may come at once; default one second's worth (at least 1). "
        "A burst of 1 holds the rate only if calls arrive exactly on time: the jitter of "
        "real arrivals is lost and the rate delivered falls short.",
    )
    max_wait_ms: int = Field(
        0, ge=0, le=60_000, description="Queue this long for a token before answering 429."
    )

    @property
    def tokens(self) -> int:
        return self.burst or max(1, math.ceil(self.requests_per_second))


class HealthCheck(Model):
    """An active check: a GET of `path` every `intervalSeconds`, counted by the breaker like a
    call. A failing upstream opens its circuit before callers' calls fail; an open one is
    probed by the check once `openSeconds` have passed, so it recovers without a caller's call
    being the probe."""

    path: str = Field("/", pattern=r"^/", max_length=1024)
    interval_seconds: float = Field(5, ge=0.1, le=3600)
    timeout_seconds: float = Field(2, gt=0, le=600)


class Pool(Model):
    max_connections: int = Field(100, ge=1, le=10_000)
    keepalive_seconds: float = Field(30, ge=0, le=3600)
    health_check: HealthCheck | None = Field(None, description="Off unless set.")


class ServiceRef(Model):
    """A Service in the Agent's namespace: the sidecar balances over its ready endpoints (from
    a watch, no cluster DNS or kube-proxy needed), ejecting the ones that fail, as it does for
    capabilities."""

    name: str = Field(min_length=1, max_length=63, pattern=NAME_PATTERN)
    port: int | None = Field(
        None,
        ge=1,
        le=65535,
        description="The port the Service's pods serve (its targetPort); default the "
        "Service's port named http, else its first.",
    )


class SecretKeyRef(Model):
    name: str = Field(
        min_length=1,
        max_length=253,
        pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$",
        description="A Secret in the Agent's namespace.",
    )
    key: str = Field(min_length=1, max_length=253, pattern=r"^[-._a-zA-Z0-9]+$")


class Authorization(Model):
    """A header the sidecar adds to every call to the upstream (replacing the agent's own), its
    value from a Secret: an API key reaches the sidecar's environment only, never the agent."""

    secret_key_ref: SecretKeyRef
    header: str = Field("Authorization", min_length=1, max_length=128, pattern=r"^[A-Za-z0-9-]+$")
    scheme: str = Field(
        "Bearer",
        max_length=64,
        pattern=r"^[A-Za-z0-9-]*$",
        description='Put before the secret ("Bearer <secret>"); empty: the secret alone (for '
        "headers such as x-api-key).",
    )

    allow_plain_http: bool = Field(
        False,
        description="Send the key over plain HTTP to a url outside the cluster (anyone on the"
        " way reads it). Without it, such an upstream is refused: use https.",
    )

    def value(self, secret: str) -> str:
        return f"{self.scheme} {secret}" if self.scheme else secret


def in_cluster_host(url: str) -> bool:
    """Whether plain HTTP to `url` stays on the pod or in the cluster: loopback, a Service's
    short name (no dot) or a name under `.svc`. An IP address may be anywhere: not counted."""
    host = urlsplit(url).hostname or ""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost" or "." not in host or host.endswith(".svc") or ".svc." in host


def secret_env(upstream: str) -> str:
    """The sidecar's environment variable that carries an upstream's authorization secret (the
    operator sets it from the Secret; the sidecar reads it)."""
    return "FOUNDATION_UPSTREAM_SECRET_" + upstream.upper().replace("-", "_")


class Upstream(Model):
    name: Annotated[str, Field(min_length=1, max_length=63, pattern=NAME_PATTERN)]
    url: Annotated[str | None, Field(pattern=r"^https?://[^/]+")] = Field(
        None, description="Where the upstream is; or service."
    )
    service: ServiceRef | None = Field(
        None, description="A Service of the namespace whose endpoints serve it; or url."
    )
    timeout_seconds: float = Field(30, gt=0, le=3600, description="Budget of one request.")
    retries: int = Field(2, ge=0, le=10)
    circuit_breaker: CircuitBreaker = Field(default_factory=CircuitBreaker)
    rate_limit: RateLimit | None = None
    pool: Pool = Field(default_factory=Pool)
    authorization: Authorization | None = Field(
        None, description="An API key from a Secret, added to every call by the sidecar."
    )

    @model_validator(mode="after")
    def _one_place(self) -> Upstream:
        if (self.url is None) == (self.service is None):
            raise ValueError(f"upstream {self.name}: set either url or service")
        auth = self.authorization
        plain = self.url is not None and self.url.lower().startswith("http://")
        if plain and auth and not auth.allow_plain_http and not in_cluster_host(self.url or ""):
            raise ValueError(
                f"upstream {self.name}: its API key would go in clear to {self.url}, outside the"
                " cluster; use https, or set authorization.allowPlainHttp: true to mean it"
            )
        return self


class Discovery(Model):
    """Calls to other agents by capability (`/agents/<capability>/...`)."""

    timeout_seconds: float = Field(30, gt=0, le=3600, description="Budget of one call.")
    retries: int = Field(
        2,
        ge=0,
        le=10,
        description="Other members tried after a failure (connection errors always; other "
        "failures for idempotent methods or calls with an Idempotency-Key).",
    )
    eject_after_failures: int = Field(
        3, ge=1, le=1000, description="Failures in a row that eject a member for a while."
    )
    eject_seconds: float = Field(10, gt=0, le=3600, description="First ejection's length.")
    max_eject_seconds: float = Field(
        120, gt=0, le=86_400, description="Cap of the ejection time, which doubles in a row."
    )
    failure_status_codes: list[Annotated[int, Field(ge=100, le=599)]] = Field(
        default_factory=lambda: [502, 503, 504],
        description="Answers that count as a member's failure (besides connection errors "
        "and timeouts).",
    )


class SidecarConfig(Model):
    upstreams: list[Upstream] = Field(default_factory=list, max_length=64)
    rate_limit: RateLimit | None = Field(None, description="For the agent as a whole.")
    discovery: Discovery = Field(default_factory=Discovery)

    @model_validator(mode="after")
    def _unique(self) -> SidecarConfig:
        names = [u.name for u in self.upstreams]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"upstream names must be unique: {', '.join(twice)}")
        return self
