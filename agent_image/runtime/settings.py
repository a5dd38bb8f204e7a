"""The runtime's configuration, from the environment the operator gives each member pod."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator

from foundation_common import limits
from foundation_common.resources import A2A_PORT, AGENT_METRICS_PORT, AGENT_PORT, state_name
from foundation_common.settings import SettingsError, json_setting, settings_from_env

__all__ = ["Settings", "SettingsError"]


class Settings(BaseModel, frozen=True):
    """Environment: FOUNDATION_<FIELD> (upper case)."""

    agent_class: str = Field(min_length=1, description="module:Class of the agent.")
    agent_config: dict[str, Any] = Field(default_factory=dict)
    agent_name: str = "agent"
    namespace: str = "default"
    member_name: str = "agent-0"
    member: int = Field(0, ge=0)
    parked_for: str = Field(
        "",
        description="Made while the Agent sleeps (spec.warmWhileAsleep): start parked, ready,"
        " and load the state on the first call.",
    )
    state_store: Literal["ConfigMap", "Secret", "PVC", "None"] = "None"
    state_key: str = Field(
        "", description="The member's ConfigMap or Secret; default <member>-state."
    )
    state_path: str = "/var/lib/foundation/state/agent.db"
    inbox_max_queued: int = Field(1000, ge=1, le=1_000_000)
    keep_completed: int = Field(
        1000, ge=0, le=1_000_000, description="Completion records kept for deduplication."
    )
    keep_completed_seconds: float = Field(3600.0, ge=0)
    keep_completed_bytes: int = Field(limits.KEEP_COMPLETED_BYTES, ge=0)
    inbox_max_queued_bytes: int = Field(limits.MAX_QUEUED_BYTES, ge=1024)
    request_max_bytes: int = Field(limits.REQUEST_BYTES, ge=1024)
    result_max_bytes: int = Field(limits.RESULT_BYTES, ge=1024)
    json_max_depth: int = Field(limits.JSON_DEPTH, ge=8, le=512)
    max_in_flight: int = Field(limits.IN_FLIGHT, ge=1)
    group_commit: bool = True
    status_interval_seconds: float = Field(5.0, ge=0.1, description="Status report rate bound.")
    report_status: bool = Field(False, description="Report the state into the Agent status.")
    shutdown_seconds: float = Field(
        20.0, ge=0, description="How long SIGTERM waits for the task in flight."
    )
    agent_host: str = "0.0.0.0"
    agent_port: int = Field(AGENT_PORT, ge=1, le=65535)
    a2a_port: int = Field(A2A_PORT, ge=0, le=65535, description="A2A for the Agent; 0: none.")
    metrics_port: int = Field(AGENT_METRICS_PORT, ge=0, le=65535, description="0: none.")
    caller_auth: Literal["Required", "Permissive"] = Field(
        "Required",
        description="Required: a call without a token is refused (401). Permissive: it is let"
        " through as anonymous. A call with a token is verified and authorized in both.",
    )
    service_account: str = Field(
        "", description="The member's own account (its Agent's): whose forwarded calls it trusts."
    )
    auth_cache_seconds: float = Field(10.0, ge=0, le=300, description="TokenReview/SAR cache.")

    _json = field_validator("agent_config", mode="before")(json_setting)

    @property
    def limits(self) -> limits.Limits:
        return limits.Limits(self.request_max_bytes, self.json_max_depth, self.max_in_flight)

    @property
    def configmap(self) -> str:
        return self.state_key or state_name(self.member_name)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        return settings_from_env(cls, environ, "agent runtime")
