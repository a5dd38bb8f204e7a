"""The test node holds a container to its memory limit, as a kubelet does: the limit parsed
from the spec, the container's processes in a memory cgroup, and a kill for passing it
reported as OOMKilled (issue 26: an agent past its limit is restarted and counted)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from localcluster import cgroups
from localcluster.node import podspec


def test_memory_limits_are_read_as_a_kubelet_reads_them() -> None:
    def limit(value: object) -> int | None:
        return podspec.memory_limit({"resources": {"limits": {"memory": value}}})

    assert limit("512Mi") == 512 * 2**20
    assert limit("1Gi") == 2**30
    assert limit("1.5G") == 1_500_000_000
    assert limit(1048576) == 1048576
    assert limit("lots") is None
    assert podspec.memory_limit({"resources": {"requests": {"memory": "1Gi"}}}) is None
    assert podspec.exit_reason(137, oom_killed=True) == "OOMKilled"
    assert podspec.exit_reason(137) == "Error"


def test_a_process_past_its_limit_is_killed_and_counted(tmp_path: Path) -> None:
    if not cgroups.MEMORY_ROOT.parent.is_dir():
        pytest.fail(
            "no memory cgroup controller at /sys/fs/cgroup/memory: the node cannot hold limits"
        )
    group = cgroups.MEMORY_ROOT.parent / f"foundation-unit-{tmp_path.name}"
    cgroups.limit_memory(group, 64 * 2**20)
    try:
        assert cgroups.oom_kills(group) == 0
        program = (
            f"open({str(group / 'cgroup.procs')!r}, 'w').write(str(__import__('os').getpid()))\n"
            "x = 'a' * (256 * 2**20)\n"
        )
        done = subprocess.run([sys.executable, "-c", program], capture_output=True)
        assert done.returncode == -9
        assert cgroups.oom_kills(group) == 1
    finally:
        group.rmdir()
