"""`e2e/local/cluster`: down leaves nothing behind; up is idempotent and fast when running.

These tests take the cluster down and bring it back, so conftest orders them after all others.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path

import pytest

from kube import REPO, RESTART_BACKOFF, Kube, pod, sh
from localcluster import processes

CLUSTER = str(REPO / "e2e/local/cluster")
pytestmark = pytest.mark.cluster_lifecycle


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CLUSTER, *args], capture_output=True, text=True)


def test_up_when_running_is_idempotent_and_fast(cluster: str) -> None:
    started = time.monotonic()
    result = run("up", "--restart-backoff", RESTART_BACKOFF)
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    assert "already running" in result.stdout
    assert elapsed < 3, f"warm up took {elapsed:.1f}s"
    status = run("status")
    assert status.returncode == 0
    assert f"restart back-off         {float(RESTART_BACKOFF)} s" in status.stdout
    for node in ("foundation-local-node", "foundation-hollow-node"):
        assert re.search(rf"^\s*(nodes)?\s+{node}\s+Ready\s", status.stdout, re.M), status.stdout


async def test_down_leaves_no_process_mount_or_namespace(kube: Kube) -> None:
    # Something to clean up: a running pod with a volume mounted at a path the host lacks.
    await kube.create(
        pod(
            "lingering",
            sh(
                "main",
                "sleep 600 & sleep 600",
                volumeMounts=[{"name": "v", "mountPath": "/foundation-test-mountpoint/deep"}],
            ),
            volumes=[{"name": "v", "emptyDir": {}}],
        )
    )
    running = await kube.wait_running("lingering")
    pid = int((REPO / ".local-cluster/run/kube-apiserver.pid").read_text())
    # Running is the shim started; it makes the mount point just before exec.
    await kube.wait(lambda: Path("/foundation-test-mountpoint").exists(), 30, "the mount point")

    result = run("down")
    assert result.returncode == 0, result.stdout + result.stderr
    try:
        assert not processes.alive(pid)  # a zombie waiting for init counts as gone
        assert (
            not [n for n in os.listdir("/run/netns") if n.startswith("flpod-")]
            if os.path.isdir("/run/netns")
            else True
        )
        assert not Path("/sys/class/net/flbr0").exists()
        assert not Path("/sys/fs/cgroup/pids/foundation-local").exists()
        assert not Path("/foundation-test-mountpoint").exists()
        with open("/proc/self/mountinfo") as mountinfo:
            assert ".local-cluster" not in mountinfo.read()
        assert not _processes_started_from(REPO / ".local-cluster")
        assert running["metadata"]["uid"]  # the pod was really there
    finally:
        restarted = run("up", "--restart-backoff", RESTART_BACKOFF)
        assert restarted.returncode == 0, restarted.stdout + restarted.stderr


def _processes_started_from(state: Path) -> list[str]:
    """Command lines of running processes that mention the cluster's state directory."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if str(state) in cmdline:
            found.append(cmdline)
    return found
