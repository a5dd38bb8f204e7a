from aiohttp.test_utils import TestClient, TestServer

from foundation_agent.agents import CounterAgent
from foundation_agent.runtime.access import Gate
from foundation_agent.runtime.member import Member
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
