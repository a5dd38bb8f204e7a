"""What the sidecar lets through (issue 26): paths stay under an upstream's base, hop-by-hop
and forwarding headers stop at it, an API key never goes in clear outside the cluster unless
the Agent says so, capability names are checked, and watches nobody asks for end."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from pydantic import ValidationError
from yarl import URL

from foundation_agent.sidecar.hygiene import forwardable, path_problem
from foundation_agent.sidecar.proxy import Proxy
from foundation_common.discovery import Directory
from foundation_common.sidecar import Discovery, SidecarConfig


class Echo:
    """An upstream that says what reached it."""

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []

    async def handle(self, request: web.Request) -> web.Response:
        self.seen.append({"path": request.raw_path, "headers": dict(request.headers)})
        return web.json_response(self.seen[-1])


@pytest.fixture
async def echo() -> AsyncIterator[tuple[Echo, str]]:
    upstream = Echo()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", upstream.handle)
    server = TestServer(app)
    await server.start_server()
    yield upstream, str(server.make_url("/v1/tenant-a"))
    await server.close()


async def sidecar(upstream_url: str) -> TestClient:
    config = SidecarConfig.model_validate({"upstreams": [{"name": "llm", "url": upstream_url}]})
    client = TestClient(TestServer(Proxy(config).app()))
    await client.start_server()
    return client


def test_paths_that_could_climb_out_of_the_base_are_named() -> None:
    for raw in (
        "/upstream/llm/..%2F..%2Fadmin",
        "/upstream/llm/..%2f..%2fadmin",
        "/upstream/llm/../../admin",
        "/upstream/llm/%2e%2e/admin",
        "/upstream/llm/v1/./x",
        "/upstream/llm/a%5Cb",
        "/upstream/llm/a\\b",
        "/upstream/llm/%252F",
    ):
        assert path_problem(raw) is not None, raw
    for raw in ("/upstream/llm/v1/chat/completions", "/upstream/llm/a..b/c.d", "/upstream/llm/"):
        assert path_problem(raw) is None, raw


async def test_the_review_s_escape_is_refused_and_never_reaches_the_upstream(echo) -> None:
    upstream, url = echo
    client = await sidecar(url)
    # (The test's client resolves a plain "../" before sending it; sent raw, the sidecar
    # refuses it the same way: path_problem above.)
    for raw in ("/upstream/llm/..%2F..%2Fadmin", "/upstream/llm/%2e%2e/x", "/upstream/llm/a%5Cb"):
        answer = await client.get(URL(raw, encoded=True))
        assert answer.status == 400, raw
        assert "refused" in (await answer.json())["error"]
    assert upstream.seen == []
    ok = await client.get("/upstream/llm/v1/chat?x=1")
    assert ok.status == 200 and (await ok.json())["path"] == "/v1/tenant-a/v1/chat?x=1"
    await client.close()


def test_hop_by_hop_connection_named_and_forwarding_headers_are_dropped() -> None:
    headers = {
        "Connection": "keep-alive, X-Hop",
        "X-Hop": "1",
        "Keep-Alive": "timeout=5",
        "TE": "trailers",
        "Upgrade": "h2c",
        "Proxy-Authorization": "Basic x",
        "X-Forwarded-For": "1.2.3.4",
        "X-Forwarded-Host": "evil.example",
        "X-Forwarded-Proto": "https",
        "Forwarded": "for=1.2.3.4",
        "X-Key": "k",
        "Content-Type": "application/json",
    }
    assert forwardable(headers) == {"X-Key": "k", "Content-Type": "application/json"}
    assert forwardable(headers, {"x-key"}) == {"Content-Type": "application/json"}


async def test_the_upstream_sees_only_end_to_end_headers(echo) -> None:
    upstream, url = echo
    client = await sidecar(url)
    await client.get(
        "/upstream/llm/x",
        headers={
            "Connection": "X-Hop",
            "X-Hop": "1",
            "X-Forwarded-Host": "evil.example",
            "Forwarded": "for=1.2.3.4",
            "X-Key": "k",
        },
    )
    seen = {k.lower() for k in upstream.seen[-1]["headers"]}
    assert "x-key" in seen
    assert not seen & {"x-hop", "x-forwarded-host", "forwarded"}
    await client.close()


def upstream_with_key(url: str, **authorization: object) -> dict[str, Any]:
    return {
        "upstreams": [
            {
                "name": "llm",
                "url": url,
                "authorization": {"secretKeyRef": {"name": "k", "key": "t"}, **authorization},
            }
        ]
    }


def test_an_api_key_never_goes_in_clear_outside_the_cluster_unless_said() -> None:
    for url in ("http://api.example.com/v1", "http://10.0.0.5:8000", "http://model.team:80"):
        with pytest.raises(ValidationError, match="its API key would go in clear to"):
            SidecarConfig.model_validate(upstream_with_key(url))
        SidecarConfig.model_validate(upstream_with_key(url, allowPlainHttp=True))
    for url in (
        "https://api.example.com/v1",
        "http://127.0.0.1:8080",
        "http://localhost:8080",
        "http://model:8000",
        "http://model.team.svc:8000",
        "http://model.team.svc.cluster.local:8000",
    ):
        SidecarConfig.model_validate(upstream_with_key(url))


async def test_capability_names_are_checked(echo) -> None:
    _, url = echo
    client = await sidecar(url)
    for name in ("Not_A_Label", "x" * 49, "-dash"):
        answer = await client.get(f"/agents/{name}/v1/tasks")
        assert answer.status == 400
        assert "is not a capability's name" in (await answer.json())["error"]
    await client.close()


class Silent:
    """Endpoints that never change: a watch that waits."""

    def __init__(self) -> None:
        self.watching: set[str] = set()

    async def watch(self, namespace: str, service: str) -> AsyncIterator[tuple[str, dict]]:
        self.watching.add(service)
        try:
            yield "SYNC", {"items": []}
            await asyncio.Event().wait()
        finally:
            self.watching.discard(service)

    async def close(self) -> None:
        return None


async def test_a_watch_nobody_asks_for_ends() -> None:
    now = [1000.0]
    source = Silent()
    directory = Directory(Discovery(), "ns", source, idle_seconds=600, clock=lambda: now[0])
    await directory.get("invented", wait=1)
    await directory.get("summarizer", wait=1)
    assert source.watching == {"foundation-cap-invented", "foundation-cap-summarizer"}
    now[0] += 400
    await directory.get("summarizer", wait=1)  # still in use
    now[0] += 300
    await directory.get("summarizer", wait=1)
    await asyncio.sleep(0)  # the cancelled watch unwinds
    assert source.watching == {"foundation-cap-summarizer"}
    assert set(directory.capabilities) == {"foundation-cap-summarizer"}
    await directory.close()
