"""A Workflow run's decisions, as pure functions over its spec and the steps' status.

The runner calls `decide` whenever something changed (a step finished, the spec changed, a
retry's pause ended, a person decided) and carries out what it says: which attempts to send,
which steps are Skipped or Failed before they start, maps to start and gather, approvals to
wait on or take, the outcome to record before clean-up, when to look again, and the Workflow's
phase and output. How a step's status changes is `steps`; what the status reports is `report`.
Nothing here sends, sleeps or reads a clock.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from foundation_common.status import parse_stamp
from foundation_common.workflows import refs
from foundation_common.workflows.api import (
    MAX_ITEMS,
    Outcome,
    Step,
    StepStatus,
    Verdict,
    WorkflowSpec,
)
from foundation_common.workflows.transitions import WAITING

SETTLED = ("Succeeded", "Skipped", "Failed")  # a step's phases that change no more
# Results are kept in the Workflow's status: at most this much JSON for one step, and for all of
# them together at most MAX_RESULTS_BYTES, less what the rest of the object takes beyond
# RESERVED_BYTES, so the whole object stays below etcd's 1.5 MiB request limit (200 steps of
# 4 KiB fit). Larger data belongs in an agent's state or store, with a key in the result.

MAX_RESULT_BYTES = 64 * 1024

MAX_RESULTS_BYTES = 1024 * 1024

OBJECT_LIMIT_BYTES = 1_400_000  # etcd refuses requests over 1.5 MiB; some room for encoding

RESERVED_BYTES = OBJECT_LIMIT_BYTES - MAX_RESULTS_BYTES


def results_budget(object_bytes: int) -> int:
    """What all results together may take, given the object's size without them (spec,
    metadata, the rest of the status): a large spec leaves less room."""
    return max(0, min(MAX_RESULTS_BYTES, OBJECT_LIMIT_BYTES - object_bytes))


SATISFIED = ("Succeeded", "Skipped")  # a dependency that lets its dependents start


def task_id(uid: str, step: str, attempt: int) -> str:
    """The task id of an attempt: the same after any crash, new for every attempt. A map's
    item is named `<step>.<index>`, so its ids are `<uid>.<step>.<index>.<attempt>`."""
    return f"{uid}.{step}.{attempt}"


def item_name(step: str, index: int) -> str:
    """A map item's name: a step name holds no dot, so none is a step's."""
    return f"{step}.{index}"


def is_item(name: str) -> bool:
    return "." in name


def map_of(name: str) -> str:
    return name.split(".", 1)[0]


def map_items(step: Step, workflow_input: Any, known: dict[str, Any]) -> list[Any]:
    """The list a map step runs over, or BadReference saying why there is none."""
    assert step.map is not None
    items = refs.resolve(step.map.items, workflow_input, known)
    if not isinstance(items, list):
        kind = "null" if items is None else type(items).__name__
        raise refs.BadReference(f"map.items is {kind}, not a list")
    if len(items) > MAX_ITEMS:
        raise refs.BadReference(
            f"map.items has {len(items)} items, over the {MAX_ITEMS} a map takes"
        )
    return items


def item_step(
    step: Step, index: int, item: Any, workflow_input: Any, known: dict[str, Any]
) -> Step:
    """The task of one item, as a step of its own: its input resolved (item and index in it),
    to be sent as it is; the map's target, action, retries and timeout."""
    resolved = refs.resolve(step.input, workflow_input, known, refs.Item(item, index))
    return step.model_copy(
        update={
            "name": item_name(step.name, index),
            "input": resolved,
            "map": None,
            "when": None,
            "depends_on": [],
        }
    )


def item_statuses(kept: list[StepStatus]) -> dict[str, StepStatus]:
    return {s.name: s for s in kept}


def statuses(spec: WorkflowSpec, kept: list[StepStatus]) -> dict[str, StepStatus]:
    """Each step's status (clean-up steps' too), by name, in spec order: what is kept,
    Pending for the rest."""
    by_name = {s.name: s for s in kept}
    return {
        s.name: by_name.get(s.name) or StepStatus(name=s.name) for s in [*spec.steps, *spec.on_exit]
    }


def results(steps: dict[str, StepStatus]) -> dict[str, Any]:
    return {name: s.result for name, s in steps.items() if s.phase == "Succeeded"}


@dataclass
class Dispatch:
    """An attempt to send: the step, its attempt number and id, and its resolved input."""

    step: Step
    attempt: int
    task_id: str
    input: Any


@dataclass
class Decision:
    start: list[Dispatch] = field(default_factory=list)
    skip: dict[str, str] = field(default_factory=dict)  # step -> why
    fail: dict[str, tuple[str, str]] = field(default_factory=dict)  # step -> (reason, message)
    expand: dict[str, int] = field(default_factory=dict)  # map step -> its items, starting
    gather: dict[str, list[Any]] = field(default_factory=dict)  # map step -> its result
    record: Outcome | None = None  # how the steps ended: to keep before cleaning up
    wait: dict[str, str] = field(default_factory=dict)  # approval step -> its prompt
    verdicts: dict[str, Verdict] = field(default_factory=dict)  # approval step -> to take
    expired: list[str] = field(default_factory=list)  # approvals past their timeout
    cleaned_up: tuple[bool, str, str] | None = None  # (ok, reason, message), at the very end
    wake_at: datetime | None = None  # the earliest pending retry, if any
    phase: str = "Running"
    reason: str = ""
    message: str = ""
    output: Any = None

    @property
    def finished(self) -> bool:
        return self.phase in ("Succeeded", "Failed")


def in_flight(steps: dict[str, StepStatus], items: dict[str, StepStatus]) -> int:
    """Attempts in flight: running steps (a running map is its items, a waiting approval
    none) and running items."""
    return sum(
        1
        for s in steps.values()
        if s.phase == "Running" and s.items is None and s.reason != WAITING
    ) + sum(1 for s in items.values() if s.phase == "Running")


def waiting_approvals(steps: dict[str, StepStatus]) -> list[str]:
    return [n for n, s in steps.items() if s.phase == "Running" and s.reason == WAITING]


def decide(
    spec: WorkflowSpec,
    uid: str,
    steps: dict[str, StepStatus],
    started_at: datetime,
    now: datetime,
    items: dict[str, StepStatus] | None = None,
    outcome: Outcome | None = None,
    approvals: dict[str, Verdict] | None = None,
) -> Decision:
    """What to do next: the steps' run until they end; then, with clean-up steps, the
    outcome to record (`record`), and once it is recorded (`outcome`), the clean-up."""
    items = {} if items is None else items
    if outcome is not None:
        return _clean_up(spec, uid, steps, outcome, now)
    main = {s.name: steps[s.name] for s in spec.steps}
    decision = _run(spec, uid, main, started_at, now, items, approvals or {})
    if not decision.finished or not spec.on_exit:
        return decision
    return Decision(
        phase="Running",
        reason="CleaningUp",
        message=f"{decision.message}; the clean-up steps run",
        record=Outcome(
            phase=decision.phase,  # type: ignore[arg-type]
            reason=decision.reason,
            message=decision.message,
            output=decision.output,
        ),
    )


def _run(
    spec: WorkflowSpec,
    uid: str,
    steps: dict[str, StepStatus],
    started_at: datetime,
    now: datetime,
    items: dict[str, StepStatus],
    approvals: dict[str, Verdict],
) -> Decision:
    decision = Decision()
    failed = [s for s in steps.values() if s.phase == "Failed"]
    running = in_flight(steps, items)
    if failed:
        first = failed[0]
        message = f"step {first.name} failed: {first.error or first.reason}"
        undecided = waiting_approvals(steps)
        if undecided:  # no one need decide any more
            why = f"the Workflow failed before anyone decided ({message})"
            return Decision(
                phase="Running",
                reason="Failing",
                message=message,
                fail={name: ("NotDecided", why) for name in undecided},
            )
        if running:
            # As Argo's failFast: nothing new starts, and what is in flight finishes and is
            # recorded (a running task cannot be taken back), then the Workflow is Failed.
            return Decision(
                phase="Running",
                reason="Failing",
                message=f"{message}; no new step starts, {running} in flight finishing first",
            )
        return Decision(phase="Failed", reason="StepFailed", message=message)
    if spec.timeout_seconds is not None and now - started_at > timedelta(
        seconds=spec.timeout_seconds
    ):
        message = f"the Workflow did not finish within timeoutSeconds {spec.timeout_seconds}"
        undecided = waiting_approvals(steps)
        return Decision(
            phase="Running" if undecided else "Failed",
            reason="Timeout",
            message=message,
            fail={name: ("NotDecided", f"{message}: no one decided") for name in undecided},
        )
    if all(s.phase in SATISFIED for s in steps.values()):
        try:
            output = refs.resolve(spec.output, spec.input, results(steps))
        except refs.BadReference as exc:
            return Decision(
                phase="Failed", reason="OutputUnresolved", message=f"spec.output: {exc}"
            )
        return Decision(
            phase="Succeeded",
            reason="AllStepsDone",
            message=f"{len(steps)} steps done",
            output=output,
        )
    if spec.suspend:
        return _suspended(running)
    known = results(steps)
    for step in spec.steps:
        status = steps[step.name]
        if status.phase == "Running" and step.map is not None and status.items is not None:
            _map(step, status, spec, uid, items, known, running, now, decision)
            continue
        if status.phase == "Running" and step.approval is not None:
            _approval(step, status, approvals, now, decision)
            continue
        if status.phase != "Pending" or not all(
            steps[d].phase in SATISFIED for d in step.depends_on if d in steps
        ):
            continue
        if _pausing(status, now, decision):
            continue
        try:
            if step.when is not None and not refs.truthy(
                refs.resolve(step.when, spec.input, known)
            ):
                decision.skip[step.name] = f"when {step.when.strip()} is false"
                continue
            if step.map is not None:
                decision.expand[step.name] = len(map_items(step, spec.input, known))
                continue
            if step.approval is not None:
                prompt = refs.resolve(step.approval.message, spec.input, known)
                decision.wait[step.name] = prompt if isinstance(prompt, str) else str(prompt)
                continue
            resolved = refs.resolve(step.input, spec.input, known)
        except refs.BadReference as exc:
            reason = "InvalidItems" if "map.items" in str(exc) else "MissingReference"
            decision.fail[step.name] = (reason, str(exc))
            continue
        if running + len(decision.start) >= spec.parallelism:
            continue
        attempt = status.attempts + 1
        decision.start.append(Dispatch(step, attempt, task_id(uid, step.name, attempt), resolved))
    if spec.timeout_seconds is not None:
        # Woken for the whole run's timeout too, not only at the next retry.
        deadline = started_at + timedelta(seconds=spec.timeout_seconds + 1)
        decision.wake_at = deadline if decision.wake_at is None else min(decision.wake_at, deadline)
    return decision


def _approval(
    step: Step,
    status: StepStatus,
    approvals: dict[str, Verdict],
    now: datetime,
    decision: Decision,
) -> None:
    """A waiting approval: a person's decision to take, or its timeout."""
    assert step.approval is not None
    verdict = approvals.get(step.name)
    if verdict is not None:
        decision.verdicts[step.name] = verdict
        return
    if step.approval.timeout_seconds is None or not status.started_at:
        return
    deadline = parse_stamp(status.started_at) + timedelta(seconds=step.approval.timeout_seconds)
    if now >= deadline:
        decision.expired.append(step.name)
    else:
        decision.wake_at = deadline if decision.wake_at is None else min(decision.wake_at, deadline)


def _pausing(status: StepStatus, now: datetime, decision: Decision) -> bool:
    """Whether a retry's pause still holds the step (the decision then wakes at its end)."""
    if not status.next_attempt_at or parse_stamp(status.next_attempt_at) <= now:
        return False
    at = parse_stamp(status.next_attempt_at)
    decision.wake_at = at if decision.wake_at is None else min(decision.wake_at, at)
    return True


def _suspended(running: int) -> Decision:
    return Decision(
        phase="Suspended",
        reason="Suspended",
        message=f"spec.suspend is true: no new step starts ({running} still running)"
        if running
        else "spec.suspend is true: no new step starts",
    )


def outcome_of(outcome: Outcome, steps: dict[str, StepStatus], spec: WorkflowSpec) -> dict:
    """What `{{ workflow.<path> }}` names in a clean-up step: how the steps ended."""
    return {
        "phase": outcome.phase,
        "reason": outcome.reason,
        "message": outcome.message,
        "failures": [
            {"step": s.name, "reason": s.reason, "error": s.error}
            for step in spec.steps
            if (s := steps[step.name]).phase == "Failed"
        ],
    }


def attempt_input(
    spec: WorkflowSpec, step: Step, steps: dict[str, StepStatus], outcome: Outcome | None
) -> Any:
    """A step's input for its attempt, resolved (a clean-up step's with the outcome)."""
    context = outcome_of(outcome, steps, spec) if outcome is not None else None
    return refs.resolve(step.input, spec.input, results(steps), outcome=context)


def _clean_up(
    spec: WorkflowSpec,
    uid: str,
    steps: dict[str, StepStatus],
    outcome: Outcome,
    now: datetime,
) -> Decision:
    """Once the steps have ended: the clean-up steps, as a DAG of their own (a dependency
    may have failed: they run whatever happened), then the outcome recorded, and whether the
    clean-up went well."""
    exits = {s.name: steps[s.name] for s in spec.on_exit}
    done = sum(1 for s in exits.values() if s.phase in SETTLED)
    if done == len(exits):
        failed = [s for s in exits.values() if s.phase == "Failed"]
        if failed:
            said = f"{len(failed)} of {len(exits)} failed; {failed[0].name}: "
            said += failed[0].error or failed[0].reason
            cleaned = (False, "CleanUpFailed", said)
        else:
            cleaned = (True, "CleanUpDone", f"{len(exits)} clean-up steps done")
        return Decision(
            phase=outcome.phase,
            reason=outcome.reason,
            message=outcome.message,
            output=outcome.output,
            cleaned_up=cleaned,
        )
    running = sum(1 for s in exits.values() if s.phase == "Running")
    if spec.suspend:
        return _suspended(running)
    decision = Decision(
        reason="CleaningUp",
        message=f"{outcome.message}; clean-up: {done}/{len(exits)} steps done",
    )
    context = outcome_of(outcome, steps, spec)
    known = results(steps)
    for step in spec.on_exit:
        status = exits[step.name]
        if status.phase != "Pending" or not all(
            exits[d].phase in SETTLED for d in step.depends_on if d in exits
        ):
            continue
        if _pausing(status, now, decision):
            continue
        try:
            if step.when is not None and not refs.truthy(
                refs.resolve(step.when, spec.input, known, outcome=context)
            ):
                decision.skip[step.name] = f"when {step.when.strip()} is false"
                continue
            resolved = refs.resolve(step.input, spec.input, known, outcome=context)
        except refs.BadReference as exc:
            decision.fail[step.name] = ("MissingReference", str(exc))
            continue
        if running + len(decision.start) >= spec.parallelism:
            continue
        attempt = status.attempts + 1
        decision.start.append(Dispatch(step, attempt, task_id(uid, step.name, attempt), resolved))
    return decision


def _map(
    step: Step,
    status: StepStatus,
    spec: WorkflowSpec,
    uid: str,
    items: dict[str, StepStatus],
    known: dict[str, Any],
    running: int,
    now: datetime,
    decision: Decision,
) -> None:
    """A running map: its items' attempts to start, or its end (failed, or its results)."""
    assert step.map is not None and status.items is not None
    count = status.items
    states = [items.get(item_name(step.name, i)) for i in range(count)]
    failures = [(i, s) for i, s in enumerate(states) if s is not None and s.phase == "Failed"]
    busy = sum(1 for s in states if s is not None and s.phase == "Running")
    over = len(failures) > step.map.tolerated_failures
    settled = sum(1 for s in states if s is not None and s.phase in SETTLED)
    if over and (step.map.on_item_failure == "FailFast" or settled == count):
        if busy:
            return  # in flight: they finish and are recorded first
        index, first = failures[0]
        decision.fail[step.name] = (
            "ItemsFailed",
            f"{len(failures)} of {count} items failed (tolerated {step.map.tolerated_failures});"
            f" the first, item {index}: {first.error or first.reason}",
        )
        return
    if settled == count:
        decision.gather[step.name] = [
            s.result if s is not None and s.phase == "Succeeded" else None for s in states
        ]
        return
    try:
        values = map_items(step, spec.input, known)
    except refs.BadReference as exc:
        decision.fail[step.name] = ("InvalidItems", str(exc))
        return
    if len(values) != count:
        decision.fail[step.name] = (
            "InvalidItems",
            f"map.items now has {len(values)} items, not the {count} it had when the step "
            "started; a running map's list does not change",
        )
        return
    for index in range(count):
        if busy >= step.map.parallelism or running + len(decision.start) >= spec.parallelism:
            return
        item = states[index]
        if item is not None and item.phase != "Pending":
            continue
        if item is not None and _pausing(item, now, decision):
            continue
        try:
            task = item_step(step, index, values[index], spec.input, known)
        except refs.BadReference as exc:
            decision.fail[item_name(step.name, index)] = ("MissingReference", str(exc))
            continue
        attempt = (item.attempts if item is not None else 0) + 1
        decision.start.append(Dispatch(task, attempt, task_id(uid, task.name, attempt), task.input))
        busy += 1


def result_size(result: Any) -> int:
    return len(json.dumps(result, separators=(",", ":")).encode())


def result_problem(
    step: str, result: Any, kept_bytes: int, budget: int = MAX_RESULTS_BYTES
) -> str | None:
    """Why `result` cannot be kept in the status beside `kept_bytes` of other results, with
    `budget` for all of them."""
    size = result_size(result)
    if size > MAX_RESULT_BYTES:
        return (
            f"the result of step {step} takes {size} bytes, over the {MAX_RESULT_BYTES} a step "
            "may keep in the Workflow's status; return a key to data kept elsewhere (the "
            "agent's state, a PVC) instead"
        )
    if kept_bytes + size > budget:
        return (
            f"the result of step {step} ({size} bytes) would bring the results kept in the "
            f"Workflow's status to {kept_bytes + size} bytes, over the {budget} left for them "
            f"(at most {MAX_RESULTS_BYTES}, less what the spec takes beyond "
            f"{RESERVED_BYTES}); return keys to data kept elsewhere instead"
        )
    return None


def kept_bytes(steps: dict[str, StepStatus]) -> int:
    return sum(result_size(s.result) for s in steps.values() if s.phase == "Succeeded")
