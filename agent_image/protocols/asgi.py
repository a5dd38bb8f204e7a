"""Serving an ASGI app (a2a-sdk's and mcp's servers are Starlette apps) inside the runtime's
event loop, beside its aiohttp task API: uvicorn, without its signal handling, and an app built
on its first request so its imports cost nothing until then."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterator
from typing import Any


class LazyApp:
    """An ASGI app that builds the real one (in a thread: the build imports) on the first
    request."""

    def __init__(self, build: Callable[[], Any]) -> None:
        self._build = build
        self._app: Any = None
        self._lock = asyncio.Lock()

    async def __call__(
        self,
        scope: dict[str, Any],
        receive: Callable[[], Awaitable[Any]],
        send: Callable[[Any], Awaitable[None]],
    ) -> None:
        if scope["type"] != "http":
            return
        if self._app is None:
            async with self._lock:
                if self._app is None:
                    self._app = await asyncio.to_thread(self._build)
        await self._app(scope, receive, send)


async def serve(app: Any, host: str, port: int, stop: asyncio.Event, lifespan: str = "off") -> None:
    """Serve `app` with uvicorn until `stop` is set. SIGTERM stays the runtime's: uvicorn's own
    signal handling (which would re-raise the signal after its shutdown) is left out."""
    import uvicorn

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

    server = Server(
        uvicorn.Config(
            app,
            host=host,
            port=port,
            lifespan=lifespan,
            log_config=None,
            access_log=False,
            timeout_graceful_shutdown=5,
        )
    )
    serving = asyncio.get_running_loop().create_task(server.serve(), name=f"serve-{port}")
    stopping = asyncio.get_running_loop().create_task(stop.wait())
    await asyncio.wait({serving, stopping}, return_when=asyncio.FIRST_COMPLETED)
    stopping.cancel()
    server.should_exit = True
    try:
        await serving
    except SystemExit:  # uvicorn's way of saying it could not start (it logged why)
        raise RuntimeError(f"could not serve on {host}:{port}") from None
