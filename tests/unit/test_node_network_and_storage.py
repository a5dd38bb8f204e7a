"""Pure parts of the test node's networking, volumes and provisioning."""

from pathlib import Path

import pytest

from localcluster import network
from localcluster.node.storage import volume_for, wants_volume
from localcluster.node.volumes import VolumeError, key_files, write_files


def test_address_pool_skips_the_bridge_and_reuses_released_addresses_last() -> None:
    pool = network.AddressPool("10.9.0.0/29", reserved=("10.9.0.1",))
    first = [pool.allocate() for _ in range(5)]
    assert first == ["10.9.0.2", "10.9.0.3", "10.9.0.4", "10.9.0.5", "10.9.0.6"]
    with pytest.raises(RuntimeError, match="no free address"):
        pool.allocate()
    pool.release("10.9.0.3")
    assert pool.allocate() == "10.9.0.3"


def test_pod_namespace_and_veth_names_fit_kernel_limits() -> None:
    uid = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
    assert len(network.pod_veth(uid)) <= 15
    assert network.pod_netns(uid).startswith("flpod-")
    (host_argv, host), (inside_argv, inside) = network.setup_batches(
        "flpod-x", "flvx", "10.244.0.7"
    )
    assert host_argv == ["ip", "-batch", "-"]
    assert "link add flvx type veth peer name eth0 netns flpod-x" in host.splitlines()
    assert inside_argv == ["ip", "-n", "flpod-x", "-batch", "-"]
    assert "addr add 10.244.0.7/16 dev eth0" in inside.splitlines()


def test_write_files_makes_the_directory_hold_exactly_the_files(tmp_path: Path) -> None:
    assert write_files(tmp_path, {"a": (b"1", 0o644), "sub/b": (b"2", 0o600)})
    assert (tmp_path / "sub" / "b").stat().st_mode & 0o777 == 0o600
    assert not write_files(tmp_path, {"a": (b"1", 0o644), "sub/b": (b"2", 0o600)})
    assert write_files(tmp_path, {"a": (b"changed", 0o644)})
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a"]


def test_key_files_projects_items_and_rejects_missing_keys() -> None:
    data = {"k": b"v", "other": b"o"}
    assert key_files(data, None, 0o644, "cm", False) == {"k": (b"v", 0o644), "other": (b"o", 0o644)}
    assert key_files(
        data, [{"key": "k", "path": "dir/k.txt", "mode": 0o400}], 0o644, "cm", False
    ) == {"dir/k.txt": (b"v", 0o400)}
    with pytest.raises(VolumeError, match="has no key 'x'"):
        key_files(data, [{"key": "x", "path": "x"}], 0o644, 'configmap "cm"', False)
    assert key_files(data, [{"key": "x", "path": "x"}], 0o644, "cm", True) == {}


CLAIM = {
    "metadata": {"name": "data", "namespace": "ns", "uid": "abc"},
    "spec": {
        "storageClassName": "local-path",
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": "2Gi"}},
    },
}


def test_volume_is_pre_bound_to_its_claim(tmp_path: Path) -> None:
    volume = volume_for(CLAIM, tmp_path)
    assert volume["metadata"]["name"] == "pvc-abc"
    assert volume["spec"]["claimRef"] == {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "namespace": "ns",
        "name": "data",
        "uid": "abc",
    }
    assert volume["spec"]["capacity"] == {"storage": "2Gi"}
    assert volume["spec"]["hostPath"]["path"] == str(tmp_path)
    assert volume["spec"]["persistentVolumeReclaimPolicy"] == "Delete"


def test_only_unbound_claims_of_the_local_class_want_a_volume() -> None:
    assert wants_volume(CLAIM)
    other = {**CLAIM, "spec": {**CLAIM["spec"], "storageClassName": "fast"}}
    bound = {**CLAIM, "spec": {**CLAIM["spec"], "volumeName": "pvc-abc"}}
    assert not wants_volume(other)
    assert not wants_volume(bound)
