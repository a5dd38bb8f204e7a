"""The task API, A2A and the sidecar served on loopback by one loop in a thread, with the
runtime's limits made small: what the property suite and the contract test send to."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from pathlib import Path
from typing import Any

from aiohttp import web

from foundation_agent.agents import CounterAgent
from foundation_agent.protocols.a2a_server import FoundationHandler, a2a_app
from foundation_agent.protocols.asgi import LazyApp, serve
from foundation_agent.runtime.access import Gate
from foundation_agent.runtime.member import Member
from foundation_agent.runtime.peers import LocalTasks, Peers
from foundation_agent.runtime.server import TaskApi
from foundation_agent.runtime.settings import Settings
from foundation_agent.sidecar.proxy import Proxy
from foundation_agent.stores.sqlite import SqliteStore
from foundation_common.limits import AsgiLimits, Limits
from foundation_common.sidecar import SidecarConfig

LIMITS = Limits(request_bytes=64 * 1024, json_depth=16, in_flight=64)
OPEN = Gate(None, "ns", "agent", "agent", "Permissive")
BASE = "/v1/tenant-a"


class Echo:
    """An upstream that records what reached it."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, dict[str, str]]] = []

    async def handle(self, request: web.Request) -> web.Response:
        self.seen.append((request.raw_path, dict(request.headers)))
        return web.json_response({"ok": True})


class Ports:
    """The task API, A2A and the sidecar, served on loopback by a loop in a thread."""

    def __init__(self, state: Path, gate: Gate = OPEN) -> None:
        self.state = state
        self.gate = gate
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.stop = asyncio.Event()
        self.echo = Echo()
        self.member: Member | None = None
        self.urls: dict[str, str] = {}
        self.accepted: dict[str, int] = {}  # task id -> `by`, of the increments taken (202)
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        self.loop.run_until_complete(self._serve())

    async def _site(self, app: web.Application) -> tuple[web.AppRunner, str]:
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return runner, f"http://127.0.0.1:{port}"

    async def _serve(self) -> None:
        self.stop = asyncio.Event()
        member = Member(
            CounterAgent(), SqliteStore(self.state / "a.db"), Settings(agent_class="x:Y")
        )
        await member.load()
        member.start()
        self.member = member
        runners = []
        runner, self.urls["tasks"] = await self._site(TaskApi(self.gate, member, LIMITS).app())
        runners.append(runner)
        upstream = web.Application()
        upstream.router.add_route("*", "/{tail:.*}", self.echo.handle)
        runner, echo_url = await self._site(upstream)
        runners.append(runner)
        config = SidecarConfig.model_validate(
            {"upstreams": [{"name": "llm", "url": echo_url + BASE, "retries": 0}]}
        )
        runner, self.urls["sidecar"] = await self._site(Proxy(config, limits=LIMITS).app())
        runners.append(runner)
        peers = Peers("tally", "ns", "tally-0", None, LocalTasks(lambda: member, self.gate))
        handler = FoundationHandler(peers, member.actions, "1", "http://tally.ns.svc:8081/")
        with contextlib.closing(socket.socket()) as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        self.urls["a2a"] = f"http://127.0.0.1:{port}"
        app = AsgiLimits(LazyApp(lambda: a2a_app(handler, self.gate)), LIMITS)
        serving = asyncio.create_task(serve(app, "127.0.0.1", port, self.stop))
        self.ready.set()
        await self.stop.wait()
        await serving
        for each in runners:
            await each.cleanup()
        await member.stop()

    def __enter__(self) -> Ports:
        self.thread.start()
        assert self.ready.wait(20)
        return self

    def __exit__(self, *_: object) -> None:
        self.loop.call_soon_threadsafe(self.stop.set)
        self.thread.join(20)

    def run(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(30)

    def check_exactly_once(self) -> None:
        """Once the queue drains, the count is the sum of the increments the task API took."""
        member = self.member
        assert member is not None
        for _ in range(200):
            if not member.queued() and member.running is None:
                break
            self.run(asyncio.sleep(0.05))
        assert member.state.count == sum(self.accepted.values())
        assert member.fatal is None
