"""The door's server: TLS towards the API server, the API server's client certificate required,
each call relayed to a ready member of its Agent with the operator's token, naming the person.

Every replica serves it (it needs no leadership): the APIService's Service reaches them all.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
import uuid
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web

from foundation_common import access, history
from foundation_common.access import TokenFile
from foundation_common.discovery import rendezvous
from foundation_common.rest import ApiError, Client, Unreachable
from foundation_common.retry import Backoff
from foundation_common.tasks import ENDED
from foundation_operator.core import metrics
from foundation_operator.door import approvals, routes
from foundation_operator.door.members import Members
from foundation_operator.door.routes import MAX_WAIT, FrontProxy, Target, number, problem

logger = logging.getLogger("foundation_operator.door")

MAX_BODY = 4 * 1024 * 1024  # what a person's call may carry (the members bound it further)
FRONT_PROXY_CONFIG = "/api/v1/namespaces/kube-system/configmaps/extension-apiserver-authentication"
RELAYED = ("Content-Type", "Cache-Control", "Retry-After", "WWW-Authenticate")
MEMBER_HEADER = "X-Foundation-Member"  # which member answered
# What a caller's request carries on to the member (the protocol's and the trace's headers).
PASSED = ("A2A-Version", "A2A-Extensions", "X-A2A-Extensions", "traceparent", "tracestate")


class Door:
    """Relays people's calls, as the API server authorized them, to the Agents' members."""

    def __init__(
        self, api: Client, front: FrontProxy, token: TokenFile, public_url: str = ""
    ) -> None:
        self.api = api
        self.found = Members(api)  # an Agent's ready members; waking a sleeping one
        self.front = front
        self.token = token
        self.public = urlsplit(public_url) if public_url else None
        self._session: aiohttp.ClientSession | None = None

    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=MAX_WAIT + 10, connect=5.0),
                cookie_jar=aiohttp.DummyCookieJar(),
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    # -- the API server's relay -------------------------------------------------------------
    def relayed_person(self, request: web.Request) -> tuple[str, tuple[str, ...]] | None:
        """Who the API server says calls, if the call comes with its client certificate."""
        peer = request.transport.get_extra_info("peercert") if request.transport else None
        if not peer:
            return None
        common_name = next(
            (value for rdn in peer.get("subject", ()) for key, value in rdn if key == "commonName"),
            None,
        )
        if not self.front.trusts(common_name):
            return None
        return self.front.person(request.headers)

    async def admit(self, request: web.Request) -> web.Response:
        """The admission webhook (the API server calls it directly, not as the front proxy:
        its answer only sets who created a Workflow, which anyone else's call cannot)."""
        try:
            review = await request.json()
        except ValueError:
            return problem(400, "not an AdmissionReview", "BadRequest")
        if not isinstance(review, dict):
            return problem(400, "not an AdmissionReview", "BadRequest")
        return web.json_response(routes.creator_review(review))

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if request.path == routes.MUTATE_WORKFLOWS and request.method == "POST":
            return await self.admit(request)
        person = self.relayed_person(request)
        if person is None:
            return problem(
                401, "Unauthorized: the door answers the API server's relay only", "Unauthorized"
            )
        path = request.path
        if path == routes.PREFIX and request.method == "GET":
            return web.json_response(routes.resource_list())
        if path in ("/openapi/v2", "/openapi/v3") and request.method == "GET":
            return web.json_response(routes.openapi())
        approval = routes.approval_of(path)
        if approval is not None and request.method == "POST":
            try:
                body = await request.read()
            except web.HTTPRequestEntityTooLarge:
                body = b"x" * (approvals.MAX_BODY + 1)
            if len(body) > approvals.MAX_BODY:
                return problem(
                    413,
                    f"a decision is at most {approvals.MAX_BODY} bytes",
                    "RequestEntityTooLarge",
                )
            answer = await approvals.decide(self.api, *approval, person[0], body)
            metrics.DOOR_REQUESTS.labels("approval", str(answer.status)).inc()
            return answer
        target = routes.target_of(path)
        if target and target.subresource == access.WAKE and not target.rest:
            if request.method != "POST":
                return problem(405, "wake is POST only", "MethodNotAllowed")
            answer = await self.found.wake_call(request, target)
            metrics.DOOR_REQUESTS.labels(target.subresource, str(answer.status)).inc()
            return answer
        member_path = target.member_path(request.method) if target else None
        if target is None or member_path is None:
            return problem(404, f"the door serves no {request.method} {path}", "NotFound")
        answer = await self.relay(request, target, member_path, person)
        metrics.DOOR_REQUESTS.labels(target.subresource, str(answer.status)).inc()
        return answer

    def headers(self, request: web.Request, person: tuple[str, tuple[str, ...]]) -> dict[str, str]:
        token = self.token.header()
        user, groups = person
        headers = {
            **token,
            access.SENDER_HEADER: user,
            access.SENDER_GROUPS_HEADER: ",".join(groups),
            "Accept": request.headers.get("Accept", "application/json"),
            # Where the caller reached us, for the A2A card's URL: through the API server.
            "X-Forwarded-Proto": "https",
            "X-Forwarded-Uri": request.path_qs,
        }
        headers.update({k: request.headers[k] for k in PASSED if k in request.headers})
        if self.public is not None:
            headers["X-Forwarded-Host"] = self.public.netloc
            headers["X-Forwarded-Proto"] = self.public.scheme
            headers["X-Forwarded-Uri"] = self.public.path.rstrip("/") + request.path_qs
        if request.content_type:
            headers["Content-Type"] = request.content_type
        return headers

    async def relay(
        self,
        request: web.Request,
        target: Target,
        member_path: str,
        person: tuple[str, tuple[str, ...]],
    ) -> web.StreamResponse:
        if not self.token.header():
            return problem(503, "the door has no token to relay with yet", "ServiceUnavailable", 1)
        try:
            body = await request.read() if request.can_read_body else b""
        except web.HTTPRequestEntityTooLarge:
            return problem(413, f"the call is over {MAX_BODY} bytes", "RequestEntityTooLarge")
        started = asyncio.get_running_loop().time()
        # Any call wakes a sleeping Agent: its tasks, actions and card live in its members.
        found = await self.found.find(target, wake=True)
        if isinstance(found, web.Response):
            return found
        woke = asyncio.get_running_loop().time() - started  # the API server waits 60 s in all
        wait = 0.0
        if target.subresource == access.TASKS and request.method == "POST":
            body, task_id, refused = with_task_id(body)
            if refused is not None:
                return refused
            wait = min(MAX_WAIT - woke, max(0.0, number(request.query.get("wait"))))
            wait = max(0.0, wait)
        else:
            task_id = target.task_id
        if target.subresource == access.TASKS and request.method == "GET" and not task_id:
            return await self.listing(request, target, found, self.headers(request, person))
        pinned = request.query.get("member")
        if pinned and pinned not in found:
            return problem(
                503,
                f"member {pinned} of Agent {target.agent} is not ready",
                "ServiceUnavailable",
                1,
            )
        order = [pinned] if pinned else _order(task_id or uuid.uuid4().hex, list(found))
        # A POST's wait is the door's own (below); a GET's is the member's.
        params = {} if wait else {k: v for k, v in request.query.items() if k == "wait"}
        headers = self.headers(request, person)
        if target.subresource == access.A2A:
            return await self._stream(request, found[order[0]], member_path, body, headers)
        for member in order:
            answer = await self._call(
                found[member], request.method, member_path, body, headers, params
            )
            if isinstance(answer, web.Response):
                return answer
            status, data, answered = answer
            # A task id not held here may be held by another member: ask them in turn.
            if status == 404 and task_id and request.method != "POST" and member != order[-1]:
                continue
            if wait and status in (200, 201, 202):
                status, data, answered = await self._until_done(
                    found[member], data, headers, wait, (status, data, answered)
                )
            if target.subresource == access.ACTIONS and status == 200:
                data = await self._described(target, data)
            return web.Response(
                status=status,
                body=data,
                headers={
                    **{k: v for k, v in answered.items() if k in RELAYED},
                    MEMBER_HEADER: member,
                },
            )
        raise AssertionError("unreachable")  # pragma: no cover

    async def listing(
        self,
        request: web.Request,
        target: Target,
        found: dict[str, str],
        headers: dict[str, str],
    ) -> web.Response:
        """A page of the Agent's tasks across its ready members, newest first, each naming
        its member (`foundation_common.history`); members not ready are named in
        `unavailable`, and their tasks are missing from the page."""
        try:
            query = history.Query.of(request.query)
        except history.BadQuery as exc:
            return problem(400, str(exc), "BadRequest")
        names = sorted(found)
        answers = await asyncio.gather(
            *(
                self._call(found[name], "GET", "/v1/tasks", b"", headers, query.params())
                for name in names
            )
        )
        pages, listed, unavailable = [], [], []
        for name, answer in zip(names, answers, strict=True):
            if isinstance(answer, web.Response):
                unavailable.append(name)
                continue
            status, data, answered = answer
            if status in (400, 401, 403):  # the person's own answer, as the member gave it
                return web.Response(
                    status=status,
                    body=data,
                    headers={k: v for k, v in answered.items() if k in RELAYED},
                )
            try:
                pages.append(history.Page.of_body(json.loads(data)))
            except (ValueError, TypeError, AttributeError):
                unavailable.append(name)
                continue
            listed.append(name)
        try:
            found = (await self.found.agent(target)) or {}
            replicas = int(found.get("spec", {}).get("replicas", 0))
        except (ApiError, Unreachable, ValueError, TypeError):
            replicas = 0
        unavailable += [
            f"{target.agent}-{i}" for i in range(replicas) if f"{target.agent}-{i}" not in found
        ]
        body = history.merge(pages, query, listed).body()
        body["unavailable"] = sorted(unavailable)
        return web.json_response(body)

    async def _described(self, target: Target, data: bytes) -> bytes:
        """The actions with the Agent's description (what a tool list shows of it)."""
        try:
            listed = json.loads(data)
            found = await self.found.agent(target) or {}
        except (ValueError, ApiError, Unreachable):
            return data
        listed["description"] = str((found.get("spec") or {}).get("description") or "")
        return json.dumps(listed).encode()

    async def _until_done(
        self,
        address: str,
        data: bytes,
        headers: dict[str, str],
        wait: float,
        first: tuple[int, bytes, dict[str, str]],
    ) -> tuple[int, bytes, dict[str, str]]:
        try:
            record = json.loads(data)
        except ValueError:
            return first
        if record.get("status") in ENDED or "id" not in record:
            return first
        answer = await self._call(
            address, "GET", f"/v1/tasks/{record['id']}", b"", headers, {"wait": f"{wait:.1f}"}
        )
        if isinstance(answer, web.Response) or answer[0] != 200:
            return first
        return answer

    async def _call(
        self,
        address: str,
        method: str,
        path: str,
        body: bytes,
        headers: dict[str, str],
        params: dict[str, str],
    ) -> tuple[int, bytes, dict[str, str]] | web.Response:
        cancel = method == "DELETE"
        try:
            async with self.session().request(
                "POST" if cancel else method,
                f"http://{address}{path}",
                data=body or None,
                headers=headers,
                params=params,
            ) as answer:
                return answer.status, await answer.read(), dict(answer.headers)
        except (aiohttp.ClientError, TimeoutError) as exc:
            return problem(
                503,
                f"the member at {address} could not be reached: {exc!r}",
                "ServiceUnavailable",
                1,
            )

    async def _stream(
        self,
        request: web.Request,
        address: str,
        path: str,
        body: bytes,
        headers: dict[str, str],
    ) -> web.StreamResponse:
        """A2A: the member's answer streamed back as it comes (message/stream is SSE)."""
        try:
            async with self.session().request(
                request.method, f"http://{address}{path}", data=body or None, headers=headers
            ) as answer:
                out = web.StreamResponse(
                    status=answer.status,
                    headers={k: v for k, v in answer.headers.items() if k in RELAYED},
                )
                await out.prepare(request)
                async for chunk in answer.content.iter_any():
                    await out.write(chunk)
                await out.write_eof()
                return out
        except (aiohttp.ClientError, TimeoutError) as exc:
            return problem(
                503,
                f"the member at {address} could not be reached: {exc!r}",
                "ServiceUnavailable",
                1,
            )


def with_task_id(body: bytes) -> tuple[bytes, str, web.Response | None]:
    """The task's body with an id (one is given when none is: a retried call through the door
    is then still the same task), and that id; or the 400 to answer."""
    try:
        task = json.loads(body or b"{}")
    except ValueError:
        return body, "", problem(400, "the task is not JSON", "BadRequest")
    if not isinstance(task, dict):
        return body, "", problem(400, "the task must be a JSON object", "BadRequest")
    if not task.get("id"):
        task["id"] = uuid.uuid4().hex
        body = json.dumps(task).encode()
    return body, str(task["id"]), None


def _order(key: str, members: list[str]) -> list[str]:
    """The member a key hashes to first (the sidecar's affinity), then the others."""
    first = rendezvous(key, members)
    return [first, *sorted(set(members) - {first})]


def server_context(cert: str, key: str, front: FrontProxy) -> ssl.SSLContext:
    """TLS with this door's certificate; a client certificate from the front proxy's CA is
    asked for and verified (the handler then requires it, and an allowed name)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    context.verify_mode = ssl.CERT_OPTIONAL
    context.load_verify_locations(cadata=front.ca)
    return context


async def front_proxy(api: Client) -> FrontProxy:
    data = (await api.get(FRONT_PROXY_CONFIG)).get("data") or {}
    return FrontProxy.from_config_map(data)


async def serve(
    api: Client,
    host: str,
    port: int,
    cert: str,
    key: str,
    token_file: str,
    stop: asyncio.Event,
    public_url: str = "",
) -> None:
    """Serve the door until `stop`; the API server's relay settings are read first, again
    and again while they cannot be (logged), so the rest of the operator runs meanwhile."""
    backoff = Backoff(1.0, 60.0)
    attempt = 0
    while True:
        try:
            front = await front_proxy(api)
            break
        except (ApiError, Unreachable, ValueError) as exc:
            logger.error("the door cannot start yet: %s", exc)
            attempt += 1
            try:
                await asyncio.wait_for(stop.wait(), backoff.delay(attempt))
                return
            except TimeoutError:
                continue
    door = Door(api, front, TokenFile(token_file, missing_ok=True), public_url)
    app = web.Application(client_max_size=MAX_BODY)
    app.router.add_route("*", "/{tail:.*}", door.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port, ssl_context=server_context(cert, key, front))
    await site.start()
    logger.info("the door serves %s on %s:%s", routes.GROUP_VERSION, host, port)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
        await door.close()
