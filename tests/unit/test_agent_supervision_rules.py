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
