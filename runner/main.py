"""`foundation-runner`'s entry: settings from the environment, the runner over an in-cluster
API client and an HTTP client carrying the runner's token, stopped by SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import signal
import ssl
from collections.abc import Iterator

import httpx
from pydantic import BaseModel, Field

from foundation_common import rest, tracing
from foundation_common.access import CallerToken
from foundation_common.settings import SettingsError, settings_from_env
from foundation_runner.runner import Runner


class RunnerSettings(BaseModel, frozen=True):
    """Environment: FOUNDATION_<FIELD>; the operator sets them on the runner pod."""

    namespace: str = Field(min_length=1)
    workflow: str = Field(min_length=1)
    # Which API serves EndpointSlices ("v1": none, Endpoints), when known (the shared runner
    # asks once for all its processes); else the runner asks.
    discovery_api: str | None = None


class TokenAuth(httpx.Auth):
    """Every call into a member carries the runner's Foundation token (its own account's):
    the members authorize the Workflow's steps by it, and keep it as the tasks' sender."""

    def __init__(self, token: CallerToken) -> None:
        self.token = token

    def auth_flow(self, request: httpx.Request) -> Iterator[httpx.Request]:
        request.headers.update(self.token.header())
        yield request


async def serve(settings: RunnerSettings) -> int:
    tracing.setup(
        "foundation-runner",
        **{"k8s.namespace.name": settings.namespace, tracing.WORKFLOW: settings.workflow},
    )
    api = rest.Client.in_cluster()
    try:
        # Members serve plain HTTP: no CA bundle is loaded for them (httpx's default loads
        # certifi's, about 75 ms of CPU per runner); an https URL would fail, trusting none.
        members_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        async with httpx.AsyncClient(
            timeout=10.0, auth=TokenAuth(CallerToken()), verify=members_tls
        ) as http:
            runner = Runner(
                api, settings.namespace, settings.workflow, http, settings.discovery_api
            )
            task = asyncio.create_task(runner.run())
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                # Stopping loses nothing: the status holds every attempt sent.
                loop.add_signal_handler(sig, task.cancel)
            try:
                return await task
            except asyncio.CancelledError:
                return 0
            finally:
                if runner.spec_watch is not None:
                    runner.spec_watch.cancel()
                await runner.directory.close()
                await runner.waker.close()
    finally:
        await api.close()
        tracing.shutdown()


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line per request
    try:
        settings = settings_from_env(RunnerSettings, None, "runner")
    except SettingsError as exc:
        raise SystemExit(f"foundation-runner: {exc}") from None
    raise SystemExit(asyncio.run(serve(settings)))


if __name__ == "__main__":
    main()
