"""The hollow node, as Kubernetes' kubemark has: a second Node whose pods are given the status
a kubelet would report for them (scheduled, Running, Ready, an address, container statuses
with restarts) without a process, a network namespace or a volume. An operator can then be
measured at 10,000 members on a machine that runs a few hundred real ones.

Pods choose it: the node is labelled `foundation.dev/hollow=true` and tainted
`foundation.dev/hollow=true:NoSchedule`, so a pod lands on it only with that node selector and
a toleration; every other pod goes to the real test node, in the same cluster.

A pod annotated `foundation.dev/hollow-restarts: "N"` reports N restarts of its containers,
the last one an exit with code 1 (`foundation.dev/hollow-exit-code` to choose another), so
supervision can be exercised on hollow members too.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from typing import Any

from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from localcluster.node.api import Obj, body, list_and_watch, now

logger = logging.getLogger(__name__)

NAME = "foundation-hollow-node"
LABEL = "foundation.dev/hollow"
TAINT = {"key": LABEL, "value": "true", "effect": "NoSchedule"}
RESTARTS = "foundation.dev/hollow-restarts"
EXIT_CODE = "foundation.dev/hollow-exit-code"
# Many pods, each with a cheap status: the scheduler's limit, not this machine's.
ALLOCATABLE = {"cpu": "100000", "memory": "100000Gi", "pods": "50000", "ephemeral-storage": "100Ti"}
# RFC 2544's network for benchmarks: no address a real pod or Service has, routed nowhere.
NETWORK = ipaddress.ip_network("198.18.0.0/15")
# Status writes in flight at once: a kubelet's pod workers, bounded.
WRITERS = 16


def pod_address(index: int) -> str:
    """The `index`th pod address of the hollow network (after the node's own)."""
    return str(NETWORK.network_address + 2 + index % (NETWORK.num_addresses - 3))


def hollow_status(pod: Obj, ip: str, started_at: str) -> Obj:
    """The status a kubelet reports for `pod` once all its containers run and are ready.

    Pure: the same pod, address and start time give the same status, so an unchanged pod is
    never written twice."""
    meta, spec = pod["metadata"], pod["spec"]
    annotations = meta.get("annotations") or {}
    restarts = _int(annotations.get(RESTARTS), 0)
    exit_code = _int(annotations.get(EXIT_CODE), 1)
    uid = meta["uid"]

    def container(c: Obj, *, init: bool) -> Obj:
        cid = f"hollow://{uid}/{c['name']}"
        out: dict[str, Any] = {
            "name": c["name"],
            "image": c.get("image", ""),
            "imageID": "",
            "containerID": cid,
            "restartCount": 0 if init else restarts,
            "lastState": {},
        }
        if init:
            out["state"] = {
                "terminated": {
                    "exitCode": 0,
                    "reason": "Completed",
                    "startedAt": started_at,
                    "finishedAt": started_at,
                    "containerID": cid,
                }
            }
            out.update(ready=True, started=False)
            return out
        out["state"] = {"running": {"startedAt": started_at}}
        out.update(ready=True, started=True)
        if restarts:
            out["lastState"] = {
                "terminated": {
                    "exitCode": exit_code,
                    "reason": "Completed" if exit_code == 0 else "Error",
                    "startedAt": started_at,
                    "finishedAt": started_at,
                    "containerID": cid,
                }
            }
        return out

    conditions = [
        {"type": t, "status": "True", "lastProbeTime": None, "lastTransitionTime": started_at}
        for t in ("Initialized", "Ready", "ContainersReady", "PodScheduled")
    ]
    status: Obj = {
        "phase": "Running",
        "conditions": conditions,
        "hostIP": ip_of_node(),
        "podIP": ip,
        "podIPs": [{"ip": ip}],
        "startTime": started_at,
        "containerStatuses": [container(c, init=False) for c in spec["containers"]],
    }
    if spec.get("initContainers"):
        status["initContainerStatuses"] = [container(c, init=True) for c in spec["initContainers"]]
    return status


def ip_of_node() -> str:
    return str(NETWORK.network_address + 1)


def _int(value: Any, default: int) -> int:
    try:
        return max(0, int(value)) if value is not None else default
    except (TypeError, ValueError):
        return default


def reported(pod: Obj) -> tuple[Any, ...] | None:
    """What the node last reported for `pod`, in the terms `hollow_status` depends on."""
    status = pod.get("status") or {}
    if status.get("phase") != "Running" or not status.get("podIP"):
        return None
    return (status["podIP"], status.get("startTime"), _restarts_reported(status))


def _restarts_reported(status: Obj) -> int:
    return max((c.get("restartCount", 0) for c in status.get("containerStatuses") or []), default=0)


class HollowKubelet:
    """Watches the pods bound to the hollow node; writes each one's status when it differs
    from what it should be, and confirms deletions at once (there is nothing to stop)."""

    def __init__(self, api: client.ApiClient) -> None:
        self.core = client.CoreV1Api(api)
        self.addresses: dict[str, str] = {}  # uid -> address
        self.next_address = 0
        self.queue: asyncio.Queue[Obj] = asyncio.Queue()
        self.pending: dict[str, Obj] = {}  # uid -> latest object not yet handled

    def address(self, pod: Obj) -> str:
        uid = pod["metadata"]["uid"]
        if uid not in self.addresses:
            known = (pod.get("status") or {}).get("podIP")
            if known:
                self.addresses[uid] = known
            else:
                self.addresses[uid] = pod_address(self.next_address)
                self.next_address += 1
        return self.addresses[uid]

    def observe(self, pod: Obj) -> None:
        uid = pod["metadata"]["uid"]
        fresh = uid not in self.pending
        self.pending[uid] = pod
        if fresh:
            self.queue.put_nowait(pod)

    def forget(self, pod: Obj) -> None:
        uid = pod["metadata"]["uid"]
        self.addresses.pop(uid, None)
        self.pending.pop(uid, None)

    async def watch(self) -> None:
        async for kind, obj in list_and_watch(
            self.core.list_pod_for_all_namespaces, field_selector=f"spec.nodeName={NAME}"
        ):
            if kind == "SYNC":
                for pod in obj["items"]:
                    self.observe(pod)
            elif kind == "DELETED":
                self.forget(obj)
            else:
                self.observe(obj)

    async def worker(self) -> None:
        while True:
            queued = await self.queue.get()
            pod = self.pending.pop(queued["metadata"]["uid"], None)
            if pod is None:
                continue  # deleted meanwhile
            try:
                await self.handle(pod)
            except ApiException as exc:
                if exc.status != 404:
                    logger.warning(
                        "hollow pod %s/%s: %s; retrying",
                        pod["metadata"]["namespace"],
                        pod["metadata"]["name"],
                        exc.reason,
                    )
                    await asyncio.sleep(0.5)
                    if pod["metadata"]["uid"] not in self.pending:
                        self.observe(pod)  # unless a newer version came meanwhile

    async def handle(self, pod: Obj) -> None:
        meta = pod["metadata"]
        if meta.get("deletionTimestamp"):
            await body(
                self.core.delete_namespaced_pod(
                    meta["name"],
                    meta["namespace"],
                    body={"gracePeriodSeconds": 0, "preconditions": {"uid": meta["uid"]}},
                    _preload_content=False,
                )
            )
            return
        started = (pod.get("status") or {}).get("startTime") or now()
        status = hollow_status(pod, self.address(pod), started)
        if reported(pod) == (status["podIP"], started, _restarts_reported(status)):
            return  # already reported: no write
        await body(
            self.core.patch_namespaced_pod_status(
                meta["name"],
                meta["namespace"],
                {"status": status},
                _content_type="application/merge-patch+json",
                _preload_content=False,
            )
        )

    async def run(self) -> None:
        workers = [asyncio.create_task(self.worker()) for _ in range(WRITERS)]
        try:
            await self.watch()
        finally:
            for task in workers:
                task.cancel()
