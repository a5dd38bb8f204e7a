"""`foundation console`: a web console on this machine's loopback, calling the cluster with the
user's kubeconfig, so their RBAC decides everything it shows and does.

- Reads: the Agents and Workflows of a namespace a page at a time (the API server's `limit` and
  `continue`: 1,000 of each are never read at once), an Agent with its member pods and recent
  Events, a Workflow; its tasks, actions and approvals through people's door.
- Live: one watch per view, the API server's, relayed to the page as server-sent events (the
  page applies each change; nothing is polled per item).
- Writes: a task (from a form built from the action's input schema), a chat turn, an
  approval's decision: through people's door, as the user.
- A call the API server refuses is answered with its status and its words (which verb on which
  resource is missing), and the page says so.
- The page is served to this machine only: the server listens on loopback, answers only a
  Host of loopback (no DNS rebinding), and takes a write only with the token the page was
  served with (no other site's form can act with the user's kubeconfig).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import secrets
import uuid
from importlib import resources
from typing import Any

import aiohttp
from aiohttp import web

from foundation_cli.console.cluster import (
    SESSION_COOKIE,
    Cluster,
    InCluster,
    Kubeconfig,
    Unauthenticated,
)
from foundation_common import access
from foundation_common.resources import AGENT, WORKFLOW

logger = logging.getLogger("foundation_cli.console")

PAGE = 100  # items a list page holds
MAX_PAGE = 500
MAX_BODY = 1 << 20  # a task's input or a decision from the page
TOKEN_HEADER = "X-Console-Token"
WATCH_SECONDS = 300  # one watch call; the page's EventSource opens the next
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")
KINDS = {"agents": AGENT, "workflows": WORKFLOW}
CARD = "/.well-known/agent-card.json"


@functools.cache
def static(name: str) -> bytes:
    """A file of the page, read once (not on every request, on the event loop)."""
    return (resources.files("foundation_cli.console") / "static" / name).read_bytes()


class Console:
    def __init__(self, cluster: Cluster, namespace: str, loopback: bool = True) -> None:
        self.cluster = cluster
        self.namespace = namespace
        self.loopback = loopback  # served on this machine (else in a cluster, behind a Service)
        self.token = secrets.token_urlsafe(24)

    # -- the API server, as the user ----------------------------------------------------------
    async def call(
        self,
        request: web.Request,
        path: str,
        method: str = "GET",
        query: list[tuple[str, str]] | None = None,
        body: Any = None,
        seconds: float = 30,
    ) -> tuple[int, Any]:
        """(status, decoded body) of one call with the user's credentials."""
        try:
            response = await self.cluster.request(request, path, method, query or [], body, seconds)
        except Unauthenticated as exc:
            return 401, {"message": str(exc)}
        try:
            data = await response.read()
        finally:
            response.release()
        try:
            decoded = json.loads(data) if data else {}
        except ValueError:
            decoded = {"message": data.decode(errors="replace")[:500]}
        return response.status, decoded

    @staticmethod
    def answer(status: int, body: Any) -> web.Response:
        """The API server's answer as the page reads it: a refusal keeps its words."""
        if status >= 400:
            message = body.get("message") or body.get("error") if isinstance(body, dict) else None
            return web.json_response(
                {"status": status, "message": str(message or f"HTTP {status}")}, status=status
            )
        return web.json_response(body, status=status)

    def door(self, kind: str, name: str, sub: str, rest: str = "") -> str:
        return (
            f"/apis/{access.GROUP}/{access.DOOR_VERSION}/namespaces/{self.namespace}"
            f"/{kind}/{name}/{sub}{rest}"
        )

    # -- pages ----------------------------------------------------------------------------------
    async def index(self, request: web.Request) -> web.Response:
        page = static("index.html").decode()
        page = page.replace("{{TOKEN}}", self.token).replace("{{NAMESPACE}}", self.namespace)
        return web.Response(
            text=page,
            content_type="text/html",
            headers={
                "Content-Security-Policy": "default-src 'self'; style-src 'self'; "
                "script-src 'self'; img-src 'self' data:; connect-src 'self'; "
                "frame-ancestors 'none'",
                "Cache-Control": "no-store",
            },
        )

    async def asset(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        kinds = {"app.js": "application/javascript", "app.css": "text/css"}
        if name not in kinds:
            raise web.HTTPNotFound()
        return web.Response(body=static(name), content_type=kinds[name])

    # -- reads ----------------------------------------------------------------------------------
    async def listing(self, request: web.Request) -> web.Response:
        """A page of Agents or Workflows, summarized, with the next page's `continue`."""
        kind = KINDS.get(request.match_info["kind"])
        if kind is None:
            raise web.HTTPNotFound()
        try:
            limit = min(MAX_PAGE, max(1, int(request.query.get("limit", PAGE))))
        except ValueError:
            return web.json_response({"message": "limit must be a number"}, status=400)
        query = [("limit", str(limit))]
        if request.query.get("continue"):
            query.append(("continue", request.query["continue"]))
        status, body = await self.call(
            request,
            f"/apis/{kind.group}/{kind.version}/namespaces/{self.namespace}/{kind.plural}",
            query=query,
        )
        if status != 200:
            return self.answer(status, body)
        meta = body.get("metadata") or {}
        return web.json_response(
            {
                "items": [summary(kind.plural, o) for o in body.get("items") or []],
                "continue": meta.get("continue") or "",
                "remaining": meta.get("remainingItemCount"),
                "resourceVersion": meta.get("resourceVersion") or "",
            }
        )

    async def agent(self, request: web.Request) -> web.Response:
        """An Agent (its status lists its members) and its recent Events."""
        name = request.match_info["name"]
        status, body = await self.call(request, AGENT.path(self.namespace, name))
        if status != 200:
            return self.answer(status, body)
        events = await self.call(
            request,
            f"/api/v1/namespaces/{self.namespace}/events",
            query=[("fieldSelector", f"involvedObject.name={name}")],
        )
        return web.json_response(
            {
                "agent": body,
                "events": recent(events[1].get("items") or []) if events[0] == 200 else [],
            }
        )

    async def workflow(self, request: web.Request) -> web.Response:
        status, body = await self.call(
            request, WORKFLOW.path(self.namespace, request.match_info["name"])
        )
        return self.answer(status, body)

    async def tasks(self, request: web.Request) -> web.Response:
        """The Agent's task history through the door (the page's filters passed on)."""
        query = [(k, v) for k, v in request.query.items()]
        status, body = await self.call(
            request, self.door("agents", request.match_info["name"], access.TASKS), query=query
        )
        return self.answer(status, body)

    async def actions(self, request: web.Request) -> web.Response:
        status, body = await self.call(
            request, self.door("agents", request.match_info["name"], access.ACTIONS)
        )
        return self.answer(status, body)

    async def card(self, request: web.Request) -> web.Response:
        status, body = await self.call(
            request, self.door("agents", request.match_info["name"], access.A2A, CARD)
        )
        return self.answer(status, body)

    # -- writes ---------------------------------------------------------------------------------
    async def _body(self, request: web.Request) -> dict[str, Any] | web.Response:
        if request.headers.get(TOKEN_HEADER) != self.token:
            return web.json_response(
                {"message": "this console's page did not send the call: reload it"}, status=403
            )
        try:
            raw = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return web.json_response(
                {"message": f"the body is over {MAX_BODY} bytes, the most the console takes"},
                status=413,
            )
        try:
            body = json.loads(raw)
        except ValueError:
            return web.json_response({"message": "the body is not JSON"}, status=400)
        if not isinstance(body, dict):
            return web.json_response({"message": "the body must be a JSON object"}, status=400)
        return body

    async def send(self, request: web.Request) -> web.Response:
        """A task from the page's form (or a chat turn): sent with a new id, waited for."""
        body = await self._body(request)
        if isinstance(body, web.Response):
            return body
        task = {
            "id": body.get("id") or f"console-{uuid.uuid4().hex[:16]}",
            "action": body.get("action"),
            "input": body.get("input"),
        }
        status, answer = await self.call(
            request,
            self.door("agents", request.match_info["name"], access.TASKS),
            "POST",
            query=[("wait", "25")],
            body=task,
            seconds=40,
        )
        return self.answer(status, answer)

    async def decide(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        if isinstance(body, web.Response):
            return body
        status, answer = await self.call(
            request,
            self.door("workflows", request.match_info["name"], access.APPROVAL),
            "POST",
            body=body,
        )
        return self.answer(status, answer)

    # -- live -------------------------------------------------------------------------------------
    async def watch(self, request: web.Request) -> web.StreamResponse:
        """Server-sent events of one watch: `kind` in the namespace (or one of them, `name`),
        from `resourceVersion`. Each event is the API server's (type, object summarized for a
        list, whole for one object); a refusal is an `error` event with its words."""
        kind = KINDS.get(request.match_info["kind"])
        if kind is None:
            raise web.HTTPNotFound()
        name = request.query.get("name", "")
        query = [("watch", "true"), ("timeoutSeconds", str(WATCH_SECONDS))]
        if request.query.get("resourceVersion"):
            query.append(("resourceVersion", request.query["resourceVersion"]))
        if name:
            query.append(("fieldSelector", f"metadata.name={name}"))
        out = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store"}
        )
        await out.prepare(request)
        path = f"/apis/{kind.group}/{kind.version}/namespaces/{self.namespace}/{kind.plural}"
        try:
            response = await self.cluster.request(
                request, path, "GET", query, None, WATCH_SECONDS + 30
            )
        except (aiohttp.ClientError, TimeoutError, Unauthenticated) as exc:
            await sse(out, "error", {"status": 503, "message": f"the watch failed: {exc}"})
            return out
        try:
            if response.status != 200:
                data = await response.read()
                try:
                    message = json.loads(data).get("message")
                except ValueError:
                    message = data.decode(errors="replace")[:300]
                await sse(out, "error", {"status": response.status, "message": message})
                return out
            await sse(out, "open", {})
            async for line in response.content:
                if not line.strip():
                    continue
                event = json.loads(line)
                obj = event.get("object") or {}
                if event.get("type") == "ERROR":  # e.g. 410 Gone: the page lists again
                    await sse(
                        out, "error", {"status": obj.get("code"), "message": obj.get("message")}
                    )
                    break
                shown = obj if name else summary(kind.plural, obj)
                await sse(out, "change", {"type": event.get("type"), "object": shown})
        except (aiohttp.ClientError, ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            response.release()
        with contextlib.suppress(ConnectionResetError):
            await sse(out, "end", {})
        return out

    # -- the app --------------------------------------------------------------------------------
    def app(self, port: int) -> web.Application:
        allowed = {f"{h}:{port}" for h in LOOPBACK_HOSTS}

        @web.middleware
        async def loopback_only(request: web.Request, handler: Any) -> web.StreamResponse:
            if request.host not in allowed:
                return web.Response(status=421, text="this console answers its loopback address")
            return await handler(request)  # type: ignore[no-any-return]

        app = web.Application(
            client_max_size=MAX_BODY, middlewares=[loopback_only] if self.loopback else []
        )
        r = app.router
        r.add_get("/", self.index)
        r.add_get("/static/{name}", self.asset)
        r.add_get("/api/{kind}", self.listing)
        r.add_get("/api/watch/{kind}", self.watch)
        r.add_get("/api/agents/{name}", self.agent)
        r.add_get("/api/agents/{name}/tasks", self.tasks)
        r.add_get("/api/agents/{name}/actions", self.actions)
        r.add_get("/api/agents/{name}/card", self.card)
        r.add_post("/api/agents/{name}/tasks", self.send)
        r.add_get("/api/workflows/{name}", self.workflow)
        r.add_post("/api/workflows/{name}/approval", self.decide)
        r.add_post("/api/session", self.sign_in)
        r.add_delete("/api/session", self.sign_out)
        r.add_get("/api/session", self.session)

        async def closed(_: web.Application) -> None:
            await self.cluster.close()

        app.on_cleanup.append(closed)
        return app

    # -- in a cluster: who is signed in -------------------------------------------------------
    async def session(self, request: web.Request) -> web.Response:
        """Whether calls go with a user's token: always on this machine (the kubeconfig's); in
        a cluster, once the user signed in or a proxy in front sends one."""
        return web.json_response(
            {
                "signedIn": self.cluster.user_token(request) is not None or self.loopback,
                "signIn": not self.loopback,
            }
        )

    async def sign_in(self, request: web.Request) -> web.Response:
        """A token the user pastes (`kubectl create token`, their OIDC id-token), kept in a
        cookie only this site's pages send, and only over the connection; checked at once by
        asking the API server who it is (SelfSubjectAccessReview needs no permission)."""
        body = await self._body(request)
        if isinstance(body, web.Response):
            return body
        token = str(body.get("token") or "").strip()
        if self.loopback or not token or len(token) > 8192:
            return web.json_response({"message": "paste a bearer token"}, status=400)
        review = {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SelfSubjectAccessReview",
            "spec": {
                "resourceAttributes": {
                    "namespace": self.namespace,
                    "verb": "list",
                    "group": AGENT.group,
                    "resource": AGENT.plural,
                }
            },
        }
        try:
            answer = await self.cluster.request(
                request,
                "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
                "POST",
                [],
                review,
                15,
                token=token,
            )
            status = answer.status
            answer.release()
        except (aiohttp.ClientError, TimeoutError) as exc:
            return web.json_response({"message": f"the API server: {exc}"}, status=503)
        if status == 401:
            return web.json_response(
                {"message": "the API server does not accept this token"}, status=401
            )
        out = web.json_response({"signedIn": True})
        out.set_cookie(
            SESSION_COOKIE,
            token,
            httponly=True,
            samesite="Strict",
            secure=request.secure,
            path="/",
        )
        return out

    async def sign_out(self, request: web.Request) -> web.Response:
        out = web.json_response({"signedIn": False})
        out.del_cookie(SESSION_COOKIE, path="/")
        return out


async def sse(out: web.StreamResponse, event: str, data: Any) -> None:
    await out.write(f"event: {event}\ndata: {json.dumps(data)}\n\n".encode())


def summary(plural: str, obj: dict[str, Any]) -> dict[str, Any]:
    """What a list row shows of an Agent or a Workflow."""
    meta, spec, status = obj.get("metadata") or {}, obj.get("spec") or {}, obj.get("status") or {}
    row = {
        "name": meta.get("name"),
        "resourceVersion": meta.get("resourceVersion"),
        "created": meta.get("creationTimestamp"),
        "phase": status.get("phase") or "Pending",
    }
    if plural == "agents":
        row.update(
            agent=spec.get("agent"),
            ready=status.get("ready") or "",
            restarts=status.get("restarts") or 0,
            replicas=spec.get("replicas", 1),
        )
    else:
        row.update(
            progress=status.get("progress") or "",
            steps=len(spec.get("steps") or []),
            started=status.get("startedAt"),
            finished=status.get("finishedAt"),
        )
    return row


def recent(events: list[dict[str, Any]], keep: int = 20) -> list[dict[str, Any]]:
    def when(e: dict[str, Any]) -> str:
        return str(e.get("lastTimestamp") or e.get("eventTime") or "")

    return [
        {
            "type": e.get("type"),
            "reason": e.get("reason"),
            "message": e.get("message"),
            "count": e.get("count"),
            "at": when(e),
        }
        for e in sorted(events, key=when, reverse=True)[:keep]
    ]


async def serve(
    cluster: Cluster, namespace: str, host: str, port: int, loopback: bool = True
) -> None:
    console = Console(cluster, namespace, loopback)
    runner = web.AppRunner(console.app(port), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    print(
        f"the console: http://{host}:{port}/ (namespace {namespace}; Ctrl-C stops it)", flush=True
    )
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


SERVICE_ACCOUNT_CA = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt"


def main(argv: list[str] | None = None) -> None:
    """`foundation-console`: the console in a pod, for the people who reach it (docs/console.md).
    It holds no credentials of its own: every call goes with the user's token."""
    import argparse
    import os

    parser = argparse.ArgumentParser(prog="foundation-console", description=main.__doc__)
    parser.add_argument("-n", "--namespace", required=True)
    parser.add_argument("--listen", default="0.0.0.0:8765")
    parser.add_argument(
        "--ca-file", default=os.environ.get("FOUNDATION_CONSOLE_CA", SERVICE_ACCOUNT_CA)
    )
    args = parser.parse_args(argv)
    host, _, port = args.listen.rpartition(":")
    server = "https://{}:{}".format(
        os.environ.get("KUBERNETES_SERVICE_HOST", "kubernetes.default.svc"),
        os.environ.get("KUBERNETES_SERVICE_PORT", "443"),
    )
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    asyncio.run(serve(InCluster(server, args.ca_file), args.namespace, host, int(port), False))


__all__ = ["Console", "InCluster", "Kubeconfig", "serve"]
