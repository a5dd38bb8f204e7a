"""What a Schedule does next (issue 27, point 5), as a pure function: the times of its cron
expression in its time zone, one Workflow per time by name, missed times as a CronJob handles
them, the concurrency policies, the history limits, suspend, and clear errors."""

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from foundation_operator.workflows.schedule import Made, ScheduleSpec, decide, workflow_name

T0 = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


def spec(**more: Any) -> ScheduleSpec:
    return ScheduleSpec.model_validate(
        {
            "schedule": "*/5 * * * *",
            "workflow": {"spec": {"steps": [{"name": "s", "agent": "a", "action": "x"}]}},
            **more,
        }
    )


def test_a_time_that_came_makes_its_workflow_named_after_the_minute() -> None:
    out = decide("nightly", spec(), T0, [], T0 + timedelta(minutes=5, seconds=2))
    assert out.create == T0 + timedelta(minutes=5) and out.taken == out.create
    assert out.next_at == T0 + timedelta(minutes=10)
    assert workflow_name("nightly", out.create) == f"nightly-{int(out.create.timestamp()) // 60}"
    quiet = decide("nightly", spec(), T0 + timedelta(minutes=5), [], T0 + timedelta(minutes=7))
    assert quiet.create is None and quiet.taken is None


def test_after_downtime_only_the_most_recent_missed_time_runs() -> None:
    out = decide("n", spec(), T0, [], T0 + timedelta(hours=3, minutes=1))
    assert out.create == T0 + timedelta(hours=3)


def test_a_time_missed_past_the_starting_deadline_is_skipped_saying_so() -> None:
    out = decide("n", spec(startingDeadlineSeconds=60), T0, [], T0 + timedelta(minutes=7))
    assert out.create is None and out.taken == T0 + timedelta(minutes=5)
    assert "missed by 120 s, more than startingDeadlineSeconds 60" in out.skipped


def test_the_time_zone_decides_when_a_day_starts() -> None:
    daily = spec(schedule="@daily", timeZone="Asia/Tokyo")
    out = decide("n", daily, T0, [], T0 + timedelta(hours=12, minutes=1))
    assert out.create == datetime(2026, 12, 4, 15, 0, tzinfo=UTC)  # midnight in Tokyo


RUNNING = [Made("n-1", T0, "Running")]


@pytest.mark.parametrize(
    ("policy", "create", "delete", "skipped"),
    [
        ("Allow", True, [], ""),
        ("Forbid", False, [], "concurrencyPolicy Forbid: n-1 still running"),
        ("Replace", True, ["n-1"], ""),
    ],
)
def test_concurrency_policies(policy: str, create: bool, delete: list, skipped: str) -> None:
    out = decide("n", spec(concurrencyPolicy=policy), T0, RUNNING, T0 + timedelta(minutes=5))
    assert (out.create is not None) == create and out.delete == delete
    assert out.skipped.startswith(skipped)


def test_finished_workflows_past_the_history_limits_are_deleted_oldest_first() -> None:
    made = [Made(f"ok-{i}", T0 + timedelta(minutes=i), "Succeeded") for i in range(5)]
    made += [Made(f"bad-{i}", T0 + timedelta(minutes=i), "Failed") for i in range(3)]
    out = decide("n", spec(), T0 + timedelta(minutes=6), made, T0 + timedelta(minutes=7))
    assert out.delete == ["ok-0", "ok-1", "bad-0", "bad-1"]


def test_suspended_it_makes_nothing_but_still_says_when_next() -> None:
    out = decide("n", spec(suspend=True), T0, [], T0 + timedelta(minutes=6))
    assert out.create is None and out.next_at == T0 + timedelta(minutes=10)


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"schedule": "61 * * * *"}, "spec.schedule: '61 * * * *' is not a cron schedule"),
        ({"schedule": "every day"}, "spec.schedule: 'every day' is not a cron schedule"),
        ({"timeZone": "Mars/Olympus"}, "spec.timeZone: 'Mars/Olympus' is not an IANA time zone"),
    ],
)
def test_a_schedule_that_cannot_run_says_why(fields: dict, problem: str) -> None:
    out = decide("n", spec(**fields), T0, [], T0 + timedelta(minutes=6))
    assert out.problem.startswith(problem) and out.create is None
