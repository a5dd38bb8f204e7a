"""`/upstream/<name>/<path>`: forwards a call to an upstream through its limiters, its breaker
and its pooled client, and streams the answer back.

- Rate limits (the agent's, then the upstream's): a call waits at most `maxWaitMs` for a token,
  else `429` with `Retry-After` and `X-Foundation-Rate-Limited: agent|upstream`.
- Breaker: refused calls get `503` at once, with `Retry-After` and `X-Foundation-Circuit`
  (`open`, `half_open` or `recovering`).
- Retries only for idempotent methods or calls with an `Idempotency-Key`, with back-off, and
  everything (connects, retries, the answer's body) inside the upstream's `timeoutSeconds`.
- Failures (for the breaker and for retries): the configured status codes, timeouts and
  connection errors.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time

import aiohttp
from aiohttp import web

from foundation_agent.sidecar.breaker import Breaker, Refusal, State
from foundation_agent.sidecar.config import RateLimit, SidecarConfig, Upstream
from foundation_agent.sidecar.limiter import TokenBucket

logger = logging.getLogger("foundation_agent.sidecar")

IDEMPOTENT = {"GET", "HEAD", "OPTIONS", "PUT", "DELETE"}
# Hop-by-hop headers (RFC 9110 7.6.1) and those the client library sets itself.
NOT_FORWARDED = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
}
CIRCUIT_HEADER = "X-Foundation-Circuit"
LIMIT_HEADER = "X-Foundation-Rate-Limited"


def bucket(limit: RateLimit | None) -> tuple[TokenBucket | None, float]:
    """The token bucket of a limit, if any, and how long a call may wait for a token."""
    if limit is None:
        return None, 0.0
    return TokenBucket(limit.requests_per_second, limit.burst), limit.max_wait_ms / 1000


def retry_after(seconds: float) -> str:
    return str(max(1, math.ceil(seconds)))


def log_transition(name: str, before: State, after: State) -> None:
    logger.warning("circuit %s: %s -> %s", name, before.value, after.value)


class UpstreamClient:
    """One upstream: its breaker, its limiter and its connection pool."""

    def __init__(self, config: Upstream) -> None:
        self.config = config
        self.base = config.url.rstrip("/")
        self.breaker = Breaker(
            config.name, config.circuit_breaker.breaker(), on_transition=log_transition
        )
        self.limiter, self.max_wait = bucket(config.rate_limit)
        self.failure_codes = set(config.circuit_breaker.failure_status_codes)
        self.session: aiohttp.ClientSession | None = None

    def open(self) -> None:
        pool = self.config.pool
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(
                limit=pool.max_connections, keepalive_timeout=pool.keepalive_seconds
            ),
            auto_decompress=False,  # bytes pass through as the upstream sent them
        )

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()


class Proxy:
    def __init__(self, config: SidecarConfig) -> None:
        self.upstreams = {u.name: UpstreamClient(u) for u in config.upstreams}
        self.limiter, self.max_wait = bucket(config.rate_limit)

    async def start(self, _: web.Application | None = None) -> None:
        for upstream in self.upstreams.values():
            upstream.open()

    async def close(self, _: web.Application | None = None) -> None:
        for upstream in self.upstreams.values():
            await upstream.close()

    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/upstream/{name}/{path:.*}", self.forward)
        app.on_startup.append(self.start)
        app.on_cleanup.append(self.close)
        return app

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
        name = request.match_info["name"]
        upstream = self.upstreams.get(name)
        if upstream is None or upstream.session is None:
            known = ", ".join(sorted(self.upstreams)) or "none"
            return web.json_response(
                {"error": f"no upstream named {name!r}; configured: {known}"}, status=404
            )
        limited = await self._rate_limit(upstream)
        if limited is not None:
            return limited
        config = upstream.config
        deadline = time.monotonic() + config.timeout_seconds
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in NOT_FORWARDED}
        target = f"{upstream.base}/{request.match_info['path']}"
        if request.query_string:
            target += f"?{request.query_string}"
        retryable = request.method in IDEMPOTENT or "Idempotency-Key" in request.headers
        attempts = 1 + (config.retries if retryable else 0)
        problem = "no attempt made"
        for attempt in range(attempts):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            permit = upstream.breaker.allow()
            if isinstance(permit, Refusal):
                return web.json_response(
                    {"error": f"the circuit of upstream {name} is {permit.state.value}"},
                    status=503,
                    headers={
                        "Retry-After": retry_after(permit.retry_after),
                        CIRCUIT_HEADER: permit.state.value,
                    },
                )
            try:
                answer = await upstream.session.request(
                    request.method,
                    target,
                    headers=headers,
                    data=body or None,
                    allow_redirects=False,
                    timeout=aiohttp.ClientTimeout(total=remaining),
                )
            except (aiohttp.ClientError, TimeoutError) as exc:
                upstream.breaker.record(permit, ok=False)
                problem = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            else:
                failed = answer.status in upstream.failure_codes
                upstream.breaker.record(permit, ok=not failed)
                if failed and attempt + 1 < attempts and time.monotonic() < deadline:
                    problem = f"answered {answer.status}"
                    answer.release()
                else:
                    return await self._relay(request, answer, deadline)
            if attempt + 1 < attempts:
                pause = min(0.05 * 2**attempt * (0.5 + random.random()), 1.0)
                await asyncio.sleep(max(0.0, min(pause, deadline - time.monotonic())))
        timed_out = time.monotonic() >= deadline
        return web.json_response(
            {
                "error": f"upstream {name}: {problem}"
                + (f" (budget of {config.timeout_seconds}s spent)" if timed_out else "")
            },
            status=504 if timed_out else 502,
        )

    async def _relay(
        self, request: web.Request, answer: aiohttp.ClientResponse, deadline: float
    ) -> web.StreamResponse:
        """Stream the upstream's answer back as it arrives."""
        out = web.StreamResponse(
            status=answer.status,
            reason=answer.reason,
            headers={k: v for k, v in answer.headers.items() if k.lower() not in NOT_FORWARDED},
        )
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
