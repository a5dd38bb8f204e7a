"""Workflows on the namespace's shared runner (`spec.runner.shared: true`, issue 29): no pod of
their own, a process each in a runner already running; one Workflow's process SIGKILLed in the
middle of its run goes on from its status, every step counted once, and the Workflows beside
it on the same runner go on untouched."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path
from typing import Any

import pytest
from test_workflows import count_of

from kube import Kube, phase

pytestmark = pytest.mark.usefixtures("operator")
SHARED = {"shared": True}


def pids_of(name: str, namespace: str) -> list[int]:
    """The processes running Workflow `name` (each names itself wf-<name>) in `namespace`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            comm = (entry / "comm").read_text().strip()
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if comm == f"wf-{name}"[:15] and f"FOUNDATION_NAMESPACE={namespace}".encode() in environ:
            found.append(int(entry.name))
    return found


def chain(counter: str) -> list[dict[str, Any]]:
    """increment, nap, increment, nap, increment: three counted steps, time to be killed."""
    steps: list[dict[str, Any]] = []
    for i in range(5):
        step: dict[str, Any] = {"name": f"s{i}"}
        if i % 2:
            step |= {"agent": "naps", "action": "sleep", "input": {"seconds": 1.5}}
        else:
            step |= {"agent": counter, "action": "increment", "input": {"by": 1}}
        if steps:
            step["dependsOn"] = [steps[-1]["name"]]
        steps.append(step)
    return steps


def ended(workflow: dict[str, Any]) -> bool:
    return (workflow.get("status") or {}).get("phase") in ("Succeeded", "Failed")


async def test_a_shared_runners_workflow_killed_mid_run_resumes_and_its_neighbours_go_on(
    kube: Kube,
) -> None:
    no_sidecar = {"enabled": False}
    for name in ("ca", "cb", "cc"):
        await kube.create_agent(name, sidecar=no_sidecar)
    await kube.create_agent(
        "naps", agent="foundation_agent.agents:TaskAgent", replicas=3, sidecar=no_sidecar
    )
    for name in ("ca", "cb", "cc", "naps"):
        await kube.wait_agent(name, lambda a: phase(a) == "Running", timeout=90, what=name)

    # The first shared Workflow of the namespace makes its shared runner (one pod, no pod of
    # the Workflow's own, no account of its own).
    await kube.create_workflow(
        "first", runner=SHARED, steps=[{"name": "one", "agent": "ca", "action": "get"}]
    )
    first = await kube.wait_workflow("first", ended, timeout=120, what="the first ended")
    assert first["status"]["phase"] == "Succeeded", first["status"]
    assert await kube.get("Pod", "first-runner") is None
    assert await kube.get("ServiceAccount", "first-runner") is None
    pods = await kube.names("Pod", "app.kubernetes.io/name=foundation-shared-runner")
    assert len(pods) == 1
    runner_pod = await kube.pod(pods[0])
    sender = f"system:serviceaccount:{kube.ns}:foundation-shared-runner"
    assert first["status"]["steps"][0]["sender"] == sender  # what sharing gives up

    for name, counter in (("wa", "ca"), ("wb", "cb"), ("wc", "cc")):
        await kube.create_workflow(name, runner=SHARED, steps=chain(counter))

    # wa in the middle of its run: its first nap started.
    def napping(workflow: dict[str, Any]) -> bool:
        steps = {s["name"]: s for s in (workflow.get("status") or {}).get("steps") or []}
        return steps.get("s1", {}).get("phase") == "Running"

    await kube.wait_workflow("wa", napping, timeout=60, what="wa napping")
    killed = pids_of("wa", kube.ns)
    assert len(killed) == 1, killed
    neighbours = {name: pids_of(name, kube.ns) for name in ("wb", "wc")}
    os.kill(killed[0], signal.SIGKILL)

    async def restarted() -> bool:
        now = pids_of("wa", kube.ns)
        return bool(now) and now != killed

    await kube.wait(restarted, timeout=60, what="wa's process started again")
    for name in ("wb", "wc"):  # untouched: the same process, if still running
        assert pids_of(name, kube.ns) in ([], neighbours[name]), name

    done = await asyncio.gather(
        *(kube.wait_workflow(n, ended, timeout=120, what=f"{n} ended") for n in ("wa", "wb", "wc"))
    )
    for workflow in done:
        assert workflow["status"]["phase"] == "Succeeded", workflow["status"]
        attempts = [s.get("attempts") for s in workflow["status"]["steps"]]
        assert attempts == [1] * 5, (workflow["metadata"]["name"], attempts)
    # Every step once: three increments each, the kill included.
    assert [await count_of(kube, c) for c in ("ca", "cb", "cc")] == [3, 3, 3]
    # The shared runner's pod itself never restarted.
    after = await kube.pod(pods[0])
    assert after["metadata"]["uid"] == runner_pod["metadata"]["uid"]
    statuses = after["status"].get("containerStatuses") or []
    assert all(s.get("restartCount", 0) == 0 for s in statuses)

    # The shared runner's Deployment deleted under a Workflow in mid-run: the operator makes
    # it again at once (not only when the next shared Workflow comes), and the Workflow
    # goes on from its status, each step once.
    await kube.create_workflow("wd", runner=SHARED, steps=chain("ca"))
    await kube.wait_workflow("wd", napping, timeout=60, what="wd napping")
    kube.kubectl("delete", "deployment", "foundation-shared-runner", "--wait=false")

    async def replaced() -> bool:
        names = await kube.names("Pod", "app.kubernetes.io/name=foundation-shared-runner")
        for name in names:
            pod = await kube.get("Pod", name)
            if pod and pod["metadata"]["uid"] != runner_pod["metadata"]["uid"]:
                return True
        return False

    await kube.wait(replaced, timeout=90, what="a new shared runner pod")
    wd = await kube.wait_workflow("wd", ended, timeout=120, what="wd ended")
    assert wd["status"]["phase"] == "Succeeded", wd["status"]
    assert await count_of(kube, "ca") == 6  # wd's three, once each
