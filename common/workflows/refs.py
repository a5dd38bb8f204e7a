"""References inside a Workflow: `{{ input.<path> }}` and `{{ steps.<name>.result.<path> }}`;
in the input of a step with `map`, also `{{ item.<path> }}` (the item the task is for) and
`{{ index }}` (its place in the list, from 0); in a clean-up step (`onExit`), also
`{{ workflow.<path> }}`: how the steps ended (phase, reason, message, failures).

A path is dot-separated keys of objects and indexes of lists (`items.0.id`); it may be empty
(`{{ input }}`, `{{ steps.fetch.result }}`). A string that is exactly one reference becomes
the referenced JSON value with its type (a number stays a number); a reference inside a longer
string is substituted as text (strings as they are, anything else as compact JSON).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

# Everything between {{ and }}; what is inside is checked by `parse`.
TEMPLATE = re.compile(r"\{\{(.*?)\}\}")
STEP = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
SEGMENT = r"[A-Za-z0-9_-]+"
REFERENCE = re.compile(
    rf"^(?:(?P<input>input)|(?P<item>item)|(?P<workflow>workflow)|steps\.(?P<step>{STEP})\.result)"
    rf"(?P<path>(?:\.{SEGMENT})*)$|^(?P<index>index)$"
)
ITEM, INDEX = "item", "index"  # Reference.source of a map's item and its index
WORKFLOW = "workflow"  # Reference.source of the run's outcome, for clean-up steps


class BadReference(ValueError):
    """A reference that is malformed, or names what is not there; the message says which."""


@dataclass(frozen=True)
class Reference:
    text: str  # as written, without the braces
    step: str | None  # None: the Workflow's input, or a map's item or index (`source`)
    path: tuple[str, ...]
    source: str = "input"  # "input", "step", ITEM, INDEX or WORKFLOW

    @property
    def per_item(self) -> bool:
        return self.source in (ITEM, INDEX)

    def __str__(self) -> str:
        return self.text


def parse(inner: str) -> Reference:
    text = inner.strip()
    match = REFERENCE.fullmatch(text)
    if match is None:
        raise BadReference(
            f"{{{{ {text} }}}} is not a reference: write {{{{ input.<path> }}}}, "
            "{{ steps.<name>.result.<path> }}, in a map's input {{ item.<path> }} or "
            "{{ index }}, or in a clean-up step {{ workflow.<path> }}"
        )
    if match["index"]:
        return Reference(text, None, (), INDEX)
    path = tuple(p for p in match["path"].split(".") if p)
    source = (
        "step"
        if match["step"]
        else ITEM
        if match["item"]
        else WORKFLOW
        if match["workflow"]
        else "input"
    )
    return Reference(text, match["step"], path, source)


def references(value: Any) -> Iterator[Reference]:
    """Every reference in a JSON value (in its strings, at any depth)."""
    if isinstance(value, str):
        for found in TEMPLATE.finditer(value):
            yield parse(found[1])
    elif isinstance(value, dict):
        for item in value.values():
            yield from references(item)
    elif isinstance(value, list):
        for item in value:
            yield from references(item)


@dataclass(frozen=True)
class Item:
    """The item a map's task is for, and its index in the list."""

    value: Any
    index: int


def lookup(
    reference: Reference,
    workflow_input: Any,
    results: dict[str, Any],
    item: Item | None = None,
    outcome: Any = None,
) -> Any:
    """The value a reference names, or BadReference naming the missing part of the path."""
    if reference.per_item and item is None:
        raise BadReference(f"{reference}: only the input of a step with map has an item")
    if reference.source == WORKFLOW and outcome is None:
        raise BadReference(f"{reference}: only clean-up steps (onExit) know the outcome")
    if reference.source == INDEX:
        assert item is not None
        return item.index
    if reference.source == ITEM:
        assert item is not None
        value, where = item.value, "item"
    elif reference.source == WORKFLOW:
        value, where = outcome, "workflow"
    elif reference.step is None:
        value, where = workflow_input, "input"
    elif reference.step not in results:
        raise BadReference(
            f"{reference}: step {reference.step} has no result (it has not succeeded)"
        )
    else:
        value, where = results[reference.step], f"steps.{reference.step}.result"
    for key in reference.path:
        if isinstance(value, dict) and key in value:
            value = value[key]
        elif isinstance(value, list) and key.isdigit() and int(key) < len(value):
            value = value[int(key)]
        else:
            kind = type(value).__name__ if value is not None else "null"
            if isinstance(value, list):
                kind = f"list of {len(value)}"
            raise BadReference(f"{reference}: {where} has no {key!r} (it is {kind})")
        where = f"{where}.{key}"
    return value


def resolve(
    value: Any,
    workflow_input: Any,
    results: dict[str, Any],
    item: Item | None = None,
    outcome: Any = None,
) -> Any:
    """`value` with every reference replaced by what it names. What is put in is not read
    again: an item or a result holding `{{ ... }}` text stays as it is."""
    if isinstance(value, str):
        whole = TEMPLATE.fullmatch(value.strip()) if value.strip().startswith("{{") else None
        if whole is not None and value.strip().count("{{") == 1:
            return lookup(parse(whole[1]), workflow_input, results, item, outcome)

        def text(found: re.Match[str]) -> str:
            named = lookup(parse(found[1]), workflow_input, results, item, outcome)
            return named if isinstance(named, str) else json.dumps(named, separators=(",", ":"))

        return TEMPLATE.sub(text, value)
    if isinstance(value, dict):
        return {k: resolve(v, workflow_input, results, item, outcome) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve(v, workflow_input, results, item, outcome) for v in value]
    return value


def truthy(value: Any) -> bool:
    """JSON truthiness: false, null, 0, "" and empty lists and objects are false."""
    return bool(value)
