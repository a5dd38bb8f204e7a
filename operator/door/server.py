"""The door's server: TLS towards the API server, the API server's client certificate required,
each call relayed to a ready member of its Agent with the operator's token, naming the person.

Every replica serves it (it needs no leadership): the APIService's Service reaches them all.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
import uuid
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web

from foundation_common import access, history
from foundation_common.access import TokenFile
from foundation_common.discovery import ready_members, rendezvous
from foundation_common.resources import AGENT
from foundation_common.rest import ApiError, Client, Unreachable
from foundation_common.retry import Backoff
from foundation_common.status import now
from foundation_common.tasks import ENDED
from foundation_operator.agents import objects, plan
from foundation_operator.core import metrics
from foundation_operator.door import approvals, routes
from foundation_operator.door.routes import FrontProxy, Target

logger = logging.getLogger("foundation_operator.door")

MAX_BODY = 4 * 1024 * 1024  # what a person's call may carry (the members bound it further)
MAX_WAIT = 50.0  # below the API server's 60 s for a call it relays
WAKE_WAIT = 45.0  # how long a call that wakes an Agent is held for its members (< MAX_WAIT)
SUSPENDED_RETRY = 30.0  # Retry-After for a suspended Agent: nothing changes until a person acts
FRONT_PROXY_CONFIG = "/api/v1/namespaces/kube-system/configmaps/extension-apiserver-authentication"
RELAYED = ("Content-Type", "Cache-Control", "Retry-After", "WWW-Authenticate")
MEMBER_HEADER = "X-Foundation-Member"  # which member answered
# What a caller's request carries on to the member (the protocol's and the trace's headers).
PASSED = ("A2A-Version", "A2A-Extensions", "X-A2A-Extensions", "traceparent", "tracestate")


def problem(code: int, message: str, reason: str, retry_after: float | None = None) -> web.Response:
    headers = {"Retry-After": str(max(1, round(retry_after)))} if retry_after else None
    return web.json_response(routes.status(code, message, reason), status=code, headers=headers)


class Door:
    """Relays people's calls, as the API server authorized them, to the Agents' members."""

    def __init__(
        self, api: Client, front: FrontProxy, token: TokenFile, public_url: str = ""
    ) -> None:
        self.api = api
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
            answer = await self.wake_call(request, target)
            metrics.DOOR_REQUESTS.labels(target.subresource, str(answer.status)).inc()
            return answer
        member_path = target.member_path(request.method) if target else None
        if target is None or member_path is None:
            return problem(404, f"the door serves no {request.method} {path}", "NotFound")
        answer = await self.relay(request, target, member_path, person)
        metrics.DOOR_REQUESTS.labels(target.subresource, str(answer.status)).inc()
        return answer

    # -- to the members ---------------------------------------------------------------------
    async def members(self, target: Target, wake: bool = False) -> dict[str, str] | web.Response:
        """Ready members (pod -> host:port) of the target's Agent, or the answer to give. With
        `wake`, a sleeping Agent is woken and waited for."""
        try:
            endpoints = await self.api.get(
                f"/api/v1/namespaces/{target.namespace}/endpoints/{target.agent}"
            )
        except ApiError as exc:
            if exc.status == 404:
                return await self._no_service(target, wake)
            return problem(503, f"cannot list the Agent's members: {exc}", "ServiceUnavailable", 1)
        except Unreachable as exc:
            return problem(503, f"cannot list the Agent's members: {exc}", "ServiceUnavailable", 1)
        found = ready_members(endpoints, number=target.port)
        if not found:
            return await self._none_ready(target, wake)
        return found

    async def _none_ready(
        self, target: Target, wake: bool = False
    ) -> dict[str, str] | web.Response:
        """No ready member: a suspended Agent says so (refused at once, not held: it wakes only
        when someone sets spec.suspend false, which a caller waiting cannot know); a sleeping
        one is woken and the call held until its members are ready; any other is coming back
        (Retry-After 1)."""
        try:
            found = await self.agent(target) or {}
        except (ApiError, Unreachable):
            found = {}
        spec = found.get("spec") or {}
        failed = (found.get("status") or {}).get("phase") == "Failed"
        if (
            wake
            and spec.get("sleepAfterIdleSeconds")
            and int(spec.get("replicas", 1)) > 0
            and not spec.get("suspend")
            and not failed
        ):
            try:
                await self.wake(found)
            except (ApiError, Unreachable) as exc:
                return problem(503, f"cannot wake the Agent: {exc}", "ServiceUnavailable", 1)
            ready = await self.until_ready(target, int(spec.get("replicas", 1)), WAKE_WAIT)
            if ready:
                return ready
            return problem(
                503,
                f"Agent {target.agent} is waking: no member was ready within {WAKE_WAIT:.0f}s",
                "ServiceUnavailable",
                retry_after=1,
            )
        if spec.get("suspend"):
            return problem(
                503,
                f"Agent {target.agent} is suspended (spec.suspend: true): no member runs, its "
                "state and tasks are kept; it takes calls again once spec.suspend is false",
                "ServiceUnavailable",
                retry_after=SUSPENDED_RETRY,
            )
        return problem(
            503, f"Agent {target.agent} has no ready member", "ServiceUnavailable", retry_after=1
        )

    # -- waking a sleeping Agent ------------------------------------------------------------
    async def wake(self, agent: dict[str, Any]) -> bool:
        """Ask for a sleeping Agent to wake: its wakeRequestedAt annotation set at or after
        status.asleepSince (the operator acts on it; kept in etcd, it outlives this replica and
        the operator's). One write a sleep, whoever calls: none if asked already. True if
        written."""
        since = plan.moment((agent.get("status") or {}).get("asleepSince"))
        if since is None:
            return False  # awake, or waking
        meta = agent["metadata"]
        asked = plan.moment((meta.get("annotations") or {}).get(objects.WAKE_REQUESTED_AT))
        if asked is not None and asked >= since:
            return False
        at = max(now(), since)
        await self.api.merge_patch(
            AGENT.path(meta["namespace"], meta["name"]),
            {"metadata": {"annotations": {objects.WAKE_REQUESTED_AT: plan.fine_stamp(at)}}},
        )
        metrics.DOOR_WAKES.inc()
        logger.info("waking agent %s/%s", meta["namespace"], meta["name"])
        return True

    async def until_ready(self, target: Target, want: int, seconds: float) -> dict[str, str]:
        """The Agent's ready members once `want` are ready (so a task id hashes to the member
        it will hash to later), or those ready after `seconds` (maybe none): from a watch of
        its Endpoints, not a poll."""
        ready: dict[str, str] = {}

        async def watch() -> None:
            nonlocal ready
            async for kind, obj in self.api.list_and_watch(
                f"/api/v1/namespaces/{target.namespace}/endpoints",
                {"fieldSelector": f"metadata.name={target.agent}"},
                timeout_seconds=int(seconds) + 5,
            ):
                items = (obj.get("items") or []) if kind == "SYNC" else [obj]
                for item in items:
                    ready = {} if kind == "DELETED" else ready_members(item, number=target.port)
                if len(ready) >= max(1, want):
                    return

        with contextlib.suppress(TimeoutError, ApiError, Unreachable):
            await asyncio.wait_for(watch(), seconds)
        return ready

    async def wake_call(self, request: web.Request, target: Target) -> web.Response:
        """`POST agents/NAME/wake[?wait=S]`: for callers that reach members on their own (a
        Workflow's runner, a sidecar) and found none ready."""
        try:
            agent = await self.agent(target)
        except (ApiError, Unreachable) as exc:
            return problem(503, f"cannot read the Agent: {exc}", "ServiceUnavailable", 1)
        if agent is None:
            return problem(
                404,
                f'agents.{AGENT.group} "{target.agent}" not found in namespace'
                f' "{target.namespace}"',
                "NotFound",
            )
        spec = agent.get("spec") or {}
        if spec.get("suspend"):
            return problem(
                409,
                f"Agent {target.agent} is suspended (spec.suspend: true): only setting it "
                "false resumes it",
                "Conflict",
            )
        try:
            woken = await self.wake(agent)
        except (ApiError, Unreachable) as exc:
            return problem(503, f"cannot wake the Agent: {exc}", "ServiceUnavailable", 1)
        wait = min(MAX_WAIT, max(0.0, _number(request.query.get("wait"))))
        ready = await self.until_ready(target, int(spec.get("replicas", 1)), wait) if wait else {}
        return web.json_response(
            {
                "agent": target.agent,
                "sleeps": bool(spec.get("sleepAfterIdleSeconds")),
                "asleep": bool((agent.get("status") or {}).get("asleepSince")),
                "wakeRequested": woken,
                "readyMembers": sorted(ready),
            },
            status=200 if ready or not wait else 202,
        )

    async def agent(self, target: Target) -> dict[str, Any] | None:
        try:
            return await self.api.get(AGENT.path(target.namespace, target.agent))
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    async def _no_service(
        self, target: Target, wake: bool = False
    ) -> dict[str, str] | web.Response:
        """No Endpoints: no such Agent (404), or one whose Service is still to come (503; a
        sleeping Agent whose Endpoints the cluster has not made yet is woken and waited for)."""
        try:
            found = await self.agent(target)
        except (ApiError, Unreachable) as exc:
            return problem(503, f"cannot read the Agent: {exc}", "ServiceUnavailable", 1)
        if found is not None and wake and (found.get("spec") or {}).get("sleepAfterIdleSeconds"):
            return await self._none_ready(target, wake)
        if found is None:
            return problem(
                404,
                f'agents.{AGENT.group} "{target.agent}" not found in namespace'
                f' "{target.namespace}"',
                "NotFound",
            )
        return problem(
            503, f"Agent {target.agent} has no ready member yet", "ServiceUnavailable", 1
        )

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
        found = await self.members(target, wake=True)
        if isinstance(found, web.Response):
            return found
        woke = asyncio.get_running_loop().time() - started  # the API server waits 60 s in all
        wait = 0.0
        if target.subresource == access.TASKS and request.method == "POST":
            body, task_id, refused = with_task_id(body)
            if refused is not None:
                return refused
            wait = min(MAX_WAIT - woke, max(0.0, _number(request.query.get("wait"))))
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
            replicas = int(((await self.agent(target)) or {}).get("spec", {}).get("replicas", 0))
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
            found = await self.agent(target) or {}
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


def _number(value: str | None) -> float:
    try:
        return float(value or 0)
    except ValueError:
        return 0.0


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
