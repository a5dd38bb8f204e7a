"""The test node's kubelet: registers the Node, keeps its lease, runs the pods bound to it."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import os
import platform
import signal
import ssl
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

from aiohttp import web
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from foundation_common.retry import Backoff
from localcluster import cgroups, layout, network
from localcluster.layout import Layout
from localcluster.node import hollow
from localcluster.node.api import Obj, body, connect, list_and_watch, now, optional
from localcluster.node.pod import NodeContext, PodWorker, run_cmd
from localcluster.node.storage import Provisioner

logger = logging.getLogger(__name__)

ALLOCATABLE = {"cpu": "32", "memory": "64Gi", "pods": "1000", "ephemeral-storage": "100Gi"}


def node_object(name: str, labels: dict[str, str] | None = None) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "foundation.dev/test-node": "true",
                **(labels or {}),
            },
        },
        "spec": {},
    }


def node_status(allocatable: dict[str, str], name: str = layout.NODE_NAME) -> Obj:
    stamp = now()
    conditions = [
        ("MemoryPressure", "False", "KubeletHasSufficientMemory"),
        ("DiskPressure", "False", "KubeletHasNoDiskPressure"),
        ("PIDPressure", "False", "KubeletHasSufficientPID"),
        ("Ready", "True", "KubeletReady"),
    ]
    return {
        "capacity": allocatable,
        "allocatable": allocatable,
        "conditions": [
            {
                "type": t,
                "status": s,
                "reason": r,
                "message": "foundation local test node",
                "lastHeartbeatTime": stamp,
                "lastTransitionTime": stamp,
            }
            for t, s, r in conditions
        ],
        "addresses": [
            {"type": "InternalIP", "address": layout.BRIDGE_IP},
            {"type": "Hostname", "address": name},
        ],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": layout.KUBELET_PORT}},
        "nodeInfo": {
            "machineID": "",
            "systemUUID": "",
            "bootID": "",
            "kernelVersion": platform.release(),
            "osImage": "foundation local test node",
            "containerRuntimeVersion": "local-process://0.1",
            "kubeletVersion": "v1.20.2",
            "kubeProxyVersion": "v1.20.2",
            "operatingSystem": "linux",
            "architecture": "amd64",
        },
    }


class Kubelet:
    def __init__(self, ctx: NodeContext) -> None:
        self.ctx = ctx
        self.core = client.CoreV1Api(ctx.api)
        self.coordination = client.CoordinationV1Api(ctx.api)
        self.workers: dict[str, PodWorker] = {}

    @property
    def name(self) -> str:
        return self.ctx.node_name

    async def clean_leftovers(self) -> None:
        """Processes and namespaces of an earlier run of this node (which crashed) go first."""
        cgroups.kill_all()
        for netns in network.our_namespaces():
            with contextlib.suppress(RuntimeError):
                await run_cmd(["ip", "netns", "del", netns])
        for link in Path("/sys/class/net").iterdir():
            if link.name.startswith(layout.VETH_PREFIX):
                with contextlib.suppress(RuntimeError):
                    await run_cmd(["ip", "link", "del", link.name])
        await asyncio.sleep(0.1)
        for child in list(cgroups.CGROUP_ROOT.iterdir()) if cgroups.CGROUP_ROOT.exists() else []:
            if child.is_dir():
                cgroups.remove(child)

    async def register(
        self,
        name: str | None = None,
        allocatable: dict[str, str] | None = None,
        labels: dict[str, str] | None = None,
        taints: list[Obj] | None = None,
    ) -> None:
        name = name or self.name
        existing = await optional(self.core.read_node(name, _preload_content=False))
        if existing is None:
            await body(self.core.create_node(node_object(name, labels), _preload_content=False))
        await body(
            self.core.patch_node_status(
                name,
                {"status": node_status(allocatable or self.ctx.allocatable, name)},
                _content_type="application/merge-patch+json",
                _preload_content=False,
            )
        )
        # Admission taints a new node not-ready; the node-lifecycle controller that would lift
        # the taint does not run here, so the node sets its own taints once it reports Ready.
        await body(
            self.core.patch_node(
                name,
                {"spec": {"taints": taints}},
                _content_type="application/merge-patch+json",
                _preload_content=False,
            )
        )
        logger.info("node %s registered and Ready", name)

    async def heartbeat(self, name: str | None = None) -> None:
        name = name or self.name
        leases = "kube-node-lease"
        while True:
            renew = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            lease = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": name, "namespace": leases},
                "spec": {
                    "holderIdentity": name,
                    "leaseDurationSeconds": 40,
                    "renewTime": renew,
                },
            }
            try:
                try:
                    await body(
                        self.coordination.patch_namespaced_lease(
                            name,
                            leases,
                            {"spec": lease["spec"]},
                            _content_type="application/merge-patch+json",
                            _preload_content=False,
                        )
                    )
                except ApiException as exc:
                    if exc.status != 404:
                        raise
                    await body(
                        self.coordination.create_namespaced_lease(
                            leases, lease, _preload_content=False
                        )
                    )
            except ApiException as exc:
                logger.warning("lease renewal failed: %s", exc.reason)
            await asyncio.sleep(10)

    async def watch_pods(self) -> None:
        selector = f"spec.nodeName={self.name}"
        async for kind, obj in list_and_watch(
            self.core.list_pod_for_all_namespaces, field_selector=selector
        ):
            if kind == "SYNC":
                present = {p["metadata"]["uid"] for p in obj["items"]}
                for uid in list(self.workers):
                    if uid not in present:
                        self.workers.pop(uid).removed()
                for pod in obj["items"]:
                    await self.observe(pod)
            elif kind == "DELETED":
                worker = self.workers.pop(obj["metadata"]["uid"], None)
                if worker:
                    worker.removed()
            else:
                await self.observe(obj)

    async def observe(self, pod: Obj) -> None:
        uid = pod["metadata"]["uid"]
        worker = self.workers.get(uid)
        deleting = bool(pod["metadata"].get("deletionTimestamp"))
        if worker is None:
            if pod.get("status", {}).get("phase") in ("Succeeded", "Failed") or deleting:
                # Finished or going before this node ran it (e.g. the node restarted).
                worker = PodWorker(self.ctx, pod)
                if deleting:
                    await worker.delete_object()
                    return
                self.workers[uid] = worker
                return
            worker = PodWorker(self.ctx, pod)
            self.workers[uid] = worker
            worker.start()
            return
        worker.update(pod)
        if deleting and (worker.task is None or worker.task.done()):
            await worker.delete_object()

    async def stop(self) -> None:
        """Node shutdown: stop every pod quickly; their objects stay for the next node."""
        for worker in self.workers.values():
            worker.gone = True
            worker.terminating.set()
        tasks = [w.task for w in self.workers.values() if w.task]
        if tasks:
            await asyncio.wait(tasks, timeout=20)


class LogServer:
    """The kubelet's /containerLogs endpoint, so `kubectl logs` works through the API server."""

    def __init__(self, ctx: NodeContext) -> None:
        self.ctx = ctx

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/containerLogs/{namespace}/{pod}/{container}", self.logs)
        app.router.add_get("/healthz", lambda _: web.Response(text="ok"))
        return app

    def _files(self, namespace: str, pod: str, container: str) -> list[Path]:
        roots = sorted(
            self.ctx.layout.pod_logs.glob(f"{namespace}_{pod}_*"), key=lambda p: p.stat().st_mtime
        )
        if not roots:
            return []
        logs = roots[-1] / container
        return sorted(logs.glob("*.log"), key=lambda p: int(p.stem)) if logs.is_dir() else []

    async def logs(self, request: web.Request) -> web.StreamResponse:
        m = request.match_info
        files = self._files(m["namespace"], m["pod"], m["container"])
        previous = request.query.get("previous") == "true"
        if len(files) < (2 if previous else 1):
            what = "previous terminated container" if previous else "container"
            raise web.HTTPNotFound(
                text=f'{what} "{m["container"]}" in pod "{m["pod"]}" has no logs'
            )
        path = files[-2] if previous else files[-1]
        data = path.read_bytes()
        if "tailLines" in request.query:
            lines = data.splitlines(keepends=True)
            data = b"".join(lines[-int(request.query["tailLines"]) :]) if lines else b""
        if "limitBytes" in request.query:
            data = data[: int(request.query["limitBytes"])]
        response = web.StreamResponse(headers={"Content-Type": "text/plain"})
        await response.prepare(request)
        await response.write(data)
        if request.query.get("follow") == "true" and not previous:
            offset = path.stat().st_size
            while True:
                newest = self._files(m["namespace"], m["pod"], m["container"])
                size = path.stat().st_size
                if size > offset:
                    with open(path, "rb") as f:
                        f.seek(offset)
                        await response.write(f.read(size - offset))
                    offset = size
                elif newest and newest[-1] != path:
                    break  # the container restarted
                await asyncio.sleep(0.2)
        return response

    async def serve(self) -> None:
        pki = self.ctx.layout.pki
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(pki / "kubelet.crt", pki / "kubelet.key")
        runner = web.AppRunner(self.app(), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, layout.BRIDGE_IP, layout.KUBELET_PORT, ssl_context=tls).start()


async def forever(name: str, loop: Callable[[], Awaitable[None]]) -> None:
    """Run `loop` again after it fails (the API server or etcd restarting, a watch cut), with
    back-off, as a kubelet does: a node must outlive its control plane's restarts, and stopping
    would take every pod's processes with it."""
    backoff = Backoff(initial=0.5, maximum=10.0)
    while True:
        started = time.monotonic()
        try:
            await loop()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            logger.warning("%s failed (%s: %s); again shortly", name, type(exc).__name__, exc)
        if time.monotonic() - started > 60:
            backoff.reset()
        await asyncio.sleep(backoff.next())


def dump_tasks() -> None:
    """SIGUSR1: every task's stack into the node's log, to see what a stuck pod waits on."""
    for task in asyncio.all_tasks():
        out = io.StringIO()
        task.print_stack(file=out)
        logger.warning("task %s:\n%s", task.get_name(), out.getvalue())


def read_backoff(config_path: Path, default: float) -> float:
    try:
        return float(json.loads(config_path.read_text())["restartBackoffSeconds"])
    except (OSError, ValueError, KeyError):
        return default


async def run(kubeconfig: str, state: Path, restart_backoff: float) -> None:
    lay = Layout(state)
    api = await connect(kubeconfig)
    ctx = NodeContext(
        api=api,
        layout=lay,
        node_name=layout.NODE_NAME,
        restart_backoff=restart_backoff,
        allocatable=dict(ALLOCATABLE),
        pool=network.AddressPool(),
    )
    kubelet = Kubelet(ctx)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()

    def reload() -> None:
        ctx.restart_backoff = read_backoff(lay.config, ctx.restart_backoff)
        logger.info("restart back-off base is now %gs", ctx.restart_backoff)

    loop.add_signal_handler(signal.SIGHUP, reload)
    loop.add_signal_handler(signal.SIGUSR1, dump_tasks)
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    await kubelet.clean_leftovers()
    await kubelet.register()
    await kubelet.register(hollow.NAME, hollow.ALLOCATABLE, {hollow.LABEL: "true"}, [hollow.TAINT])
    await LogServer(ctx).serve()
    hollow_kubelet = hollow.HollowKubelet(api)
    provisioner = Provisioner(api, lay)
    loops: dict[str, Callable[[], Awaitable[None]]] = {
        "heartbeat": kubelet.heartbeat,
        "hollow heartbeat": lambda: kubelet.heartbeat(hollow.NAME),
        "hollow pods": hollow_kubelet.run,
        "pods": kubelet.watch_pods,
        "provisioner": provisioner.run,
    }
    tasks = [asyncio.create_task(forever(n, f), name=n) for n, f in loops.items()]
    stopper = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait([stopper, *tasks], return_when=asyncio.FIRST_COMPLETED)
    for task in done:
        if task is not stopper and task.exception():
            logger.error("%s failed", task.get_name(), exc_info=task.exception())
    for task in tasks:
        task.cancel()
    await kubelet.stop()
    await api.close()
    logger.info("node stopped")
    if any(t is not stopper for t in done):
        os._exit(1)
