"""Pure pieces of the supervisor: what counts as a change, exits, conditions."""

from foundation_common import status as conditions
from foundation_operator.agents import plan
from foundation_operator.agents.api import AgentView, LastExit, Supervision
from foundation_operator.core import status
from foundation_operator.core.index import older_than


def test_empty_strings_become_nulls_in_maps_and_vanish_in_list_items() -> None:
    value = {
        "observedRestartedAt": "",
        "phase": "Running",
        "members": [{"name": "a-0", "pod": "", "lastExit": {"reason": ""}}],
    }
    assert conditions.without_empty_strings(value) == {
        "observedRestartedAt": None,
        "phase": "Running",
        "members": [{"name": "a-0", "lastExit": {}}],
    }


def test_only_real_changes_count_not_transition_times_or_empty_fields() -> None:
    a = {
        "phase": "Running",
        "observedRestartedAt": "",
        "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "t1"}],
        "members": [{"name": "a-0", "pod": "a-0"}],
    }
    b = {
        "phase": "Running",
        "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "t2"}],
        "members": [{"name": "a-0", "pod": "a-0"}],
    }
    assert status.comparable(a) == status.comparable(b)
    c = {**b, "members": [{"name": "a-0", "pod": "a-0", "ready": True}]}
    assert status.comparable(a) != status.comparable(c)
    assert status.comparable({**a, "state": {"version": 1}}, ignore=["state"]) == (
        status.comparable(a)
    )


def test_condition_keeps_its_transition_time_while_its_status_holds() -> None:
    first = conditions.condition("Ready", True, "AllMembersReady", "1/1", 1, [])
    again = conditions.condition("Ready", True, "AllMembersReady", "1/1", 2, [first])
    assert again.last_transition_time == first.last_transition_time
    assert again.observed_generation == 2
    unknown = conditions.condition("Persisted", None, "NotReported", "", 1, [])
    assert unknown.status == "Unknown"


def test_last_exit_prefers_the_previous_termination() -> None:
    pod = {
        "status": {
            "containerStatuses": [
                {
                    "restartCount": 2,
                    "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                    "lastState": {
                        "terminated": {"exitCode": 1, "reason": "Error", "finishedAt": "t"}
                    },
                }
            ]
        }
    }
    assert plan.last_exit(pod) == LastExit(exit_code=1, reason="Error", finished_at="t")
    # Two restarts, and the third crash already, while it waits out the kubelet's back-off.
    assert plan.restart_count(pod) == 3
    assert plan.last_exit({"status": {}}) is None


def test_a_crash_counts_once_when_it_happens_not_again_at_the_restart() -> None:
    def status(restarts: int, state: dict, last: dict | None = None) -> dict:
        container = {"restartCount": restarts, "state": state}
        if last:
            container["lastState"] = last
        return {"metadata": {}, "status": {"containerStatuses": [container]}}

    exited = {"terminated": {"exitCode": 1}}
    sequence = [
        status(0, {"waiting": {"reason": "ContainerCreating"}}),  # not started yet: nothing
        status(0, {"running": {}}),
        status(0, {"terminated": {"exitCode": 1}}),  # crashed
        status(0, {"waiting": {"reason": "CrashLoopBackOff"}}, exited),  # backing off
        status(1, {"waiting": {"reason": "ContainerCreating"}}, exited),  # being started again
        status(1, {"running": {}}, exited),  # started again: the same crash
        status(1, {"waiting": {"reason": "CrashLoopBackOff"}}, exited),  # crashed again
    ]
    assert [plan.restart_count(p) for p in sequence] == [0, 0, 1, 1, 1, 1, 2]
    # Stopped because it is being deleted: not a crash.
    stopped = status(0, {"terminated": {"exitCode": 0}})
    stopped["metadata"]["deletionTimestamp"] = "2026-12-02T12:00:00Z"
    assert plan.restart_count(stopped) == 0


def test_exhaustion_message_names_the_member_its_exit_and_the_way_out() -> None:
    pod = {
        "status": {
            "containerStatuses": [
                {
                    "restartCount": 4,
                    "lastState": {
                        "terminated": {"exitCode": 1, "reason": "Error", "finishedAt": "t"}
                    },
                }
            ]
        }
    }
    restart = plan.Restart("w-0", 0, conditions.now(), "its container restarted")
    message = plan.exhaustion_message([restart], {"w-0": pod}, 4, Supervision())
    assert message.startswith("member w-0 restarted 4 times within 120s (maxRestarts 3)")
    assert "last exit code 1 (Error)" in message
    assert "foundation.dev/restartedAt" in message
    deleted = plan.Restart("w-1", 1, conditions.now(), "its pod was deleted")
    assert "its pod was deleted" in plan.exhaustion_message([deleted], {}, 4, Supervision())


def test_siblings_follow_the_otp_strategy() -> None:
    assert [plan.sibling_of(o, 1, "OneForAll") for o in range(3)] == [True, False, True]
    assert [plan.sibling_of(o, 1, "RestForOne") for o in range(3)] == [False, False, True]
    assert [plan.sibling_of(o, 1, "OneForOne") for o in range(3)] == [False, False, False]


def _at(version: str, uid: str = "u") -> dict:
    return {"metadata": {"uid": uid, "resourceVersion": version}}


def test_a_watch_event_from_before_a_cached_write_is_older() -> None:
    assert older_than(_at("9"), _at("10"))  # numeric, not lexical
    assert not older_than(_at("11"), _at("10"))
    assert not older_than(_at("10"), None)
    assert not older_than(_at("9", uid="new"), _at("10"))  # re-created under the same name
    assert not older_than(_at("opaque"), _at("10"))


def test_persisted_condition_follows_what_members_report() -> None:
    def agent_view(**persistence: object) -> AgentView:
        return AgentView.from_body(
            {
                "metadata": {"name": "a", "namespace": "n", "uid": "u", "generation": 1},
                "spec": {
                    "image": "i",
                    "agent": "m:C",
                    "replicas": 2,
                    "persistence": persistence,
                },
            }
        )

    at = conditions.now()
    saved = {"store": "ConfigMap", "version": 3}
    ok = plan.persisted_condition(agent_view(), {"a-0": saved, "a-1": saved}, [], at)
    assert (ok.status, ok.reason) == ("True", "Saved")
    waiting = plan.persisted_condition(agent_view(), {"a-0": saved}, [], at)
    assert (waiting.status, waiting.reason) == ("Unknown", "NotReported")
    broken = {**saved, "reason": "StateCorrupt", "message": "ConfigMap n/a-1-state is garbage"}
    bad = plan.persisted_condition(agent_view(), {"a-0": saved, "a-1": broken}, [], at)
    assert (bad.status, bad.reason) == ("False", "StateCorrupt")
    assert bad.message == "member a-1: ConfigMap n/a-1-state is garbage"
    none = plan.persisted_condition(agent_view(store="None"), {}, [], at)
    assert (none.status, none.reason) == ("False", "StoreNone")
