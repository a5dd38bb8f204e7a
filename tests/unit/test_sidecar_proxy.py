"""The sidecar's upstream proxy against a real misbehaving HTTP server on loopback."""

from __future__ import annotations

import asyncio
import time

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from foundation_agent.sidecar.proxy import Proxy
from foundation_common.settings import SettingsError
from foundation_common.sidecar import SidecarConfig
from waiting import until


class Misbehaving:
    """An upstream whose behaviour the test sets: ok, fail (500), slow, reset; counts calls."""

    def __init__(self) -> None:
        self.mode = "ok"
        self.calls = 0
        self.go_on = asyncio.Event()  # /held: the rest of the answer waits for it

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.calls += 1
        if self.mode == "fail":
            return web.Response(status=500, text="broken")
        if self.mode == "slow":
            await asyncio.sleep(2)
        if self.mode == "reset":
            request.transport.close()
            return web.Response(status=500)
        if request.path == "/held":
            out = web.StreamResponse()
            await out.prepare(request)
            await out.write(b"first;")
            await self.go_on.wait()
            await out.write(b"rest")
            await out.write_eof()
            return out
        if request.path == "/stream":
            out = web.StreamResponse()
            await out.prepare(request)
            for i in range(3):
                await out.write(f"chunk{i};".encode())
            await out.write_eof()
            return out
        body = await request.read()
        return web.json_response(
            {
                "method": request.method,
                "path": request.path,
                "query": request.query_string,
                "body": body.decode(),
                "key": request.headers.get("X-Key"),
            }
        )

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        return app


async def proxied(upstream_url: str, **upstream: object) -> tuple[TestClient, Proxy]:
    config = SidecarConfig.model_validate(
        {"upstreams": [{"name": "llm", "url": upstream_url, **upstream}]}
    )
    proxy = Proxy(config)
    client = TestClient(TestServer(proxy.app()))
    await client.start_server()
    return client, proxy


@pytest.fixture
async def upstream():
    server = Misbehaving()
    test_server = TestServer(server.app())
    await test_server.start_server()
    server.url = str(test_server.make_url("/")).rstrip("/")
    yield server
    await test_server.close()


async def test_calls_pass_through_with_method_path_query_body_and_headers(upstream) -> None:
    client, _ = await proxied(upstream.url)
    answer = await client.post("/upstream/llm/v1/chat?x=1", data=b"hi", headers={"X-Key": "k"})
    assert answer.status == 200
    assert await answer.json() == {
        "method": "POST",
        "path": "/v1/chat",
        "query": "x=1",
        "body": "hi",
        "key": "k",
    }
    streamed = await client.get("/upstream/llm/stream")
    assert await streamed.text() == "chunk0;chunk1;chunk2;"
    unknown = await client.get("/upstream/other/x")
    assert unknown.status == 404 and "configured: llm" in (await unknown.json())["error"]
    await client.close()


async def test_sized_answers_are_relayed_whole_and_unsized_ones_as_they_come(upstream) -> None:
    client, _ = await proxied(upstream.url)
    whole = await client.get("/upstream/llm/v1/x")
    body = await whole.read()
    assert whole.headers["Content-Length"] == str(len(body))
    assert "Transfer-Encoding" not in whole.headers
    head = await client.head("/upstream/llm/v1/x")
    # The upstream's length for a HEAD (its echo says "HEAD" where the GET's said "GET").
    assert head.status == 200 and int(head.headers["Content-Length"]) == len(body) + 1
    # A reply of unknown length (a model's stream) reaches the caller part by part.
    held = await client.get("/upstream/llm/held")
    assert held.headers.get("Transfer-Encoding") == "chunked"
    assert await asyncio.wait_for(held.content.readexactly(6), 5) == b"first;"
    upstream.go_on.set()
    assert await held.content.read() == b"rest"
    await client.close()


async def test_an_api_key_from_the_environment_replaces_the_agents_header(
    upstream, monkeypatch
) -> None:
    authorization = {"secretKeyRef": {"name": "llm-key", "key": "token"}, "header": "X-Key"}
    monkeypatch.delenv("FOUNDATION_UPSTREAM_SECRET_LLM", raising=False)
    with pytest.raises(SettingsError, match="FOUNDATION_UPSTREAM_SECRET_LLM is not set"):
        await proxied(upstream.url, authorization=authorization)
    monkeypatch.setenv("FOUNDATION_UPSTREAM_SECRET_LLM", "s3cret\n")
    client, _ = await proxied(upstream.url, authorization={**authorization, "scheme": ""})
    answer = await client.get("/upstream/llm/x", headers={"x-key": "the agent's"})
    assert (await answer.json())["key"] == "s3cret"
    await client.close()
    client, _ = await proxied(upstream.url, authorization=authorization)
    assert (await (await client.get("/upstream/llm/x")).json())["key"] == "Bearer s3cret"
    await client.close()


async def test_the_circuit_opens_fails_fast_and_recovers(upstream) -> None:
    client, proxy = await proxied(
        upstream.url,
        retries=0,
        circuitBreaker={"failureThreshold": 3, "openSeconds": 0.3, "recoverySeconds": 0},
    )
    clock = [time.monotonic()]
    proxy.upstreams["llm"].breaker.clock = lambda: clock[0]
    upstream.mode = "fail"
    for _ in range(3):
        assert (await client.get("/upstream/llm/x")).status == 500
    calls = upstream.calls
    refused = await client.get("/upstream/llm/x")
    assert refused.status == 503 and refused.headers["X-Foundation-Circuit"] == "open"
    assert refused.headers["Retry-After"] == "1"
    assert upstream.calls == calls  # failed fast: the upstream was not called
    upstream.mode = "ok"
    clock[0] += 0.29
    assert (await client.get("/upstream/llm/x")).status == 503  # open for 0.3 s
    assert upstream.calls == calls
    clock[0] += 0.02
    assert (await client.get("/upstream/llm/x")).status == 200  # the half-open probe
    assert proxy.upstreams["llm"].breaker.state.value in ("recovering", "closed")
    assert (await client.get("/upstream/llm/x")).status == 200
    await client.close()


async def test_retries_only_idempotent_calls_within_the_budget(upstream) -> None:
    client, _ = await proxied(upstream.url, retries=2, circuitBreaker={"failureThreshold": 100})
    upstream.mode = "fail"
    assert (await client.get("/upstream/llm/x")).status == 500
    assert upstream.calls == 3  # GET: the call and two retries
    assert (await client.post("/upstream/llm/x", data=b"{}")).status == 500
    assert upstream.calls == 4  # POST without an idempotency key: once
    keyed = await client.post("/upstream/llm/x", data=b"{}", headers={"Idempotency-Key": "a"})
    assert keyed.status == 500 and upstream.calls == 7
    upstream.mode = "reset"
    reset = await client.get("/upstream/llm/x")
    assert reset.status == 502 and "upstream llm" in (await reset.json())["error"]
    await client.close()

    slow_client, _ = await proxied(upstream.url, timeoutSeconds=0.3, retries=3)
    upstream.mode = "slow"
    started = asyncio.get_running_loop().time()
    slow = await slow_client.get("/upstream/llm/x")
    assert slow.status == 504 and "budget of 0.3s spent" in (await slow.json())["error"]
    assert asyncio.get_running_loop().time() - started < 1.0
    await slow_client.close()


async def test_rate_limits_queue_briefly_then_answer_429(upstream) -> None:
    client, _ = await proxied(
        upstream.url, rateLimit={"requestsPerSecond": 10, "burst": 2, "maxWaitMs": 150}
    )
    codes = [(await client.get("/upstream/llm/x")).status for _ in range(3)]
    assert codes == [200, 200, 200]  # the third waited ~100 ms for its token
    answers = await asyncio.gather(*(client.get("/upstream/llm/x") for _ in range(5)))
    limited = [a for a in answers if a.status == 429]
    assert limited and limited[0].headers["X-Foundation-Rate-Limited"] == "upstream"
    assert limited[0].headers["Retry-After"] == "1"
    await client.close()


def test_configuration_is_validated_with_clear_messages() -> None:
    with pytest.raises(ValueError, match="upstream names must be unique: a"):
        SidecarConfig.model_validate(
            {"upstreams": [{"name": "a", "url": "http://x"}, {"name": "a", "url": "http://y"}]}
        )
    with pytest.raises(ValueError, match="failureThreshold, failureRatio or both"):
        SidecarConfig.model_validate(
            {
                "upstreams": [
                    {
                        "name": "a",
                        "url": "http://x",
                        "circuitBreaker": {"failureThreshold": None},
                    }
                ]
            }
        )


async def test_the_health_check_opens_the_circuit_before_callers_fail_and_probes_it_back(
    upstream,
) -> None:
    client, proxy = await proxied(
        upstream.url,
        retries=0,
        circuitBreaker={"failureThreshold": 2, "openSeconds": 0.3, "recoverySeconds": 0},
        pool={"healthCheck": {"path": "/health", "intervalSeconds": 0.1}},
    )
    breaker = proxy.upstreams["llm"].breaker
    await until(lambda: upstream.calls >= 1, what="the first health check")
    assert breaker.state.value == "closed"
    upstream.mode = "fail"
    calls = upstream.calls
    # Two failed checks open it, without a caller's call.
    await until(lambda: breaker.state.value == "open", what="the circuit open")
    assert upstream.calls >= calls + 2
    refused = await client.get("/upstream/llm/x")
    assert refused.status == 503 and refused.headers["X-Foundation-Circuit"] == "open"
    upstream.mode = "ok"
    # The open time passes; the next check is the successful probe.
    await until(lambda: breaker.state.value in ("recovering", "closed"), what="a probe")
    assert (await client.get("/upstream/llm/x")).status == 200
    await client.close()
    assert proxy.upstreams["llm"].checking.cancelled()
