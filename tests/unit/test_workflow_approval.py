"""Approval steps (issue 27, point 2), without a cluster: what the plan decides while one
waits, how a decision or a timeout settles it, what people's door accepts as a decision, and
the spec rules."""

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from foundation_common.status import stamp
from foundation_common.workflows import plan, transitions
from foundation_common.workflows.api import StepStatus, Verdict, WorkflowSpec
from foundation_operator.door import approvals
from foundation_operator.workflows import dag

T0 = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
NOW = T0 + timedelta(seconds=5)
SCHEMA = {"type": "object", "properties": {"to": {"type": "string"}}, "additionalProperties": False}


def spec(**approval: Any) -> WorkflowSpec:
    return WorkflowSpec.model_validate(
        {
            "steps": [
                {"name": "draft", "agent": "a", "action": "write"},
                {
                    "name": "review",
                    "dependsOn": ["draft"],
                    "approval": {
                        "message": "send {{ steps.draft.result.title }}?",
                        "inputSchema": SCHEMA,
                        **approval,
                    },
                },
                {
                    "name": "send",
                    "agent": "a",
                    "action": "send",
                    "dependsOn": ["review"],
                    "input": "{{ steps.review.result.input.to }}",
                },
                {"name": "other", "agent": "a", "action": "slow"},
            ]
        }
    )


def steps(review: StepStatus | None = None, other: str = "Running") -> dict[str, StepStatus]:
    return {
        "draft": StepStatus(name="draft", phase="Succeeded", attempts=1, result={"title": "Hi"}),
        "review": review or StepStatus(name="review"),
        "send": StepStatus(name="send"),
        "other": StepStatus(name="other", phase=other, attempts=1),
    }


def waiting(since: datetime = T0) -> StepStatus:
    return transitions.waiting(StepStatus(name="review"), "send Hi?", since)


def verdict(decision: str = "Approved", **more: Any) -> Verdict:
    return Verdict.model_validate(
        {"step": "review", "decision": decision, "by": "alice", "at": stamp(NOW), **more}
    )


def test_an_approval_step_waits_with_its_message_and_holds_no_slot() -> None:
    decision = plan.decide(spec(), "u1", steps(), T0, NOW)
    assert decision.wait == {"review": "send Hi?"} and not decision.start
    status = waiting()
    assert (status.phase, status.reason, status.prompt) == (
        "Running",
        transitions.WAITING,
        "send Hi?",
    )
    assert plan.in_flight({"review": status}, {}) == 0  # a person, not a task, is awaited


def test_a_decision_settles_the_step_once_and_later_steps_get_its_input() -> None:
    decision = plan.decide(
        spec(), "u1", steps(waiting()), T0, NOW, approvals={"review": verdict(input={"to": "b"})}
    )
    assert decision.verdicts == {"review": verdict(input={"to": "b"})}
    done = transitions.decided(waiting(), verdict(input={"to": "b"}, message="ok"), NOW)
    assert done.phase == "Succeeded"
    assert done.result == {
        "decision": "Approved",
        "by": "alice",
        "at": stamp(NOW),
        "message": "ok",
        "input": {"to": "b"},
    }
    after = plan.decide(spec(), "u1", {**steps(done)}, T0, NOW)
    assert [d.input for d in after.start] == ["b"]


def test_a_rejection_fails_the_step_naming_who_and_why() -> None:
    rejected = transitions.decided(waiting(), verdict("Rejected", message="not now"), NOW)
    assert (rejected.phase, rejected.reason) == ("Failed", "Rejected")
    assert rejected.error == "rejected by alice: not now"
    assert rejected.result["decision"] == "Rejected"


@pytest.mark.parametrize(
    ("on_timeout", "decision"), [("Reject", "Rejected"), ("Approve", "Approved")]
)
def test_the_timeout_takes_the_decision_it_names(on_timeout: str, decision: str) -> None:
    shape = spec(timeoutSeconds=60, onTimeout=on_timeout)
    early = plan.decide(shape, "u1", steps(waiting()), T0, T0 + timedelta(seconds=30))
    assert not early.expired and early.wake_at == T0 + timedelta(seconds=60)
    late = plan.decide(shape, "u1", steps(waiting()), T0, T0 + timedelta(seconds=61))
    assert late.expired == ["review"]
    taken = transitions.expiry(shape.steps[1], NOW)
    assert (taken.decision, taken.by) == (decision, "timeout")


def test_a_failure_elsewhere_ends_the_wait_nobody_need_decide() -> None:
    broken = steps(waiting(), other="Failed")
    decision = plan.decide(spec(), "u1", broken, T0, NOW)
    reason, message = decision.fail["review"]
    assert reason == "NotDecided" and "before anyone decided" in message


def workflow(review: dict | None = None, approvals: list | None = None) -> dict:
    status = {"steps": [review]} if review else {"steps": []}
    if approvals:
        status["approvals"] = approvals
    return {
        "metadata": {"name": "w", "resourceVersion": "7"},
        "spec": spec().model_dump(by_alias=True, exclude_none=True),
        "status": status,
    }


WAITING = waiting().model_dump(by_alias=True, exclude_none=True)


@pytest.mark.parametrize(
    ("asked", "state", "expected"),
    [
        ({"step": "review", "decision": "approve", "input": {"to": "b"}}, WAITING, "Approved"),
        ({"step": "review", "decision": "reject", "message": "no"}, WAITING, "Rejected"),
        ({"step": "nope", "decision": "approve"}, WAITING, (404, "its approval steps: review")),
        ({"step": "draft", "decision": "approve"}, WAITING, (404, "no approval step 'draft'")),
        ({"step": "review", "decision": "approve"}, None, (409, "is not waiting for a decision")),
        (
            {"step": "review", "decision": "approve", "input": {"to": 5}},
            WAITING,
            (422, "input does not fit step review's inputSchema: to: 5 is not of type 'string'"),
        ),
    ],
)
def test_the_door_records_a_decision_only_for_a_waiting_step_and_fitting_input(
    asked: dict, state: dict | None, expected: Any
) -> None:
    found = approvals.verdict_for(workflow(state), asked, "alice", NOW)
    if isinstance(expected, str):
        assert isinstance(found, Verdict)
        assert (found.decision, found.by, found.at) == (expected, "alice", stamp(NOW))
    else:
        assert not isinstance(found, Verdict)
        assert found[0] == expected[0] and expected[1] in found[1], found


def test_a_second_decision_is_refused_naming_the_first() -> None:
    first = verdict("Rejected").model_dump()
    found = approvals.verdict_for(
        workflow(WAITING, [first]), {"step": "review", "decision": "approve"}, "bob", NOW
    )
    assert found[0] == 409 and "was rejected already, by alice" in found[1]


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"[1]", "a JSON object"),
        (b'{"step": "review", "decision": "maybe"}', "decision must be approve or reject"),
        (b'{"step": "review", "decision": "reject", "input": {}}', "a rejection takes no input"),
        (b'{"step": "review", "decision": "approve", "why": 1}', "unknown fields why"),
    ],
)
def test_a_malformed_decision_is_refused_saying_what_is_wrong(body: bytes, problem: str) -> None:
    found = approvals.request_of(body)
    assert isinstance(found, str) and problem in found


@pytest.mark.parametrize(
    ("review", "problem"),
    [
        (
            {"name": "review", "agent": "a", "approval": {"message": "ok?"}},
            "spec.steps[0] (review): an approval step sets no agent",
        ),
        (
            {"name": "review", "approval": {"message": "ok?", "inputSchema": {"type": 5}}},
            "spec.steps[0] (review).approval.inputSchema: not a JSON schema",
        ),
        ({"name": "review", "agent": "a"}, "spec.steps[0] (review): set action"),
        (
            {"name": "review", "approval": {"message": "{{ steps.later.result }}"}},
            "spec.steps[0] (review).approval.message: steps.later.result is not among",
        ),
    ],
)
def test_bad_approval_steps_are_refused_naming_them(review: dict, problem: str) -> None:
    raw = {"steps": [review, {"name": "later", "agent": "a", "action": "x"}]}
    found = dag.problems(WorkflowSpec.model_validate(raw))
    assert any(p.startswith(problem) for p in found), found
