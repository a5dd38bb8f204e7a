"""`foundation-sidecar`: the resilience sidecar of an Agent member.

Two listeners: the proxy on 127.0.0.1:15000 (only the agent in the same pod can call it) and the
admin port 15090 on every address (`/healthz`, `/readyz`, `/metrics`) for probes and Prometheus.
On SIGTERM it goes on serving while the agent (stopped at the same moment) finishes its last
task: it exits once the agent's port in the same pod is closed and no call is in flight, or
after `drain_seconds`.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import socket
import sys
import time
from typing import Any

import uvloop
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field, field_validator

from foundation_agent.program import command_line
from foundation_agent.sidecar import metrics
from foundation_agent.sidecar.proxy import Proxy
from foundation_common import __version__, limits, tracing
from foundation_common.aio import count_tasks
from foundation_common.discovery import Directory, Observer, RestEndpoints
from foundation_common.resources import AGENT_PORT, SIDECAR_ADMIN_PORT, SIDECAR_PORT
from foundation_common.settings import SettingsError, json_setting, settings_from_env
from foundation_common.sidecar import SidecarConfig
from foundation_common.wake import Waker

logger = logging.getLogger("foundation_agent.sidecar")


async def listening(port: int) -> bool:
    """Whether something (the agent) still accepts connections on 127.0.0.1:`port`."""
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 1.0)
    except (OSError, TimeoutError):
        return False
    writer.close()
    return True


class SidecarSettings(BaseModel, frozen=True):
    """Environment: FOUNDATION_<FIELD> (upper case); the operator sets them on every member."""

    sidecar_config: SidecarConfig = Field(default_factory=SidecarConfig)
    namespace: str = "default"
    sidecar_host: str = "127.0.0.1"
    sidecar_port: int = Field(SIDECAR_PORT, ge=1, le=65535)
    sidecar_admin_host: str = "0.0.0.0"
    sidecar_admin_port: int = Field(
        SIDECAR_ADMIN_PORT, ge=0, le=65535, description="0 turns it off."
    )
    sidecar_drain_seconds: float = Field(25.0, ge=0, le=3600)
    agent_port: int = Field(AGENT_PORT, ge=1, le=65535, description="The agent's, to see it stop.")
    request_max_bytes: int = Field(limits.REQUEST_BYTES, ge=1024)
    json_max_depth: int = Field(limits.JSON_DEPTH, ge=8, le=512)
    max_in_flight: int = Field(limits.IN_FLIGHT, ge=1)

    _json = field_validator("sidecar_config", mode="before")(json_setting)

    @property
    def limits(self) -> limits.Limits:
        return limits.Limits(self.request_max_bytes, self.json_max_depth, self.max_in_flight)

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> SidecarSettings:
        return settings_from_env(cls, environ, "sidecar")


class Counted(Observer):
    """Discovery in the sidecar's metrics."""

    def members(self, name: str, count: int) -> None:
        metrics.MEMBERS.labels(capability=name).set(count)

    def ejected(self, name: str) -> None:
        metrics.EJECTIONS.labels(capability=name).inc()


def in_cluster_client() -> Any:
    """The pod's own account, through the light client, made at the first watch (a capability
    or a service upstream called): a sidecar that never discovers never loads it."""
    from foundation_common import rest

    return rest.Client.in_cluster()


def admin_app(proxy: Proxy, ready: asyncio.Event) -> web.Application:
    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "version": __version__})

    async def readyz(_: web.Request) -> web.Response:
        if ready.is_set():
            return web.json_response({"status": "ready"})
        return web.json_response({"status": "not ready"}, status=503)

    async def scrape(_: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(metrics.REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    app = web.Application(client_max_size=1024)  # GETs only: no body to read
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", scrape)
    return app


async def run(settings: SidecarSettings) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    count_tasks(metrics.ASYNCIO_TASKS)
    tracing.setup(
        "foundation-sidecar",
        **{"k8s.namespace.name": settings.namespace, "k8s.pod.name": socket.gethostname()},
    )
    config = settings.sidecar_config
    endpoints = RestEndpoints(connect=in_cluster_client)
    proxy = Proxy(
        config,
        Directory(config.discovery, settings.namespace, endpoints, Counted()),
        limits=settings.limits,
        waker=Waker(endpoints.client, settings.namespace),
    )
    ready = asyncio.Event()
    runners = [web.AppRunner(proxy.app(), handle_signals=False, access_log=None)]
    await runners[0].setup()
    await web.TCPSite(runners[0], settings.sidecar_host, settings.sidecar_port).start()
    if settings.sidecar_admin_port:
        runners.append(
            web.AppRunner(admin_app(proxy, ready), handle_signals=False, access_log=None)
        )
        await runners[1].setup()
        await web.TCPSite(
            runners[1], settings.sidecar_admin_host, settings.sidecar_admin_port
        ).start()
    # Everything made so far lives as long as the process: keep the collector off it, so its
    # pauses (the sidecar's p99) stay short.
    gc.collect()
    gc.freeze()
    ready.set()
    logger.info(
        "foundation-sidecar %s on %s:%d: upstreams %s",
        __version__,
        settings.sidecar_host,
        settings.sidecar_port,
        ", ".join(u.name for u in config.upstreams) or "none",
    )
    await stop.wait()
    ready.clear()
    logger.info("SIGTERM: serving the agent's last calls, then stopping")
    deadline = time.monotonic() + settings.sidecar_drain_seconds
    while time.monotonic() < deadline:
        if not proxy.in_flight and not await listening(settings.agent_port):
            break
        await asyncio.sleep(0.2)
    for runner in runners:
        await runner.cleanup()
    tracing.shutdown()
    return 0


def main(argv: list[str] | None = None) -> None:
    settings = command_line("foundation-sidecar", __doc__, argv, SidecarSettings.from_env)
    # uvloop: a libuv event loop, about half the per-call overhead of asyncio's own.
    try:
        sys.exit(uvloop.run(run(settings)))
    except SettingsError as exc:
        sys.exit(f"foundation-sidecar: {exc}")


if __name__ == "__main__":
    main()
