"""An Agent suspended and resumed on the local cluster: its members go and come back, every
member's state is kept (the count goes on from where it was), and while it sleeps callers are
refused at once with the reason (the door, the CLI)."""

from __future__ import annotations

import json

import pytest
from test_cli import cli, running_agent

from kube import Kube, phase

pytestmark = pytest.mark.usefixtures("operator")


async def test_suspend_keeps_every_members_state_and_resume_brings_them_back(
    kube: Kube, cluster: str
) -> None:
    await running_agent(kube, "tally", "foundation_agent.agents:CounterAgent", replicas=2)
    for member in (0, 1):
        code, record, err = await cli(
            kube,
            cluster,
            "send",
            "tally",
            "increment",
            "--input",
            json.dumps({"by": 3 + member}),
            "--member",
            str(member),
            "--wait",
        )
        assert code == 0, err
    await kube.patch_agent("tally", {"spec": {"suspend": True}})
    agent = await kube.wait_agent(
        "tally",
        lambda a: phase(a) == "Suspended" and not a["status"].get("replicas"),
        timeout=90,
        what="tally Suspended, its pods gone",
    )
    ready = next(c for c in agent["status"]["conditions"] if c["type"] == "Ready")
    assert ready["reason"] == "Suspended" and "stay in its ConfigMap" in ready["message"]
    assert await kube.members("tally") == {}
    shown = kube.kubectl("get", "agents", "tally")
    assert "Suspended" in shown
    code, _, err = await cli(kube, cluster, "send", "tally", "increment", "--timeout", "60")
    assert code == 4 and "tally is suspended (spec.suspend: true)" in err
    await kube.patch_agent("tally", {"spec": {"suspend": False}})
    await kube.wait_agent(
        "tally",
        lambda a: phase(a) == "Running" and a["status"].get("ready") == "2/2",
        timeout=120,
        what="tally Running again",
    )
    for member, count in ((0, 3), (1, 4)):
        code, record, err = await cli(
            kube, cluster, "send", "tally", "get", "--member", str(member), "--wait"
        )
        assert code == 0 and record["result"] == {"count": count}, (err, record)
