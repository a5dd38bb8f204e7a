"""The sidecar's proxy, on 127.0.0.1:15000 in every member pod.

`/upstream/<name>/<path>` forwards a call to an upstream through its limiters, its breaker and
its pooled client, and streams the answer back.

- Rate limits (the agent's, then the upstream's): a call waits at most `maxWaitMs` for a token,
  else `429` with `Retry-After` and `X-Foundation-Rate-Limited: agent|upstream`.
- Breaker: refused calls get `503` at once, with `Retry-After` and `X-Foundation-Circuit`
  (`open`, `half_open` or `recovering`).
- Retries only for idempotent methods or calls with an `Idempotency-Key`, with back-off, and
  everything (connects, retries, the answer's body) inside the upstream's `timeoutSeconds`.
- Failures (for the breaker and for retries): the configured status codes, timeouts and
  connection errors.

`/agents/<capability>/<path>` reaches a ready member of any Agent with that capability
(`discovery.py`): round robin, or by `X-Foundation-Affinity` (a task id) to the member that key
hashes to, or to the member `X-Foundation-Member` names. A failed attempt is retried on another
member: always for connection errors (nothing was sent), else for idempotent methods or calls
with an `Idempotency-Key`. The answer says which member gave it in `X-Foundation-Member`.

`/a2a/<agent>/<path>` reaches the A2A server of another Agent (its Service's port a2a) the same
way; its card, fetched there, names that route as the Agent's URL, so an A2A client in the pod
needs no cluster DNS.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import time
from collections.abc import Mapping
from typing import Any

import aiohttp
from aiohttp import web

from foundation_agent.sidecar import metrics
from foundation_agent.sidecar.breaker import Breaker, BreakerConfig, Refusal, State
from foundation_agent.sidecar.hygiene import forwardable, path_problem
from foundation_agent.sidecar.limiter import TokenBucket
from foundation_agent.sidecar.routes import (
    MemberRoute,
    Relay,
    UpstreamRoute,
    count,
    retry_after,
    sender,
)
from foundation_common.access import SENDER_GROUPS_HEADER, SENDER_HEADER, CallerToken
from foundation_common.discovery import Capability, Directory
from foundation_common.limits import Limits, middleware
from foundation_common.resources import A2A_PORT
from foundation_common.schema import CAPABILITY_PATTERN
from foundation_common.settings import SettingsError
from foundation_common.sidecar import (
    AFFINITY_HEADER,
    LIMIT_HEADER,
    MEMBER_HEADER,
    RateLimit,
    SidecarConfig,
    Upstream,
    secret_env,
)
from foundation_common.wake import Waker

logger = logging.getLogger("foundation_agent.sidecar")

IDEMPOTENT = {"GET", "HEAD", "OPTIONS", "PUT", "DELETE"}
# Besides hop-by-hop and forwarding headers (hygiene.py): those the client library sets itself,
# and the sidecar's own protocol.
NOT_FORWARDED = {"host", "content-length", MEMBER_HEADER.lower(), AFFINITY_HEADER.lower()}
# To members, who calls is this pod's token; the agent's own word on it is dropped.
NOT_FROM_AGENT = {"authorization", SENDER_HEADER.lower(), SENDER_GROUPS_HEADER.lower()}
CARD_PATH = "/.well-known/agent-card.json"  # an A2A server's card (a2a_server.CARD_PATH)
AGENT_NAME = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
CAPABILITY = re.compile(CAPABILITY_PATTERN)
# Answers up to this size, with a Content-Length, are relayed whole rather than streamed.
WHOLE_ANSWER_BYTES = 256 * 1024


def bucket(limit: RateLimit | None) -> tuple[TokenBucket | None, float]:
    """The token bucket of a limit, if any, and how long a call may wait for a token."""
    if limit is None:
        return None, 0.0
    return TokenBucket(limit.requests_per_second, limit.tokens), limit.max_wait_ms / 1000


def show_state(name: str, state: State) -> None:
    for each in State:
        metrics.CIRCUIT_STATE.labels(upstream=name, state=each.value).set(each is state)


def log_transition(name: str, before: State, after: State) -> None:
    logger.warning("circuit %s: %s -> %s", name, before.value, after.value)
    metrics.TRANSITIONS.labels(upstream=name, to=after.value).inc()
    show_state(name, after)


def rebased(value: Any, old: str, new: str) -> Any:
    """`value` (JSON data) with every string that starts with `old` starting with `new`."""
    if isinstance(value, str):
        return new + value[len(old) :] if value.startswith(old) else value
    if isinstance(value, list):
        return [rebased(v, old, new) for v in value]
    if isinstance(value, dict):
        return {k: rebased(v, old, new) for k, v in value.items()}
    return value


def refuse_path(request: web.Request) -> web.Response | None:
    """400 for a path that could reach past the base it is appended to (hygiene.py)."""
    problem = path_problem(request.rel_url.raw_path)
    if problem is None:
        return None
    return web.json_response({"error": problem}, status=400)


def retryable(request: web.Request) -> bool:
    return request.method in IDEMPOTENT or "Idempotency-Key" in request.headers


class UpstreamClient:
    """One upstream: its breaker, its limiter and its connection pool."""

    def __init__(
        self,
        config: Upstream,
        directory: Directory | None = None,
        environ: Mapping[str, str] = os.environ,
    ) -> None:
        self.config = config
        self.base = (config.url or "").rstrip("/")
        self.directory = directory  # for a service upstream: its endpoints
        self.added: dict[str, str] = {}  # headers the sidecar adds: the upstream's API key
        if config.authorization is not None:
            variable = secret_env(config.name)
            secret = environ.get(variable)
            if not secret:
                raise SettingsError(
                    f"upstream {config.name}: authorization is configured but {variable} is not "
                    f"set (the operator sets it from Secret "
                    f"{config.authorization.secret_key_ref.name})"
                )
            self.added[config.authorization.header] = config.authorization.value(secret.strip())
        self.breaker = Breaker(
            config.name, BreakerConfig.of(config.circuit_breaker), on_transition=log_transition
        )
        self.limiter, self.max_wait = bucket(config.rate_limit)
        self.failure_codes = set(config.circuit_breaker.failure_status_codes)
        self.session: aiohttp.ClientSession | None = None
        self.checking: asyncio.Task[None] | None = None
        show_state(config.name, State.CLOSED)

    def open(self) -> None:
        pool = self.config.pool
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(
                limit=pool.max_connections, keepalive_timeout=pool.keepalive_seconds
            ),
            auto_decompress=False,  # bytes pass through as the upstream sent them
        )
        if self.config.pool.health_check is not None:
            self.checking = asyncio.get_running_loop().create_task(self.check_health())

    async def close(self) -> None:
        if self.checking is not None:
            self.checking.cancel()
        if self.session is not None:
            await self.session.close()

    async def endpoints(self, wait: float) -> Capability | None:
        """A service upstream's ready endpoints, as discovery keeps them (None for a URL)."""
        service = self.config.service
        if service is None:
            return None
        if self.directory is None:
            raise RuntimeError(f"upstream {self.config.name}: a service needs discovery")
        return await self.directory.get(
            self.config.name, wait=wait, service=service.name, port=service.port
        )

    def no_endpoint(self) -> str:
        service = self.config.service
        assert service is not None
        return f"no ready endpoint of service {service.name} for upstream {self.config.name}"

    async def check_health(self) -> None:
        """The active health check, a call like any other for the breaker: refused while the
        circuit is open, the probe when it is half-open."""
        check = self.config.pool.health_check
        assert check is not None and self.session is not None
        while True:
            await asyncio.sleep(check.interval_seconds)
            permit = self.breaker.allow()
            if isinstance(permit, Refusal):
                continue
            endpoints = await self.endpoints(wait=check.timeout_seconds)
            member = endpoints.pick() if endpoints is not None else None
            if endpoints is not None and member is None:
                self.breaker.record(permit, ok=False)
                continue
            base = f"http://{member.address}" if member is not None else self.base
            try:
                async with self.session.get(
                    base + check.path,
                    timeout=aiohttp.ClientTimeout(total=check.timeout_seconds),
                ) as answer:
                    ok = answer.status < 400 and answer.status not in self.failure_codes
            except (aiohttp.ClientError, TimeoutError):
                ok = False
            self.breaker.record(permit, ok=ok)
            if endpoints is not None and member is not None:
                endpoints.record(member, ok=ok)


class Proxy:
    def __init__(
        self,
        config: SidecarConfig,
        directory: Directory | None = None,
        token: CallerToken | None = None,
        limits: Limits | None = None,
        waker: Waker | None = None,
    ) -> None:
        self.config = config
        self.waker = waker  # asks the door to wake an Agent with no ready member
        self.limits = limits or Limits()
        self.upstreams = {u.name: UpstreamClient(u, directory) for u in config.upstreams}
        self.limiter, self.max_wait = bucket(config.rate_limit)
        self.directory = directory
        self.members: aiohttp.ClientSession | None = None  # one pool for all agents' members
        self.token = token or CallerToken()
        self.in_flight = 0

    async def start(self, _: web.Application | None = None) -> None:
        for upstream in self.upstreams.values():
            upstream.open()
        self.members = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=256, keepalive_timeout=30),
            auto_decompress=False,
        )

    async def close(self, _: web.Application | None = None) -> None:
        for upstream in self.upstreams.values():
            await upstream.close()
        if self.members is not None:
            await self.members.close()
        if self.directory is not None:
            await self.directory.close()
        if self.waker is not None:
            await self.waker.close()

    def app(self) -> web.Application:
        app = web.Application(
            client_max_size=self.limits.request_bytes,
            middlewares=[self._track, middleware(self.limits)],
        )
        app.router.add_route("*", "/upstream/{name}/{path:.*}", self.forward)
        app.router.add_route("*", "/agents/{capability}/{path:.*}", self.to_capability)
        app.router.add_route("*", "/a2a/{agent}/{path:.*}", self.to_agent_a2a)
        app.on_startup.append(self.start)
        app.on_cleanup.append(self.close)
        return app

    @web.middleware
    async def _track(self, request: web.Request, handler: Any) -> web.StreamResponse:
        """Count calls in flight, so a stopping sidecar can wait for the agent's last ones."""
        self.in_flight += 1
        try:
            return await handler(request)
        finally:
            self.in_flight -= 1

    async def _rate_limit(self, upstream: UpstreamClient) -> web.Response | None:
        """Take a token from each limiter (or none at all); wait if allowed; else a 429."""
        taken: list[TokenBucket] = []
        wait = 0.0
        limits = [
            ("agent", self.limiter, self.max_wait),
            ("upstream", upstream.limiter, upstream.max_wait),
        ]
        for scope, limiter, max_wait in limits:
            if limiter is None:
                continue
            decision = limiter.reserve(max_wait)
            if not decision.allowed:
                for earlier in taken:
                    earlier.release()
                metrics.RATE_LIMITED.labels(upstream=upstream.config.name, scope=scope).inc()
                return web.json_response(
                    {"error": f"rate limit of the {scope} exceeded"},
                    status=429,
                    headers={"Retry-After": retry_after(decision.wait), LIMIT_HEADER: scope},
                )
            taken.append(limiter)
            wait = max(wait, decision.wait)
        if wait > 0:
            await asyncio.sleep(wait)
        return None

    async def forward(self, request: web.Request) -> web.StreamResponse:
        started = time.monotonic()
        name = request.match_info["name"]
        refused = refuse_path(request)
        if refused is not None:
            return refused
        upstream = self.upstreams.get(name)
        if upstream is None or upstream.session is None:
            known = ", ".join(sorted(self.upstreams)) or "none"
            return web.json_response(
                {"error": f"no upstream named {name!r}; configured: {known}"}, status=404
            )
        limited = await self._rate_limit(upstream)
        if limited is not None:
            count("upstream", name, "rate_limited", 429, started)
            return limited
        config = upstream.config
        deadline = time.monotonic() + config.timeout_seconds
        body = await request.read()
        replaced = {h.lower() for h in upstream.added}
        headers = forwardable(request.headers, NOT_FORWARDED | replaced)
        headers.update(upstream.added)
        path = f"/{request.match_info['path']}"
        if request.query_string:
            path += f"?{request.query_string}"
        endpoints = await upstream.endpoints(wait=min(5.0, config.timeout_seconds))
        route = UpstreamRoute(upstream, endpoints, retryable(request), started)
        return await sender()(route, request, path, headers, body, deadline, self._relay)

    async def to_capability(self, request: web.Request) -> web.StreamResponse:
        capability = request.match_info["capability"]
        if not CAPABILITY.fullmatch(capability) or len(capability) > 48:
            return web.json_response(
                {"error": f"{capability!r} is not a capability's name (a DNS label of 48 at most)"},
                status=400,
            )
        refused = refuse_path(request)
        if refused is not None:
            return refused
        return await self._to_members(
            request, "capability", request.match_info["capability"], retryable(request)
        )

    async def to_agent_a2a(self, request: web.Request) -> web.StreamResponse:
        """A2A to another Agent, through its Service's port a2a: any ready member (each
        forwards a task to the member that owns it). Every A2A call Foundation serves may be
        sent again (a message is keyed by its id), so failed attempts go to another member.
        The card fetched this way names this route as the Agent's URL."""
        agent = request.match_info["agent"]
        if not AGENT_NAME.fullmatch(agent) or len(agent) > 63:
            return web.json_response(
                {"error": f"{agent!r} is not an Agent's name (a DNS-1035 label)"}, status=400
            )
        refused = refuse_path(request)
        if refused is not None:
            return refused
        card = request.method == "GET" and request.path.endswith(CARD_PATH)
        return await self._to_members(
            request,
            "a2a",
            agent,
            True,
            service=agent,
            port=A2A_PORT,
            relay=self._card_relay(agent) if card else None,
        )

    def _card_relay(self, agent: str) -> Relay:
        """The card back with this route as the Agent's URL: the member names the address it
        was called at (it believes no forwarding header but the door's), which the agent in
        this pod cannot reach by name; the card it gets names the sidecar instead."""

        async def relay(
            request: web.Request, answer: aiohttp.ClientResponse, extra: dict[str, str] | None
        ) -> web.StreamResponse:
            if answer.status != 200 or answer.headers.get("Content-Encoding"):
                return await self._relay(request, answer, extra)
            try:
                card = json.loads(await answer.read())
            except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                raise web.HTTPBadGateway(text=f"the Agent's card could not be read: {exc}") from exc
            finally:
                answer.release()
            called = f"{answer.url.origin()}/"
            ours = f"http://{request.host}/a2a/{agent}/"
            headers = forwardable(answer.headers, NOT_FORWARDED | {"content-type"})
            return web.json_response(
                rebased(card, called, ours), headers={**headers, **(extra or {})}
            )

        return relay

    async def _to_members(
        self,
        request: web.Request,
        target: str,
        name: str,
        idempotent: bool,
        service: str | None = None,
        port: int | None = None,
        relay: Relay | None = None,
    ) -> web.StreamResponse:
        """The call to a ready member of `service` (default: capability `name`'s)."""
        started = time.monotonic()
        config = self.config.discovery
        deadline = started + config.timeout_seconds
        if self.directory is None or self.members is None:
            return web.json_response({"error": "discovery is not configured"}, status=503)
        capability = await self.directory.get(
            name, wait=min(5.0, config.timeout_seconds), service=service, port=port
        )
        if (
            not capability.members
            and self.waker is not None
            and not request.headers.get(MEMBER_HEADER)
        ):
            # None ready: the Agent (or every Agent with the capability) may be asleep. If it
            # sleeps, it is woken and the call waits for its members, within its budget.
            sleeps = await (self.waker.agent(service) if service else self.waker.capability(name))
            if sleeps:
                await capability.until_members(deadline - time.monotonic())
        body = await request.read()
        headers = forwardable(request.headers, NOT_FORWARDED | NOT_FROM_AGENT)
        # Who calls: this pod's account, by its Foundation token; never what the agent says.
        headers.update(self.token.header())
        path = "/" + request.match_info["path"]
        if request.query_string:
            path += f"?{request.query_string}"
        route = MemberRoute(
            target,
            name,
            capability,
            self.members,
            config.retries,
            config.timeout_seconds,
            config.failure_status_codes,
            idempotent,
            pinned=request.headers.get(MEMBER_HEADER),
            affinity=request.headers.get(AFFINITY_HEADER) or request.headers.get("Idempotency-Key"),
            started=started,
        )
        return await sender()(route, request, path, headers, body, deadline, relay or self._relay)

    async def _relay(
        self,
        request: web.Request,
        answer: aiohttp.ClientResponse,
        extra: dict[str, str] | None = None,
    ) -> web.StreamResponse:
        """The answer back: whole when the upstream said its length and it is small (one write
        of headers and body, where streaming cost a chunked body and a separate write for its
        end: a fifth of the sidecar's time at 1,000 calls/s, by py-spy), else streamed as it
        arrives (an unknown length, as a model's streamed reply, or a large body)."""
        headers = forwardable(answer.headers, NOT_FORWARDED)
        whole = answer.content_length is not None and answer.content_length <= WHOLE_ANSWER_BYTES
        if whole and request.method != "HEAD":
            try:
                body = await answer.read()
            except (aiohttp.ClientError, TimeoutError, ConnectionResetError) as exc:
                logger.warning("upstream answer cut short: %s", exc)
                raise web.HTTPBadGateway(text=f"upstream answer cut short: {exc}") from exc
            finally:
                answer.release()
            return web.Response(
                status=answer.status,
                reason=answer.reason,
                body=body,
                headers={**headers, **(extra or {})},
            )
        out = web.StreamResponse(
            status=answer.status, reason=answer.reason, headers={**headers, **(extra or {})}
        )
        if answer.content_length is not None:
            out.content_length = answer.content_length  # a large sized body, or HEAD's
        try:
            await out.prepare(request)
            async for chunk in answer.content.iter_any():
                await out.write(chunk)
            await out.write_eof()
        except (aiohttp.ClientError, TimeoutError, ConnectionResetError) as exc:
            logger.warning("upstream answer cut short: %s", exc)
        finally:
            answer.release()
        return out
