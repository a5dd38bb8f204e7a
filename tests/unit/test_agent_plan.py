"""The supervision plan, table-driven: restarts, intensity, OTP strategies, rolling order and
the phase, from observed pods and the last status, without a cluster."""

from datetime import UTC, datetime, timedelta

import pytest

from foundation_common.status import Condition, stamp
from foundation_operator.agents import objects, plan, pods
from foundation_operator.agents.api import AgentStatus, AgentView, MemberStatus

AT = datetime(2026, 12, 2, 12, 0, 0, tzinfo=UTC)


def view(replicas: int = 3, generation: int = 1, annotations=None, **supervision) -> AgentView:
    return AgentView.from_body(
        {
            "metadata": {
                "name": "w",
                "namespace": "n",
                "uid": "u",
                "generation": generation,
                "annotations": annotations or {},
            },
            "spec": {
                "image": "i",
                "agent": "m:C",
                "replicas": replicas,
                "supervision": supervision,
            },
        }
    )


def pod(
    agent: AgentView,
    ordinal: int,
    *,
    ready: bool = True,
    restarts: int = 0,
    phase: str = "Running",
    outdated: bool = False,
    going: bool = False,
) -> dict:
    meta = {
        "name": f"w-{ordinal}",
        "uid": f"uid-{ordinal}",
        "labels": {objects.MEMBER_LABEL: str(ordinal)},
        "annotations": {objects.TEMPLATE_HASH: "old" if outdated else pods.template_hash(agent)},
    }
    if going:
        meta["deletionTimestamp"] = stamp(AT)
    return {
        "metadata": meta,
        "status": {
            "phase": phase,
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
            "containerStatuses": [{"restartCount": restarts}],
        },
    }


def members(*pods: dict) -> dict[str, dict]:
    return {p["metadata"]["name"]: p for p in pods}


def restart(ordinal: int, seconds_ago: float = 0) -> plan.Restart:
    return plan.Restart(
        f"w-{ordinal}", ordinal, AT - timedelta(seconds=seconds_ago), "its container restarted"
    )


@pytest.mark.parametrize(
    ("strategy", "failed", "stopped"),
    [
        ("OneForOne", 1, []),
        ("OneForAll", 1, ["w-0", "w-2"]),
        ("RestForOne", 1, ["w-2"]),
        ("RestForOne", 2, []),
        ("OneForAll", 0, ["w-1", "w-2"]),
    ],
)
def test_siblings_of_a_restarted_member_stop_by_strategy(strategy, failed, stopped) -> None:
    agent = view(strategy=strategy, maxRestarts=10)
    observed = members(*(pod(agent, i) for i in range(3)))
    decided = plan.supervise(agent, AgentStatus(), observed, [restart(failed)], AT)
    assert not decided.failed
    assert sorted(p["metadata"]["name"] for p in decided.stop) == stopped


@pytest.mark.parametrize(
    ("earlier", "now_count", "max_restarts", "period", "failed"),
    [
        ([], 3, 3, 5, False),  # exactly max: within intensity
        ([], 4, 3, 5, True),  # one more than max
        ([1, 2], 2, 3, 5, True),  # earlier restarts inside the window count
        ([6, 7], 2, 3, 5, False),  # those outside it do not
        ([], 1, 0, 5, True),  # maxRestarts 0: the first restart fails the Agent
    ],
)
def test_restart_intensity(earlier, now_count, max_restarts, period, failed) -> None:
    agent = view(maxRestarts=max_restarts, periodSeconds=period)
    status = AgentStatus(
        observed_generation=1,
        recent_restarts=[stamp(AT - timedelta(seconds=s)) for s in earlier],
    )
    observed = members(*(pod(agent, i) for i in range(3)))
    restarts = [restart(0) for _ in range(now_count)]
    decided = plan.supervise(agent, status, observed, restarts, AT)
    assert decided.failed is failed
    assert decided.total == now_count
    if failed:
        assert decided.exhausted.startswith("member w-0 restarted")
        assert sorted(p["metadata"]["name"] for p in decided.stop) == ["w-0", "w-1", "w-2"]
        assert decided.condition.reason == "RestartIntensityExceeded"
    else:
        assert decided.condition.reason == "WithinIntensity"


def failed_status(generation: int = 1, restarted_at: str = "") -> AgentStatus:
    return AgentStatus(
        phase="Failed",
        observed_generation=generation,
        observed_restarted_at=restarted_at,
        recent_restarts=[stamp(AT)] * 4,
        conditions=[
            Condition(
                type="Supervised",
                status="False",
                reason="RestartIntensityExceeded",
                message="member w-0 restarted 4 times",
            )
        ],
    )


@pytest.mark.parametrize(
    ("agent", "on_exhausted", "stays_failed"),
    [
        (view(), "Stop", True),  # nothing changed: stays Failed, not reported again
        (view(generation=2), "Stop", False),  # a spec change starts it afresh
        (view(annotations={objects.RESTARTED_AT: "now"}), "Stop", False),  # so does restartedAt
    ],
)
def test_a_failed_agent_stays_failed_until_its_spec_or_restarted_at_changes(
    agent, on_exhausted, stays_failed
) -> None:
    observed = members(pod(agent, 0))
    decided = plan.supervise(agent, failed_status(), observed, [], AT)
    assert decided.failed is stays_failed
    assert decided.exhausted == ""  # the Event and metric were for the pass that failed it
    if stays_failed:
        assert decided.condition.message == "member w-0 restarted 4 times"
    else:
        assert decided.recent == []  # the old restarts no longer count


def test_keep_leaves_the_members_of_a_failed_agent_for_debugging() -> None:
    agent = view(onExhausted="Keep", maxRestarts=0)
    decided = plan.supervise(agent, AgentStatus(), members(pod(agent, 0)), [restart(0)], AT)
    assert decided.failed and decided.stop == []


def test_container_restarts_count_from_the_reported_baseline() -> None:
    agent = view(replicas=2)
    observed = members(pod(agent, 0, restarts=3), pod(agent, 1, restarts=1))
    previous = [MemberStatus(name="w-0", pod="w-0", restarts=2)]
    counted, baseline = plan.container_restarts(observed, {}, previous, AT)
    # w-0: 2 were reported before this operator saw it, 1 is new; w-1 was never reported.
    assert [r.member for r in counted] == ["w-0", "w-1"]
    assert baseline == {"uid-0": 3, "uid-1": 1}
    again, _ = plan.container_restarts(observed, baseline, previous, AT)
    assert again == []


@pytest.mark.parametrize(
    ("replicas", "pods", "scale_down", "replace", "create", "roll"),
    [
        (3, [0, 1, 2], [], [], [], None),  # converged
        (3, [0], [], [], [1, 2], None),  # missing members created together
        (1, [0, 1, 2], ["w-2", "w-1"], [], [], None),  # scale down, highest first
        (2, [0, "failed-1"], [], ["w-1"], [], None),  # an evicted pod is replaced
        (3, ["outdated-0", "outdated-1", 2], [], [], [], "w-0"),  # roll the lowest first
        (3, ["outdated-0", "unready-1", 2], [], [], [], None),  # wait for the others' Ready
        (3, ["outdated-0", "going-1", 2], [], [], [], None),  # one at a time
        (3, ["outdated-0", 1], [], [], [2], None),  # not while a member is missing
    ],
)
def test_convergence(replicas, pods, scale_down, replace, create, roll) -> None:
    agent = view(replicas=replicas)
    observed = []
    for entry in pods:
        kind, _, ordinal = str(entry).rpartition("-")
        observed.append(
            pod(
                agent,
                int(ordinal),
                outdated=kind == "outdated",
                ready=kind != "unready",
                going=kind == "going",
                phase="Failed" if kind == "failed" else "Running",
            )
        )
    changes = plan.converge(agent, members(*observed))
    assert [p["metadata"]["name"] for p in changes.scale_down] == scale_down
    assert [p["metadata"]["name"] for p in changes.replace] == replace
    assert changes.create == create
    assert (changes.roll["metadata"]["name"] if changes.roll else None) == roll


@pytest.mark.parametrize(
    ("previous", "ready", "failed", "phase"),
    [
        ("Pending", 3, False, "Running"),
        ("Pending", 1, False, "Pending"),  # still starting up
        ("Running", 2, False, "Degraded"),  # ran, lost a member
        ("Degraded", 3, False, "Running"),
        ("Running", 3, True, "Failed"),
    ],
)
def test_phase(previous, ready, failed, phase) -> None:
    assert plan.phase_of(previous, failed, ready, 3) == phase


def test_status_of_a_supervised_agent() -> None:
    agent = view(replicas=2)
    observed = members(pod(agent, 0), pod(agent, 1, ready=False, restarts=1))
    decided = plan.supervise(agent, AgentStatus(), observed, [restart(1)], AT)
    new = plan.agent_status(agent, AgentStatus(phase="Running"), {}, observed, decided, AT)
    assert (new.phase, new.ready, new.restarts) == ("Degraded", "1/2", 1)
    assert [m.ready for m in new.members] == [True, False]
    assert [c.type for c in new.conditions] == ["Ready", "Supervised", "Persisted"]
    dumped = plan.dump_status(new)
    assert "memberStates" not in dumped and "state" not in dumped  # the runtime's fields
    assert dumped["conditions"][0]["reason"] == "MembersNotReady"
    assert dumped["recentRestarts"] == [stamp(AT)]
    # The scale subresource's view: pods that exist (not those going), and the selector.
    assert (dumped["replicas"], dumped["selector"]) == (2, "foundation.dev/agent=w")
    scaling_down = members(pod(agent, 0), pod(agent, 1), pod(agent, 2, going=True))
    new = plan.agent_status(agent, new, {}, scaling_down, decided, AT)
    assert new.replicas == 2


def test_a_member_the_api_server_refuses_is_the_ready_reason() -> None:
    agent = view(replicas=1)
    decided = plan.supervise(agent, AgentStatus(), {}, [], AT)
    refused = 'Pod "w-0" is invalid: spec.containers[0].env[0].name: Invalid value: "a=b"'
    new = plan.agent_status(agent, AgentStatus(), {}, {}, decided, AT, refused)
    ready = next(c for c in new.conditions if c.type == "Ready")
    assert (ready.status, ready.reason) == ("False", "MemberRefused")
    assert ready.message == f"0/1 members ready; the API server refused a member pod: {refused}"


def test_a_status_is_settled_when_nothing_more_comes_without_a_change() -> None:
    agent = view(replicas=2)
    decided = plan.supervise(agent, AgentStatus(), {}, [], AT)

    def settled_with(*pods: dict, refused: str | None = None) -> bool:
        new = plan.agent_status(agent, AgentStatus(), {}, members(*pods), decided, AT, refused)
        return plan.settled(new, refused)

    # Members starting: not settled (a new Agent's first status waits for them).
    assert not settled_with()
    assert not settled_with(pod(agent, 0), pod(agent, 1, ready=False))
    # All ready, or a pod the API server refuses: settled.
    assert settled_with(pod(agent, 0), pod(agent, 1))
    assert settled_with(pod(agent, 0), refused='pods "w-1" is forbidden: exceeded quota')
    assert plan.settled(AgentStatus(phase="Failed"))


def test_a_status_the_supervisor_cannot_read_counts_as_none() -> None:
    assert plan.parse_status({"phase": "Exploded"}) == AgentStatus()
    kept = plan.parse_status({"phase": "Running", "memberStates": {"w-0": {"odd": 1}}})
    assert kept.phase == "Running"


def test_a_suspended_agent_runs_no_member_and_says_what_is_kept() -> None:
    running = view(replicas=2)
    body = {
        "metadata": {"name": "w", "namespace": "n", "uid": "u", "generation": 2},
        "spec": {"image": "i", "agent": "m:C", "replicas": 2, "suspend": True},
    }
    asleep = AgentView.from_body(body)
    observed = members(pod(running, 0), pod(running, 1))
    changes = plan.converge(asleep, observed)
    assert [p["metadata"]["name"] for p in changes.scale_down] == ["w-1", "w-0"]
    assert changes.create == [] and changes.roll is None
    decided = plan.supervise(asleep, AgentStatus(), observed, [], AT)
    new = plan.agent_status(asleep, AgentStatus(phase="Running"), {}, {}, decided, AT)
    assert (new.phase, new.ready) == ("Suspended", "0/2")
    ready = new.conditions[0]
    assert (ready.status, ready.reason) == ("False", "Suspended")
    assert "state and task records stay in its ConfigMap" in ready.message
    assert plan.settled(new)
    # Woken: the members come back, ordinal by ordinal, with their state objects kept.
    assert plan.converge(running, {}).create == [0, 1]


def sleepy(replicas: int = 2, after: int = 60, wake: str = "", warm: bool = False) -> AgentView:
    annotations = {objects.WAKE_REQUESTED_AT: wake} if wake else {}
    return AgentView.from_body(
        {
            "metadata": {"name": "w", "namespace": "n", "uid": "u", "annotations": annotations},
            "spec": {
                "image": "i",
                "agent": "m:C",
                "replicas": replicas,
                "sleepAfterIdleSeconds": after,
                "warmWhileAsleep": warm,
            },
        }
    )


def idle(seconds_ago: float, busy: int = 0) -> dict:
    since = plan.fine_stamp(AT - timedelta(seconds=seconds_ago))
    return {"busy": busy, "idleSince": None if busy else since}


def test_an_agent_sleeps_once_every_member_has_held_no_task_for_its_idle_time() -> None:
    awake = AgentStatus(phase="Running")
    # Not every member has said (a new member): awake, nothing to wait for but its report.
    assert plan.sleep(sleepy(), awake, {"w-0": idle(90)}, AT) == plan.Sleep()
    # One member holds a task: awake, however long the other has been idle.
    assert plan.sleep(sleepy(), awake, {"w-0": idle(90), "w-1": idle(0, busy=1)}, AT) == (
        plan.Sleep()
    )
    # Both idle, the later for 45 s of 60: looked at again in 15 s.
    assert plan.sleep(sleepy(), awake, {"w-0": idle(90), "w-1": idle(45)}, AT) == plan.Sleep(
        "", 15.0
    )
    # A wake asked for 10 s ago counts as activity.
    woken = sleepy(wake=plan.fine_stamp(AT - timedelta(seconds=10)))
    assert plan.sleep(woken, awake, {"w-0": idle(90), "w-1": idle(90)}, AT).recheck == 50.0
    # Idle long enough: asleep from now.
    slept = plan.sleep(sleepy(), awake, {"w-0": idle(90), "w-1": idle(61)}, AT)
    assert slept == plan.Sleep(plan.fine_stamp(AT))
    # Not configured, suspended (suspend wins) or without members: never asleep.
    assert plan.sleep(view(replicas=2), awake, {"w-0": idle(900), "w-1": idle(900)}, AT) == (
        plan.Sleep()
    )
    assert plan.sleep(sleepy(replicas=0), awake, {}, AT) == plan.Sleep()


def test_a_sleeping_agent_wakes_on_a_wake_asked_for_after_it_slept_or_a_member_holding_tasks() -> (
    None
):
    since = plan.fine_stamp(AT - timedelta(seconds=30))
    asleep = AgentStatus(phase="Sleeping", asleep_since=since)
    reports = {"w-0": idle(100), "w-1": idle(100)}
    assert plan.sleep(sleepy(), asleep, reports, AT) == plan.Sleep(since)
    # A wake asked for before it slept (the one that woke it last time) does not wake it.
    before = plan.fine_stamp(AT - timedelta(seconds=31))
    assert plan.sleep(sleepy(wake=before), asleep, reports, AT) == plan.Sleep(since)
    # One asked for at the moment it slept, or after, does.
    assert plan.sleep(sleepy(wake=since), asleep, reports, AT) == plan.Sleep()
    # A member stopped with a task accepted in the last moment: woken to run it.
    assert plan.sleep(sleepy(), asleep, {**reports, "w-1": idle(0, busy=1)}, AT) == plan.Sleep()


def test_a_sleeping_agent_runs_no_member_and_says_how_it_wakes() -> None:
    agent = sleepy()
    running = {objects.member_name(agent, i): pod(view(replicas=2), i) for i in range(2)}
    changes = plan.converge(agent, running, plan.fine_stamp(AT))
    assert [p["metadata"]["name"] for p in changes.scale_down] == ["w-1", "w-0"]
    assert changes.create == [] and changes.parked_for == ""
    decided = plan.supervise(agent, AgentStatus(), {}, [], AT)
    since = plan.fine_stamp(AT)
    new = plan.agent_status(agent, AgentStatus(phase="Running"), {}, {}, decided, AT, None, since)
    assert (new.phase, new.asleep_since, new.ready) == ("Sleeping", since, "0/2")
    ready = new.conditions[0]
    assert (ready.status, ready.reason) == ("False", "Sleeping")
    assert "the first task sent wakes it" in ready.message and "60s" in ready.message
    assert plan.settled(new)
    # Awake again: the members come back, and the status forgets the sleep.
    assert plan.converge(agent, {}).create == [0, 1]
    woken = plan.agent_status(agent, new, {}, {}, decided, AT)
    assert (woken.phase, woken.asleep_since) == ("Pending", "")


def parked(agent: AgentView, ordinal: int, since: str, **kwargs) -> dict:
    made = pod(agent, ordinal, **kwargs)
    made["metadata"]["annotations"][objects.PARKED_FOR] = since
    return made


def test_a_warm_agent_asleep_keeps_a_parked_pod_for_each_member() -> None:
    agent = sleepy(warm=True)
    since = plan.fine_stamp(AT)
    # Falling asleep: the members that served are replaced by pods made parked for this sleep.
    running = members(pod(agent, 0), pod(agent, 1))
    changes = plan.converge(agent, running, since)
    assert [p["metadata"]["name"] for p in changes.scale_down] == ["w-1", "w-0"]
    assert changes.create == [] and changes.parked_for == since
    # Once they are gone, made again: parked for this sleep (the annotation the runtime reads).
    changes = plan.converge(agent, {}, since)
    assert changes.create == [0, 1]
    made = pods.member_pod(agent, 0, changes.parked_for)
    assert made["metadata"]["annotations"][objects.PARKED_FOR] == since
    env = {e["name"]: e for e in made["spec"]["containers"][0]["env"]}
    assert env["FOUNDATION_PARKED_FOR"]["valueFrom"]["fieldRef"]["fieldPath"] == (
        f"metadata.annotations['{objects.PARKED_FOR}']"
    )
    # Parked pods stay while it sleeps (ready: a call reaches them), and after it wakes.
    warm = members(parked(agent, 0, since), parked(agent, 1, since))
    assert plan.converge(agent, warm, since) == plan.Convergence(parked_for=since)
    assert plan.converge(agent, warm) == plan.Convergence()
    # The next sleep replaces them: one may have loaded its state since.
    later = plan.fine_stamp(AT + timedelta(hours=1))
    assert len(plan.converge(agent, warm, later).scale_down) == 2
    # The pod template does not depend on the sleep: no roll-out when it falls asleep.
    assert pods.template_hash(agent) == pods.template_hash(sleepy(warm=True))
    # Suspended wins: nothing kept.
    suspended = AgentView.from_body(
        {
            "metadata": {"name": "w", "namespace": "n", "uid": "u"},
            "spec": {
                "image": "i",
                "agent": "m:C",
                "replicas": 2,
                "suspend": True,
                "sleepAfterIdleSeconds": 60,
                "warmWhileAsleep": True,
            },
        }
    )
    assert plan.converge(suspended, warm, since).create == []
    assert len(plan.converge(suspended, warm, since).scale_down) == 2


def test_a_warm_agent_wakes_when_a_parked_member_says_a_call_woke_it() -> None:
    since = plan.fine_stamp(AT - timedelta(seconds=30))
    asleep = AgentStatus(phase="Sleeping", asleep_since=since)
    agent = sleepy(warm=True)
    reports = {"w-0": idle(100), "w-1": idle(100)}
    assert plan.sleep(agent, asleep, reports, AT) == plan.Sleep(since)
    woke = {**reports, "w-1": {**idle(1), "wokeFrom": since}}
    assert plan.sleep(agent, asleep, woke, AT) == plan.Sleep()
    # A report from a member woken in an earlier sleep does not wake this one.
    earlier = {**reports, "w-1": {**idle(100), "wokeFrom": plan.fine_stamp(AT - timedelta(1))}}
    assert plan.sleep(agent, asleep, earlier, AT) == plan.Sleep(since)
    # Asleep and warm: the status says the pods are parked, and how a call wakes it.
    decided = plan.supervise(agent, AgentStatus(), {}, [], AT)
    pods = members(parked(agent, 0, since), parked(agent, 1, since))
    new = plan.agent_status(agent, asleep, {}, pods, decided, AT, None, since)
    assert new.phase == "Sleeping"
    assert "parked (spec.warmWhileAsleep)" in new.conditions[0].message


def test_warm_while_asleep_needs_a_sleep() -> None:
    agent = AgentView.from_body(
        {
            "metadata": {"name": "w", "namespace": "n", "uid": "u"},
            "spec": {"image": "i", "agent": "m:C", "warmWhileAsleep": True},
        }
    )
    assert any("needs spec.sleepAfterIdleSeconds" in p for p in objects.problems(agent))
    assert objects.problems(sleepy(warm=True)) == []


def spared(replicas: int = 1, spares: int = 1, **spec) -> AgentView:
    return AgentView.from_body(
        {
            "metadata": {"name": "w", "namespace": "n", "uid": "u"},
            "spec": {
                "image": "i",
                "agent": "m:C",
                "replicas": replicas,
                "warmSpares": spares,
                "capabilities": ["count"],
                **spec,
            },
        }
    )


def spare(agent: AgentView, ordinal: int, **kwargs) -> dict:
    made = pods.spare_pod(agent, ordinal)
    made["metadata"]["uid"] = f"spare-{ordinal}"
    made["status"] = {"phase": "Running"}
    if kwargs.get("going"):
        made["metadata"]["deletionTimestamp"] = "2026-12-04T10:00:00Z"
    return made


def test_spares_are_kept_for_the_next_ordinals_and_a_scale_up_claims_them() -> None:
    agent = spared(replicas=1, spares=2)
    one = members(pod(agent, 0))
    # Spares for ordinals 1 and 2, made parked, out of every Service.
    changes = plan.converge(agent, one, "", {})
    assert changes.spares == [1, 2] and changes.create == [] and changes.claim == []
    made = pods.spare_pod(agent, 1)
    labels = made["metadata"]["labels"]
    assert labels[objects.SPARE_LABEL] == "w" and labels[objects.MEMBER_LABEL] == "1"
    assert objects.AGENT_LABEL not in labels and objects.CAPABILITY_PREFIX + "count" not in labels
    assert made["metadata"]["annotations"][objects.PARKED_FOR] == objects.SPARE
    assert made["metadata"]["name"] == "w-1"  # its member's name: DNS, state, routing
    kept = {p["metadata"]["name"]: p for p in (spare(agent, 1), spare(agent, 2))}
    assert plan.converge(agent, one, "", kept) == plan.Convergence()
    # Scaled up to 2: member 1 takes its spare (no pod made), a spare for 3 is made.
    bigger = spared(replicas=2, spares=2)
    changes = plan.converge(bigger, one, "", kept)
    assert [p["metadata"]["name"] for p in changes.claim] == ["w-1"]
    assert changes.create == [] and changes.spares == [3] and changes.drop_spares == []
    # The claim: the member's labels on (the Service's and the capability's), the spare's off.
    labels = pods.claim(bigger, 1)["metadata"]["labels"]
    assert labels[objects.AGENT_LABEL] == "w" and labels[objects.MEMBER_LABEL] == "1"
    assert labels[objects.CAPABILITY_PREFIX + "count"] == "true"
    assert labels[objects.SPARE_LABEL] is None
    # Scaled up by more than the spares: the rest are made cold.
    changes = plan.converge(spared(replicas=4, spares=2), one, "", kept)
    assert [p["metadata"]["name"] for p in changes.claim] == ["w-1", "w-2"]
    assert changes.create == [3] and changes.spares == [4, 5]


def test_spares_go_when_not_wanted_and_wait_for_a_member_of_their_name_to_go() -> None:
    agent = spared(replicas=1, spares=1)
    kept = {"w-1": spare(agent, 1)}
    # Scaled down from 2: member 1 stops; its spare is made once its pod is gone.
    two = members(pod(agent, 0), pod(agent, 1))
    changes = plan.converge(agent, two, "", {})
    assert [p["metadata"]["name"] for p in changes.scale_down] == ["w-1"]
    assert changes.spares == []
    assert plan.converge(agent, members(pod(agent, 0)), "", {}).spares == [1]
    # No spares asked for any more, suspended, or asleep: dropped.
    for unwanted in (
        spared(replicas=1, spares=0),
        spared(replicas=1, spares=1, suspend=True),
    ):
        assert plan.converge(unwanted, members(pod(agent, 0)), "", kept).drop_spares == [
            kept["w-1"]
        ]
    asleep = spared(replicas=1, spares=1, sleepAfterIdleSeconds=5)
    changes = plan.converge(asleep, {}, plan.fine_stamp(AT), kept)
    assert changes.drop_spares == [kept["w-1"]] and changes.spares == []
    # An outdated spare (the template changed) is replaced, never claimed.
    changed = spared(replicas=2, spares=1, env=[{"name": "X", "value": "1"}])
    changes = plan.converge(changed, members(pod(changed, 0)), "", kept)
    assert changes.claim == [] and changes.drop_spares == [kept["w-1"]]
    assert changes.create == []  # once the spare, which holds its name, is gone
    assert plan.converge(changed, members(pod(changed, 0)), "", {}).create == [1]
    # A spare the index still holds after its claim is a member: never dropped.
    claimed = spare(agent, 1)
    claimed["metadata"]["labels"].update(pods.claim(spared(replicas=2), 1)["metadata"]["labels"])
    del claimed["metadata"]["labels"][objects.SPARE_LABEL]
    two = members(pod(agent, 0), claimed)
    changes = plan.converge(spared(replicas=2, spares=0), two, "", {"w-1": claimed})
    assert changes.drop_spares == [] and changes.scale_down == []
    # One going is neither claimed nor dropped again, and holds its name.
    going = {"w-1": spare(agent, 1, going=True)}
    changes = plan.converge(agent, members(pod(agent, 0)), "", going)
    assert changes == plan.Convergence()
