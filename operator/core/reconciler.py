"""Workers over a work queue: each takes a key, calls the resource's `reconcile`, and handles
the outcome once for every resource: success forgets the key's back-off (and requeues it if
`reconcile` asks to be called again after a while), an error brings the key back after its
back-off without holding the worker, and every pass is counted and timed."""

from __future__ import annotations

import asyncio
import logging
import time

from foundation_common.aio import cancel_all
from foundation_operator.core import metrics
from foundation_operator.core.client import ApiError
from foundation_operator.core.index import Key
from foundation_operator.core.queue import WorkQueue
from foundation_operator.core.trim import Trimmer

logger = logging.getLogger(__name__)


def namespace_terminating(exc: ApiError) -> bool:
    return exc.status == 403 and "NamespaceTerminating" in str(getattr(exc, "body", ""))


class Reconciler:
    """Subclasses set `resource` (the metrics label) and implement `reconcile`."""

    resource = "object"

    def __init__(self, workers: int, queue: WorkQueue[Key] | None = None) -> None:
        self.workers = workers
        self.queue: WorkQueue[Key] = queue or WorkQueue()
        # Subclasses call `trimmer.forgotten()` when they drop a deleted object's state.
        self.trimmer = Trimmer()
        self._tasks: list[asyncio.Task[None]] = []

    async def reconcile(self, key: Key) -> float | None:
        """Bring the object of `key` to its spec; seconds until it wants another pass, if any."""
        raise NotImplementedError

    def log_fields(self, key: Key) -> dict[str, str]:
        """Fields naming the object a log line is about (JSON logs carry them)."""
        return {"namespace": key[0], self.resource: key[1]}

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._work(), name=f"{self.resource}-reconciler-{i}")
            for i in range(self.workers)
        ]

    async def stop(self) -> None:
        self.trimmer.cancel()
        await cancel_all(self._tasks)
        self.queue.close()

    async def _work(self) -> None:
        while True:
            key = await self.queue.get()
            try:
                await self._once(key)
            finally:
                self.queue.done(key)

    async def _once(self, key: Key) -> None:
        started = time.monotonic()
        result = "ok"
        try:
            again = await self.reconcile(key)
        except ApiError as exc:
            if namespace_terminating(exc):
                # Nothing new may be made there; the namespace's deletion removes the object
                # next, and that event brings it back here.
                logger.debug("%s/%s: namespace terminating", *key, extra=self.log_fields(key))
                self.queue.forget(key)
                return
            result = "api_error"
            metrics.API_ERRORS.labels(code=str(exc.status)).inc()
            delay = self.queue.add_rate_limited(key)
            logger.warning(
                "reconcile %s/%s: API error %s %s: %s (again in %.2fs)",
                *key,
                exc.status,
                exc.reason,
                (getattr(exc, "body", None) or "")[:500],
                delay,
                extra=self.log_fields(key),
            )
        except Exception:
            result = "error"
            delay = self.queue.add_rate_limited(key)
            logger.exception(
                "reconcile %s/%s failed (again in %.2fs)", *key, delay, extra=self.log_fields(key)
            )
        else:
            self.queue.forget(key)
            if again is not None:
                self.queue.add_after(key, again)
        finally:
            metrics.RECONCILIATIONS.labels(resource=self.resource, result=result).inc()
            metrics.RECONCILE_SECONDS.labels(resource=self.resource).observe(
                time.monotonic() - started
            )
