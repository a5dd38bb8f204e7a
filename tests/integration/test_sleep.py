"""Agents that sleep when idle, on the local cluster (issue 29): asleep, an Agent runs no
member; the first task sent to it wakes it, waits for it and is delivered once, whoever sends
it (the CLI and A2A through people's door, an MCP client through `foundation mcp`, another
Agent's sidecar by capability, a Workflow's runner); and a wake asked for survives the
operator killed in the middle of it."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from typing import Any

import httpx
import pytest
from a2a.client import A2ACardResolver, ClientConfig, create_client
from mcp import Client
from test_a2a import ask, proxied, result, sent
from test_a2a import http as http  # the fixture
from test_cli import cli
from test_mcp import mcp_server

from foundation_operator.agents.objects import PARKED_FOR, WAKE_REQUESTED_AT
from kube import Kube, in_pod, phase
from operators import OperatorProcess

pytestmark = pytest.mark.usefixtures("operator")
IDLE = 3  # seconds without a task before it sleeps

THROUGH_SIDECAR = """
import httpx, json
body = {"id": "via-sidecar", "action": "increment", "input": {"by": 1}}
answer = httpx.post("http://127.0.0.1:15000/agents/count/v1/tasks", json=body, timeout=60)
print(json.dumps({"status": answer.status_code, "record": answer.json()}))
"""


async def asleep(kube: Kube, name: str) -> dict[str, Any]:
    """The Agent once it sleeps: phase Sleeping, no member pod left."""
    agent = await kube.wait_agent(
        name,
        lambda a: phase(a) == "Sleeping" and not a["status"].get("replicas"),
        timeout=90,
        what=f"{name} asleep",
    )
    assert await kube.members(name) == {}
    return agent


async def sleepy_counter(kube: Kube, name: str = "tally", **spec: Any) -> None:
    await kube.create_agent(
        name,
        agent="foundation_agent.agents:CounterAgent",
        capabilities=["count"],
        sleepAfterIdleSeconds=IDLE,
        sidecar={"enabled": False},
        persistence={"store": "ConfigMap"},
        **spec,
    )


def pod_ready(pod: dict[str, Any]) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


async def parked(kube: Kube, name: str, replicas: int) -> dict[str, str]:
    """A warm Agent asleep: phase Sleeping, a ready pod for each member, each made after the
    sleep began (annotated with it); the pods' uids by name."""
    agent = await kube.wait_agent(name, lambda a: phase(a) == "Sleeping", timeout=90, what="asleep")
    since = agent["status"]["asleepSince"]

    async def warm() -> dict[str, str] | None:
        pods = await kube.members(name)
        if len(pods) == replicas and all(
            pod_ready(p)
            and p["metadata"]["annotations"].get(PARKED_FOR) == since
            and not p["metadata"].get("deletionTimestamp")
            for p in pods.values()
        ):
            return {n: p["metadata"]["uid"] for n, p in pods.items()}
        return None

    return await kube.wait(warm, timeout=90, what=f"{name}'s members parked")  # type: ignore[no-any-return]


async def count(kube: Kube, cluster: str, name: str = "tally") -> int:
    code, record, err = await cli(kube, cluster, "send", name, "get", "--wait", "--timeout", "90")
    assert code == 0, err
    return int(record["result"]["count"])


async def test_each_kind_of_caller_wakes_a_sleeping_agent_and_its_task_counts_once(
    kube: Kube, cluster: str, http: httpx.AsyncClient
) -> None:
    await sleepy_counter(kube)
    await kube.create_agent("caller", sidecar={"enabled": True}, calls={"capabilities": ["count"]})
    await kube.wait_agent("caller", lambda a: phase(a) == "Running", timeout=90, what="caller")
    agent = await asleep(kube, "tally")
    ready = next(c for c in agent["status"]["conditions"] if c["type"] == "Ready")
    assert ready["reason"] == "Sleeping" and "the first task sent wakes it" in ready["message"]
    assert "Sleeping" in kube.kubectl("get", "agents", "tally")
    woken: dict[str, float] = {}

    # The CLI, through people's door: held while the Agent wakes, then answered.
    started = time.monotonic()
    code, record, err = await cli(
        kube, cluster, "send", "tally", "increment", "--id", "via-cli", "--wait"
    )
    woken["cli"] = time.monotonic() - started
    assert code == 0 and record["result"] == {"count": 1}, err
    # The same id again, awake: the same task, no second increment.
    code, again, _ = await cli(kube, cluster, "send", "tally", "increment", "--id", "via-cli")
    assert code == 0 and again["result"] == {"count": 1}

    # A2A through the door (the card is read first: that wakes it too).
    await asleep(kube, "tally")
    started = time.monotonic()
    url = proxied(cluster, kube.ns, "tally")
    card = await A2ACardResolver(http, url).get_agent_card()
    client = await create_client(card, ClientConfig(httpx_client=http, streaming=False))
    task = await sent(client, ask("via-a2a", "increment", {"by": 1}))
    woken["a2a"] = time.monotonic() - started
    assert result(task) == {"count": 2}
    await client.close()

    # An MCP client, through `foundation mcp` (its tool list wakes it).
    await asleep(kube, "tally")
    started = time.monotonic()
    async with mcp_server(cluster, kube.ns, "tally") as mcp_url, Client(mcp_url) as mcp:
        meta = {"foundation.dev/taskId": "via-mcp"}
        called = await mcp.call_tool("tally__increment", {"by": 1}, meta=meta)
        woken["mcp"] = time.monotonic() - started
        assert called.structured_content == {"count": 3}, called

    # Another Agent's sidecar, by capability: the sidecar asks the door to wake the
    # capability's Agents and holds the call until a member is ready.
    await asleep(kube, "tally")
    started = time.monotonic()
    answer = await in_pod(kube, "caller-0", THROUGH_SIDECAR, timeout=90)
    woken["sidecar"] = time.monotonic() - started
    assert isinstance(answer, dict) and answer["status"] == 202, answer
    assert answer["record"]["sender"] == f"system:serviceaccount:{kube.ns}:caller"

    # A Workflow's runner, which reaches members itself.
    await kube.wait_agent(
        "tally", lambda a: phase(a) == "Running", timeout=60, what="tally counting the sidecar's"
    )
    assert await count(kube, cluster) == 4
    await asleep(kube, "tally")
    started = time.monotonic()
    await kube.create_workflow(
        "flow", steps=[{"name": "one", "agent": "tally", "action": "increment", "input": {}}]
    )
    flow = await kube.wait_workflow(
        "flow",
        lambda w: (w.get("status") or {}).get("phase") in ("Succeeded", "Failed"),
        timeout=120,
        what="flow ended",
    )
    woken["workflow"] = time.monotonic() - started
    assert flow["status"]["phase"] == "Succeeded", flow["status"]
    assert flow["status"]["steps"][0]["result"] == {"count": 5}

    # Each task once: five increments, each id in the history once.
    assert await count(kube, cluster) == 5
    code, listed, err = await cli(
        kube, cluster, "tasks", "tally", "--action", "increment", "-o", "json"
    )
    assert code == 0, err
    ids = [t["id"] for t in listed["tasks"]]
    assert len(ids) == len(set(ids)) == 5, ids
    assert {"via-cli", "via-a2a", "via-mcp", "via-sidecar"} <= set(ids)
    print("woken in (s):", json.dumps({k: round(v, 2) for k, v in woken.items()}))


async def test_a_wake_asked_for_survives_the_operator_killed_in_the_middle_of_it(
    kube: Kube, cluster: str, operator: OperatorProcess
) -> None:
    await sleepy_counter(kube)
    await asleep(kube, "tally")
    sending = asyncio.create_task(
        cli(
            kube,
            cluster,
            "send",
            "tally",
            "increment",
            "--id",
            "through-a-kill",
            "--wait",
            "--timeout",
            "110",
        )
    )
    # The door wrote the wake; the operator (and the door in it) dies before acting on it.
    await kube.wait_agent(
        "tally",
        lambda a: WAKE_REQUESTED_AT in (a["metadata"].get("annotations") or {}),
        timeout=30,
        what="the wake asked for",
    )
    await asyncio.to_thread(operator.stop, signal.SIGKILL)
    await asyncio.to_thread(operator.start)
    code, record, err = await sending
    assert code == 0 and record["result"] == {"count": 1}, err
    # Sent again (an answer lost): the same task.
    code, again, err = await cli(
        kube, cluster, "send", "tally", "increment", "--id", "through-a-kill"
    )
    assert code == 0 and again["result"] == {"count": 1}, err
    assert await count(kube, cluster) == 1


async def test_a_warm_agent_asleep_is_woken_by_a_call_in_its_parked_pods_even_without_operator(
    kube: Kube, cluster: str, operator: OperatorProcess
) -> None:
    """spec.warmWhileAsleep: asleep, each member's pod stays (parked, ready, no state); a call
    loads the state in the pod it reaches (the same pod: a claim, not a cold start), and is
    counted once. The operator is not needed for it: killed, a call from another Agent's
    sidecar still wakes the parked member."""
    await sleepy_counter(kube, warmWhileAsleep=True)
    await kube.create_agent("caller", sidecar={"enabled": True}, calls={"capabilities": ["count"]})
    await kube.wait_agent("caller", lambda a: phase(a) == "Running", timeout=90, what="caller")
    uids = await parked(kube, "tally", 1)
    ready = next(
        c for c in (await kube.agent("tally"))["status"]["conditions"] if c["type"] == "Ready"
    )
    assert ready["reason"] == "Sleeping" and "parked (spec.warmWhileAsleep)" in ready["message"]

    # Through people's door: the member is ready, so the call goes to it, and it loads its
    # state and answers.
    started = time.monotonic()
    code, record, err = await cli(
        kube, cluster, "send", "tally", "increment", "--id", "warm-cli", "--wait"
    )
    took = time.monotonic() - started
    assert code == 0 and record["result"] == {"count": 1}, err
    # The Agent is awake (the member said it woke), and no pod was made for it.
    await kube.wait_agent(
        "tally",
        lambda a: phase(a) == "Running" and not a["status"].get("asleepSince"),
        timeout=30,
        what="tally awake",
    )
    now = await kube.members("tally")
    assert {n: p["metadata"]["uid"] for n, p in now.items()} == uids
    states = (await kube.agent("tally"))["status"]["memberStates"]
    assert any(s.get("wokeFrom") for s in states.values()), states

    # Asleep again: the pods that served are replaced by new parked ones.
    again = await parked(kube, "tally", 1)
    assert set(again.values()).isdisjoint(uids.values())

    # The operator killed (and the door in it): another Agent's sidecar reaches a parked
    # member by capability, which wakes on the call alone.
    since = (await kube.agent("tally"))["status"]["asleepSince"]
    await asyncio.to_thread(operator.stop, signal.SIGKILL)
    try:
        answer = await in_pod(kube, "caller-0", THROUGH_SIDECAR, timeout=90)
        assert isinstance(answer, dict) and answer["status"] == 202, answer
    finally:
        await asyncio.to_thread(operator.start)
    assert {n: p["metadata"]["uid"] for n, p in (await kube.members("tally")).items()} == again
    # The operator, back, counts it awake from the member's report (and, idle since the
    # call, maybe asleep again at once: a new sleep).
    await kube.wait_agent(
        "tally",
        lambda a: phase(a) == "Running" or a["status"].get("asleepSince") not in ("", None, since),
        timeout=60,
        what="tally awake again",
    )
    # Each task once: the CLI's and the sidecar's, on one count across the sleeps.
    assert await count(kube, cluster) == 2
    print("warm wake through the door (s):", round(took, 3))


async def test_a_scale_up_claims_a_warm_spare_instead_of_starting_a_pod(
    kube: Kube, cluster: str
) -> None:
    """spec.warmSpares: a parked pod for the next ordinal, in no Service; a scale-up gives it
    the member's labels (the same pod serves), and a new spare is made for the next one; a
    scale-down stops the member and makes a fresh spare in its place."""
    await kube.create_agent(
        "tally", capabilities=["count"], warmSpares=1, persistence={"store": "ConfigMap"}
    )

    async def spare(ordinal: int, other_than: str = "") -> dict[str, Any]:
        async def found() -> dict[str, Any] | None:
            pod = await kube.get("Pod", f"tally-{ordinal}")
            if (
                pod
                and pod["metadata"]["labels"].get("foundation.dev/spare-of") == "tally"
                and pod["metadata"]["uid"] != other_than
                and not pod["metadata"].get("deletionTimestamp")
                and pod_ready(pod)
            ):
                return pod
            return None

        return await kube.wait(found, timeout=90, what=f"spare tally-{ordinal}")  # type: ignore[no-any-return]

    async def endpoints(want: int) -> list[str]:
        async def ready() -> list[str] | None:
            found = await kube.get("Endpoints", "tally") or {}
            names = sorted(
                a["targetRef"]["name"]
                for s in found.get("subsets") or []
                for a in s.get("addresses") or []
            )
            return names if len(names) == want else None

        return await kube.wait(ready, timeout=60, what=f"{want} ready members")  # type: ignore[no-any-return]

    await kube.wait_agent("tally", lambda a: phase(a) == "Running", timeout=90, what="tally")
    first = await spare(1)
    assert "foundation.dev/agent" not in first["metadata"]["labels"]
    assert await endpoints(1) == ["tally-0"]  # the spare takes no calls

    await kube.patch_agent("tally", {"spec": {"replicas": 2}})
    assert await endpoints(2) == ["tally-0", "tally-1"]
    claimed = await kube.pod("tally-1")
    assert claimed["metadata"]["uid"] == first["metadata"]["uid"]  # claimed, not started
    assert claimed["metadata"]["labels"]["foundation.dev/agent"] == "tally"
    assert "foundation.dev/spare-of" not in claimed["metadata"]["labels"]
    await spare(2)  # the next one
    await kube.wait_agent(
        "tally", lambda a: a["status"].get("ready") == "2/2", timeout=30, what="2/2"
    )

    # Tasks spread over both, the claimed one loading its state for the first it owns.
    for i in range(6):
        code, record, err = await cli(
            kube, cluster, "send", "tally", "increment", "--id", f"spread-{i}", "--wait"
        )
        assert code == 0 and record["status"] == "succeeded", err
    code, listed, err = await cli(kube, cluster, "tasks", "tally", "-o", "json")
    assert code == 0, err
    served = {t["member"] for t in listed["tasks"]}
    assert sorted(t["id"] for t in listed["tasks"]) == [f"spread-{i}" for i in range(6)]
    assert "tally-1" in served, listed

    # Scaled down: the member stops (its state kept), a fresh spare takes its name.
    await kube.patch_agent("tally", {"spec": {"replicas": 1}})
    assert await endpoints(1) == ["tally-0"]
    await spare(1, other_than=first["metadata"]["uid"])
    await kube.wait_gone("tally-2", timeout=60)
