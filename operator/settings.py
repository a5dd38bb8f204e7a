"""The operator's configuration: one object, read once from the environment."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Literal

from pydantic import BaseModel, Field, ValidationError, field_validator

ENV_PREFIX = "FOUNDATION_"


class SettingsError(ValueError):
    """A configuration value is wrong; the message names the variable and what to set."""


class Settings(BaseModel, frozen=True):
    """Everything the operator can be told. Environment: FOUNDATION_<FIELD> (upper case)."""

    namespaces: tuple[str, ...] = Field(
        default=(),
        description="Namespaces to watch (comma-separated); empty means cluster-wide.",
    )
    health_host: str = "0.0.0.0"
    health_port: int = Field(default=8080, ge=1, le=65535)
    metrics_port: int = Field(default=9090, ge=0, le=65535, description="0 disables metrics.")
    workers: int = Field(
        default=64, ge=1, le=512, description="Agents reconciled at the same time."
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["json", "text"] = "text"

    @field_validator("namespaces", mode="before")
    @classmethod
    def _split_namespaces(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @property
    def liveness_endpoint(self) -> str:
        return f"http://{self.health_host}:{self.health_port}/healthz"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        environ = os.environ if environ is None else environ
        raw = {
            name: environ[ENV_PREFIX + name.upper()]
            for name in cls.model_fields
            if ENV_PREFIX + name.upper() in environ
        }
        try:
            return cls.model_validate(raw)
        except ValidationError as exc:
            problems = "; ".join(
                f"{ENV_PREFIX}{'_'.join(str(p) for p in err['loc']).upper()}: {err['msg']}"
                for err in exc.errors()
            )
            raise SettingsError(f"invalid operator configuration: {problems}") from None
