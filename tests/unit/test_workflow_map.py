"""A map step's decisions (issue 27, point 1): its list read when it starts, a task per item
with `{{ item }}` and `{{ index }}`, its own parallelism, what item failures do, and the
fan-in of the items' results in order; and the spec rules that keep `{{ item }}` in a map."""

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from foundation_common.workflows import plan, refs, report, transitions
from foundation_common.workflows.api import StepStatus, WorkflowSpec
from foundation_operator.workflows import dag

T0 = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
NOW = T0 + timedelta(seconds=5)


def spec(items: Any = "{{ steps.plan.result.tasks }}", **map_fields: Any) -> WorkflowSpec:
    """plan -> work (a map over plan's tasks) -> report."""
    return WorkflowSpec.model_validate(
        {
            "input": {"files": ["a", "b"]},
            "steps": [
                {"name": "plan", "agent": "planner", "action": "plan"},
                {
                    "name": "work",
                    "agent": "worker",
                    "action": "do",
                    "dependsOn": ["plan"],
                    "input": {"task": "{{ item }}", "n": "{{ index }}", "tag": "t-{{ index }}"},
                    "map": {"items": items, **map_fields},
                },
                {
                    "name": "report",
                    "agent": "planner",
                    "action": "sum",
                    "dependsOn": ["work"],
                    "input": "{{ steps.work.result }}",
                },
            ],
        }
    )


def steps(work: StepStatus | None = None, tasks: Any = None) -> dict[str, StepStatus]:
    result = {"tasks": tasks if tasks is not None else ["x", "y", "z"]}
    return {
        "plan": StepStatus(name="plan", phase="Succeeded", attempts=1, result=result),
        "work": work or StepStatus(name="work"),
        "report": StepStatus(name="report"),
    }


def running(count: int) -> StepStatus:
    return StepStatus(name="work", phase="Running", items=count)


def items(*phases: str, results: list[Any] | None = None) -> dict[str, StepStatus]:
    out = {}
    for index, phase in enumerate(phases):
        if phase == "-":
            continue
        result = (results or [None] * len(phases))[index]
        out[f"work.{index}"] = StepStatus(
            name=f"work.{index}",
            phase=phase,
            attempts=0 if phase == "Pending" else 1,
            result=result,
            error="ValueError: no" if phase == "Failed" else "",
        )
    return out


def test_a_map_counts_its_items_when_it_starts_from_a_dependencys_result() -> None:
    decision = plan.decide(spec(), "u1", steps(), T0, NOW)
    assert decision.expand == {"work": 3} and not decision.start
    status = transitions.map_started(StepStatus(name="work"), 3, NOW)
    assert (status.phase, status.items, status.progress) == ("Running", 3, "0/3")


def test_each_item_is_a_task_with_its_item_and_index_and_an_id_of_its_own() -> None:
    decision = plan.decide(spec(), "u1", steps(running(3)), T0, NOW, {})
    assert [(d.step.name, d.task_id) for d in decision.start] == [
        ("work.0", "u1.work.0.1"),
        ("work.1", "u1.work.1.1"),
        ("work.2", "u1.work.2.1"),
    ]
    assert [d.input for d in decision.start] == [
        {"task": "x", "n": 0, "tag": "t-0"},
        {"task": "y", "n": 1, "tag": "t-1"},
        {"task": "z", "n": 2, "tag": "t-2"},
    ]
    first = decision.start[0].step
    assert (first.agent, first.action, first.map, first.depends_on) == ("worker", "do", None, [])


def test_an_item_holding_template_text_is_sent_as_it_is() -> None:
    tasks = [{"say": "{{ input.secret }}"}]
    decision = plan.decide(spec(), "u1", steps(running(1), tasks), T0, NOW, {})
    assert decision.start[0].input["task"] == {"say": "{{ input.secret }}"}


def test_the_maps_parallelism_and_the_workflows_both_bound_items_in_flight() -> None:
    decision = plan.decide(spec(parallelism=2), "u1", steps(running(3)), T0, NOW, items("Running"))
    assert [d.step.name for d in decision.start] == ["work.1"]
    narrow = spec(parallelism=10).model_copy(update={"parallelism": 2})
    decision = plan.decide(narrow, "u1", steps(running(3)), T0, NOW, {})
    assert [d.step.name for d in decision.start] == ["work.0", "work.1"]


def test_the_result_is_the_items_results_in_order() -> None:
    done = items("Succeeded", "Succeeded", "Succeeded", results=[10, {"k": 1}, None])
    decision = plan.decide(spec(), "u1", steps(running(3)), T0, NOW, done)
    assert decision.gather == {"work": [10, {"k": 1}, None]} and not decision.start
    finished = transitions.succeeded(running(3), [10, {"k": 1}, None], NOW)
    assert (finished.phase, finished.progress) == ("Succeeded", "3/3")


def test_an_empty_list_succeeds_with_an_empty_result() -> None:
    decision = plan.decide(spec(), "u1", steps(running(0), []), T0, NOW, {})
    assert decision.gather == {"work": []}


@pytest.mark.parametrize(
    ("policy", "tolerated", "phases", "expected"),
    [
        # Fail fast: once over the tolerance nothing new starts; those in flight finish first.
        ("FailFast", 0, ("Failed", "Running", "Pending"), "wait"),
        ("FailFast", 0, ("Failed", "Succeeded", "Pending"), "fail"),
        # Continue: every item runs, and the step fails at the end.
        ("Continue", 0, ("Failed", "Succeeded", "Pending"), "start work.2"),
        ("Continue", 0, ("Failed", "Succeeded", "Succeeded"), "fail"),
        # Tolerated: the step succeeds with null in the failed item's place.
        ("FailFast", 1, ("Failed", "Succeeded", "Succeeded"), "gather"),
        ("FailFast", 1, ("Failed", "Failed", "Pending"), "fail"),
    ],
)
def test_item_failures_fail_the_step_as_the_user_chose(
    policy: str, tolerated: int, phases: tuple[str, ...], expected: str
) -> None:
    shape = spec(onItemFailure=policy, toleratedFailures=tolerated)
    decision = plan.decide(
        shape, "u1", steps(running(3)), T0, NOW, items(*phases, results=[None, 2, 3])
    )
    if expected == "wait":
        assert not decision.start and not decision.fail and not decision.gather
    elif expected == "fail":
        reason, message = decision.fail["work"]
        assert reason == "ItemsFailed"
        assert f"(tolerated {tolerated}); the first, item 0: ValueError: no" in message
    elif expected == "gather":
        assert decision.gather == {"work": [None, 2, 3]}
    else:
        assert [d.step.name for d in decision.start] == [expected.split()[1]]


def test_a_failed_item_is_retried_as_a_step_is_with_a_new_id() -> None:
    retrying = {
        "work.0": StepStatus(
            name="work.0",
            phase="Pending",
            attempts=1,
            next_attempt_at=(NOW - timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        )
    }
    decision = plan.decide(spec(), "u1", steps(running(1), ["x"]), T0, NOW, retrying)
    assert [d.task_id for d in decision.start] == ["u1.work.0.2"]


@pytest.mark.parametrize(
    ("items_value", "tasks", "message"),
    [
        ("{{ steps.plan.result.tasks }}", {"not": "a list"}, "map.items is dict, not a list"),
        ("{{ steps.plan.result.tasks }}", list(range(5001)), "5001 items, over the 5000"),
        ("{{ steps.plan.result.missing }}", [], "has no 'missing'"),
    ],
)
def test_items_that_are_not_a_list_fail_the_step_saying_why(
    items_value: str, tasks: Any, message: str
) -> None:
    decision = plan.decide(spec(items_value), "u1", steps(tasks=tasks), T0, NOW)
    reason, said = decision.fail["work"]
    assert message in said and reason in ("InvalidItems", "MissingReference")


def test_items_may_be_given_inline_or_from_the_input() -> None:
    inline = plan.decide(spec(["p", {"q": 1}]), "u1", steps(), T0, NOW)
    assert inline.expand == {"work": 2}
    given = plan.decide(spec("{{ input.files }}"), "u1", steps(running(2)), T0, NOW, {})
    assert [d.input["task"] for d in given.start] == ["a", "b"]


def test_a_running_maps_list_may_not_change_length() -> None:
    decision = plan.decide(spec(), "u1", steps(running(2)), T0, NOW, {})
    assert decision.fail["work"][0] == "InvalidItems"
    assert "not the 2 it had when the step started" in decision.fail["work"][1]


def test_progress_counts_the_items_of_started_maps() -> None:
    done = items("Succeeded", "Failed", "Running")
    assert report.item_progress(steps(running(3)), done) == "2/3"
    assert report.map_progress("work", 3, done) == "2/3"
    assert report.item_progress(steps(), {}) == ""


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (
            {"input": "{{ item }}", "map": None},
            "spec.steps[1] (work).input: {{ item }} is known only in the input of a step with map",
        ),
        (
            {"when": "{{ index }}"},
            "spec.steps[1] (work).when: {{ index }} is known only in the input of a step with map",
        ),
        (
            {"map": {"items": "files: {{ input.files }}"}},
            "spec.steps[1] (work).map.items: a string must be exactly one reference to a list",
        ),
        (
            {"map": {"items": {"a": 1}}},
            "spec.steps[1] (work).map.items: must be a list or a reference to one, not dict",
        ),
        (
            {"map": {"items": "{{ steps.report.result }}"}},
            "spec.steps[1] (work).map.items: steps.report.result is not among the step's "
            "dependencies",
        ),
        (
            {"map": {"items": "{{ item }}"}},
            "spec.steps[1] (work).map.items: {{ item }} is known only in the input of a step "
            "with map",
        ),
    ],
)
def test_bad_maps_are_refused_naming_the_step_and_field(change: dict, problem: str) -> None:
    raw = spec().model_dump(by_alias=True, exclude_none=True)
    raw["steps"][1].update(change)
    raw["steps"][1] = {k: v for k, v in raw["steps"][1].items() if v is not None}
    found = dag.problems(WorkflowSpec.model_validate(raw))
    assert any(p.startswith(problem) for p in found), found


def test_a_good_map_has_no_problems_and_item_references_need_an_item() -> None:
    assert dag.problems(spec()) == []
    with pytest.raises(refs.BadReference, match="only the input of a step with map"):
        refs.resolve("{{ item.x }}", {}, {})
