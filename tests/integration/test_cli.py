"""The `foundation` CLI on the local cluster, through the API server's proxy, as a user runs it
(the console script, a kubeconfig, exit codes)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess

import pytest

from kube import REPO, Kube, member_pids, phase

pytestmark = pytest.mark.usefixtures("operator")
CLI = str(REPO / ".venv/bin/foundation")
PLUGIN = str(REPO / ".venv/bin/kubectl-foundation")


async def cli(
    kube: Kube, cluster: str, *args: str, stdin: str | None = None, program: str = CLI
) -> tuple[int, dict, str]:
    """(exit code, the record printed, stderr)."""
    done = await asyncio.to_thread(
        subprocess.run,
        [program, "--kubeconfig", cluster, "-n", kube.ns, *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        env={k: v for k, v in os.environ.items() if k != "KUBECONFIG"},
    )
    record = json.loads(done.stdout) if done.stdout.strip() else {}
    return done.returncode, record, done.stderr


async def running_agent(kube: Kube, name: str, agent: str, replicas: int = 2) -> None:
    await kube.create_agent(name, agent=agent, replicas=replicas, sidecar={"enabled": False})
    await kube.wait_agent(
        name,
        lambda a: phase(a) == "Running" and a["status"].get("ready") == f"{replicas}/{replicas}",
        timeout=90,
        what=f"{name} Running",
    )


async def test_send_wait_the_same_id_twice_and_get(kube: Kube, cluster: str) -> None:
    await running_agent(kube, "tally", "foundation_agent.agents:CounterAgent")
    code, first, _ = await cli(
        kube, cluster, "send", "tally", "increment", "--input", '{"by": 3}', "--id", "t-1", "--wait"
    )
    assert code == 0 and first["status"] == "succeeded" and first["result"] == {"count": 3}
    # The same id again (a retried send): the record, not a second increment.
    code, again, _ = await cli(
        kube, cluster, "send", "tally", "increment", "--input", '{"by": 3}', "--id", "t-1", "--wait"
    )
    assert code == 0 and again["result"] == {"count": 3} and again["member"] == first["member"]
    # Input from stdin, and `kubectl foundation` (the plugin name) to the same member.
    member = int(first["member"].rsplit("-", 1)[1])
    code, read, _ = await cli(
        kube,
        cluster,
        "send",
        "tally",
        "get",
        "--input",
        "-",
        "--member",
        str(member),
        "--wait",
        stdin="{}",
        program=PLUGIN,
    )
    assert code == 0 and read["result"] == {"count": 3}
    code, record, _ = await cli(kube, cluster, "get", "tally", "t-1")
    assert code == 0 and record["id"] == "t-1" and record["status"] == "succeeded"


async def test_clear_errors_and_exit_codes(kube: Kube, cluster: str) -> None:
    await running_agent(kube, "strict", "foundation_agent.agents:CounterAgent", replicas=1)
    code, _, err = await cli(kube, cluster, "send", "nobody", "increment")
    assert code == 3 and f'agents.foundation.dev "nobody" not found in namespace "{kube.ns}"' in err
    code, _, err = await cli(kube, cluster, "send", "strict", "increment", "--input", '{"by": "x"}')
    assert code == 6 and "refused the task" in err and "by" in err
    code, _, err = await cli(kube, cluster, "send", "strict", "increment", "--input", "{oops")
    assert code == 2 and "--input is not JSON" in err
    code, _, err = await cli(
        kube, cluster, "send", "strict", "get", "--member", "5", "--timeout", "1"
    )
    assert code == 4 and "strict-5 of Agent strict is not ready" in err
    code, _, err = await cli(kube, cluster, "get", "strict", "never-sent", "--timeout", "5")
    assert code == 3 and "no member of Agent strict holds task never-sent" in err


async def test_a_member_killed_between_send_and_wait(kube: Kube, cluster: str) -> None:
    await running_agent(kube, "slow", "foundation_agent.agents:TaskAgent", replicas=1)
    code, sent, _ = await cli(
        kube, cluster, "send", "slow", "sleep", "--input", '{"seconds": 2}', "--id", "nap"
    )
    assert code == 0 and sent["status"] in ("queued", "running")
    for pid in member_pids(kube.ns, "slow-0"):
        os.kill(pid, signal.SIGKILL)
    # Accepted means stored: the restarted member runs it, and the wait sees it done.
    code, done, err = await cli(kube, cluster, "get", "slow", "nap", "--wait", "--timeout", "90")
    assert code == 0, err
    assert done["status"] == "succeeded" and done["result"] == {"slept": 2.0}
    code, _, err = await cli(
        kube,
        cluster,
        "send",
        "slow",
        "sleep",
        "--input",
        '{"seconds": 5}',
        "--wait",
        "--timeout",
        "1",
    )
    assert code == 5 and "still" in err and "--wait goes on waiting" in err
