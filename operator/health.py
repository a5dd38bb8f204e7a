"""Liveness and readiness endpoints, served on the operator's own event loop.

`/healthz` answers as long as the event loop does (a blocked loop fails the probe) and says
whether this replica leads; `/readyz` is 200 once a standby has reached the API server, or once
the active replica's watches have started.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from foundation_common import __version__


@dataclass
class Health:
    role: str = "starting"  # starting, standby, leader
    ready: bool = False

    def payload(self) -> dict[str, object]:
        return {"status": "ok", "version": __version__, "role": self.role, "ready": self.ready}

    async def serve(self, host: str, port: int) -> web.AppRunner:
        async def healthz(_: web.Request) -> web.Response:
            return web.json_response(self.payload())

        async def readyz(_: web.Request) -> web.Response:
            return web.json_response(self.payload(), status=200 if self.ready else 503)

        app = web.Application()
        app.router.add_get("/healthz", healthz)
        app.router.add_get("/readyz", readyz)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, host, port).start()
        return runner
