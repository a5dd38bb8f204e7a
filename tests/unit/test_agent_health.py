import asyncio

from aiohttp.test_utils import TestClient, TestServer

from foundation_agent.agents import CounterAgent
from foundation_agent.runtime.access import Gate
from foundation_agent.runtime.member import Member
from foundation_agent.runtime.parking import Parking
from foundation_agent.runtime.server import TaskApi, metrics_app
from foundation_agent.runtime.settings import Settings
from foundation_agent.stores import MemoryStore


async def test_readiness_tasks_and_metrics_follow_loading_and_shutdown() -> None:
    api = TaskApi(Gate(None, "ns", "counter", "counter", "Permissive"))
    async with (
        TestClient(TestServer(api.app())) as http,
        TestClient(TestServer(metrics_app())) as prometheus,
    ):
        assert (await http.get("/healthz")).status == 200
        loading = await http.get("/readyz")
        assert loading.status == 503
        assert (await loading.json())["reason"] == "loading the state"
        posted = await http.post("/v1/tasks", json={"id": "a", "action": "get"})
        assert posted.status == 503 and posted.headers["Retry-After"] == "1"
        member = Member(CounterAgent(), MemoryStore(), Settings(agent_class="x:Y"))
        await member.load()
        member.start()
        api.member = member
        assert (await http.get("/readyz")).status == 200
        assert (await http.post("/v1/tasks", json={"id": "a", "action": "increment"})).status == 202
        # ?wait answers once the task is done, not before.
        waited = await (await http.get("/v1/tasks/a?wait=5")).json()
        assert waited["status"] == "succeeded"
        assert (await http.get("/v1/tasks/a?wait=soon")).status == 400
        # Cancel answers with the member's word: a done task cannot be, an unknown one is 404.
        done = await http.post("/v1/tasks/a/cancel")
        assert done.status == 409 and "only a queued task" in (await done.json())["error"]
        assert (await http.post("/v1/tasks/zz/cancel")).status == 404
        assert (await http.get("/metrics")).status == 404  # on its own port, not the tasks'
        scraped = await (await prometheus.get("/metrics")).text()
        assert 'foundation_agent_tasks_total{action="increment",outcome="succeeded"}' in scraped
        assert "foundation_agent_checkpoint_duration_seconds_bucket" in scraped
        await member.stop()
        assert (await http.get("/readyz")).status == 503
        assert (await http.get("/healthz")).status == 200


async def test_a_parked_member_is_ready_and_its_first_call_loads_the_state() -> None:
    """spec.warmWhileAsleep: parked, it is ready and loads nothing until an identified
    caller's call comes; the call waits for the load and is then served; probes load nothing."""
    settings = Settings(agent_class="x:Y", parked_for="2026-12-04T10:00:00.000000Z")

    def parked(mode: str) -> tuple[TaskApi, Parking]:
        parking = Parking(parked=True)
        return TaskApi(Gate(None, "ns", "counter", "counter", mode), parking=parking), parking

    # Required: a call without a token, or one the member cannot verify, wakes nothing.
    api, parking = parked("Required")
    async with TestClient(TestServer(api.app())) as http:
        assert (await http.post("/v1/tasks", json={"id": "a", "action": "get"})).status == 401
        headers = {"Authorization": "Bearer x"}
        assert (await http.get("/v1/tasks/a", headers=headers)).status == 401
        assert not parking.wanted.is_set()

    api, parking = parked("Permissive")
    loads = 0

    async def runtime() -> Member:  # what foundation_agent.__main__ does
        nonlocal loads
        await parking.until_wanted(asyncio.Event())
        loads += 1
        member = Member(CounterAgent(), MemoryStore(), settings)
        await member.load()
        member.start()
        api.member = member
        parking.loaded.set()
        return member

    async with TestClient(TestServer(api.app())) as http:
        started = asyncio.create_task(runtime())
        for _ in range(3):
            ready = await http.get("/readyz")
            assert ready.status == 200 and (await ready.json())["parked"] is True
            assert (await http.get("/healthz")).status == 200
        assert loads == 0 and not started.done()
        posted = await http.post("/v1/tasks", json={"id": "a", "action": "increment"})
        assert posted.status == 202, await posted.text()
        assert loads == 1 and not parking.holding
        member = await started
        assert member.summary()["wokeFrom"] == settings.parked_for
        assert (await http.get("/readyz")).status == 200
        assert (await http.get("/v1/tasks/a?wait=5")).status == 200
        await member.stop()
