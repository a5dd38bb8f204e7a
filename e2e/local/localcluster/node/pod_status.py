"""A pod's status as the test node reports it: built from its containers' states, written
when it changed (condition timestamps aside), retried after a failed write."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import TYPE_CHECKING

from kubernetes_asyncio.client.exceptions import ApiException

from localcluster.layout import BRIDGE_IP
from localcluster.node import podspec
from localcluster.node.api import Obj, body, now

if TYPE_CHECKING:
    from localcluster.node.pod import PodWorker

logger = logging.getLogger(__name__)


class PodStatus:
    def __init__(self, worker: PodWorker) -> None:
        self.worker = worker
        self.dirty = asyncio.Event()
        self.start_time = now()
        self.last: Obj | None = None

    def build(self) -> Obj:
        worker = self.worker
        init = [c.status for c in worker.init_containers]
        main = [c.status for c in worker.containers]
        phase = podspec.pod_phase(worker.restart_policy, init, main)
        previous = worker.pod.get("status", {}).get("conditions") or []
        out: Obj = {
            "phase": phase,
            "conditions": podspec.pod_conditions(init, main, previous, now()),
            "hostIP": BRIDGE_IP,
            "startTime": worker.pod.get("status", {}).get("startTime") or self.start_time,
            "containerStatuses": [s.to_api() for s in main],
        }
        if worker.ip:
            out["podIP"] = worker.ip
            out["podIPs"] = [{"ip": worker.ip}]
        if init:
            out["initContainerStatuses"] = [s.to_api() for s in init]
        return out

    async def run(self) -> None:
        """The writer: a write after every change, until cancelled."""
        while True:
            await self.dirty.wait()
            self.dirty.clear()
            await self.write()

    async def write(self) -> None:
        worker = self.worker
        if worker.gone:
            return
        status = self.build()
        comparable = without_times(status)
        if comparable == self.last:
            return
        try:
            answer = await body(
                worker.core.patch_namespaced_pod_status(
                    worker.name,
                    worker.namespace,
                    {"status": status},
                    _content_type="application/merge-patch+json",
                    _preload_content=False,
                )
            )
            worker.pod["status"] = answer.get("status", status)
            self.last = comparable
        except ApiException as exc:
            if exc.status == 404:
                worker.gone = True
            else:
                logger.warning("pod %s: status update failed: %s", worker.key, exc.reason)
                self.dirty.set()
                await asyncio.sleep(0.5)

    async def flush(self, writer: asyncio.Task[None]) -> None:
        """Stop the writer and write what is left."""
        writer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await writer
        await self.write()


def without_times(status: Obj) -> Obj:
    """The status minus condition timestamps, so an unchanged pod causes no write."""
    copy = json.loads(json.dumps(status))
    for c in copy.get("conditions", []):
        c.pop("lastTransitionTime", None)
    return copy
