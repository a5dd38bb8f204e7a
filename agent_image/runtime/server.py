"""The task API of one member (aiohttp): tasks, health and readiness; and its metrics port."""

from __future__ import annotations

import contextlib
import math
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from foundation_agent.runtime import metrics, openapi
from foundation_agent.runtime.access import Caller, Gate
from foundation_agent.runtime.member import Member, Refused
from foundation_agent.runtime.parking import Parking
from foundation_agent.runtime.peers import LocalTasks
from foundation_common import __version__, access, history, limits, tracing
from foundation_common.tasks import ENDED

MAX_WAIT = 60.0  # seconds a GET of a task may wait for its end
WAIT = frozenset({"wait"})
PROBES = frozenset({"/healthz", "/readyz"})  # the kubelet's: never refused for being busy
LOADING = "loading the state"


def refusal(
    status: int, message: str, retry_after: float | None = None, reason: str = ""
) -> web.Response:
    headers = {"Retry-After": str(max(1, round(retry_after)))} if retry_after else None
    body = {"error": message, "reason": reason} if reason else {"error": message}
    return web.json_response(body, status=status, headers=headers)


def stray_query(request: web.Request, allowed: frozenset[str] = frozenset()) -> web.Response | None:
    """A 400 naming query parameters the route does not take: a misspelt `wait` is not
    silently ignored."""
    unknown = sorted(set(request.query) - allowed)
    if not unknown:
        return None
    takes = ", ".join(sorted(allowed)) or "none"
    return refusal(400, f"unknown query parameters {', '.join(unknown)}; this route takes {takes}")


def waiting(request: web.Request) -> float | web.Response:
    """The seconds `?wait=` asks for (at most MAX_WAIT), or a 400 for it or a stray parameter."""
    if stray := stray_query(request, WAIT):
        return stray
    try:
        wait = float(request.query.get("wait", 0))
    except ValueError:
        wait = math.nan
    if not 0 <= wait < math.inf:
        return refusal(400, "wait must be a number of seconds, 0 or more (60 at most is used)")
    return min(wait, MAX_WAIT)


@web.middleware
async def traced(request: web.Request, handler: Any) -> web.StreamResponse:
    """The trace context a call came with, for the task it sends (kept in its record) and the
    calls it leads to (`foundation_common.tracing.INCOMING`)."""
    tracing.INCOMING.set(tracing.carried(request.headers))
    return await handler(request)  # type: ignore[no-any-return]


class TaskApi:
    """The task API: every call but the probes is identified and authorized by the member's
    door (`runtime.access`); metrics are served on a port of their own (`metrics_app`)."""

    def __init__(
        self,
        gate: Gate,
        member: Member | None = None,
        bounds: limits.Limits | None = None,
        parking: Parking | None = None,
    ) -> None:
        self.member = member  # None until the state is loaded
        self.limits = bounds or limits.Limits()
        self.problem = LOADING
        self.gate = gate
        self.parking = parking or Parking()
        self.inbox = LocalTasks(lambda: self.member, gate, self.parking)
        self._document: dict[str, Any] | None = None  # openapi.json, built once loaded

    async def _caller(self, request: web.Request) -> Caller:
        return await self.gate.identify(request.headers)

    @web.middleware
    async def unpark(self, request: web.Request, handler: Any) -> web.StreamResponse:
        """Parked (`runtime.parking`): a call from an identified caller loads the state and
        waits for it; the probes do not."""
        if self.parking.holding and request.path not in PROBES:
            try:
                await self._caller(request)
            except Refused as exc:
                return refusal(exc.status, exc.message, exc.retry_after)
            await self.parking.hold()
        return await handler(request)  # type: ignore[no-any-return]

    async def post_task(self, request: web.Request) -> web.Response:
        """Accept a task; with `?wait=S`, answer once it is done or after S seconds (the
        status still says whether it was new, 202, or known, 200)."""
        wait = waiting(request)
        if isinstance(wait, web.Response):
            return wait
        try:
            caller = await self._caller(request)
            await self.gate.require(caller, access.SEND)
        except Refused as exc:
            return refusal(exc.status, exc.message, exc.retry_after)
        if self.member is None:
            return refusal(503, f"not ready: {self.problem}", 1)
        try:
            body: Any = await limits.read_json(request, self.limits)
        except limits.BadJson as exc:
            return refusal(400, f'{exc}; expected {{"id", "action", "input"}}')
        if not isinstance(body, dict):
            return refusal(400, 'the body must be a JSON object: {"id", "action", "input"}')
        unknown = sorted(set(body) - {"id", "action", "input", "context"})
        if unknown:
            return refusal(
                400, f"unknown fields {', '.join(unknown)}; expected id, action, input, context"
            )
        try:
            status, record = await self.inbox.submit(
                body.get("id"), body.get("action"), body.get("input"), body.get("context"), caller
            )
        except Refused as exc:
            if exc.status == 400:
                metrics.REFUSED.labels(reason="invalid").inc()
            return refusal(exc.status, exc.message, exc.retry_after, exc.reason)
        if wait and record["status"] not in ENDED:
            with contextlib.suppress(Refused):
                record = await self.inbox.get(record["id"], caller, wait) or record
        return web.json_response(record, status=status)

    async def get_task(self, request: web.Request) -> web.Response:
        """The record; with `?wait=S`, once the task is done or after S seconds (at most 60),
        so a caller learns of a completion at once instead of polling."""
        task_id = request.match_info["id"]
        wait = waiting(request)
        if isinstance(wait, web.Response):
            return wait
        try:
            record = await self.inbox.get(task_id, await self._caller(request), wait)
        except Refused as exc:
            return refusal(exc.status, exc.message, exc.retry_after)
        if record is None:
            return refusal(404, f"no task {task_id!r} (or its record expired)")
        return web.json_response(record)

    async def list_tasks(self, request: web.Request) -> web.Response:
        """A page of this member's tasks, newest first (`foundation_common.history`): anyone's
        for a caller who may `get` the Agent's tasks, else the caller's own."""
        try:
            query = history.Query.of(request.query)
        except history.BadQuery as exc:
            return refusal(400, str(exc))
        try:
            query = await self.inbox.visible(query, await self._caller(request))
        except Refused as exc:
            return refusal(exc.status, exc.message, exc.retry_after)
        if self.member is None:
            return refusal(503, f"not ready: {self.problem}", 1)
        return web.json_response(self.member.history(query).body())

    async def cancel_task(self, request: web.Request) -> web.Response:
        if stray := stray_query(request):
            return stray
        try:
            caller = await self._caller(request)
            if self.member is None:
                await self.gate.require(caller, access.SEND)
                return refusal(503, f"not ready: {self.problem}", 1)
            record = await self.inbox.cancel(request.match_info["id"], caller)
        except Refused as exc:
            return refusal(exc.status, exc.message, exc.retry_after)
        return web.json_response(record)

    async def _for_readers(self, request: web.Request) -> Member | web.Response:
        """The member, for a call that reads what the Agent does (`get` on its actions,
        no query parameters); else the answer to give."""
        if stray := stray_query(request):
            return stray
        try:
            await self.gate.require(await self._caller(request), "get", subresource=access.ACTIONS)
        except Refused as exc:
            return refusal(exc.status, exc.message, exc.retry_after)
        if self.member is None:
            return refusal(503, f"not ready: {self.problem}", 1)
        return self.member

    async def list_actions(self, request: web.Request) -> web.Response:
        """The agent's actions with their input's JSON schema: what a caller (a model's tool
        definition, a protocol's skill list) needs to know to send a valid task. Anyone who
        may read the Agent may read them."""
        member = await self._for_readers(request)
        if isinstance(member, web.Response):
            return member
        return web.json_response(
            {
                "actions": [
                    {"name": a.name, "description": a.description, "inputSchema": a.input_schema()}
                    for a in sorted(member.actions.values(), key=lambda a: a.name)
                ]
            }
        )

    async def openapi(self, request: web.Request) -> web.Response:
        """This API as OpenAPI 3.1 (`runtime.openapi`), each action's input schema in it: for
        whoever may list the actions."""
        member = await self._for_readers(request)
        if isinstance(member, web.Response):
            return member
        if self._document is None:
            self._document = openapi.document(
                self.gate.agent, __version__, member.actions, self.limits
            )
        return web.json_response(self._document)

    async def healthz(self, _: web.Request) -> web.Response:
        # Alive even while blocked on a bad state: restarting would only hide the cause.
        return web.json_response({"status": "ok", "version": __version__})

    async def readyz(self, _: web.Request) -> web.Response:
        member = self.member
        if member is None and self.parking.holding and self.problem == LOADING:
            # Parked, or loading for the call that woke it: ready, calls are held meanwhile.
            return web.json_response({"status": "ready", "parked": True})
        if member is None:
            return web.json_response({"status": "not ready", "reason": self.problem}, status=503)
        if member.fatal is not None:
            return web.json_response(
                {"status": "not ready", "reason": member.fatal.message}, status=503
            )
        if member.stopping or not member.ready:
            return web.json_response({"status": "not ready", "reason": "stopping"}, status=503)
        return web.json_response({"status": "ready", "version": member.version})

    def app(self) -> web.Application:
        app = web.Application(
            client_max_size=self.limits.request_bytes,
            middlewares=[limits.middleware(self.limits, exempt=PROBES), traced, self.unpark],
        )
        app.router.add_get("/v1/actions", self.list_actions)
        app.router.add_post("/v1/tasks", self.post_task)
        app.router.add_get("/v1/tasks", self.list_tasks)
        app.router.add_get("/v1/tasks/{id}", self.get_task)
        app.router.add_post("/v1/tasks/{id}/cancel", self.cancel_task)
        app.router.add_get("/openapi.json", self.openapi)
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/readyz", self.readyz)
        return app


async def metrics_endpoint(_: web.Request) -> web.Response:
    return web.Response(
        body=generate_latest(metrics.REGISTRY),
        headers={"Content-Type": CONTENT_TYPE_LATEST},
    )


def metrics_app() -> web.Application:
    """Prometheus's port, apart from the task API: a NetworkPolicy can admit the scraper to it
    and to nothing else, and it reads no body."""
    app = web.Application(client_max_size=1024)
    app.router.add_get("/metrics", metrics_endpoint)
    return app
