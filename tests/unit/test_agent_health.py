from aiohttp.test_utils import TestClient, TestServer

from foundation_agent.__main__ import Runtime


async def test_readiness_follows_startup_and_shutdown() -> None:
    runtime = Runtime()
    async with TestClient(TestServer(runtime.app())) as http:
        assert (await http.get("/healthz")).status == 200
        assert (await http.get("/readyz")).status == 503
        runtime.ready = True
        assert (await http.get("/readyz")).status == 200
        runtime.stopping.set()
        assert (await http.get("/readyz")).status == 503
        assert (await http.get("/healthz")).status == 200
