"""The Agent supervisor's decisions, as pure functions over what it observed.

Given an Agent's typed view, its last status and its member pods as the watches delivered
them, these say which restarts happened, whether the restart intensity is exceeded, which
members to stop (the OTP strategy's siblings, or all on Stop), which pods to delete and create
(scaling, failed pods, the rolling order) and what the status is. No API calls and no clock of
their own: `agents.controller` applies what they decide.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import ValidationError

from foundation_common.status import Condition, condition, parse_stamp, stamp
from foundation_operator.agents import objects, pods
from foundation_operator.agents.api import (
    AgentStatus,
    AgentView,
    LastExit,
    MemberStatus,
    Supervision,
)

Obj = dict[str, Any]
# Status fields the members' runtimes write; the supervisor reads them and never writes them.
RUNTIME_FIELDS = ("state", "memberStates")


# -- member pods, as observed --------------------------------------------------------------


def restart_count(pod: Obj) -> int:
    """Restarts as supervision counts them: each container's restarts, plus one for a container
    that is down now after an exit (crashed, waiting out the kubelet's back-off). A crash counts
    when it happens, not 10 s, 20 s, 40 s... later when a stock kubelet starts it again."""
    # Being deleted: a stop asked for, not a crash.
    stopping = bool((pod.get("metadata") or {}).get("deletionTimestamp"))
    total = 0
    for status in pod.get("status", {}).get("containerStatuses") or []:
        total += status.get("restartCount", 0)
        state = status.get("state") or {}
        backing_off = (state.get("waiting") or {}).get("reason") == "CrashLoopBackOff"
        if ("terminated" in state or backing_off) and not stopping:
            total += 1  # (starting again, the kubelet has counted it in restartCount)
    return total


def pod_ready(pod: Obj) -> bool:
    if pod["metadata"].get("deletionTimestamp"):
        return False
    return any(
        c["type"] == "Ready" and c["status"] == "True"
        for c in pod.get("status", {}).get("conditions") or []
    )


def going(pod: Obj) -> bool:
    return bool(pod["metadata"].get("deletionTimestamp"))


def last_exit(pod: Obj) -> LastExit | None:
    for status in pod.get("status", {}).get("containerStatuses") or []:
        terminated = (status.get("lastState") or {}).get("terminated") or (
            status.get("state") or {}
        ).get("terminated")
        if terminated:
            return LastExit(
                exit_code=terminated.get("exitCode"),
                reason=terminated.get("reason", ""),
                finished_at=terminated.get("finishedAt"),
            )
    return None


def ordinal_of(pod: Obj) -> int:
    try:
        return int(pod["metadata"]["labels"][objects.MEMBER_LABEL])
    except (KeyError, ValueError):
        return -1


def template_of(pod: Obj) -> str:
    return pod["metadata"].get("annotations", {}).get(objects.TEMPLATE_HASH, "")


# -- the last status -----------------------------------------------------------------------


def parse_status(status: Obj | None) -> AgentStatus:
    """The supervisor's own part of a status; a status it cannot read counts as none."""
    mine = {k: v for k, v in (status or {}).items() if k not in RUNTIME_FIELDS}
    try:
        return AgentStatus.model_validate(mine)
    except ValidationError:
        return AgentStatus()


def dump_status(status: AgentStatus) -> Obj:
    return status.model_dump(by_alias=True, exclude_none=True, exclude={"state", "member_states"})


# -- restarts and intensity ------------------------------------------------------------------


@dataclass(frozen=True)
class Restart:
    member: str
    ordinal: int
    at: datetime
    why: str


def restart_of(pod: Obj, why: str, at: datetime) -> Restart:
    """A restart seen by observation: the member's pod deleted from under us, or failed."""
    return Restart(pod["metadata"]["name"], ordinal_of(pod), at, why)


def container_restarts(
    members: dict[str, Obj],
    baseline: dict[str, int],
    previous: list[MemberStatus],
    at: datetime,
) -> tuple[list[Restart], dict[str, int]]:
    """Container restarts since the last look, and the new baseline (pod uid -> restarts).

    A pod first seen (a new pod, or after an operator restart) starts from what the status
    last reported for it, so restarts counted before are not counted again."""
    reported = {m.name: m for m in previous}
    counted: list[Restart] = []
    new_baseline = dict(baseline)
    for name, pod in members.items():
        uid, count = pod["metadata"]["uid"], restart_count(pod)
        if uid not in new_baseline:
            before = reported.get(name)
            known = before.restarts if before and before.pod == name else 0
            new_baseline[uid] = min(known, count)
        # Never back: a crash seen while the container is down is the same crash once the
        # kubelet counts its restart.
        delta = max(0, count - new_baseline[uid])
        new_baseline[uid] = max(count, new_baseline[uid])
        counted += [Restart(name, ordinal_of(pod), at, "its container restarted")] * delta
    return counted, new_baseline


def sibling_of(ordinal: int, failed: int, strategy: str) -> bool:
    """Whether member `ordinal` restarts with the failed member `failed` under `strategy`."""
    if ordinal == failed or strategy == "OneForOne":
        return False
    return strategy == "OneForAll" or ordinal > failed


def exhaustion_message(
    restarts: list[Restart], members: dict[str, Obj], count: int, sup: Supervision
) -> str:
    """Why an Agent failed: the member that restarted last, its last exit, what to do."""
    last = restarts[-1] if restarts else None
    exit_info = last_exit(members[last.member]) if last and last.member in members else None
    if exit_info:
        exit_text = f"last exit code {exit_info.exit_code} ({exit_info.reason})"
    else:
        exit_text = last.why if last else "unknown"
    return (
        f"member {last.member if last else 'a member'} restarted {count} times within "
        f"{sup.period_seconds}s (maxRestarts {sup.max_restarts}); {exit_text}. Change the spec "
        f"or set the {objects.RESTARTED_AT} annotation to start it again"
    )


@dataclass
class Supervised:
    """What supervision decided this pass."""

    restarts: list[Restart]  # counted this pass
    recent: list[datetime]  # restarts inside the intensity window
    total: int
    failed: bool
    exhausted: str  # set when the intensity was exceeded in this pass: the reason
    stop: list[Obj]  # members to stop now
    condition: Condition
    restarted_at: str  # the restartedAt annotation acted on


def supervise(
    view: AgentView,
    status: AgentStatus,
    members: dict[str, Obj],
    restarts: list[Restart],
    at: datetime,
) -> Supervised:
    """Restart intensity and the OTP strategy over the restarts counted this pass."""
    sup = view.spec.supervision
    # A spec change or the restartedAt annotation starts a failed Agent afresh.
    restarted_at = view.annotations.get(objects.RESTARTED_AT, "")
    fresh = (
        status.observed_generation != view.generation
        or status.observed_restarted_at != restarted_at
    )
    failed = (
        status.phase == "Failed"
        and not fresh
        and any(c.reason == "RestartIntensityExceeded" for c in status.conditions)
    )
    window = timedelta(seconds=sup.period_seconds)
    kept = (
        []
        if fresh and status.phase == "Failed"
        else [parse_stamp(t) for t in status.recent_restarts]
    )
    recent = [t for t in kept + [r.at for r in restarts] if at - t <= window]
    total = status.restarts + len(restarts)

    exhausted = ""
    if not failed and len(recent) > sup.max_restarts:
        failed = True
        exhausted = exhaustion_message(restarts, members, len(recent), sup)

    if failed:
        before = next((c.message for c in status.conditions if c.type == "Supervised"), "")
        return Supervised(
            restarts=restarts,
            recent=recent,
            total=total,
            failed=True,
            exhausted=exhausted,
            stop=[p for p in members.values() if not going(p)]
            if sup.on_exhausted == "Stop"
            else [],
            condition=condition(
                "Supervised",
                False,
                "RestartIntensityExceeded",
                exhausted or before,
                view.generation,
                status.conditions,
                at,
            ),
            restarted_at=restarted_at,
        )
    siblings = [
        pod
        for pod in members.values()
        if not going(pod)
        and any(sibling_of(ordinal_of(pod), r.ordinal, sup.strategy) for r in restarts)
    ]
    return Supervised(
        restarts=restarts,
        recent=recent,
        total=total,
        failed=False,
        exhausted="",
        stop=siblings,
        condition=condition(
            "Supervised",
            True,
            "WithinIntensity",
            f"{len(recent)} restarts in the last {sup.period_seconds}s (max {sup.max_restarts})",
            view.generation,
            status.conditions,
            at,
        ),
        restarted_at=restarted_at,
    )


# -- members: scaling, replacement, rolling order ------------------------------------------


@dataclass
class Convergence:
    """The pod changes that bring the members to the spec, in the order to make them."""

    scale_down: list[Obj] = field(default_factory=list)  # highest ordinals first
    replace: list[Obj] = field(default_factory=list)  # failed pods (evicted): deleted now
    create: list[int] = field(default_factory=list)  # ordinals without a pod
    roll: Obj | None = None  # the one outdated member to replace next
    # spec.warmWhileAsleep: the sleep the pods created are parked for ("": none).
    parked_for: str = ""
    # spec.warmSpares: spares a scale-up makes members (instead of creating their pods),
    # ordinals to make a spare for, and spares no longer wanted (or outdated, or failed).
    claim: list[Obj] = field(default_factory=list)
    spares: list[int] = field(default_factory=list)
    drop_spares: list[Obj] = field(default_factory=list)


def parked_for(pod: Obj) -> str:
    return pod["metadata"].get("annotations", {}).get(objects.PARKED_FOR, "")


def converge(
    view: AgentView,
    members: dict[str, Obj],
    asleep_since: str = "",
    spares: dict[str, Obj] | None = None,
) -> Convergence:
    """Suspended, or asleep: no member runs, except that an Agent asleep with
    spec.warmWhileAsleep keeps a pod for each member, parked (made after the sleep began, so
    it holds no state: one that served before it is replaced). Awake, spec.warmSpares keeps
    spares for the next ordinals, and a member to come takes its spare if there is one."""
    want_hash = pods.template_hash(view)
    warm = bool(asleep_since) and view.spec.warm_while_asleep and not view.spec.suspend
    replicas = 0 if view.spec.suspend or (asleep_since and not warm) else view.spec.replicas
    plan = Convergence(parked_for=asleep_since if warm else "")
    by_ordinal = {ordinal_of(p): p for p in members.values()}
    for ordinal in sorted((o for o in by_ordinal if o >= replicas or o < 0), reverse=True):
        pod = by_ordinal.pop(ordinal)
        if not going(pod):
            plan.scale_down.append(pod)
    if warm:
        for _, pod in sorted(by_ordinal.items(), reverse=True):
            if parked_for(pod) != asleep_since and not going(pod):
                plan.scale_down.append(pod)
    for ordinal in range(replicas):
        pod = by_ordinal.get(ordinal)
        if pod is None:
            plan.create.append(ordinal)
        elif pod.get("status", {}).get("phase") in ("Failed", "Succeeded") and not going(pod):
            plan.replace.append(pod)
    # A new template rolls out one member at a time, once all the others are ready.
    outdated = [p for _, p in sorted(by_ordinal.items()) if template_of(p) != want_hash]
    settled = len(by_ordinal) >= replicas and all(
        pod_ready(p) or p in outdated for p in by_ordinal.values()
    )
    if outdated and settled and not any(going(p) for p in by_ordinal.values()):
        plan.roll = outdated[0]
    plan_spares(view, plan, members, spares or {}, want_hash, awake=not asleep_since)
    return plan


def plan_spares(
    view: AgentView,
    plan: Convergence,
    members: dict[str, Obj],
    spares: dict[str, Obj],
    want_hash: str,
    awake: bool,
) -> None:
    """Spares (spec.warmSpares) for ordinals replicas .. replicas+warmSpares-1 while the Agent
    is awake and not suspended; a member to create takes its ordinal's spare instead."""

    def usable(pod: Obj) -> bool:
        return (
            not going(pod)
            and template_of(pod) == want_hash
            and pod.get("status", {}).get("phase") not in ("Failed", "Succeeded")
        )

    # A spare claimed is a member (its labels say so), whatever the spares' index still holds.
    by_ordinal = {
        ordinal_of(p): p
        for name, p in spares.items()
        if name not in members and objects.AGENT_LABEL not in p["metadata"].get("labels", {})
    }
    for ordinal in list(plan.create):
        spare = by_ordinal.get(ordinal)
        if spare is None:
            continue
        plan.create.remove(ordinal)  # taken, or made once the spare holding its name is gone
        if usable(spare):
            plan.claim.append(by_ordinal.pop(ordinal))
    replicas = view.spec.replicas
    wanted = (
        set(range(replicas, replicas + view.spec.warm_spares))
        if awake and not view.spec.suspend
        else set()
    )
    for ordinal, spare in sorted(by_ordinal.items()):
        if not going(spare) and (ordinal not in wanted or not usable(spare)):
            plan.drop_spares.append(spare)
    taken = {ordinal_of(p) for p in members.values()} | set(by_ordinal)
    plan.spares = sorted(wanted - taken)


# -- status ----------------------------------------------------------------------------------


def persisted_condition(
    view: AgentView, member_states: dict[str, Obj], previous: list[Condition], at: datetime
) -> Condition:
    """Persisted, from what the members' runtimes report of their state."""
    store = view.spec.persistence.store
    generation = view.generation
    if store == "None":
        return condition(
            "Persisted",
            False,
            "StoreNone",
            "persistence.store is None: members keep no state",
            generation,
            previous,
            at,
        )
    names = [objects.member_name(view, i) for i in range(view.spec.replicas)]
    reports = {n: member_states.get(n) for n in names}
    problems = [(n, r) for n, r in reports.items() if r and r.get("reason")]
    if problems:
        return condition(
            "Persisted",
            False,
            problems[0][1]["reason"],
            "; ".join(f"member {n}: {r.get('message') or r['reason']}" for n, r in problems),
            generation,
            previous,
            at,
        )
    missing = [n for n, r in reports.items() if not r or r.get("store") != store]
    if missing:
        return condition(
            "Persisted",
            None,
            "NotReported",
            f"waiting for {len(missing)} of {len(names)} members to report their state",
            generation,
            previous,
            at,
        )
    return condition(
        "Persisted",
        True,
        "Saved",
        f"{len(names)} members report their state saved in {store}",
        generation,
        previous,
        at,
    )


def member_statuses(view: AgentView, members: dict[str, Obj]) -> list[MemberStatus]:
    out = []
    for ordinal in range(view.spec.replicas):
        name = objects.member_name(view, ordinal)
        pod = members.get(name)
        out.append(
            MemberStatus(
                name=name,
                pod=name if pod else "",
                ready=bool(pod and pod_ready(pod)),
                restarts=restart_count(pod) if pod else 0,
                last_exit=last_exit(pod) if pod else None,
            )
        )
    return out


def phase_of(previous: str, failed: bool, ready: int, replicas: int) -> str:
    """Failed once the intensity is exceeded; Pending while starting up; Degraded once an Agent
    that ran has lost a member."""
    if failed:
        return "Failed"
    if ready == replicas:
        return "Running"
    if previous in ("Running", "Degraded"):
        return "Degraded"
    return "Pending"


def agent_status(
    view: AgentView,
    status: AgentStatus,
    member_states: dict[str, Obj],
    members: dict[str, Obj],
    supervised: Supervised,
    at: datetime,
    refused: str | None = None,
    asleep_since: str = "",
) -> AgentStatus:
    """The status of a supervised Agent: the one place its phase is decided. `refused` is the
    API server's refusal of a member pod (the spec asks for a pod no cluster accepts, or an
    admission rule forbids it), which the Ready condition then gives as its reason."""
    replicas = view.spec.replicas
    entries = member_statuses(view, members)
    ready = sum(1 for m in entries if m.ready)
    phase = phase_of(status.phase, supervised.failed, ready, replicas)
    if view.spec.suspend and phase != "Failed":
        phase = "Suspended"
    elif asleep_since and phase != "Failed":
        phase = "Sleeping"
    all_ready = ready == replicas and phase not in ("Failed", "Suspended", "Sleeping")
    return status.model_copy(
        update={
            "phase": phase,
            "ready": f"{ready}/{replicas}",
            "replicas": sum(1 for pod in members.values() if not going(pod)),
            "selector": objects.member_selector(view),
            "restarts": supervised.total,
            "observed_generation": view.generation,
            "observed_restarted_at": supervised.restarted_at,
            "members": entries,
            "recent_restarts": [stamp(t) for t in supervised.recent],
            "capabilities": sorted(view.spec.capabilities),
            "asleep_since": asleep_since,
            "conditions": [
                condition(
                    "Ready",
                    all_ready,
                    "AllMembersReady"
                    if all_ready
                    else (
                        "RestartIntensityExceeded"
                        if phase == "Failed"
                        else (
                            phase
                            if phase in ("Suspended", "Sleeping")
                            else ("MemberRefused" if refused else "MembersNotReady")
                        )
                    ),
                    suspended_message(view, ready)
                    if phase == "Suspended"
                    else sleeping_message(view, ready, asleep_since)
                    if phase == "Sleeping"
                    else f"{ready}/{replicas} members ready"
                    + (f"; the API server refused a member pod: {refused}" if refused else ""),
                    view.generation,
                    status.conditions,
                    at,
                ),
                supervised.condition,
                persisted_condition(view, member_states, status.conditions, at),
            ],
        }
    )


def suspended_message(view: AgentView, running: int) -> str:
    kept = kept_message(view)
    going = f"; {running} member(s) still stopping" if running else ""
    return f"spec.suspend is true: no member runs and {kept}; set it to false to resume{going}"


def sleeping_message(view: AgentView, running: int, since: str) -> str:
    if view.spec.warm_while_asleep:
        then = (
            f"; {running} member pod(s) parked (spec.warmWhileAsleep): the first call to a"
            " member loads its state"
        )
    else:
        then = "; the first task sent wakes it" + (
            f"; {running} member(s) still stopping" if running else ""
        )
    return (
        f"asleep since {since}: no member held a task for {view.spec.sleep_after_idle_seconds}s "
        f"(spec.sleepAfterIdleSeconds); {kept_message(view)}{then}"
    )


def kept_message(view: AgentView) -> str:
    store = view.spec.persistence.store
    if store == "None":
        return "no state is kept (persistence.store None)"
    return f"each member's state and task records stay in its {store}"


@dataclass(frozen=True)
class Sleep:
    """Whether an Agent sleeps (`asleep_since`, "" while awake), and in how many seconds to
    look again if it is idle and not asleep yet."""

    asleep_since: str = ""
    recheck: float | None = None


def moment(text: str | None) -> datetime | None:
    """A time as status, records and annotations give it (RFC 3339, to the second or finer)."""
    if not text:
        return None
    try:
        found = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return found if found.tzinfo else found.replace(tzinfo=UTC)


def fine_stamp(at: datetime) -> str:
    """`at` in RFC 3339 with microseconds: a wake asked for in the same second as the sleep
    began is told apart from one before it."""
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def sleep(
    view: AgentView, status: AgentStatus, member_states: dict[str, Obj], at: datetime
) -> Sleep:
    """Sleep when every member reports it has held no task for spec.sleepAfterIdleSeconds (a
    wake asked for counts as activity); wake when a wake is asked for at or after the sleep
    began, or when a member's last report (its report on stopping) says it still holds tasks."""
    after = view.spec.sleep_after_idle_seconds
    if after is None or view.spec.suspend or view.spec.replicas == 0 or status.phase == "Failed":
        return Sleep()
    reports = [
        member_states.get(objects.member_name(view, i)) or {} for i in range(view.spec.replicas)
    ]
    busy = any(report.get("busy") for report in reports)
    wake = moment(view.annotations.get(objects.WAKE_REQUESTED_AT))
    if status.asleep_since:
        asleep = moment(status.asleep_since)
        # A parked member (spec.warmWhileAsleep) woken by a call says which sleep it woke from.
        woke = any(report.get("wokeFrom") == status.asleep_since for report in reports)
        if busy or woke or asleep is None or (wake is not None and wake >= asleep):
            return Sleep()
        return Sleep(status.asleep_since)
    idle = [moment(report.get("idleSince")) for report in reports]
    if busy or any(since is None for since in idle):
        return Sleep()  # a member holds a task, or has not said (a report will come)
    last = max([since for since in idle if since is not None] + ([wake] if wake else []))
    left = after - (at - last).total_seconds()
    if left <= 0:
        return Sleep(fine_stamp(at))
    return Sleep("", left)


def settled(status: AgentStatus, refused: str | None = None) -> bool:
    """Whether nothing more is coming without a change: every member ready, the Agent failed,
    or a member pod the API server refuses. A new Agent's first status then goes out without
    waiting for its members (see core.status.StatusWriter)."""
    return status.phase in ("Running", "Failed", "Suspended", "Sleeping") or refused is not None


def invalid_status(
    status: AgentStatus,
    generation: int,
    message: str,
    at: datetime,
    reason: str = "InvalidSpec",
) -> AgentStatus:
    """An Agent whose spec cannot be carried out: Failed, with the reason and what to change."""
    return status.model_copy(
        update={
            "phase": "Failed",
            "observed_generation": generation,
            "conditions": [
                condition("Ready", False, reason, message, generation, status.conditions, at)
            ],
        }
    )


def terminating_status(status: AgentStatus) -> AgentStatus:
    return status.model_copy(update={"phase": "Terminating"})
