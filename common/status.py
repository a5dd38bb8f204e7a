"""Status as the operator and the Workflow runner write it: conditions as the API conventions
describe them, timestamps in their format, and merge patches Kubernetes 1.20 accepts."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

STAMP = "%Y-%m-%dT%H:%M:%SZ"


def now() -> datetime:
    return datetime.now(UTC)


def stamp(moment: datetime) -> str:
    return moment.strftime(STAMP)


def parse_stamp(text: str) -> datetime:
    return datetime.strptime(text, STAMP).replace(tzinfo=UTC)


class Condition(BaseModel):
    """One condition of a status (metav1.Condition's fields)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    type: str
    status: Literal["True", "False", "Unknown"]
    reason: str = ""
    message: str = ""
    last_transition_time: str | None = None
    observed_generation: int | None = None


def condition(
    kind: str,
    ok: bool | None,
    reason: str,
    message: str,
    generation: int,
    previous: Iterable[Condition],
    at: datetime | None = None,
) -> Condition:
    """A condition, keeping the previous one's transition time while its status holds."""
    status = "Unknown" if ok is None else ("True" if ok else "False")
    before = next((c for c in previous if c.type == kind), None)
    since = (
        before.last_transition_time
        if before and before.status == status and before.last_transition_time
        else stamp(at or now())
    )
    return Condition(
        type=kind,
        status=status,
        reason=reason,
        message=message,
        last_transition_time=since,
        observed_generation=generation,
    )


def without_empty_strings(value: Any, in_list: bool = False) -> Any:
    """A merge patch without "": Kubernetes 1.20 rejects empty strings in custom resources
    ("must be of type string: null"). In maps "" becomes null, which deletes the field; in list
    items (replaced whole) the key is dropped."""
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if v == "":
                if not in_list:
                    out[k] = None
                continue
            out[k] = without_empty_strings(v, in_list)
        return out
    if isinstance(value, list):
        return [without_empty_strings(v, in_list=True) for v in value]
    return value
