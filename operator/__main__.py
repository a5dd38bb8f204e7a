"""`foundation-operator`: configure logging and metrics, stand for leadership, run kopf.

kopf imports kubernetes_asyncio's models whenever that package is importable (about 35 MB and
0.4 s of CPU at start); the agent image does not carry it (it is the CLI's, `foundation[cli]`),
and the operator calls the API through `foundation_common.rest`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys

import kopf

from foundation_common.aio import count_tasks
from foundation_operator import handlers, logs
from foundation_operator.core import metrics
from foundation_operator.core.client import connect
from foundation_operator.health import Health
from foundation_operator.leadership import Leadership, LostLeadership
from foundation_operator.settings import Settings, SettingsError

logger = logging.getLogger("foundation_operator")
KOPF_STOP_SECONDS = 10


def handle_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)


async def run_kopf(settings: Settings, health: Health, stop: asyncio.Event) -> None:
    """The supervisor proper: kopf's watches feeding the handlers until `stop` is set."""
    ready = asyncio.Event()
    health.role = "leader"
    health.ready = False

    async def mark_ready() -> None:
        await ready.wait()
        health.ready = True
        # kopf installs its own SIGTERM handler; ours stops it through `stop` (an intended
        # stop, without kopf's last-resort SIGKILL) and lets the Lease be handed over.
        handle_signals(stop)

    marker = asyncio.create_task(mark_ready())
    handlers.State.stopped = stopped = asyncio.Event()
    operator = asyncio.create_task(
        kopf.operator(
            # Our identity, not kopf's default from getpass.getuser(), which fails for a uid
            # with no passwd entry (runAsUser without a user in the image, OpenShift's UIDs).
            identity=settings.identity,
            clusterwide=not settings.namespaces,
            namespaces=list(settings.namespaces),
            ready_flag=ready,
            stop_flag=stop,
        )
    )
    watching = asyncio.create_task(stopped.wait())
    try:
        await asyncio.wait({operator, watching}, return_when=asyncio.FIRST_COMPLETED)
        if stopped.is_set() and not stop.is_set():
            # kopf gave up on its own (it takes a 404 on a watch for fatal, as a restarted API
            # server answers while it installs its CRDs). An operator without watches must not
            # look alive: end, so that the pod (or whoever runs us) starts a fresh one.
            health.ready = False
            logger.error("kopf stopped on its own; exiting so a fresh operator starts")
            done, _ = await asyncio.wait({operator}, timeout=KOPF_STOP_SECONDS)
            if not done:
                logger.error("kopf did not stop within %ss; exiting now", KOPF_STOP_SECONDS)
                logging.shutdown()
                os._exit(1)
            raise KopfStopped("kopf stopped on its own")
        await operator
    finally:
        watching.cancel()
        marker.cancel()
        health.ready = False


class KopfStopped(RuntimeError):
    """kopf ended without being asked to: the process exits non-zero."""


async def run(settings: Settings) -> int:
    stop = asyncio.Event()
    handle_signals(stop)
    count_tasks(metrics.ASYNCIO_TASKS)
    health = Health()
    runner = await health.serve(settings.health_host, settings.health_port)
    door = asyncio.create_task(serve_door(settings, stop)) if settings.door_port else None
    try:
        if not settings.leader_election:
            try:
                await run_kopf(settings, health, stop)
            except KopfStopped:
                return 1
            return 0
        async with await connect() as api:
            leadership = Leadership(api, settings)
            health.role, health.ready = "standby", True
            campaign = asyncio.create_task(leadership.run(lambda: run_kopf(settings, health, stop)))
            stopping = asyncio.create_task(stop.wait())
            await asyncio.wait({campaign, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if not campaign.done():
                if leadership.leading:
                    # kopf has seen `stop` too; wait for it to finish and hand the Lease over.
                    await campaign
                else:
                    campaign.cancel()
                    await asyncio.gather(campaign, return_exceptions=True)
            elif isinstance(campaign.exception(), LostLeadership | KopfStopped):
                logger.error("%s", campaign.exception())
                return 1
            else:
                campaign.result()
            return 0
    finally:
        if door is not None:
            stop.set()
            await asyncio.gather(door, return_exceptions=True)
        await runner.cleanup()


async def serve_door(settings: Settings, stop: asyncio.Event) -> None:
    """People's door, on every replica, leading or not (foundation_operator.door)."""
    from foundation_operator.door import server

    try:
        async with await connect() as api:
            await server.serve(
                api,
                settings.door_host,
                settings.door_port,
                settings.door_cert_file,
                settings.door_key_file,
                settings.door_token_file,
                stop,
                settings.door_public_url,
            )
    except Exception:
        # The operator supervises on without it; people's calls answer 503 from the API server.
        logger.exception("people's door stopped")


def main() -> None:
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"foundation-operator: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    logs.configure(settings.log_level, settings.log_format)
    metrics.serve(settings.metrics_port)
    logger.info(
        "watching %s; health on %s:%s; metrics on :%s; leader election %s",
        ",".join(settings.namespaces) or "all namespaces",
        settings.health_host,
        settings.health_port,
        settings.metrics_port or "(off)",
        f"on (Lease {settings.lease_name}, identity {settings.identity})"
        if settings.leader_election
        else "off",
    )
    raise SystemExit(asyncio.run(run(settings)))


if __name__ == "__main__":
    main()
