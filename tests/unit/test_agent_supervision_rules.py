"""Pure pieces of the supervisor: what counts as a change, exits, conditions."""

from foundation_operator.agents import controller


def test_empty_strings_become_nulls_in_maps_and_vanish_in_list_items() -> None:
    status = {
        "observedRestartedAt": "",
        "phase": "Running",
        "members": [{"name": "a-0", "pod": "", "lastExit": {"reason": ""}}],
    }
    assert controller.without_empty_strings(status) == {
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
    assert controller.comparable(a) == controller.comparable(b)
    c = {**b, "members": [{"name": "a-0", "pod": "a-0", "ready": True}]}
    assert controller.comparable(a) != controller.comparable(c)


def test_condition_keeps_its_transition_time_while_its_status_holds() -> None:
    first = controller.condition("Ready", True, "AllMembersReady", "1/1", 1, [])
    again = controller.condition("Ready", True, "AllMembersReady", "1/1", 2, [first])
    assert again["lastTransitionTime"] == first["lastTransitionTime"]
    assert again["observedGeneration"] == 2
    unknown = controller.condition("Persisted", None, "NotReported", "", 1, [])
    assert unknown["status"] == "Unknown"


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
    assert controller.last_exit(pod) == {"exitCode": 1, "reason": "Error", "finishedAt": "t"}
    assert controller.restart_count(pod) == 2
    assert controller.last_exit({"status": {}}) is None


def test_exhaustion_message_names_the_member_its_exit_and_the_way_out() -> None:
    from foundation_operator.agents.api import Supervision

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
    restart = controller.Restart("w-0", 0, controller.now(), "its container restarted")
    message = controller.exhaustion_message([restart], {"w-0": pod}, 4, Supervision())
    assert message.startswith("member w-0 restarted 4 times within 5s (maxRestarts 3)")
    assert "last exit code 1 (Error)" in message
    assert "foundation.dev/restartedAt" in message
    deleted = controller.Restart("w-1", 1, controller.now(), "its pod was deleted")
    assert "its pod was deleted" in controller.exhaustion_message([deleted], {}, 4, Supervision())


def test_siblings_follow_the_otp_strategy() -> None:
    assert [controller.sibling_of(o, 1, "OneForAll") for o in range(3)] == [True, False, True]
    assert [controller.sibling_of(o, 1, "RestForOne") for o in range(3)] == [False, False, True]
    assert [controller.sibling_of(o, 1, "OneForOne") for o in range(3)] == [False, False, False]


def _at(version: str, uid: str = "u") -> dict:
    return {"metadata": {"uid": uid, "resourceVersion": version}}


def test_a_watch_event_from_before_a_cached_write_is_older() -> None:
    assert controller.older_than(_at("9"), _at("10"))  # numeric, not lexical
    assert not controller.older_than(_at("11"), _at("10"))
    assert not controller.older_than(_at("10"), None)
    assert not controller.older_than(
        _at("9", uid="new"), _at("10")
    )  # re-created under the same name
    assert not controller.older_than(_at("opaque"), _at("10"))


def test_persisted_condition_follows_what_members_report() -> None:
    from foundation_operator.agents.controller import persisted_condition
    from foundation_operator.agents.objects import AgentView

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

    saved = {"store": "ConfigMap", "version": 3}
    ok = persisted_condition(agent_view(), {"a-0": saved, "a-1": saved}, [])
    assert (ok["status"], ok["reason"]) == ("True", "Saved")
    waiting = persisted_condition(agent_view(), {"a-0": saved}, [])
    assert (waiting["status"], waiting["reason"]) == ("Unknown", "NotReported")
    broken = {**saved, "reason": "StateCorrupt", "message": "ConfigMap n/a-1-state is garbage"}
    bad = persisted_condition(agent_view(), {"a-0": saved, "a-1": broken}, [])
    assert (bad["status"], bad["reason"]) == ("False", "StateCorrupt")
    assert bad["message"] == "member a-1: ConfigMap n/a-1-state is garbage"
    none = persisted_condition(agent_view(store="None"), {}, [])
    assert (none["status"], none["reason"]) == ("False", "StoreNone")
