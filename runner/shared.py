"""`foundation-shared-runner`: the namespace's shared runner, already running when a Workflow
with `spec.runner.shared: true` is created, so the Workflow starts without a pod of its own.

Each such Workflow gets a process of its own, forked from a warm one (multiprocessing's
forkserver, with the runner's modules imported once, before any Workflow comes): no Python
start, no import, a few milliseconds. The process runs the same runner as a runner pod does
(`foundation_runner.runner`), so what the one-pod design gives holds: a Workflow's crash ends
its process only (the others run on; this manager starts it again, and it goes on from the
progress in its own status), and every step goes out exactly once by its task id.

What a shared Workflow gives up: its steps are sent as the shared runner's account (one per
namespace, allowed to send tasks to every Agent of the namespace), not an account of its own
that may call only its steps' Agents; `spec.runner.resources`, `podTemplate` and `tracing` do
not apply (the shared runner's pod has the chart's).

The manager watches the namespace's Workflows; each unfinished shared one has a process, and a
process whose Workflow is deleted gets SIGTERM. A process that ends other than by finishing its
Workflow is started again after a back-off; after `MAX_RESTARTS` the Workflow fails with
reason RunnerCrashLoop (as one whose runner pod crash-loops).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import signal
import time
from dataclasses import dataclass, field
from multiprocessing.context import ForkServerContext
from multiprocessing.process import BaseProcess
from typing import Any

from pydantic import BaseModel, Field

from foundation_common import rest
from foundation_common.discovery import RestEndpoints
from foundation_common.retry import Backoff
from foundation_common.settings import SettingsError, settings_from_env
from foundation_common.status import condition, now, stamp
from foundation_common.workflows.api import WORKFLOW

logger = logging.getLogger("foundation_runner.shared")

MAX_RESTARTS = 5  # as a runner pod's (foundation_operator.workflows.controller)
FINISHED = ("Succeeded", "Failed")
PRELOAD = ["foundation_runner.warm"]


def is_shared(body: dict[str, Any]) -> bool:
    return bool((((body.get("spec") or {}).get("runner")) or {}).get("shared"))


def wants_process(body: dict[str, Any]) -> bool:
    """An unfinished shared Workflow, not being deleted."""
    return (
        is_shared(body)
        and not body["metadata"].get("deletionTimestamp")
        and (body.get("status") or {}).get("phase") not in FINISHED
    )


class SharedSettings(BaseModel, frozen=True):
    """Environment: FOUNDATION_NAMESPACE, set on the shared runner's pod."""

    namespace: str = Field(min_length=1)


def run_one(namespace: str, name: str) -> None:
    """A Workflow's process (forked from the forkserver): the runner, as in a runner pod."""
    import asyncio as aio

    from foundation_runner.main import RunnerSettings, serve

    with contextlib.suppress(OSError):  # `ps` and the tests tell the processes apart
        with open("/proc/self/comm", "w") as comm:
            comm.write(f"wf-{name}"[:15])
    logging.basicConfig(
        level=logging.INFO,
        format=f"%(asctime)s %(levelname)s [{name}] %(name)s: %(message)s",
        force=True,
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    try:
        settings = RunnerSettings(
            namespace=namespace,
            workflow=name,
            discovery_api=os.environ.get("FOUNDATION_DISCOVERY_API"),
        )
        code = aio.run(serve(settings))
    finally:
        logger.info(
            "workflow %s/%s: its process used %.3f s of CPU", namespace, name, time.process_time()
        )
    raise SystemExit(code)


@dataclass
class Running:
    """One Workflow's process, and its restarts."""

    name: str
    process: BaseProcess | None = None
    restarts: int = 0
    not_before: float = 0.0  # monotonic: the back-off after a crash
    backoff: Backoff = field(default_factory=lambda: Backoff(initial=1.0, maximum=30.0))
    stopping: bool = False


class SharedRunner:
    def __init__(self, api: rest.Client, namespace: str, context: ForkServerContext) -> None:
        self.api = api
        self.namespace = namespace
        self.context = context
        self.workflows: dict[str, dict[str, Any]] = {}
        self.running: dict[str, Running] = {}
        self.changed = asyncio.Event()

    def observe(self, kind: str, body: dict[str, Any]) -> None:
        name = body["metadata"]["name"]
        if kind == "DELETED":
            self.workflows.pop(name, None)
        else:
            self.workflows[name] = body
        self.changed.set()

    async def watch(self) -> None:
        path = f"/apis/{WORKFLOW.group}/{WORKFLOW.version}/namespaces/{self.namespace}/workflows"
        backoff = Backoff(initial=0.5, maximum=10.0)
        while True:
            try:
                async for kind, obj in self.api.list_and_watch(path, timeout_seconds=300):
                    if kind == "SYNC":
                        self.workflows = {i["metadata"]["name"]: i for i in obj.get("items") or []}
                        self.changed.set()
                        backoff.reset()
                    else:
                        self.observe(kind, obj)
            except (rest.ApiError, rest.Unreachable, OSError) as exc:
                pause = backoff.next()
                logger.warning("watching Workflows: %s (again in %.1fs)", exc, pause)
                await asyncio.sleep(pause)

    async def run(self) -> None:
        watching = asyncio.get_running_loop().create_task(self.watch(), name="watch-workflows")
        try:
            while True:
                wait = await self.tend()
                self.changed.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.changed.wait(), wait)
        finally:
            watching.cancel()
            await self.stop_all()

    async def tend(self) -> float:
        """Start, stop and restart processes to match the Workflows; seconds to the next
        back-off's end (or a while, to look at the processes again)."""
        wait = 1.0
        clock = time.monotonic()
        for name in set(self.running) | set(self.workflows):
            body = self.workflows.get(name)
            run = self.running.get(name)
            wanted = body is not None and wants_process(body)
            alive = run is not None and run.process is not None and run.process.is_alive()
            if run is not None and run.process is not None and not alive:
                await self._ended(run, body)
                if run.name not in self.running:
                    continue
            if not wanted:
                if alive and run is not None and not run.stopping:
                    assert run.process is not None
                    run.stopping = True
                    run.process.terminate()  # deleted: its runner stops, losing nothing
                elif not alive:
                    self.running.pop(name, None)
                continue
            if alive:
                continue
            run = self.running.setdefault(name, Running(name))
            if clock < run.not_before:
                wait = min(wait, run.not_before - clock)
                continue
            run.process = self.context.Process(
                target=run_one, args=(self.namespace, name), name=f"workflow {name}", daemon=False
            )
            run.process.start()
            logger.info("workflow %s/%s: runner process %s", self.namespace, name, run.process.pid)
        return wait

    async def _ended(self, run: Running, body: dict[str, Any] | None) -> None:
        """A process ended: done (its Workflow finished, or was deleted, or it was asked to
        stop), or crashed: started again after a back-off, until too many restarts."""
        assert run.process is not None
        code = run.process.exitcode
        run.process.close()
        run.process = None
        if run.stopping or body is None:
            self.running.pop(run.name, None)
            return
        if code == 0:
            # It ends with its Workflow: if the status says otherwise, the watch is behind.
            run.not_before = time.monotonic() + 0.5
            return
        run.restarts += 1
        how = f"signal {-code}" if code is not None and code < 0 else f"exit code {code}"
        logger.warning(
            "workflow %s/%s: its runner process ended with %s (restart %d)",
            self.namespace,
            run.name,
            how,
            run.restarts,
        )
        if run.restarts >= MAX_RESTARTS:
            await self._fail(body, f"its runner process restarted {run.restarts} times ({how})")
            self.running.pop(run.name, None)
            return
        run.not_before = time.monotonic() + run.backoff.next()

    async def _fail(self, body: dict[str, Any], message: str) -> None:
        meta = body["metadata"]
        generation = int(meta.get("generation", 0))
        verdict = condition("Succeeded", False, "RunnerCrashLoop", message, generation, [], now())
        with contextlib.suppress(rest.ApiError, rest.Unreachable):
            await self.api.merge_patch(
                WORKFLOW.path(self.namespace, meta["name"], "status"),
                {
                    "status": {
                        "phase": "Failed",
                        "conditions": [verdict.model_dump(by_alias=True, exclude_none=True)],
                        "finishedAt": stamp(now()),
                    }
                },
            )

    async def stop_all(self) -> None:
        """SIGTERM: each process stops as a runner pod does (its status holds every attempt
        sent); the next shared runner goes on from there."""
        for run in self.running.values():
            if run.process is not None and run.process.is_alive():
                run.process.terminate()
        for run in self.running.values():
            if run.process is not None:
                await asyncio.to_thread(run.process.join, 20)


def forkserver() -> ForkServerContext:
    """The warm process Workflows are forked from: the runner's modules imported once."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(PRELOAD)
    # Started now, not on the first Workflow: that one must not wait for Python and imports.
    warm = context.Process(target=os.getpid)
    warm.start()
    warm.join()
    return context


async def serve_shared(namespace: str) -> int:
    api = rest.Client.in_cluster()
    # Asked once here, for every Workflow's process (each would ask with two requests).
    os.environ["FOUNDATION_DISCOVERY_API"] = await RestEndpoints.slice_api(api) or "v1"
    shared = SharedRunner(api, namespace, forkserver())
    task = asyncio.get_running_loop().create_task(shared.run())
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, task.cancel)
    logger.info("shared runner of namespace %s: ready", namespace)
    try:
        await task
    except asyncio.CancelledError:
        pass
    finally:
        await api.close()
    return 0


def main() -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        settings = settings_from_env(SharedSettings, None, "runner")
    except SettingsError as exc:
        raise SystemExit(f"foundation-shared-runner: {exc}") from None
    raise SystemExit(asyncio.run(serve_shared(settings.namespace)))


if __name__ == "__main__":
    main()
