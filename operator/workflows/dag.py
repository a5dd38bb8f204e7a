"""The rules of a Workflow's steps that a schema cannot express, as one pure check.

`problems(spec)` lists, each naming the step and the field: duplicate step names, both or
neither of agent/capability, unknown dependencies, a dependency cycle, malformed references,
references (in a step's input, `when` or `map.items`) to a step that is not among its
transitive dependencies, whose result could not exist yet when the step starts, `{{ item }}`
or `{{ index }}` outside a map's input, and a map's items that are not a list. A Workflow with
any of these is Failed with reason InvalidSpec, and no runner is started.
"""

from __future__ import annotations

from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from foundation_common.workflows import refs
from foundation_common.workflows.api import Step, WorkflowSpec


def field_of(index: int, step: Step, name: str, where: str = "spec.steps") -> str:
    return f"{where}[{index}] ({step.name}).{name}"


def dependencies(steps: list[Step]) -> dict[str, set[str]]:
    """Each step's transitive dependencies (unknown names ignored; cycles terminate)."""
    direct = {s.name: set(s.depends_on) for s in steps}
    closure: dict[str, set[str]] = {}
    for name in direct:
        seen: set[str] = set()
        todo = list(direct[name])
        while todo:
            dep = todo.pop()
            if dep in seen or dep not in direct:
                continue
            seen.add(dep)
            todo.extend(direct[dep])
        closure[name] = seen
    return closure


def cycle(steps: list[Step]) -> list[str] | None:
    """One dependency cycle as a path of names (first == last), if there is one."""
    direct = {s.name: [d for d in s.depends_on] for s in steps}
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(name: str) -> list[str] | None:
        state[name] = 1
        path.append(name)
        for dep in direct.get(name, []):
            if dep not in direct:
                continue
            if state.get(dep) == 1:
                return [*path[path.index(dep) :], dep]
            if state.get(dep) is None:
                found = visit(dep)
                if found:
                    return found
        path.pop()
        state[name] = 2
        return None

    for name in direct:
        if state.get(name) is None:
            found = visit(name)
            if found:
                return found
    return None


def reference_problems(
    where: str,
    value: Any,
    allowed: set[str],
    names: set[str],
    self_name: str | None,
    per_item: bool = False,
    outcome: bool = False,
) -> list[str]:
    found = []
    try:
        named = list(refs.references(value))
    except refs.BadReference as exc:
        return [f"{where}: {exc}"]
    for reference in named:
        if reference.per_item and not per_item:
            found.append(
                f"{where}: {{{{ {reference} }}}} is known only in the input of a step with map"
            )
            continue
        if reference.source == refs.WORKFLOW and not outcome:
            found.append(f"{where}: {{{{ {reference} }}}} is known only in clean-up steps (onExit)")
            continue
        if reference.step is None:
            continue
        if reference.step not in names:
            found.append(f"{where}: {reference} names no step of this Workflow")
        elif reference.step == self_name:
            found.append(f"{where}: {reference} is the step's own result")
        elif reference.step not in allowed:
            found.append(
                f"{where}: {reference} is not among the step's dependencies; add "
                f"{reference.step} to its dependsOn"
            )
    return found


def map_problems(where: str, step: Step, allowed: set[str], known: set[str]) -> list[str]:
    """A map's items: a list (which may hold references), or exactly one reference to one."""
    assert step.map is not None
    items = step.map.items
    if isinstance(items, str):
        if refs.TEMPLATE.fullmatch(items.strip()) is None:
            return [
                f"{where}: a string must be exactly one reference to a list, like "
                "{{ steps.plan.result.tasks }} or {{ input.files }}"
            ]
    elif not isinstance(items, list):
        kind = "null" if items is None else type(items).__name__
        return [f"{where}: must be a list or a reference to one, not {kind}"]
    return reference_problems(where, items, allowed, known, step.name)


def approval_problems(where: str, step: Step) -> list[str]:
    """An approval step waits for a person: no task, and an input schema that is one."""
    assert step.approval is not None
    found = [
        f"{where}: an approval step sets no {name}"
        for name, value in (
            ("agent", step.agent),
            ("capability", step.capability),
            ("action", step.action),
            ("input", step.input),
            ("map", step.map),
        )
        if value is not None
    ]
    if step.approval.input_schema is not None:
        try:
            Draft202012Validator.check_schema(step.approval.input_schema)
        except SchemaError as exc:
            found.append(f"{where}.approval.inputSchema: not a JSON schema: {exc.message}")
    return found


def problems(spec: WorkflowSpec) -> list[str]:
    main = [s.name for s in spec.steps]
    found = dag_problems(spec.steps, "spec.steps", set())
    found += reference_problems("spec.output", spec.output, set(main), set(main), None)
    if spec.on_exit:
        # Clean-up steps: a DAG of their own, after every step has ended; they may name any
        # step's result (a step that did not succeed has none: that reference fails).
        for index, step in enumerate(spec.on_exit):
            if step.name in main:
                found.append(f"spec.onExit[{index}].name: {step.name!r} is also the name of a step")
            if step.map is not None:
                found.append(f"{field_of(index, step, 'map', 'spec.onExit')}: not in onExit")
        found += dag_problems(spec.on_exit, "spec.onExit", set(main))
    return found


def dag_problems(steps: list[Step], where: str, before: set[str]) -> list[str]:
    """The problems of one DAG of steps (`where` names it in messages); `before` names steps
    that have all ended when these start (a clean-up step's may reference any of them)."""
    found: list[str] = []
    names = [s.name for s in steps]
    first_at: dict[str, int] = {}
    for index, step in enumerate(steps):
        if step.name in first_at:
            found.append(
                f"{where}[{index}].name: duplicate step name {step.name!r} (also "
                f"{where}[{first_at[step.name]}])"
            )
        else:
            first_at[step.name] = index
        if step.approval is not None:
            found += approval_problems(f"{where}[{index}] ({step.name})", step)
        elif (step.agent is None) == (step.capability is None):
            found.append(f"{where}[{index}] ({step.name}): set exactly one of agent and capability")
        elif step.action is None:
            found.append(f"{where}[{index}] ({step.name}): set action (the task's)")
        for dep in step.depends_on:
            if dep not in first_at and dep not in names:
                found.append(
                    f"{field_of(index, step, 'dependsOn', where)}: unknown step {dep!r}"
                    + (" (a clean-up step depends on clean-up steps only)" if dep in before else "")
                )
            elif dep == step.name:
                found.append(
                    f"{field_of(index, step, 'dependsOn', where)}: a step cannot depend on itself"
                )
    loop = cycle(steps)
    if loop and len(loop) > 2:
        found.append(f"{where}: dependency cycle {' -> '.join(loop)}")
    closure = dependencies(steps)
    known = set(names) | before
    outcome = bool(before)
    for index, step in enumerate(steps):
        allowed = closure.get(step.name, set()) | before
        found += reference_problems(
            field_of(index, step, "input", where),
            step.input,
            allowed,
            known,
            step.name,
            per_item=step.map is not None,
            outcome=outcome,
        )
        if step.map is not None:
            found += map_problems(field_of(index, step, "map.items", where), step, allowed, known)
        if step.approval is not None:
            found += reference_problems(
                field_of(index, step, "approval.message", where),
                step.approval.message,
                allowed,
                known,
                step.name,
                outcome=outcome,
            )
        if step.when is not None:
            found += reference_problems(
                field_of(index, step, "when", where),
                step.when,
                allowed,
                known,
                step.name,
                outcome=outcome,
            )
            if refs.TEMPLATE.fullmatch(step.when.strip()) is None:
                found.append(
                    f"{field_of(index, step, 'when', where)}: must be exactly one reference, "
                    "like {{ steps.check.result.ok }}"
                )
    return found
