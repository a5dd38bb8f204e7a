"""Workflow references and the DAG rules, table-driven, without a cluster."""

import pytest

from foundation_common.workflows import refs
from foundation_common.workflows.api import WorkflowSpec
from foundation_operator.workflows import dag

INPUT = {"n": 3, "name": "ada", "items": [{"id": 7}, {"id": 8}]}
RESULTS = {"fetch": {"total": 12.5, "ok": True, "tags": ["a", "b"]}, "empty": None}


@pytest.mark.parametrize(
    ("value", "resolved"),
    [
        ("{{ input.n }}", 3),  # exactly one reference: the value with its type
        ("{{input.items.1.id}}", 8),  # list index, no spaces
        ("{{ input }}", INPUT),
        ("{{ steps.fetch.result.tags }}", ["a", "b"]),
        ("{{ steps.fetch.result.ok }}", True),
        ("n={{ input.n }}", "n=3"),  # inside a longer string: text
        ("{{ input.name }} has {{ steps.fetch.result.total }}", "ada has 12.5"),
        ("tags: {{ steps.fetch.result.tags }}", 'tags: ["a","b"]'),
        ({"a": ["{{ input.n }}", {"b": "x{{ input.name }}"}]}, {"a": [3, {"b": "xada"}]}),
        ("no references", "no references"),
        (42, 42),
    ],
)
def test_references_resolve_with_their_types(value, resolved) -> None:
    assert refs.resolve(value, INPUT, RESULTS) == resolved


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("{{ input.missing }}", "{{ input.missing }}"[3:-3] + ": input has no 'missing'"),
        ("{{ input.items.5.id }}", "input.items has no '5' (it is list of 2)"),
        ("{{ input.n.x }}", "input.n has no 'x' (it is int)"),
        ("{{ steps.later.result }}", "step later has no result"),
        ("{{ steps.empty.result.x }}", "steps.empty.result has no 'x' (it is null)"),
        ("{{ outputs.x }}", "is not a reference"),
        ("{{ steps.Bad.result }}", "is not a reference"),
    ],
)
def test_a_missing_path_says_which_part_is_missing(value, message) -> None:
    with pytest.raises(refs.BadReference, match=None) as error:
        refs.resolve(value, INPUT, RESULTS)
    assert message in str(error.value)


def spec(*steps, **more) -> WorkflowSpec:
    return WorkflowSpec.model_validate({"steps": list(steps), **more})


def step(name, deps=(), **fields) -> dict:
    return {"name": name, "agent": "a", "action": "do", "dependsOn": list(deps), **fields}


def test_a_valid_dag_has_no_problems() -> None:
    assert (
        dag.problems(
            spec(
                step("fetch", input={"n": "{{ input.n }}"}),
                step("left", ["fetch"], input="{{ steps.fetch.result.total }}"),
                step("right", ["fetch"], when="{{ steps.fetch.result.ok }}"),
                step("join", ["left", "right"], input=["{{ steps.fetch.result }}"]),
                output={"sum": "{{ steps.join.result }}"},
            )
        )
        == []
    )


@pytest.mark.parametrize(
    ("steps", "problem"),
    [
        (
            [step("a"), step("a")],
            "spec.steps[1].name: duplicate step name 'a' (also spec.steps[0])",
        ),
        (
            [{"name": "a", "action": "do"}],
            "spec.steps[0] (a): set exactly one of agent and capability",
        ),
        (
            [{"name": "a", "action": "do", "agent": "x", "capability": "y"}],
            "spec.steps[0] (a): set exactly one of agent and capability",
        ),
        ([step("a", ["nope"])], "spec.steps[0] (a).dependsOn: unknown step 'nope'"),
        ([step("a", ["a"])], "spec.steps[0] (a).dependsOn: a step cannot depend on itself"),
        (
            [step("a", ["c"]), step("b", ["a"]), step("c", ["b"])],
            "spec.steps: dependency cycle a -> c -> b -> a",
        ),
        (
            [step("a"), step("b", input="{{ steps.a.result }}")],
            "spec.steps[1] (b).input: steps.a.result is not among the step's dependencies; "
            "add a to its dependsOn",
        ),
        (
            [step("a"), step("b"), step("c", ["b"], when="{{ steps.a.result.ok }}")],
            "spec.steps[2] (c).when: steps.a.result.ok is not among the step's dependencies",
        ),
        (
            [step("a", input="{{ steps.zz.result }}")],
            "spec.steps[0] (a).input: steps.zz.result names no step of this Workflow",
        ),
        (
            [step("a", input="{{ steps.a.result }}")],
            "spec.steps[0] (a).input: steps.a.result is the step's own result",
        ),
        (
            [step("a", input="{{ secrets.x }}")],
            "spec.steps[0] (a).input: {{ secrets.x }} is not a reference",
        ),
        (
            [step("a", when="ok: {{ input.ok }}")],
            "spec.steps[0] (a).when: must be exactly one reference",
        ),
    ],
)
def test_bad_dags_are_refused_naming_the_step_and_field(steps, problem) -> None:
    found = dag.problems(spec(*steps))
    assert any(f.startswith(problem) for f in found), found


def test_transitive_dependencies_may_be_referenced() -> None:
    assert (
        dag.problems(
            spec(step("a"), step("b", ["a"]), step("c", ["b"], input="{{ steps.a.result }}"))
        )
        == []
    )
