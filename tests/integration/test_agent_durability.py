"""Agents that never lose a task or apply it twice: the runtime in member pods, killed at will."""

from __future__ import annotations

import asyncio
import os
import signal

import httpx
import pytest

from kube import Kube, agent_condition, member_pids, phase

pytestmark = pytest.mark.usefixtures("operator")

TASKS = 1000


class Client:
    """Sends each task until the member accepts it, always with the same id."""

    def __init__(self, kube: Kube, agent: str) -> None:
        self.kube, self.agent = kube, agent
        self.address = ""
        self.accepted = 0
        self.retries = 0

    async def refresh(self) -> None:
        pod = await self.kube.get("Pod", f"{self.agent}-0")
        self.address = (pod or {}).get("status", {}).get("podIP", "")

    async def send(self, http: httpx.AsyncClient, task: dict) -> dict:
        while True:
            try:
                if not self.address:
                    raise httpx.ConnectError("no address yet")
                answer = await http.post(f"http://{self.address}:8080/v1/tasks", json=task)
                if answer.status_code in (200, 202):
                    return answer.json()
                assert answer.status_code in (429, 503), answer.text
            except httpx.TransportError:
                await self.refresh()
            self.retries += 1
            await asyncio.sleep(0.1)

    async def record(self, http: httpx.AsyncClient, task_id: str) -> dict:
        while True:
            try:
                answer = await http.get(f"http://{self.address}:8080/v1/tasks/{task_id}")
                if answer.status_code == 200:
                    return answer.json()
            except httpx.TransportError:
                await self.refresh()
            await asyncio.sleep(0.1)


@pytest.mark.parametrize("store", ["ConfigMap", "Secret", "PVC"])
async def test_a_thousand_increments_survive_kills_and_pod_deletions(
    kube: Kube, store: str
) -> None:
    await kube.create_agent(
        "count",
        persistence={"store": store},
        supervision={"maxRestarts": 20, "periodSeconds": 5},
    )
    await kube.wait_agent("count", lambda a: phase(a) == "Running", timeout=60)
    client = Client(kube, "count")
    await client.refresh()
    disruptions = {150: "kill", 300: "kill", 450: "delete", 600: "kill", 750: "delete"}
    done_disruptions: list[str] = []

    async def disrupt(how: str) -> None:
        if how == "kill":
            pids = member_pids(kube.ns, "count-0")
            assert pids, "the member's process was not found"
            for pid in pids:
                os.kill(pid, signal.SIGKILL)
        else:
            await kube.delete_pod("count-0", grace=0)
        done_disruptions.append(how)

    gate = asyncio.Semaphore(16)

    async def one(i: int, http: httpx.AsyncClient) -> None:
        async with gate:
            await client.send(http, {"id": f"inc-{i}", "action": "increment", "input": {"by": 1}})
            client.accepted += 1
            if client.accepted in disruptions:
                await disrupt(disruptions[client.accepted])

    async with await kube.member_client(timeout=5) as http:
        await asyncio.gather(*(one(i, http) for i in range(TASKS)))
        # Every task ends succeeded, once: the final count is exactly the number of tasks.
        records = [await client.record(http, f"inc-{i}") for i in range(TASKS)]
        for _ in range(300):
            pending = [r for r in records if r["status"] not in ("succeeded", "failed")]
            if not pending:
                break
            await asyncio.sleep(0.1)
            records = [await client.record(http, r["id"]) if r in pending else r for r in records]
        assert {r["status"] for r in records} == {"succeeded"}
        final = await client.send(http, {"id": "final-get", "action": "get"})
        while final["status"] != "succeeded":
            await asyncio.sleep(0.05)
            final = await client.record(http, "final-get")
    assert done_disruptions == ["kill", "kill", "delete", "kill", "delete"]
    assert final["result"] == {"count": TASKS}
    print(f"{store}: {TASKS} tasks, {client.retries} retries, 3 kills and 2 pod deletions")

    agent = await kube.wait_agent(
        "count",
        lambda a: (
            (a["status"].get("state") or {}).get("store") == store
            and agent_condition(a, "Persisted")["status"] == "True"
        ),
        timeout=30,
        what="Persisted=True with the state summary",
    )
    summary = agent["status"]["state"]
    assert summary["key"] and summary["version"] > 0 and summary["sizeBytes"] > 0


async def test_a_corrupt_state_is_a_condition_not_a_hidden_crash_loop(kube: Kube) -> None:
    await kube.create(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "broken-0-state"},
            "data": {"state.json": '{"version": 4, "state": {"count": "lots"}}'},
        }
    )
    await kube.create_agent("broken")
    agent = await kube.wait_agent(
        "broken",
        lambda a: agent_condition(a, "Persisted").get("status") == "False",
        timeout=60,
        what="Persisted=False",
    )
    persisted = agent_condition(agent, "Persisted")
    assert persisted["reason"] == "StateCorrupt"
    assert "member broken-0:" in persisted["message"]
    assert "does not fit CounterState" in persisted["message"]
    assert agent_condition(agent, "Ready")["status"] == "False"
    # The member stays up (alive, not ready) with the cause on record instead of restarting.
    await asyncio.sleep(3)
    pod = await kube.get("Pod", "broken-0")
    assert pod["status"]["containerStatuses"][0]["restartCount"] == 0
    # The state object was the user's: the Agent adopted it rather than replacing it.
    adopted = await kube.get("ConfigMap", "broken-0-state")
    assert adopted["metadata"]["ownerReferences"][0]["name"] == "broken"
    assert "lots" in adopted["data"]["state.json"]


async def test_a_full_inbox_answers_429_and_loses_nothing_accepted(kube: Kube) -> None:
    await kube.create_agent(
        "busy",
        agent="foundation_agent.agents:TaskAgent",
        inbox={"maxQueued": 5},
    )
    await kube.wait_agent("busy", lambda a: phase(a) == "Running", timeout=60)
    pod = await kube.get("Pod", "busy-0")
    base = f"http://{pod['status']['podIP']}:8080"
    async with await kube.member_client(timeout=5) as http:
        first = await http.post(
            f"{base}/v1/tasks", json={"id": "slow", "action": "sleep", "input": {"seconds": 2}}
        )
        assert first.status_code == 202
        answers = [
            await http.post(f"{base}/v1/tasks", json={"id": f"t{i}", "action": "echo", "input": i})
            for i in range(8)
        ]
        codes = [a.status_code for a in answers]
        accepted = [f"t{i}" for i, code in enumerate(codes) if code == 202]
        assert 429 in codes and len(accepted) >= 4
        refused = answers[codes.index(429)]
        assert refused.headers["Retry-After"] == "1"
        assert "inbox is full" in refused.json()["error"]
        for task_id in ["slow", *accepted]:
            for _ in range(100):
                record = (await http.get(f"{base}/v1/tasks/{task_id}")).json()
                if record["status"] == "succeeded":
                    break
                await asyncio.sleep(0.1)
            assert record["status"] == "succeeded", record


async def test_retain_on_delete_keeps_the_state_for_the_next_agent_of_that_name(
    kube: Kube,
) -> None:
    client = Client(kube, "keeper")

    async def run_task(http: httpx.AsyncClient, task: dict) -> dict:
        await client.refresh()
        await client.send(http, task)
        record = await client.record(http, task["id"])
        while record["status"] not in ("succeeded", "failed"):
            await asyncio.sleep(0.05)
            record = await client.record(http, task["id"])
        return record

    spec = {"persistence": {"store": "ConfigMap", "retainOnDelete": True}}
    await kube.create_agent("keeper", **spec)
    running = await kube.wait_agent("keeper", lambda a: phase(a) == "Running", timeout=60)
    # Its finalizer is what lets the operator release the state before the collector's turn.
    assert "foundation.dev/supervisor" in running["metadata"]["finalizers"]
    async with await kube.member_client(timeout=5) as http:
        done = await run_task(http, {"id": "add", "action": "increment", "input": {"by": 5}})
        assert done["result"] == {"count": 5}
        await kube.delete_agent("keeper")
        await kube.wait(lambda: _none(kube.agent("keeper")), what="keeper gone")
        # The garbage collector has had its turn once it removed the Agent's Service, which
        # only it deletes (owned by the Agent, like the state object until it was released).
        await kube.wait(
            lambda: _none(kube.get("Service", "keeper")), what="the collector took the Service"
        )
        kept = await kube.get("ConfigMap", "keeper-0-state")
        assert kept is not None and not kept["metadata"].get("ownerReferences")

        await kube.create_agent("keeper", **spec)
        agent = await kube.wait_agent("keeper", lambda a: phase(a) == "Running", timeout=60)
        adopted = await kube.get("ConfigMap", "keeper-0-state")
        assert adopted["metadata"]["ownerReferences"][0]["uid"] == agent["metadata"]["uid"]
        again = await run_task(http, {"id": "read", "action": "get"})
        assert again["result"] == {"count": 5}


async def _none(value) -> bool:
    return await value is None


async def test_an_oversized_state_fails_its_task_with_a_clear_condition(kube: Kube) -> None:
    await kube.create_agent("big", agent="foundation_agent.agents:TaskAgent")
    await kube.wait_agent("big", lambda a: phase(a) == "Running", timeout=60)
    client = Client(kube, "big")
    await client.refresh()
    async with await kube.member_client(timeout=10) as http:
        tasks = {
            "a": {"key": "a", "bytes": 600 * 1024},
            "b": {"key": "b", "bytes": 600 * 1024},
        }
        records = {}
        for task_id, task_input in tasks.items():
            await client.send(http, {"id": task_id, "action": "fill", "input": task_input})
            record = await client.record(http, task_id)
            while record["status"] not in ("succeeded", "failed"):
                await asyncio.sleep(0.05)
                record = await client.record(http, task_id)
            records[task_id] = record
        # An input that cannot be stored is refused at the door, with the reason.
        too_big = await http.post(
            f"http://{client.address}:8080/v1/tasks",
            json={"id": "c", "action": "put", "input": {"key": "c", "value": "y" * 500_000}},
        )
    assert too_big.status_code == 413 and "would not fit" in too_big.json()["error"]
    assert records["a"]["status"] == "succeeded"
    assert records["b"]["status"] == "failed"
    assert "over the ConfigMap store's limit of 1048576 bytes" in records["b"]["error"]
    agent = await kube.wait_agent(
        "big",
        lambda a: agent_condition(a, "Persisted").get("reason") == "StateTooLarge",
        timeout=30,
        what="Persisted=False StateTooLarge",
    )
    assert "use persistence.store PVC" in agent_condition(agent, "Persisted")["message"]
    assert agent_condition(agent, "Ready")["status"] == "True"  # the member goes on


async def test_a_configmap_written_by_someone_else_is_reported_not_overwritten(
    kube: Kube, cluster: str
) -> None:
    from foundation_agent.stores import Commit, StateConflict
    from foundation_agent.stores.configmap import ConfigMapStore
    from foundation_common import rest

    await kube.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "shared"}})
    async with rest.connect(cluster) as api:  # the members' client
        mine = ConfigMapStore(api, kube.ns, "shared")
        theirs = ConfigMapStore(api, kube.ns, "shared")
        assert await mine.load() is None and await theirs.load() is None
        await theirs.commit(Commit(version=1, saved_at=1.0, state='{"count": 7}'))
        with pytest.raises(StateConflict) as conflict:
            await mine.commit(Commit(version=1, saved_at=2.0, state='{"count": 1}'))
        assert "changed by another writer" in conflict.value.message
        assert (await ConfigMapStore(api, kube.ns, "shared").load()).state == {"count": 7}
