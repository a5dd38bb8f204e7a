"""`make demo`'s script on the local cluster, as a newcomer runs it: the operator from the chart
(least privilege, its own namespace), the example Agent, tasks through the CLI, a member
killed, the example Workflows (a DAG, a map over a planner's answer, an approval given with
the CLI). Run here a second
time after CI's own `make demo`: it must go through again (idempotent), next to the tests'
operators, which leave its namespace alone."""

from __future__ import annotations

import asyncio
import json
import subprocess

from kube import REPO

DEMO = [str(REPO / ".venv/bin/python"), str(REPO / "e2e/local/demo.py")]
KUBECTL = str(REPO / "e2e/local/kubectl")


def namespace_exists() -> bool:
    done = subprocess.run(
        [KUBECTL, "get", "namespace", "foundation-demo", "-o", "name", "--ignore-not-found"],
        capture_output=True,
        text=True,
    )
    return bool(done.stdout.strip())


async def test_the_demo_shows_every_step_and_can_run_again(cluster: str) -> None:
    installed_before = namespace_exists()
    try:
        for run in range(1 if installed_before else 2):
            done = await asyncio.to_thread(
                subprocess.run, DEMO, capture_output=True, text=True, timeout=420
            )
            out = done.stdout + done.stderr
            assert done.returncode == 0, out[-3000:]
            for line in (
                "[1/9] The operator, from the chart",
                "the same id twice is one task",
                "counter-0 is a new pod, and its count is still",
                "workflow.foundation.dev/tally condition met",
                '"message":"visitors: ',
                "workflow.foundation.dev/visits condition met",
                '"report":"fri: the count reached ',
                "waiting: Send 'hello' to everyone?",
                '"approvedBy":"',
                '"subject":"Hello from Foundation"',
                "[9/9] Done in",
            ):
                assert line in out, (run, line, out[-3000:])
        # The runner ran under the chart's operator, which holds only what it grants.
        pod = json.loads(
            subprocess.run(
                [KUBECTL, "get", "pod", "tally-runner", "-n", "foundation-demo", "-o", "json"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
        )
        assert pod["status"]["phase"] == "Succeeded"
        assert pod["spec"]["serviceAccountName"] == "tally-runner"
    finally:
        if not installed_before:
            down = subprocess.run([*DEMO, "--down"], capture_output=True, text=True, timeout=300)
            assert down.returncode == 0, down.stdout + down.stderr
            assert not namespace_exists()
