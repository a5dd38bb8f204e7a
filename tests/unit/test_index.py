"""What the controllers' indexes keep of watched objects."""

from __future__ import annotations

from foundation_operator.core.index import Index, OwnedIndex, slim

POD = {
    "metadata": {
        "name": "a-0",
        "namespace": "ns",
        "uid": "u",
        "resourceVersion": "7",
        "labels": {"foundation.dev/agent": "a"},
        "managedFields": [{"manager": "foundation-operator", "fieldsV1": {"f:spec": {}}}],
    },
    "spec": {"nodeName": "n", "containers": [{"name": "agent", "env": [{"name": "X"}]}]},
    "status": {"phase": "Running"},
}


def test_slim_drops_managed_fields_and_leaves_the_object_it_was_given_alone() -> None:
    kept = slim(POD)
    assert "managedFields" not in kept["metadata"]
    assert kept["spec"] == POD["spec"] and kept["status"] == POD["status"]
    assert "managedFields" in POD["metadata"], "the caller's object is not changed"
    plain = {"metadata": {"name": "x"}}
    assert slim(plain) is plain, "nothing to drop: no copy"


def test_observed_pods_keep_metadata_status_and_their_node_only() -> None:
    pods = OwnedIndex("foundation.dev/agent")
    assert pods.observe("ADDED", POD) == ("ns", "a")
    kept = pods.of(("ns", "a"))["a-0"]
    assert kept["spec"] == {"nodeName": "n"}
    assert kept["status"] == {"phase": "Running"}
    assert kept["metadata"]["labels"] == POD["metadata"]["labels"]
    assert "managedFields" not in kept["metadata"]


def test_the_index_keeps_specs_without_managed_fields_also_for_our_own_writes() -> None:
    agents = Index()
    agent = {**POD, "metadata": {**POD["metadata"], "resourceVersion": "1"}}
    agents.observe("ADDED", agent)
    assert agents.get(("ns", "a-0"))["spec"] == POD["spec"]
    agents.ahead({**POD, "metadata": {**POD["metadata"], "resourceVersion": "9"}})
    stored = agents.get(("ns", "a-0"))
    assert stored["metadata"]["resourceVersion"] == "9"
    assert "managedFields" not in stored["metadata"]
