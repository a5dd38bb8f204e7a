"""Clean-up steps (`onExit`, issue 27 point 3): once the steps have ended, whatever the
outcome, the outcome is recorded, then the clean-up steps run (a DAG of their own) with the
outcome to reference; their failures are reported and never change the outcome."""

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from foundation_common.workflows import plan
from foundation_common.workflows.api import Outcome, StepStatus, WorkflowSpec
from foundation_operator.workflows import dag

T0 = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
NOW = T0 + timedelta(seconds=5)


def spec(**more: Any) -> WorkflowSpec:
    return WorkflowSpec.model_validate(
        {
            "steps": [{"name": "work", "agent": "a", "action": "do"}],
            "output": "{{ steps.work.result }}",
            "onExit": [
                {
                    "name": "notify",
                    "agent": "n",
                    "action": "send",
                    "input": {
                        "phase": "{{ workflow.phase }}",
                        "text": "{{ workflow.reason }}: {{ workflow.message }}",
                        "failures": "{{ workflow.failures }}",
                    },
                },
                {
                    "name": "release",
                    "agent": "n",
                    "action": "release",
                    "dependsOn": ["notify"],
                    "when": "{{ workflow.failures }}",
                },
            ],
            **more,
        }
    )


def state(work: str, notify: str = "Pending", release: str = "Pending") -> dict[str, StepStatus]:
    return {
        "work": StepStatus(
            name="work",
            phase=work,
            attempts=1,
            result=7 if work == "Succeeded" else None,
            reason="AttemptsExhausted" if work == "Failed" else "",
            error="ValueError: no" if work == "Failed" else "",
        ),
        "notify": StepStatus(name="notify", phase=notify, attempts=int(notify != "Pending")),
        "release": StepStatus(name="release", phase=release, attempts=int(release != "Pending")),
    }


@pytest.mark.parametrize(
    ("work", "phase", "reason"),
    [("Succeeded", "Succeeded", "AllStepsDone"), ("Failed", "Failed", "StepFailed")],
)
def test_the_outcome_is_recorded_before_any_clean_up_step_starts(
    work: str, phase: str, reason: str
) -> None:
    decision = plan.decide(spec(), "u1", state(work), T0, NOW)
    assert not decision.finished and not decision.start
    assert decision.record is not None
    assert (decision.record.phase, decision.record.reason) == (phase, reason)
    assert decision.record.output == (7 if work == "Succeeded" else None)


def test_clean_up_steps_reference_the_outcome_and_run_as_a_dag_of_their_own() -> None:
    outcome = Outcome(phase="Failed", reason="StepFailed", message="step work failed: no")
    decision = plan.decide(spec(), "u1", state("Failed"), T0, NOW, outcome=outcome)
    assert [d.step.name for d in decision.start] == ["notify"]
    assert decision.start[0].task_id == "u1.notify.1"
    assert decision.start[0].input == {
        "phase": "Failed",
        "text": "StepFailed: step work failed: no",
        "failures": [{"step": "work", "reason": "AttemptsExhausted", "error": "ValueError: no"}],
    }
    assert (decision.phase, decision.reason) == ("Running", "CleaningUp")
    # A clean-up step whose dependency failed still runs: clean-up always does.
    after = plan.decide(spec(), "u1", state("Failed", "Failed"), T0, NOW, outcome=outcome)
    assert [d.step.name for d in after.start] == ["release"]


def test_a_when_on_the_outcome_skips_a_clean_up_step() -> None:
    outcome = Outcome(phase="Succeeded", reason="AllStepsDone", output=7)
    decision = plan.decide(spec(), "u1", state("Succeeded", "Succeeded"), T0, NOW, outcome=outcome)
    assert decision.skip == {"release": "when {{ workflow.failures }} is false"}


@pytest.mark.parametrize(
    ("notify", "cleaned"),
    [
        ("Succeeded", (True, "CleanUpDone", "2 clean-up steps done")),
        ("Failed", (False, "CleanUpFailed", "1 of 2 failed; notify: ConnectionError")),
    ],
)
def test_the_outcome_stands_whatever_the_clean_up_does(notify: str, cleaned: tuple) -> None:
    outcome = Outcome(phase="Succeeded", reason="AllStepsDone", message="1 steps done", output=7)
    steps = state("Succeeded", notify, "Skipped")
    if notify == "Failed":
        steps["notify"] = steps["notify"].model_copy(update={"error": "ConnectionError"})
    decision = plan.decide(spec(), "u1", steps, T0, NOW, outcome=outcome)
    assert decision.finished
    assert (decision.phase, decision.reason, decision.output) == ("Succeeded", "AllStepsDone", 7)
    assert decision.cleaned_up == cleaned


def test_the_runs_timeout_is_an_outcome_and_clean_up_still_runs() -> None:
    timed = spec(timeoutSeconds=1)
    steps = state("Running")
    decision = plan.decide(timed, "u1", steps, T0, NOW)
    assert decision.record is not None and decision.record.reason == "Timeout"
    later = plan.decide(timed, "u1", steps, T0, NOW, outcome=decision.record)
    assert [d.step.name for d in later.start] == ["notify"]


def test_without_clean_up_steps_the_run_ends_as_before() -> None:
    plain = spec(onExit=[])
    decision = plan.decide(plain, "u1", state("Succeeded"), T0, NOW)
    assert decision.finished and decision.record is None and decision.cleaned_up is None


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (
            {"steps": [{"name": "work", "agent": "a", "action": "do", "input": "{{ workflow }}"}]},
            "spec.steps[0] (work).input: {{ workflow }} is known only in clean-up steps",
        ),
        ({"output": "{{ workflow.phase }}"}, "spec.output: {{ workflow.phase }} is known only"),
        (
            {"onExit": [{"name": "work", "agent": "n", "action": "x"}]},
            "spec.onExit[0].name: 'work' is also the name of a step",
        ),
        (
            {"onExit": [{"name": "tidy", "agent": "n", "action": "x", "dependsOn": ["work"]}]},
            "spec.onExit[0] (tidy).dependsOn: unknown step 'work' (a clean-up step depends on "
            "clean-up steps only)",
        ),
        (
            {"onExit": [{"name": "tidy", "agent": "n", "action": "x", "map": {"items": [1]}}]},
            "spec.onExit[0] (tidy).map: not in onExit",
        ),
    ],
)
def test_bad_clean_up_steps_are_refused_naming_them(change: dict, problem: str) -> None:
    raw = spec().model_dump(by_alias=True, exclude_none=True)
    raw.update(change)
    found = dag.problems(WorkflowSpec.model_validate(raw))
    assert any(p.startswith(problem) for p in found), found


def test_clean_up_steps_may_reference_any_steps_result() -> None:
    raw = spec().model_dump(by_alias=True, exclude_none=True)
    raw["onExit"][0]["input"] = {"result": "{{ steps.work.result }}"}
    assert dag.problems(WorkflowSpec.model_validate(raw)) == []
