"""The console's server (foundation_cli.console.server) over a stand-in for the API server: on a
user's machine it answers its loopback name only and takes writes only from its own page; in a
cluster it calls with each person's token (a proxy's header, or the one they sign in with) and
has none of its own; refusals keep the API server's words; watches become server-sent events.
(The real API server and a real browser: tests/integration/test_console.py.)"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from foundation_cli.console.server import (
    MAX_BODY,
    SESSION_COOKIE,
    TOKEN_HEADER,
    Console,
    InCluster,
    summary,
)

PEOPLE = {"alice-token": "alice", "bob-token": "bob"}


class ApiServer:
    """Lists Agents for alice only (bob is refused, in the API server's words); a watch sends
    one change; SelfSubjectAccessReview answers anyone it knows."""

    def __init__(self) -> None:
        self.seen: list[str | None] = []

    def who(self, request: web.Request) -> str | None:
        header = request.headers.get("Authorization", "")
        return PEOPLE.get(header.removeprefix("Bearer "))

    async def agents(self, request: web.Request) -> web.StreamResponse:
        user = self.who(request)
        self.seen.append(user)
        if user is None:
            return web.json_response({"kind": "Status", "message": "Unauthorized"}, status=401)
        if user != "alice":
            message = (
                f'agents.foundation.dev is forbidden: User "{user}" cannot list resource '
                '"agents" in API group "foundation.dev" in the namespace "team"'
            )
            return web.json_response({"kind": "Status", "message": message}, status=403)
        item = {"metadata": {"name": "tally", "resourceVersion": "7"}, "spec": {"agent": "m:C"}}
        if request.query.get("watch"):
            out = web.StreamResponse()
            await out.prepare(request)
            await out.write(json.dumps({"type": "MODIFIED", "object": item}).encode() + b"\n")
            return out
        return web.json_response({"items": [item], "metadata": {"resourceVersion": "7"}})

    async def review(self, request: web.Request) -> web.Response:
        if self.who(request) is None:
            return web.json_response({"message": "Unauthorized"}, status=401)
        return web.json_response({"status": {"allowed": True}}, status=201)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/apis/foundation.dev/v1alpha1/namespaces/team/agents", self.agents)
        app.router.add_post("/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", self.review)
        return app


async def in_cluster() -> tuple[ApiServer, TestServer, Console]:
    api = ApiServer()
    server = TestServer(api.app())
    await server.start_server()
    return api, server, Console(InCluster(str(server.make_url("")), None), "team", loopback=False)


async def test_in_a_cluster_each_call_goes_with_the_persons_own_token() -> None:
    api, server, console = await in_cluster()
    async with TestClient(TestServer(console.app(8765))) as http:
        page = await (await http.get("/")).text()
        assert console.token in page
        nobody = await http.get("/api/agents")
        assert nobody.status == 401 and "sign in" in (await nobody.json())["message"]
        assert api.seen == []  # nothing was sent without a token: the pod has none
        # Behind an authenticating proxy: its Authorization header.
        proxied = await http.get("/api/agents", headers={"Authorization": "Bearer alice-token"})
        assert [r["name"] for r in (await proxied.json())["items"]] == ["tally"]
        # Signing in: the token checked with the API server, then kept in a strict cookie.
        refused = await http.post(
            "/api/session", json={"token": "stolen"}, headers={TOKEN_HEADER: console.token}
        )
        assert refused.status == 401
        signed = await http.post(
            "/api/session", json={"token": "bob-token"}, headers={TOKEN_HEADER: console.token}
        )
        assert signed.status == 200
        cookie = signed.cookies[SESSION_COOKIE]
        assert cookie["httponly"] and cookie["samesite"] == "Strict"
        forbidden = await http.get("/api/agents")
        body = await forbidden.json()
        assert (
            forbidden.status == 403
            and 'User "bob" cannot list resource "agents"' in body["message"]
        )
        assert api.seen == ["alice", "bob"]
        # A sign-in without the page's token is refused: another site cannot sign anyone in.
        forged = await http.post("/api/session", json={"token": "alice-token"})
        assert forged.status == 403
    await server.close()


async def test_a_watch_is_relayed_as_server_sent_events() -> None:
    _, server, console = await in_cluster()
    async with TestClient(TestServer(console.app(8765))) as http:
        answer = await http.get(
            "/api/watch/agents?resourceVersion=7", headers={"Authorization": "Bearer alice-token"}
        )
        text = await answer.text()
        assert answer.headers["Content-Type"] == "text/event-stream"
        assert "event: open" in text and "event: change" in text and "event: end" in text
        change = next(line for line in text.splitlines() if line.startswith('data: {"type"'))
        assert json.loads(change[6:])["object"]["name"] == "tally"
        denied = await http.get("/api/watch/agents", headers={"Authorization": "Bearer bob-token"})
        assert "event: error" in await denied.text()
    await server.close()


async def test_on_a_users_machine_only_its_loopback_name_and_its_own_page() -> None:
    _, server, _ = await in_cluster()
    console = Console(InCluster(str(server.make_url("")), None), "team", loopback=True)
    async with TestClient(TestServer(console.app(8765))) as http:
        rebound = await http.get("/", headers={"Host": "evil.example:8765"})
        assert rebound.status == 421
        ok = await http.get("/", headers={"Host": "127.0.0.1:8765"})
        assert ok.status == 200
        forged = await http.post(
            "/api/agents/tally/tasks",
            json={"action": "increment"},
            headers={"Host": "127.0.0.1:8765"},
        )
        assert forged.status == 403 and "reload" in (await forged.json())["message"]
        oversized = await http.post(
            "/api/agents/tally/tasks",
            data=b"x" * (MAX_BODY + 1),
            headers={"Host": "127.0.0.1:8765", TOKEN_HEADER: console.token},
        )
        assert oversized.status == 413 and "over" in (await oversized.json())["message"]
    await server.close()


def test_a_row_shows_what_a_list_needs() -> None:
    agent: dict[str, Any] = {
        "metadata": {"name": "a", "resourceVersion": "3", "creationTimestamp": "t"},
        "spec": {"agent": "m:C", "replicas": 2},
        "status": {"phase": "Running", "ready": "2/2", "restarts": 1},
    }
    assert summary("agents", agent) == {
        "name": "a",
        "resourceVersion": "3",
        "created": "t",
        "phase": "Running",
        "agent": "m:C",
        "ready": "2/2",
        "restarts": 1,
        "replicas": 2,
    }
    assert (
        summary("workflows", {"metadata": {"name": "w"}, "spec": {"steps": [{}, {}]}})["steps"] == 2
    )
