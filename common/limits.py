"""What one request may cost: the limits every port of a member holds (docs/limits.md).

A request over a limit fails alone, with a status and a message that names the limit; the
process goes on. `Limits` is given to a port's server: aiohttp apps take `middleware()`, and
ASGI apps (A2A's, MCP's) are wrapped in `AsgiLimits`. JSON bodies are parsed by `loads`, which
refuses nesting deeper than the limit (400), where `json.loads` alone would answer a deep
enough document with a RecursionError (a 500).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

REQUEST_BYTES = 1 << 20  # a request body (task API, A2A, sidecar)
RESULT_BYTES = 256 << 10  # a task's result, as JSON
JSON_DEPTH = 64  # arrays and objects inside one another
IN_FLIGHT = 256  # requests one port serves at once
KEEP_COMPLETED_BYTES = 512 << 10  # completion records kept for retries
MAX_QUEUED_BYTES = 16 << 20  # queued tasks' inputs, held in memory until run

RETRY_AFTER = "1"


@dataclass(frozen=True)
class Limits:
    request_bytes: int = REQUEST_BYTES
    json_depth: int = JSON_DEPTH
    in_flight: int = IN_FLIGHT

    def too_large(self, size: int | None = None) -> str:
        got = f" ({size} bytes)" if size is not None else ""
        return f"the request body is too large{got}: the limit is {self.request_bytes} bytes"

    def too_busy(self) -> str:
        return f"{self.in_flight} requests are in flight, this port's limit; retry later"

    def too_deep(self) -> str:
        return f"the JSON is nested too deep: the limit is {self.json_depth} levels"


class BadJson(ValueError):
    """A body that is not JSON, or JSON nested deeper than the limit: a 400."""


def depth_over(value: Any, limit: int) -> bool:
    """Whether `value` nests arrays and objects more than `limit` deep (iteratively: no
    recursion to run out of)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


def loads(text: str | bytes, limits: Limits) -> Any:
    """JSON, or BadJson saying what is wrong with it (nesting over the limit included)."""
    try:
        value = json.loads(text)
    except RecursionError:
        raise BadJson(limits.too_deep()) from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadJson(f"the body is not JSON: {exc}") from None
    if depth_over(value, limits.json_depth):
        raise BadJson(limits.too_deep())
    return value


def refusal(status: int, message: str, retry_after: str | None = None) -> web.Response:
    headers = {"Retry-After": retry_after} if retry_after else None
    return web.json_response({"error": message}, status=status, headers=headers)


def too_large(limits: Limits, size: int | None = None) -> web.Response:
    answer = refusal(413, limits.too_large(size))
    answer.force_close()  # the rest of the body is not read: the connection cannot be reused
    return answer


def middleware(limits: Limits, exempt: frozenset[str] = frozenset()) -> Any:
    """An aiohttp middleware holding `limits`: a body announced over the limit is refused
    before a byte of it is read (413), one found over it while read too (the app's
    `client_max_size` must be `limits.request_bytes`), and requests past `in_flight` get 429.
    Paths in `exempt` (probes) are not counted."""
    in_flight = 0

    @web.middleware
    async def bounded(request: web.Request, handler: Any) -> web.StreamResponse:
        nonlocal in_flight
        if request.path in exempt:
            return await handler(request)
        if request.content_length is not None and request.content_length > limits.request_bytes:
            return too_large(limits, request.content_length)
        if in_flight >= limits.in_flight:
            return refusal(429, limits.too_busy(), RETRY_AFTER)
        in_flight += 1
        try:
            return await handler(request)
        except web.HTTPRequestEntityTooLarge:
            return too_large(limits)
        finally:
            in_flight -= 1

    return bounded


async def read_json(request: web.Request, limits: Limits) -> Any:
    """The request's JSON body, within `limits` (BadJson otherwise)."""
    return loads(await request.read(), limits)


Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


class AsgiLimits:
    """`Limits` around an ASGI app: the body is read (up to the limit, else 413) before the app
    sees it, a JSON body's nesting is checked (400), and requests past `in_flight` get 429."""

    def __init__(self, app: Any, limits: Limits) -> None:
        self.app = app
        self.limits = limits
        self.in_flight = 0

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = _content_length(scope)
        if length is not None and length > self.limits.request_bytes:
            await _answer(send, 413, self.limits.too_large(length), close=True)
            return
        if self.in_flight >= self.limits.in_flight:
            await _answer(send, 429, self.limits.too_busy(), retry_after=RETRY_AFTER)
            return
        self.in_flight += 1
        try:
            body = bytearray()
            more = True
            while more:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return
                body += message.get("body", b"")
                more = message.get("more_body", False)
                if len(body) > self.limits.request_bytes:
                    await _answer(send, 413, self.limits.too_large(), close=True)
                    return
            if body and _is_json(scope):
                try:
                    loads(bytes(body), self.limits)
                except BadJson as exc:
                    if "nested too deep" in str(exc):
                        await _answer(send, 400, str(exc))
                        return
                    # Not JSON at all: the app answers that in its own protocol's words.
            await self.app(scope, _replay(bytes(body), receive), send)
        finally:
            self.in_flight -= 1


def _content_length(scope: dict[str, Any]) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _is_json(scope: dict[str, Any]) -> bool:
    for name, value in scope.get("headers", []):
        if name == b"content-type":
            return b"json" in value.lower()
    return scope.get("method") == "POST"


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # after the body: the disconnect, when it comes

    return replay


async def _answer(
    send: Send, status: int, message: str, close: bool = False, retry_after: str | None = None
) -> None:
    body = json.dumps({"error": message}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if close:
        headers.append((b"connection", b"close"))
    if retry_after:
        headers.append((b"retry-after", retry_after.encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
