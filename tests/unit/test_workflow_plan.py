"""The Workflow run's decisions, table-driven: what starts, what is skipped or failed, retries,
timeouts, suspension, parallelism and the output."""

from datetime import UTC, datetime, timedelta

import pytest

from foundation_common.status import stamp
from foundation_common.workflows import plan, report, transitions
from foundation_common.workflows.api import StepStatus, WorkflowSpec

T0 = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
NOW = T0 + timedelta(seconds=30)


def spec(**more) -> WorkflowSpec:
    """fetch -> (left, right) -> join: fan-out and fan-in."""
    return WorkflowSpec.model_validate(
        {
            "input": {"n": 2},
            "steps": [
                {"name": "fetch", "agent": "a", "action": "get", "input": {"n": "{{ input.n }}"}},
                {
                    "name": "left",
                    "agent": "a",
                    "action": "inc",
                    "dependsOn": ["fetch"],
                    "input": "{{ steps.fetch.result.v }}",
                },
                {
                    "name": "right",
                    "capability": "calc",
                    "action": "inc",
                    "dependsOn": ["fetch"],
                    "when": "{{ steps.fetch.result.go }}",
                },
                {"name": "join", "agent": "b", "action": "sum", "dependsOn": ["left", "right"]},
            ],
            "output": {"total": "{{ steps.join.result }}"},
            **more,
        }
    )


def state(**phases) -> dict[str, StepStatus]:
    """Step statuses; a value is a phase, or (phase, result)."""
    out = {}
    for name in ("fetch", "left", "right", "join"):
        value = phases.get(name, "Pending")
        phase, result = value if isinstance(value, tuple) else (value, None)
        out[name] = StepStatus(
            name=name, phase=phase, result=result, attempts=1 if phase != "Pending" else 0
        )
    return out


def started(decision) -> list[str]:
    return [d.step.name for d in decision.start]


@pytest.mark.parametrize(
    ("phases", "starts", "skips", "phase"),
    [
        ({}, ["fetch"], [], "Running"),  # no dependencies: starts at once
        ({"fetch": "Running"}, [], [], "Running"),
        ({"fetch": ("Succeeded", {"v": 5, "go": True})}, ["left", "right"], [], "Running"),
        ({"fetch": ("Succeeded", {"v": 5, "go": False})}, ["left"], ["right"], "Running"),
        (  # a skipped dependency lets its dependents start
            {"fetch": ("Succeeded", {"v": 5}), "left": ("Succeeded", 6), "right": "Skipped"},
            ["join"],
            [],
            "Running",
        ),
        (
            {
                "fetch": ("Succeeded", {}),
                "left": ("Succeeded", 1),
                "right": "Skipped",
                "join": ("Succeeded", 7),
            },
            [],
            [],
            "Succeeded",
        ),
    ],
)
def test_steps_start_when_their_dependencies_are_done(phases, starts, skips, phase) -> None:
    decision = plan.decide(spec(), "uid", state(**phases), T0, NOW)
    assert started(decision) == starts
    assert list(decision.skip) == skips
    assert decision.phase == phase


def test_inputs_resolve_with_types_and_attempts_get_stable_ids() -> None:
    steps = state(fetch=("Succeeded", {"v": 5, "go": True}))
    decision = plan.decide(spec(), "uid-1", steps, T0, NOW)
    left = next(d for d in decision.start if d.step.name == "left")
    assert (left.input, left.attempt, left.task_id) == (5, 1, "uid-1.left.1")
    first = plan.decide(spec(), "uid-1", state(), T0, NOW).start[0]
    assert first.input == {"n": 2}


def test_the_output_is_resolved_on_success() -> None:
    done = state(
        fetch=("Succeeded", {}), left=("Succeeded", 1), right="Skipped", join=("Succeeded", 7)
    )
    assert plan.decide(spec(), "u", done, T0, NOW).output == {"total": 7}


def test_a_reference_that_does_not_resolve_fails_that_step_naming_the_path() -> None:
    decision = plan.decide(spec(), "u", state(fetch=("Succeeded", {"go": True})), T0, NOW)
    assert decision.fail["left"][0] == "MissingReference"
    assert "steps.fetch.result has no 'v'" in decision.fail["left"][1]
    assert started(decision) == ["right"]


def test_parallelism_bounds_the_steps_in_flight() -> None:
    steps = state(fetch=("Succeeded", {"v": 1, "go": True}))
    assert started(plan.decide(spec(parallelism=1), "u", steps, T0, NOW)) == ["left"]
    steps["left"] = StepStatus(name="left", phase="Running", attempts=1)
    assert started(plan.decide(spec(parallelism=1), "u", steps, T0, NOW)) == []


def test_suspend_starts_nothing_new_and_resuming_continues() -> None:
    steps = state(fetch=("Succeeded", {"v": 1, "go": True}))
    suspended = plan.decide(spec(suspend=True), "u", steps, T0, NOW)
    assert (started(suspended), suspended.phase) == ([], "Suspended")
    assert started(plan.decide(spec(), "u", steps, T0, NOW)) == ["left", "right"]


def test_a_failed_step_fails_the_workflow_and_the_whole_run_has_a_timeout() -> None:
    steps = state(fetch="Failed")
    steps["fetch"].error = "boom"
    failed = plan.decide(spec(), "u", steps, T0, NOW)
    assert (failed.phase, failed.reason, failed.start) == ("Failed", "StepFailed", [])
    assert "step fetch failed: boom" in failed.message
    late = plan.decide(spec(timeoutSeconds=10), "u", state(fetch="Running"), T0, NOW)
    assert (late.phase, late.reason) == ("Failed", "Timeout")


def test_after_a_failure_nothing_new_starts_and_steps_in_flight_finish_first() -> None:
    steps = state(fetch=("Succeeded", {"v": 1, "go": True}), left="Failed", right="Running")
    steps["left"].error = "boom"
    failing = plan.decide(spec(), "u", steps, T0, NOW)
    assert (failing.phase, failing.reason, failing.start) == ("Running", "Failing", [])
    assert not failing.finished
    assert "step left failed: boom" in failing.message and "1 in flight" in failing.message
    steps["right"] = steps["right"].model_copy(update={"phase": "Succeeded"})
    assert plan.decide(spec(), "u", steps, T0, NOW).phase == "Failed"


@pytest.mark.parametrize(
    ("attempts", "limit", "phase", "pause"),
    [
        (1, 2, "Pending", 1.0),
        (2, 2, "Pending", 2.0),
        (3, 2, "Failed", None),
        (1, 0, "Failed", None),
    ],
)
def test_failed_attempts_retry_with_backoff_up_to_the_limit(attempts, limit, phase, pause) -> None:
    step = spec().steps[0]
    step = step.model_copy(update={"retry": step.retry.model_copy(update={"limit": limit})})
    status = StepStatus(name="fetch", phase="Running", attempts=attempts, task_id="t")
    after = transitions.attempt_failed(step, status, "TypeError: no", NOW)
    assert after.phase == phase
    if pause is not None:
        assert after.next_attempt_at == stamp(NOW + timedelta(seconds=pause))
        assert after.reason == "Retrying"
    else:
        assert after.reason == "AttemptsExhausted" and "last: TypeError: no" in after.error


def test_a_retry_waits_for_its_pause_and_then_gets_a_new_id() -> None:
    waiting = state()
    waiting["fetch"] = StepStatus(
        name="fetch", phase="Pending", attempts=1, next_attempt_at=stamp(NOW + timedelta(seconds=5))
    )
    decision = plan.decide(spec(), "u", waiting, T0, NOW)
    assert decision.start == [] and decision.wake_at == NOW + timedelta(seconds=5)
    later = plan.decide(spec(), "u", waiting, T0, NOW + timedelta(seconds=5))
    assert [(d.attempt, d.task_id) for d in later.start] == [(2, "u.fetch.2")]


def test_a_timed_out_attempt_is_retried_only_if_it_was_cancelled_while_queued() -> None:
    step = spec().steps[0]
    status = StepStatus(
        name="fetch", phase="Running", attempts=1, task_id="u.fetch.1", member="a-0"
    )
    assert transitions.attempt_timed_out(step, status, "queued", True, NOW).phase == "Pending"
    running = transitions.attempt_timed_out(step, status, "running", False, NOW)
    assert (running.phase, running.reason) == ("Failed", "Timeout")
    assert "is not sent again" in running.error


def test_recording_an_attempt_pins_its_id_and_member() -> None:
    dispatch = plan.decide(spec(), "u", state(), T0, NOW).start[0]
    sent = transitions.attempt_sent(StepStatus(name="fetch"), dispatch, "a", "a-1", NOW)
    assert (sent.phase, sent.task_id, sent.member, sent.attempts) == (
        "Running",
        "u.fetch.1",
        "a-1",
        1,
    )
    assert report.progress(state(fetch="Succeeded", left="Failed")) == "2/4"


def test_results_are_bounded_per_step_and_together() -> None:
    assert plan.result_problem("left", {"k": "v"}, 0) is None
    big = plan.result_problem("left", "y" * plan.MAX_RESULT_BYTES, 0)
    assert big and "over the 65536 a step may keep" in big
    total = plan.result_problem("last", "w" * 60_000, 17 * 60_002)
    assert total and "over the 1048576 left for them" in total
    # A large spec leaves less room: the object as a whole stays under etcd's limit.
    assert plan.results_budget(10_000) == plan.MAX_RESULTS_BYTES
    assert plan.results_budget(900_000) == plan.OBJECT_LIMIT_BYTES - 900_000
    squeezed = plan.result_problem("s", "v" * 1000, 0, plan.results_budget(1_399_500))
    assert squeezed and "over the 500 left for them" in squeezed
    # 200 steps of 4 KiB each fit.
    fits = {
        f"s{i}": StepStatus(name=f"s{i}", phase="Succeeded", result="a" * 4096) for i in range(199)
    }
    assert plan.kept_bytes(fits) == 199 * 4098
    assert plan.result_problem("s199", "a" * 4096, plan.kept_bytes(fits)) is None


def test_steps_that_finished_between_two_statuses_are_counted_once() -> None:
    before = {
        "steps": [
            {"name": "a", "phase": "Running", "attempts": 1, "startedAt": stamp(T0)},
            {"name": "b", "phase": "Succeeded", "attempts": 1},
            {"name": "c", "phase": "Failed", "attempts": 1},
        ]
    }
    after = {
        "steps": [
            {
                "name": "a",
                "phase": "Succeeded",
                "attempts": 1,
                "startedAt": stamp(T0),
                "finishedAt": stamp(T0 + timedelta(seconds=3)),
                "dispatchMs": 12,
            },
            {"name": "b", "phase": "Succeeded", "attempts": 1},  # already counted
            {"name": "c", "phase": "Pending", "attempts": 1},  # retrying: not finished
            {"name": "d", "phase": "Skipped", "attempts": 0},
        ]
    }
    assert report.newly_finished(before, after) == [
        ("a", "Succeeded", 3.0, 0.012),
        ("d", "Skipped", None, None),
    ]
    assert report.last_progress(after) == T0 + timedelta(seconds=3)
    assert report.last_progress({}) is None
