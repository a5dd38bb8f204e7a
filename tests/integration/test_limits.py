"""Bad input never takes an Agent down (issue 26), on the local cluster: a result too large
for its budget, a 100 MB body to each of a member's ports, JSON nested 100,000 deep. Each
gets the status and the message naming its limit; no member restarts, its memory grows by
less than 20 MB, the Agent stays Running, and the next task counts as before."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import pytest

from bodies import send
from kube import Kube, agent_condition, in_pod, phase

pytestmark = pytest.mark.usefixtures("operator")

HUNDRED_MB = 100 << 20
CGROUPS = Path("/sys/fs/cgroup/pids/foundation-local")

HERE = Path(__file__).parent


def rss_mib(uid: str, container: str) -> float:
    """Resident memory of a container's processes (the test node runs them as processes)."""
    total = 0
    for pid in (CGROUPS / uid / container / "cgroup.procs").read_text().split():
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        total += int(next(x for x in status.splitlines() if x.startswith("VmRSS")).split()[1])
    return total / 1024


async def test_oversized_results_bodies_and_nesting_fail_alone_and_the_member_goes_on(
    kube: Kube,
) -> None:
    await kube.create_agent(
        "bounded",
        agent="foundation_agent.agents:TaskAgent",
        sidecar={"upstreams": [{"name": "nowhere", "url": "http://127.0.0.1:9"}]},
    )
    await kube.wait_agent("bounded", lambda a: phase(a) == "Running", timeout=90)
    pod = await kube.pod("bounded-0")
    ip, uid = pod["status"]["podIP"], pod["metadata"]["uid"]
    token = (await kube.caller())["Authorization"]
    base = f"http://{ip}:8080"
    async with await kube.member_client(timeout=30) as http:

        async def run(task_id: str, action: str, input: object) -> dict:
            sent = await http.post(
                f"{base}/v1/tasks", json={"id": task_id, "action": action, "input": input}
            )
            assert sent.status_code == 202, sent.text
            return (await http.get(f"{base}/v1/tasks/{task_id}?wait=30")).json()

        # A result of 1.1 MB from a 20-byte input: that task fails, nothing else does.
        assert (await run("before", "put", {"key": "n", "value": 1}))["status"] == "succeeded"
        big = await run("big", "emit", {"bytes": 1_100_000})
        assert big["status"] == "failed"
        assert big["error"] == (
            "ResultTooLarge: the result takes 1100002 bytes as JSON, over this Agent's limit "
            "of 262144 bytes (spec.limits.resultBytes); the state is kept as it was"
        )

        # JSON nested 100,000 deep, to the task API and to A2A: 400 naming the limit.
        deep = "[" * 100_000 + "]" * 100_000
        for port, path in ((8080, "/v1/tasks"), (8081, "/")):
            answer = await http.post(
                f"http://{ip}:{port}{path}",
                content=deep,
                headers={"Content-Type": "application/json"},
            )
            assert answer.status_code == 400, (port, answer.text)
            assert "nested too deep: the limit is 64 levels" in answer.json()["error"]

    # 100 MB, announced and chunked, to every port; memory measured around each.
    agent_before, sidecar_before = rss_mib(uid, "agent"), rss_mib(uid, "sidecar")
    auth = f"Authorization: {token}\r\n"
    for port, path in ((8080, "/v1/tasks"), (8081, "/"), (8082, "/metrics")):
        for chunked in (False, True):
            answer = await asyncio.to_thread(send, ip, port, path, HUNDRED_MB, chunked, auth)
            if port == 8082:  # the metrics port takes GETs only, and reads no body
                assert answer["status"] in (405, 413), answer
            else:
                assert answer["status"] == 413, (port, chunked, answer)
                assert "the limit is 1048576 bytes" in json.loads(answer["body"])["error"]
    for chunked in (False, True):
        program = (
            f"import json, sys; sys.path.insert(0, {str(HERE)!r}); from bodies import send; "
            f"print(json.dumps(send('127.0.0.1', 15000, '/upstream/nowhere/x', {HUNDRED_MB}, "
            f"{chunked})))"
        )
        answer = await in_pod(kube, "bounded-0", program)
        assert isinstance(answer, dict) and answer["status"] == 413, answer
        assert "the limit is 1048576 bytes" in answer["body"]
    grew = rss_mib(uid, "agent") - agent_before, rss_mib(uid, "sidecar") - sidecar_before
    assert grew[0] < 20 and grew[1] < 20, f"grew by {grew[0]:.1f} and {grew[1]:.1f} MiB"

    # Nobody restarted, the Agent is Running, and the state is as the good tasks left it.
    pod = await kube.pod("bounded-0")
    assert all(c["restartCount"] == 0 for c in pod["status"]["containerStatuses"])
    assert phase(await kube.agent("bounded") or {}) == "Running"
    async with await kube.member_client(timeout=30) as http:
        sent = await http.post(
            f"{base}/v1/tasks", json={"id": "after", "action": "get", "input": {"key": "n"}}
        )
        assert sent.status_code == 202
        after = (await http.get(f"{base}/v1/tasks/after?wait=30")).json()
        assert after["result"] == {"key": "n", "value": 1}
    print(f"memory growth: agent {grew[0]:.1f} MiB, sidecar {grew[1]:.1f} MiB")  # for the note


async def test_a_member_past_its_memory_limit_is_oomkilled_restarted_and_counted(
    kube: Kube,
) -> None:
    """A task that needs more memory than the member may have: the kernel kills the member
    (the test node holds containers to their limits, as a kubelet does), Kubernetes restarts
    it, the task runs again and is killed again, and supervision counts each like any crash
    until restart intensity fails the Agent, saying why."""
    await kube.create_agent(
        "hungry",
        agent="foundation_agent.agents:TaskAgent",
        resources={"limits": {"memory": "200Mi"}},
        supervision={"maxRestarts": 1, "periodSeconds": 600},
    )
    await kube.wait_agent("hungry", lambda a: phase(a) == "Running", timeout=90)
    pod = await kube.pod("hungry-0")
    assert pod["spec"]["containers"][0]["resources"]["limits"]["memory"] == "200Mi"
    base = f"http://{pod['status']['podIP']}:8080"
    async with await kube.member_client(timeout=30) as http:
        try:
            sent = await http.post(
                f"{base}/v1/tasks",
                json={"id": "feast", "action": "emit", "input": {"bytes": 400 * 2**20}},
            )
            assert sent.status_code == 202
        except httpx.TransportError:
            pass  # stored, then run at once: the member died before its answer went out
    failed = await kube.wait_agent(
        "hungry", lambda a: phase(a) == "Failed", timeout=120, what="hungry Failed"
    )
    supervised = agent_condition(failed, "Supervised")
    assert supervised["reason"] == "RestartIntensityExceeded"
    assert "last exit code 137 (OOMKilled)" in supervised["message"], supervised["message"]
