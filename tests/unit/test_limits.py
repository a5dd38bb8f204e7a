"""What one request may cost (issue 26, docs/limits.md): bodies, nesting and requests in
flight are bounded on every port, each refusal says which limit, and the server goes on."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from foundation_common import limits
from foundation_common.limits import AsgiLimits, BadJson, Limits
from waiting import until

SMALL = Limits(request_bytes=4096, json_depth=8, in_flight=2)
in_flight: list[int] = []


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def test_nesting_is_counted_without_recursion_and_refused_with_its_limit() -> None:
    assert limits.loads(nested(8), SMALL) == [[[[[[[[]]]]]]]]
    assert limits.loads('{"a": [1, {"b": 2}]}', SMALL) == {"a": [1, {"b": 2}]}
    for depth in (9, 990, 100_000):  # 990 was a RecursionError (a 500) in json.loads' callers
        with pytest.raises(BadJson, match="nested too deep: the limit is 8 levels"):
            limits.loads(nested(depth), SMALL)
    with pytest.raises(BadJson, match="not JSON"):
        limits.loads(b"{nope", SMALL)


def aiohttp_app(started: asyncio.Event, release: asyncio.Event) -> web.Application:
    async def echo(request: web.Request) -> web.Response:
        try:
            body = await limits.read_json(request, SMALL)
        except BadJson as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response(body)

    async def slow(_: web.Request) -> web.Response:
        in_flight.append(1)
        started.set()
        await release.wait()
        return web.json_response({})

    app = web.Application(
        client_max_size=SMALL.request_bytes,
        middlewares=[limits.middleware(SMALL, exempt=frozenset({"/healthz"}))],
    )
    app.router.add_post("/echo", echo)
    app.router.add_get("/slow", slow)

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    app.router.add_get("/healthz", healthz)
    return app


async def test_an_aiohttp_port_bounds_bodies_nesting_and_requests_in_flight() -> None:
    started, release = asyncio.Event(), asyncio.Event()
    async with TestClient(TestServer(aiohttp_app(started, release))) as client:
        ok = await client.post("/echo", json={"a": 1})
        assert ok.status == 200 and await ok.json() == {"a": 1}
        announced = await client.post("/echo", data=b"x" * 5000)
        assert announced.status == 413
        assert (await announced.json())["error"] == (
            "the request body is too large (5000 bytes): the limit is 4096 bytes"
        )

        async def chunks() -> Any:
            for _ in range(10):
                yield b"[" * 1000

        streamed = await client.post("/echo", data=chunks())  # no Content-Length
        assert streamed.status == 413
        assert "the limit is 4096 bytes" in (await streamed.json())["error"]
        deep = await client.post("/echo", data=nested(50))
        assert deep.status == 400
        assert (await deep.json())["error"] == "the JSON is nested too deep: the limit is 8 levels"

        slow = [asyncio.create_task(client.get("/slow")) for _ in range(2)]
        await started.wait()
        await until(lambda: len(in_flight) == 2)
        busy = await client.get("/slow")
        assert busy.status == 429 and busy.headers["Retry-After"] == "1"
        assert "2 requests are in flight" in (await busy.json())["error"]
        assert (await client.get("/healthz")).status == 200  # probes are never refused
        release.set()
        assert [r.status for r in await asyncio.gather(*slow)] == [200, 200]
        assert (await client.post("/echo", json=[1])).status == 200  # and it goes on


async def test_an_asgi_port_bounds_bodies_nesting_and_requests_in_flight() -> None:
    seen: list[bytes] = []
    release = asyncio.Event()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        message = await receive()
        seen.append(message["body"])
        if scope["path"] == "/slow":
            await release.wait()
        body = json.dumps({"got": len(message["body"])}).encode()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})

    bounded = AsgiLimits(app, SMALL)
    transport = httpx.ASGITransport(app=bounded)
    async with httpx.AsyncClient(transport=transport, base_url="http://member") as client:
        ok = await client.post("/", json={"a": [1]})
        assert ok.status_code == 200 and ok.json() == {"got": len(b'{"a":[1]}')}
        assert seen == [b'{"a":[1]}']  # the app gets the body whole, as sent
        over = await client.post("/", content=b"x" * 5000)
        assert over.status_code == 413 and "the limit is 4096 bytes" in over.json()["error"]

        async def chunks() -> Any:
            for _ in range(10):
                yield b"x" * 1000

        streamed = await client.post("/", content=chunks())
        assert streamed.status_code == 413
        deep = await client.post(
            "/", content=nested(40), headers={"content-type": "application/json"}
        )
        assert deep.status_code == 400 and "the limit is 8 levels" in deep.json()["error"]
        not_json = await client.post("/", content=b"{nope")
        assert not_json.status_code == 200  # the app answers that in its protocol's words
        slow = [asyncio.create_task(client.post("/slow", json={})) for _ in range(2)]
        await until(lambda: bounded.in_flight == 2)
        busy = await client.post("/", json={})
        assert busy.status_code == 429 and busy.headers["retry-after"] == "1"
        release.set()
        assert [r.status_code for r in await asyncio.gather(*slow)] == [200, 200]
        assert bounded.in_flight == 0
