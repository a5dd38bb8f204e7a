"""The pids cgroup that holds every process the test node starts for pods, and the memory
cgroups that hold containers to their memory limits."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from localcluster.layout import CGROUP_ROOT, MEMORY_ROOT

PIDS_MOUNT = CGROUP_ROOT.parent


def available() -> bool:
    return (PIDS_MOUNT / "cgroup.procs").exists()


def ensure_root() -> None:
    CGROUP_ROOT.mkdir(exist_ok=True)


def container_cgroup(pod_uid: str, container: str) -> Path:
    return CGROUP_ROOT / pod_uid / container


def memory_cgroup(pod_uid: str, container: str) -> Path:
    return MEMORY_ROOT / pod_uid / container


def limit_memory(group: Path, limit: int) -> None:
    """Hold the processes that join `group` to `limit` bytes: past it, the kernel kills one."""
    group.mkdir(parents=True, exist_ok=True)
    (group / "memory.limit_in_bytes").write_text(str(limit))


def oom_kills(group: Path) -> int:
    """How many processes the kernel killed in `group` for passing its limit."""
    try:
        text = (group / "memory.oom_control").read_text()
    except OSError:
        return 0
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name == "oom_kill":
            return int(value)
    return 0


def pids(group: Path = CGROUP_ROOT) -> list[int]:
    """Every process in `group` and the groups below it."""
    found: list[int] = []
    if not group.is_dir():
        return found
    for dirpath, _, filenames in os.walk(group):
        if "cgroup.procs" in filenames:
            text = (Path(dirpath) / "cgroup.procs").read_text()
            found.extend(int(line) for line in text.split())
    return found


def kill(group: Path, sig: int = signal.SIGKILL) -> int:
    killed = 0
    for pid in pids(group):
        try:
            os.kill(pid, sig)
            killed += 1
        except ProcessLookupError:
            pass
    return killed


def kill_all() -> int:
    return kill(CGROUP_ROOT)


def remove(group: Path) -> None:
    """Remove `group` and the groups below it (each must be empty of processes)."""
    if not group.is_dir():
        return
    for dirpath, _, _ in sorted(os.walk(group), key=lambda w: w[0].count("/"), reverse=True):
        try:
            os.rmdir(dirpath)
        except OSError:
            pass


def remove_all() -> None:
    deadline = time.monotonic() + 5
    while pids() and time.monotonic() < deadline:
        time.sleep(0.05)
    remove(CGROUP_ROOT)
    remove(MEMORY_ROOT)
