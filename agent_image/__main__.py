"""`foundation-agent`: the agent runtime's entry point.

For now it serves health and readiness and stops cleanly on SIGTERM; the task API and durable
state build on this process.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal

from aiohttp import web

from foundation_agent import __version__

logger = logging.getLogger("foundation_agent")


class Runtime:
    """Health and readiness of one agent member."""

    def __init__(self) -> None:
        self.ready = False
        self.stopping = asyncio.Event()

    async def healthz(self, _: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "version": __version__})

    async def readyz(self, _: web.Request) -> web.Response:
        if self.ready and not self.stopping.is_set():
            return web.json_response({"status": "ready"})
        return web.json_response({"status": "not ready"}, status=503)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/readyz", self.readyz)
        return app


async def serve(host: str, port: int) -> None:
    runtime = Runtime()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, runtime.stopping.set)
    runner = web.AppRunner(runtime.app())
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    runtime.ready = True
    logger.info("foundation-agent %s serving on %s:%d", __version__, host, port)
    await runtime.stopping.wait()
    logger.info("SIGTERM received; stopping")
    await runner.cleanup()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="foundation-agent", description=__doc__)
    parser.add_argument("--host", default=os.environ.get("FOUNDATION_AGENT_HOST", "0.0.0.0"))
    parser.add_argument(
        "--port", type=int, default=int(os.environ.get("FOUNDATION_AGENT_PORT", "8080"))
    )
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    asyncio.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
