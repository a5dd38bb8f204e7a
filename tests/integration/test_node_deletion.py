"""Deletion as a kubelet does it: preStop, SIGTERM, the grace period, SIGKILL, then the object."""

from __future__ import annotations

import time
from pathlib import Path

from kube import Kube, pod, sh


def _hostpath(tmp_path: Path) -> dict:
    return {"name": "out", "hostPath": {"path": str(tmp_path), "type": "DirectoryOrCreate"}}


async def test_prestop_then_sigterm_within_the_grace_period(kube: Kube, tmp_path: Path) -> None:
    script = (
        "trap 'echo sigterm >> /out/events; exit 0' TERM; echo started >> /out/events; "
        "while true; do sleep 0.1; done"
    )
    await kube.create(
        pod(
            "graceful",
            sh(
                "main",
                script,
                volumeMounts=[{"name": "out", "mountPath": "/out"}],
                lifecycle={
                    "preStop": {"exec": {"command": ["sh", "-c", "echo prestop >> /out/events"]}}
                },
            ),
            volumes=[_hostpath(tmp_path)],
            terminationGracePeriodSeconds=20,
        )
    )
    await kube.wait_running("graceful")
    # Running is the process started, not its script past `trap`: wait for its first line.
    events = tmp_path / "events"
    await kube.wait(lambda: events.exists() and "started" in events.read_text(), 30, "started")
    started = time.monotonic()
    await kube.delete_pod("graceful")
    await kube.wait_gone("graceful", timeout=30)
    elapsed = time.monotonic() - started
    assert (tmp_path / "events").read_text().split() == ["started", "prestop", "sigterm"]
    assert elapsed < 10, (
        f"a container that exits on SIGTERM should not wait out the grace ({elapsed:.1f}s)"
    )


async def test_sigkill_after_the_grace_period(kube: Kube, tmp_path: Path) -> None:
    script = (
        "trap 'echo ignored >> /out/events' TERM; touch /out/trapped; "
        "while true; do sleep 0.1; done"
    )
    await kube.create(
        pod(
            "stubborn",
            sh("main", script, volumeMounts=[{"name": "out", "mountPath": "/out"}]),
            volumes=[_hostpath(tmp_path)],
            terminationGracePeriodSeconds=2,
        )
    )
    await kube.wait_running("stubborn")
    await kube.wait(lambda: (tmp_path / "trapped").exists(), 30, "its trap set")
    started = time.monotonic()
    await kube.delete_pod("stubborn")
    await kube.wait_gone("stubborn", timeout=30)
    elapsed = time.monotonic() - started
    assert (tmp_path / "events").read_text().split() == ["ignored"]
    assert 2 <= elapsed < 8, elapsed
