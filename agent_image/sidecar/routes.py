"""Where the sidecar sends a call, and the one loop that tries it.

A route says where each attempt goes and what its failures mean: `UpstreamRoute` (an upstream
behind its breaker, at its URL or a ready endpoint of its Service) and `MemberRoute` (a ready
member of a capability's or an Agent's Service). `send` is the loop both use: attempts within
the route's budget, each failure recorded, another attempt where the route allows it, the one
back-off between them, and the answer relayed or a 502/504 that says what failed last.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Collection
from typing import TYPE_CHECKING, Any

import aiohttp
from aiohttp import web

from foundation_agent.sidecar import metrics
from foundation_agent.sidecar.breaker import Refusal
from foundation_common import tracing
from foundation_common.discovery import Capability, Member
from foundation_common.retry import Backoff
from foundation_common.sidecar import CIRCUIT_HEADER, MEMBER_HEADER

if TYPE_CHECKING:
    from foundation_agent.sidecar.proxy import UpstreamClient

RETRY_BACKOFF = Backoff(initial=0.05, maximum=1.0, jitter=True)
Relay = Callable[[web.Request, aiohttp.ClientResponse, dict[str, str] | None], Awaitable[Any]]
Send = Callable[
    ["Route", web.Request, str, dict[str, str], bytes, float, Relay],
    Awaitable[web.StreamResponse],
]


def retry_after(seconds: float) -> str:
    """A Retry-After header's value: whole seconds, at least one."""
    return str(max(1, math.ceil(seconds)))


def count(target: str, name: str, outcome: str, status: int, started: float) -> None:
    metrics.REQUESTS.labels(target=target, name=name, outcome=outcome, code=str(status)).inc()
    metrics.SECONDS.labels(target=target, name=name).observe(time.monotonic() - started)


class Answer(Exception):
    """The route answers the caller at once (a refusal before anything is sent)."""

    def __init__(self, response: web.Response) -> None:
        self.response = response


class Stop(Exception):
    """No more attempts; `problem` says what failed."""

    def __init__(self, problem: str) -> None:
        self.problem = problem


class Route:
    """What `send` asks of a destination. `resend`: a call that may have reached it may be
    sent again; `resend_unsent`: one that was not sent (its connection failed) may;
    `at_once_unsent`: that one goes to the next member without a pause."""

    target: str  # "upstream", "capability" or "a2a": metrics and messages
    name: str
    session: aiohttp.ClientSession
    attempts: int
    failure_codes: Collection[int]
    resend: bool
    resend_unsent: bool
    at_once_unsent: bool = False

    def __init__(self, started: float, budget: float) -> None:
        self.started = started
        self.budget = budget

    def begin(
        self, attempt: int, tried: frozenset[str], problem: str
    ) -> tuple[str, Member | None, Any]:
        """(base URL, member or None, breaker permit) of the next attempt; Answer or Stop."""
        raise NotImplementedError

    def record(self, member: Member | None, permit: Any, ok: bool) -> None:
        raise NotImplementedError

    def problem(self, member: Member | None, exc: BaseException | None, status: int = 0) -> str:
        raise NotImplementedError

    def gave_up(self, problem: str, tried: set[str], deadline: float) -> web.Response:
        timed_out = time.monotonic() >= deadline
        status = 504 if timed_out else 502
        count(self.target, self.name, "timeout" if timed_out else "error", status, self.started)
        spent = f" (budget of {self.budget:g}s spent)" if timed_out else ""
        return web.json_response(
            {"error": f"{self.target} {self.name}: {problem}{spent}"}, status=status
        )


class UpstreamRoute(Route):
    """An upstream: every attempt asks its breaker first; a Service upstream's endpoints are
    tried one after another. Only idempotent calls (or with an Idempotency-Key) are retried."""

    target = "upstream"

    def __init__(
        self,
        upstream: UpstreamClient,
        endpoints: Capability | None,
        retryable: bool,
        started: float,
    ) -> None:
        super().__init__(started, upstream.config.timeout_seconds)
        self.upstream, self.endpoints = upstream, endpoints
        self.name = upstream.config.name
        self.session = upstream.session
        self.attempts = 1 + (upstream.config.retries if retryable else 0)
        self.failure_codes = upstream.failure_codes
        self.resend = self.resend_unsent = True  # `attempts` is 1 for a call not to repeat

    def begin(
        self, attempt: int, tried: frozenset[str], problem: str
    ) -> tuple[str, Member | None, Any]:
        if attempt:
            metrics.RETRIES.labels(target="upstream", name=self.name).inc()
        permit = self.upstream.breaker.allow()
        if isinstance(permit, Refusal) and attempt:
            # Opened by this call's own failures: what failed says more than the circuit.
            raise Stop(f"{problem}; the circuit is now {permit.state.value}")
        if isinstance(permit, Refusal):
            count("upstream", self.name, "circuit_open", 503, self.started)
            raise Answer(
                web.json_response(
                    {"error": f"the circuit of upstream {self.name} is {permit.state.value}"},
                    status=503,
                    headers={
                        "Retry-After": retry_after(permit.retry_after),
                        CIRCUIT_HEADER: permit.state.value,
                    },
                )
            )
        if self.endpoints is None:
            return self.upstream.base, None, permit
        member = self.endpoints.pick(None, tried)
        if member is None:  # none ready: the upstream is down, as far as callers go
            self.upstream.breaker.record(permit, ok=False)
            count("upstream", self.name, "no_member", 503, self.started)
            raise Answer(
                web.json_response(
                    {"error": self.upstream.no_endpoint()},
                    status=503,
                    headers={"Retry-After": "1"},
                )
            )
        return f"http://{member.address}", member, permit

    def record(self, member: Member | None, permit: Any, ok: bool) -> None:
        self.upstream.breaker.record(permit, ok=ok)
        if self.endpoints is not None and member is not None:
            self.endpoints.record(member, ok=ok)

    def problem(self, member: Member | None, exc: BaseException | None, status: int = 0) -> str:
        if exc is None:
            return f"answered {status}"
        said = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        return f"{member.name}: {said}" if member is not None else said


class MemberRoute(Route):
    """A ready member of a Service (a capability's, or an Agent's for A2A): by affinity, or the
    member the caller pins. A failed attempt goes to another member: always when nothing was
    sent, else only for a call that may be repeated; a pinned call is never sent elsewhere."""

    at_once_unsent = True

    def __init__(
        self,
        target: str,
        name: str,
        capability: Capability,
        session: aiohttp.ClientSession,
        retries: int,
        budget: float,
        failure_codes: Collection[int],
        idempotent: bool,
        pinned: str | None,
        affinity: str | None,
        started: float,
    ) -> None:
        super().__init__(started, budget)
        self.target, self.name, self.capability, self.session = target, name, capability, session
        self.attempts = 1 + retries
        self.failure_codes = failure_codes
        self.pinned, self.affinity = pinned, affinity
        self.resend = idempotent and not pinned
        self.resend_unsent = not pinned

    def begin(
        self, attempt: int, tried: frozenset[str], problem: str
    ) -> tuple[str, Member | None, Any]:
        if self.pinned:
            member = self.capability.pinned(self.pinned)
            if member is None:
                count(self.target, self.name, "no_member", 404, self.started)
                missing = f"{self.pinned} is not a ready member of {self.target} {self.name}"
                raise Answer(web.json_response({"error": missing}, status=404))
        else:
            member = self.capability.pick(self.affinity, tried)
        if member is None:
            raise Stop(problem)
        if attempt:
            metrics.RETRIES.labels(target=self.target, name=self.name).inc()
        return f"http://{member.address}", member, None

    def record(self, member: Member | None, permit: Any, ok: bool) -> None:
        assert member is not None
        self.capability.record(member, ok=ok)

    def problem(self, member: Member | None, exc: BaseException | None, status: int = 0) -> str:
        assert member is not None
        if exc is None:
            return f"member {member.name} answered {status}"
        if isinstance(exc, aiohttp.ClientConnectorError):
            return f"member {member.name}: {exc}"
        return f"member {member.name}: {type(exc).__name__} {exc}".strip()

    def gave_up(self, problem: str, tried: set[str], deadline: float) -> web.Response:
        if not tried:
            count(self.target, self.name, "no_member", 503, self.started)
            return web.json_response(
                {"error": f"no ready member of {self.target} {self.name}"},
                status=503,
                headers={"Retry-After": "1"},
            )
        return super().gave_up(problem, tried, deadline)


def sender() -> Send:
    """`send`, or `traced_send` when tracing is on: chosen per call, so with tracing off a call
    costs exactly what it did before tracing existed (no frame, no allocation more)."""
    return traced_send if tracing.enabled() else send


async def traced_send(
    route: Route,
    request: web.Request,
    path: str,
    headers: dict[str, str],
    body: bytes,
    deadline: float,
    relay: Relay,
) -> web.StreamResponse:
    """`send` in a client span, whose context the call carries on, for a call made in a
    sampled trace (the agent's, in a task's run); any other passes as it came: the sidecar
    starts no trace of its own."""
    incoming = tracing.carried(request.headers)
    if incoming is None or not tracing.sampled(incoming):
        return await send(route, request, path, headers, body, deadline, relay)
    with tracing.span(
        f"{request.method} {route.target} {route.name}",
        kind="CLIENT",
        context=incoming,
        attributes={
            "http.request.method": request.method,
            "url.path": path.split("?", 1)[0],
            "foundation.sidecar.target": route.target,
            "foundation.sidecar.name": route.name,
        },
    ) as opened:
        answer = await send(
            route, request, path, {**headers, **tracing.current()}, body, deadline, relay
        )
        if opened is not None:
            opened.set_attribute("http.response.status_code", answer.status)
            if answer.status >= 500:
                tracing.failed(opened, f"HTTP {answer.status}")
        return answer


async def send(
    route: Route,
    request: web.Request,
    path: str,
    headers: dict[str, str],
    body: bytes,
    deadline: float,
    relay: Relay,
) -> web.StreamResponse:
    """The one loop: the attempts `route` allows within `deadline`, the answer relayed (the
    caller's trace headers pass as they came)."""
    tried: set[str] = set()
    problem = "no attempt made"
    for attempt in range(route.attempts):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        try:
            base, member, permit = route.begin(attempt, frozenset(tried), problem)
        except Answer as answer:
            return answer.response
        except Stop as stop:
            problem = stop.problem
            break
        if member is not None:
            tried.add(member.name)
        try:
            answer = await route.session.request(
                request.method,
                base + path,
                headers=headers,
                data=body or None,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=remaining),
            )
        except (aiohttp.ClientError, TimeoutError) as exc:
            route.record(member, permit, ok=False)
            problem = route.problem(member, exc)
            unsent = isinstance(exc, aiohttp.ClientConnectorError)
            if not (route.resend_unsent if unsent else route.resend):
                break
            if unsent and route.at_once_unsent:
                continue
        else:
            failed = answer.status in route.failure_codes
            route.record(member, permit, ok=not failed)
            last = not route.resend or attempt + 1 >= route.attempts or time.monotonic() >= deadline
            if not failed or last:
                count(
                    route.target,
                    route.name,
                    "error" if failed else "ok",
                    answer.status,
                    route.started,
                )
                named = {MEMBER_HEADER: member.name} if member is not None else None
                return await relay(request, answer, named)
            problem = route.problem(member, None, answer.status)
            answer.release()
        if attempt + 1 < route.attempts:
            await pause(attempt, deadline)
    return route.gave_up(problem, tried, deadline)


async def pause(attempt: int, deadline: float) -> None:
    """A short, growing, jittered pause before the next attempt, within the budget."""
    await asyncio.sleep(max(0.0, min(RETRY_BACKOFF.delay(attempt), deadline - time.monotonic())))
