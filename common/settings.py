"""Configuration from FOUNDATION_<FIELD> environment variables, for the operator, the agent
runtime and the sidecar alike: one pydantic model each, a bad value stopping the program with
a message that names the variable."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import TypeVar

from pydantic import BaseModel, ValidationError

ENV_PREFIX = "FOUNDATION_"

M = TypeVar("M", bound=BaseModel)


class SettingsError(ValueError):
    """A configuration value is wrong; the message names the variable and what to set."""


def json_setting(value: object) -> object:
    """A setting given as JSON in the environment (a string); empty means an empty object.
    For `mode="before"` field validators of settings models."""
    if isinstance(value, str):
        return json.loads(value) if value.strip() else {}
    return value


def settings_from_env(model: type[M], environ: Mapping[str, str] | None, what: str) -> M:
    """`model` from FOUNDATION_<FIELD> variables; SettingsError naming each wrong variable."""
    environ = os.environ if environ is None else environ
    raw = {
        name: environ[ENV_PREFIX + name.upper()]
        for name in model.model_fields
        if ENV_PREFIX + name.upper() in environ
    }
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{ENV_PREFIX}{'_'.join(str(p) for p in err['loc']).upper()}: {err['msg']}"
            for err in exc.errors()
        )
        raise SettingsError(f"invalid {what} configuration: {problems}") from None
