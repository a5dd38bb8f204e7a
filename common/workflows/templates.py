"""WorkflowTemplates, as pure functions: a Workflow's arguments checked against the template's
parameters, and the spec a Workflow made from a template runs (`effective`).

A Workflow that names a template takes from it the steps, clean-up steps and output, and its
`input` is the parameters' defaults, then the Workflow's own `input`, then its arguments. Its
own `parallelism` and `timeoutSeconds` win where it sets them; `suspend`, `runner` and the TTL
are always its own. The template is read once, when the Workflow starts, and kept in its status
(`status.template`): a running Workflow is not changed by a later edit of the template.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from foundation_common.workflows.api import Parameter, TemplateSpec, UsedTemplate, WorkflowSpec

JSON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "number": (int, float),
    "integer": (int,),
    "boolean": (bool,),
    "object": (dict,),
    "array": (list,),
}


def fits(parameter: Parameter, value: Any) -> bool:
    """Whether `value` is of the parameter's JSON type (a boolean is no number)."""
    if isinstance(value, bool) and parameter.type != "boolean":
        return False
    if parameter.type == "integer" and isinstance(value, float):
        return value.is_integer()
    return isinstance(value, JSON_TYPES[parameter.type])


def kind(parameter: Parameter) -> str:
    """ "a string", "an integer"."""
    return f"{'an' if parameter.type[0] in 'aeiou' else 'a'} {parameter.type}"


def describe(parameter: Parameter) -> str:
    about = f": {parameter.description}" if parameter.description else ""
    return f"{parameter.name} ({kind(parameter)}{about})"


def problems(template: str, spec: TemplateSpec, arguments: dict[str, Any]) -> list[str]:
    """What is wrong with `arguments` for the template `spec`, each naming the argument."""
    where = "spec.template.arguments"
    known = {p.name: p for p in spec.parameters}
    found = []
    for name in sorted(set(arguments) - set(known)):
        listed = ", ".join(known) or "none"
        found.append(
            f"{where}.{name}: WorkflowTemplate {template} has no parameter {name} "
            f"(its parameters: {listed})"
        )
    for parameter in spec.parameters:
        if parameter.name in arguments:
            value = arguments[parameter.name]
            if not fits(parameter, value):
                found.append(
                    f"{where}.{parameter.name}: {value!r} is not {kind(parameter)}, as "
                    f"WorkflowTemplate {template}'s parameter {describe(parameter)} must be"
                )
        elif parameter.value is None:
            found.append(
                f"{where}: missing {describe(parameter)}, which WorkflowTemplate {template} needs"
            )
        elif not fits(parameter, parameter.value):
            found.append(
                f"WorkflowTemplate {template}: the value (default) of {parameter.name} is not "
                f"{kind(parameter)}"
            )
    return found


def used(template: dict[str, Any]) -> UsedTemplate | str:
    """What a Workflow keeps of the WorkflowTemplate object it starts from, or why it cannot."""
    name = template["metadata"]["name"]
    try:
        TemplateSpec.model_validate(template.get("spec") or {})
    except ValidationError as exc:
        return f"WorkflowTemplate {name} is not valid: " + "; ".join(
            f"spec.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
    return UsedTemplate(
        name=name,
        resource_version=template["metadata"].get("resourceVersion", ""),
        spec=template.get("spec") or {},
    )


def effective(spec: WorkflowSpec, kept: UsedTemplate | None) -> WorkflowSpec:
    """The spec a Workflow runs: its own, or, with a template, the template's steps with its
    arguments (see the module's docstring)."""
    if spec.template is None or kept is None:
        return spec
    template = TemplateSpec.model_validate(kept.spec)
    defaults = {p.name: p.value for p in template.parameters if p.value is not None}
    given = spec.model_fields_set
    return spec.model_copy(
        update={
            "input": {**defaults, **spec.input, **spec.template.arguments},
            "steps": template.steps,
            "on_exit": template.on_exit,
            "output": template.output,
            "parallelism": spec.parallelism if "parallelism" in given else template.parallelism,
            "timeout_seconds": spec.timeout_seconds
            if "timeout_seconds" in given
            else template.timeout_seconds,
        }
    )
