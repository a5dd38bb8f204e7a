"""The hollow node's status for a pod: pure, so it is tested on plain dicts."""

from __future__ import annotations

import ipaddress

from hypothesis import given
from hypothesis import strategies as st

from localcluster.node.hollow import NETWORK, hollow_status, ip_of_node, pod_address, reported

POD = {
    "metadata": {"name": "p", "namespace": "ns", "uid": "u-1"},
    "spec": {"containers": [{"name": "agent", "image": "a"}, {"name": "sidecar", "image": "s"}]},
}


def test_a_hollow_pod_is_running_and_ready_with_every_container() -> None:
    status = hollow_status(POD, "198.18.0.9", "2026-01-01T00:00:00Z")
    assert status["phase"] == "Running"
    assert {c["type"]: c["status"] for c in status["conditions"]} == {
        "Initialized": "True",
        "Ready": "True",
        "ContainersReady": "True",
        "PodScheduled": "True",
    }
    assert [c["name"] for c in status["containerStatuses"]] == ["agent", "sidecar"]
    assert all(
        c["ready"] and c["started"] and c["restartCount"] == 0 and c["lastState"] == {}
        for c in status["containerStatuses"]
    )
    assert status["podIP"] == "198.18.0.9" and status["podIPs"] == [{"ip": "198.18.0.9"}]
    assert "initContainerStatuses" not in status
    assert reported({**POD, "status": status}) == ("198.18.0.9", "2026-01-01T00:00:00Z", 0)


def test_restarts_and_exit_code_come_from_annotations_and_bad_values_are_ignored() -> None:
    annotated = {
        **POD,
        "metadata": {
            **POD["metadata"],
            "annotations": {
                "foundation.dev/hollow-restarts": "4",
                "foundation.dev/hollow-exit-code": "137",
            },
        },
    }
    agent = hollow_status(annotated, "198.18.0.9", "t")["containerStatuses"][0]
    assert agent["restartCount"] == 4
    assert agent["lastState"]["terminated"]["exitCode"] == 137
    assert agent["lastState"]["terminated"]["reason"] == "Error"
    annotated["metadata"]["annotations"]["foundation.dev/hollow-restarts"] = "many"
    assert hollow_status(annotated, "198.18.0.9", "t")["containerStatuses"][0]["restartCount"] == 0


def test_init_containers_are_reported_completed() -> None:
    with_init = {**POD, "spec": {**POD["spec"], "initContainers": [{"name": "setup"}]}}
    (init,) = hollow_status(with_init, "198.18.0.9", "t")["initContainerStatuses"]
    assert init["state"]["terminated"]["exitCode"] == 0 and init["ready"]


def test_a_pod_not_yet_reported_has_no_report() -> None:
    assert reported(POD) is None
    assert reported({**POD, "status": {"phase": "Pending"}}) is None


@given(st.integers(min_value=0, max_value=10**7))
def test_pod_addresses_are_in_the_benchmark_network_and_never_the_nodes(index: int) -> None:
    address = pod_address(index)
    assert ipaddress.ip_address(address) in NETWORK
    assert address != ip_of_node()
    assert address != str(NETWORK.broadcast_address)


def test_consecutive_pods_get_distinct_addresses() -> None:
    assert len({pod_address(i) for i in range(20_000)}) == 20_000
