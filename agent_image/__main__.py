"""`foundation-agent`: the runtime of one Agent member.

Loads the agent class and its durable state, serves the task API, runs tasks exactly once, and
on SIGTERM stops taking tasks, finishes or re-queues the one in flight, saves and exits.
Configuration comes from FOUNDATION_* variables, which the operator sets on every member.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
import time

from aiohttp import web

from foundation_agent.model import Agent, AgentError, load_agent
from foundation_agent.program import command_line
from foundation_agent.protocols.asgi import LazyApp, serve
from foundation_agent.runtime.access import Gate, review_with
from foundation_agent.runtime.member import Member
from foundation_agent.runtime.parking import Parking
from foundation_agent.runtime.peers import Peers
from foundation_agent.runtime.server import TaskApi, metrics_app
from foundation_agent.runtime.settings import Settings
from foundation_agent.runtime.status import StatusReporter
from foundation_agent.stores import MemoryStore, Store, StoreError
from foundation_agent.stores.configmap import ConfigMapStore
from foundation_agent.stores.secret import SecretStore
from foundation_agent.stores.sqlite import SqliteStore
from foundation_common import __version__, history, tracing
from foundation_common.limits import AsgiLimits

# The light client: kubernetes_asyncio's models would cost every member about 35 MB and 0.3 s
# of CPU at its start.
from foundation_common.rest import connect, in_cluster_server
from foundation_common.retry import Backoff, retrying

logger = logging.getLogger("foundation_agent")

LOAD_BACKOFF = Backoff(initial=1.0, maximum=30.0)  # 1, 2, 4, 8, 16, 30, 30 s...
EXIT_STORE_FAILED = 3


async def run(settings: Settings) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    agent = load_agent(settings.agent_class, settings.agent_config, settings.agent_name)
    tracing.setup(
        "foundation-agent",
        **{
            "k8s.namespace.name": settings.namespace,
            "k8s.pod.name": settings.member_name,
            tracing.AGENT: settings.agent_name,
        },
    )
    api = None
    if (
        settings.state_store in ("ConfigMap", "Secret")
        or settings.report_status
        or in_cluster_server()
    ):
        api = connect()
    store: Store
    if settings.state_store == "ConfigMap":
        store = ConfigMapStore(api, settings.namespace, settings.configmap)
    elif settings.state_store == "Secret":
        store = SecretStore(api, settings.namespace, settings.configmap)
    elif settings.state_store == "PVC":
        store = SqliteStore(settings.state_path)
    else:
        store = MemoryStore()
    reporter = (
        StatusReporter(
            api,
            settings.namespace,
            settings.agent_name,
            settings.member_name,
            settings.member,
            settings.status_interval_seconds,
        )
        if settings.report_status and api is not None
        else None
    )

    gate = Gate(
        review_with(api) if api is not None else None,
        settings.namespace,
        settings.agent_name,
        settings.service_account or settings.agent_name,
        settings.caller_auth,
        ttl=settings.auth_cache_seconds,
    )
    parking = Parking(bool(settings.parked_for))
    task_api = TaskApi(gate, bounds=settings.limits, parking=parking)
    runner = web.AppRunner(task_api.app(), handle_signals=False)
    runners = [runner]
    await runner.setup()
    await web.TCPSite(runner, settings.agent_host, settings.agent_port).start()
    if settings.metrics_port:
        runners.append(web.AppRunner(metrics_app(), handle_signals=False))
        await runners[-1].setup()
        await web.TCPSite(runners[-1], settings.agent_host, settings.metrics_port).start()
    peers = Peers(
        settings.agent_name, settings.namespace, settings.member_name, api, task_api.inbox
    )
    a2a_stop = asyncio.Event()
    a2a = (
        loop.create_task(
            serve(
                a2a_app(settings, agent, peers, gate),
                settings.agent_host,
                settings.a2a_port,
                a2a_stop,
            )
        )
        if settings.a2a_port
        else None
    )
    logger.info(
        "foundation-agent %s: %s, store %s %s, serving on %s:%d",
        __version__,
        settings.agent_class,
        store.kind,
        store.key or "-",
        settings.agent_host,
        settings.agent_port,
    )

    # Load the state; a state that cannot be loaded is reported and retried, not crash-looped.
    async def load() -> Member | None:
        if stop.is_set():
            return None
        member = Member(agent, store, settings)
        try:
            await member.load()
        except StoreError as exc:
            task_api.problem = exc.message
            member.error = exc
            logger.error("cannot load the state (%s): %s", exc.reason, exc.message)
            if reporter is not None:
                await reporter.report(member.summary())
            raise
        return member

    async def until_stopped(seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), seconds)

    # Parked (spec.warmWhileAsleep, spec.warmSpares): the first call asks for the state. Said
    # once, so the operator knows the member idle (a claimed spare holds no task).
    if parking.parked and reporter is not None and not parking.wanted.is_set():
        await reporter.report(
            {"busy": 0, "idleSince": history.stamp(time.time()), "parked": settings.parked_for}
        )
    await parking.until_wanted(stop)
    loaded = await retrying(load, LOAD_BACKOFF.fresh(), retry_on=StoreError, sleep=until_stopped)
    if loaded is None:
        await stop_a2a(a2a, a2a_stop, peers)
        for serving in runners:
            await serving.cleanup()
        await store.close()
        return 0
    member = loaded
    member.start()
    task_api.member = member
    parking.loaded.set()
    logger.info("state loaded: version %d, %d tasks queued", member.version, len(member.queue))
    reporting = loop.create_task(reporter.run(member.summary, member.changed)) if reporter else None
    member.changed.set()

    waits = {loop.create_task(stop.wait()), loop.create_task(member.failed.wait())}
    _, pending = await asyncio.wait(waits, return_when="FIRST_COMPLETED")
    for wait in pending:
        wait.cancel()
    if member.fatal is None:
        logger.info("SIGTERM: taking no more tasks, finishing the one in flight, saving")
    await member.stop()
    await stop_a2a(a2a, a2a_stop, peers)
    for serving in runners:
        await serving.cleanup()
    if reporting is not None:
        reporting.cancel()
        await reporter.report(member.summary())
    if api is not None:
        await api.close()
    tracing.shutdown()
    if member.fatal is not None:
        logger.error("stopped: %s", member.fatal.message)
        return EXIT_STORE_FAILED
    logger.info("stopped at state version %d", member.version)
    return 0


def a2a_app(settings: Settings, agent: Agent[object], peers: Peers, gate: Gate) -> AsgiLimits:
    """The Agent's A2A server, built (and a2a-sdk's server parts imported) on the first call."""

    def build() -> object:
        from foundation_agent.protocols.a2a_server import FoundationHandler, a2a_app

        default = f"http://{settings.agent_name}.{settings.namespace}.svc:{settings.a2a_port}/"
        return a2a_app(FoundationHandler(peers, agent.actions(), __version__, default), gate)

    return AsgiLimits(LazyApp(build), settings.limits)


async def stop_a2a(serving: asyncio.Task[None] | None, stop: asyncio.Event, peers: Peers) -> None:
    stop.set()
    if serving is not None:
        try:
            await serving
        except Exception as exc:  # a port in use, say: the tasks' own API went on without it
            logger.error("the A2A server failed: %s", exc)
    await peers.close()


def main(argv: list[str] | None = None) -> None:
    settings = command_line("foundation-agent", __doc__, argv, Settings.from_env)
    try:
        sys.exit(asyncio.run(run(settings)))
    except AgentError as exc:
        sys.exit(f"foundation-agent: {exc}")


if __name__ == "__main__":
    main()
