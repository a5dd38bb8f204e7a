"""One pod on the test node, as a kubelet runs it: its network namespace, volumes, env and
mounts, init and main containers (`container`), and its reported status (`pod_status`)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from localcluster import cgroups, network
from localcluster.layout import Layout
from localcluster.node import podspec
from localcluster.node.api import Obj, body, now, optional
from localcluster.node.container import Container, run_cmd
from localcluster.node.pod_status import PodStatus
from localcluster.node.podspec import ConfigError, ContainerStatus
from localcluster.node.volumes import PodVolumes, VolumeError

__all__ = ["NodeContext", "PodWorker", "run_cmd"]

logger = logging.getLogger(__name__)


@dataclass
class NodeContext:
    """What every pod worker shares: the API, the layout, the node's settings."""

    api: client.ApiClient
    layout: Layout
    node_name: str
    restart_backoff: float
    allocatable: dict[str, str]
    pool: network.AddressPool
    path_prefix: str = field(default_factory=lambda: os.path.dirname(sys.executable))

    def path_for(self, image: str) -> str:
        """Where an image's commands are: this checkout's environment, unless the images file
        (Layout.images) names another for it. Read at every container start: cheap, and a
        test may name an image while the node runs."""
        try:
            named = json.loads(self.layout.images.read_text())
        except (OSError, ValueError):
            return self.path_prefix
        return str(named.get(image) or self.path_prefix)


class PodWorker:
    """Runs one pod from creation to deletion and reports its status, as a kubelet does."""

    def __init__(self, ctx: NodeContext, pod: Obj) -> None:
        self.ctx = ctx
        self.pod = pod
        meta = pod["metadata"]
        self.uid: str = meta["uid"]
        self.name: str = meta["name"]
        self.namespace: str = meta["namespace"]
        self.key = f"{self.namespace}/{self.name}"
        self.core = client.CoreV1Api(ctx.api)
        self.dir = ctx.layout.pods / self.uid
        self.log_dir = ctx.layout.pod_logs / f"{self.namespace}_{self.name}_{self.uid}"
        self.netns = network.pod_netns(self.uid)
        self.veth = network.pod_veth(self.uid)
        self.ip: str | None = None
        self.volumes = PodVolumes(ctx.api, pod, self.dir)
        spec = pod["spec"]
        self.init_containers = [
            Container(
                self,
                c,
                ContainerStatus(
                    c["name"], c.get("image", ""), {"waiting": {"reason": "PodInitializing"}}, {}
                ),
                True,
            )
            for c in spec.get("initContainers") or []
        ]
        first_wait = "PodInitializing" if self.init_containers else "ContainerCreating"
        self.containers = [
            Container(
                self,
                c,
                ContainerStatus(
                    c["name"], c.get("image", ""), {"waiting": {"reason": first_wait}}, {}
                ),
                False,
            )
            for c in spec["containers"]
        ]
        self.terminating = asyncio.Event()
        self.gone = False  # the pod object was removed: nothing left to report
        self.reported = PodStatus(self)
        self.task: asyncio.Task[None] | None = None

    # -- properties of the spec ---------------------------------------------------------------

    @property
    def restart_policy(self) -> str:
        return self.pod["spec"].get("restartPolicy", "Always")

    @property
    def hostname(self) -> str:
        spec = self.pod["spec"]
        return (spec.get("hostname") or self.name)[:63]

    @property
    def grace_period(self) -> float:
        meta = self.pod["metadata"]
        if meta.get("deletionTimestamp") and meta.get("deletionGracePeriodSeconds") is not None:
            return float(meta["deletionGracePeriodSeconds"])
        return float(self.pod["spec"].get("terminationGracePeriodSeconds", 30))

    def security(self, key: str, container: Obj) -> Any:
        own = (container.get("securityContext") or {}).get(key)
        return own if own is not None else (self.pod["spec"].get("securityContext") or {}).get(key)

    @staticmethod
    def security_of_container(key: str, container: Obj) -> Any:
        """A setting only a container has (readOnlyRootFilesystem)."""
        return (container.get("securityContext") or {}).get(key)

    def supplemental_groups(self) -> list[int]:
        context = self.pod["spec"].get("securityContext") or {}
        groups = [int(g) for g in context.get("supplementalGroups") or []]
        if context.get("fsGroup") is not None:
            groups.insert(0, int(context["fsGroup"]))
        return groups

    # -- events from the node -----------------------------------------------------------------

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self.run(), name=f"pod {self.key}")

    def update(self, pod: Obj) -> None:
        labels_changed = (pod["metadata"].get("labels"), pod["metadata"].get("annotations")) != (
            self.pod["metadata"].get("labels"),
            self.pod["metadata"].get("annotations"),
        )
        self.pod = pod
        if pod["metadata"].get("deletionTimestamp"):
            self.terminating.set()
        elif labels_changed and self.dir.exists():
            asyncio.get_running_loop().create_task(self._refresh_volumes(pod))

    def removed(self) -> None:
        """The object is gone (force-deleted): stop at once, report nothing."""
        self.gone = True
        self.pod["metadata"]["deletionGracePeriodSeconds"] = 0
        self.pod["metadata"].setdefault("deletionTimestamp", now())
        self.terminating.set()

    def changed(self) -> None:
        self.reported.dirty.set()

    async def sleep_unless_terminating(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.terminating.wait(), seconds)

    # -- the pod's life ---------------------------------------------------------------------

    async def run(self) -> None:
        writer = asyncio.create_task(self.reported.run(), name=f"status {self.key}")
        refresher: asyncio.Task[None] | None = None
        try:
            if await self._setup():
                refresher = asyncio.create_task(self._refresh_loop())
                if await self._run_init_containers():
                    await self._run_containers()
        except Exception:
            logger.exception("pod %s: unexpected failure", self.key)
        finally:
            if refresher:
                refresher.cancel()
            await self._stop_containers()
            await self._teardown()
            self.changed()
            await asyncio.sleep(0)
            if self.terminating.is_set() and not self.gone:
                await self.reported.flush(writer)
                await self.delete_object()
            else:
                await self.reported.flush(writer)

    async def _setup(self) -> bool:
        """Network and volumes; volumes are retried until they can be set up or the pod goes."""
        self.dir.mkdir(parents=True, exist_ok=True)
        self.ip = self.ctx.pool.allocate()
        for argv, commands in network.setup_batches(self.netns, self.veth, self.ip):
            await run_cmd(argv, commands)
        (self.dir / "hosts").write_text(
            f"127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost\n{self.ip}\t{self.hostname}\n"
        )
        (self.dir / "hostname").write_text(self.hostname + "\n")
        self.changed()
        while not self.terminating.is_set():
            try:
                await self.volumes.prepare()
                return True
            except VolumeError as exc:
                for c in self.init_containers + self.containers:
                    c.status.state = {
                        "waiting": {
                            "reason": c.status.state["waiting"]["reason"],
                            "message": f"FailedMount: {exc}",
                        }
                    }
                self.changed()
                await self.sleep_unless_terminating(1.0)
        return False

    async def _run_init_containers(self) -> bool:
        for container in self.init_containers:
            code = await container.supervise()
            if code != 0:
                return False
        return not self.terminating.is_set()

    async def _run_containers(self) -> None:
        supervisors = [asyncio.create_task(c.supervise()) for c in self.containers]
        terminating = asyncio.create_task(self.terminating.wait())
        await asyncio.wait(
            [terminating, asyncio.gather(*supervisors)], return_when=asyncio.FIRST_COMPLETED
        )
        terminating.cancel()
        if self.terminating.is_set():
            await self._stop_containers(run_pre_stop=True)
        await asyncio.gather(*supervisors, return_exceptions=True)

    async def _stop_containers(self, run_pre_stop: bool = False) -> None:
        grace = 0.0 if self.gone else self.grace_period
        await asyncio.gather(
            *(c.kill(grace, run_pre_stop) for c in self.init_containers + self.containers)
        )

    async def _teardown(self) -> None:
        cgroups.kill(cgroups.CGROUP_ROOT / self.uid)
        await asyncio.sleep(0.05)
        cgroups.remove(cgroups.CGROUP_ROOT / self.uid)
        cgroups.remove(cgroups.MEMORY_ROOT / self.uid)
        if self.ip:
            with contextlib.suppress(RuntimeError):
                await run_cmd(network.teardown_command(self.netns))
            self.ctx.pool.release(self.ip)
        shutil.rmtree(self.dir, ignore_errors=True)

    async def _refresh_loop(self) -> None:
        while True:
            await asyncio.sleep(30)
            await self._refresh_volumes(None)

    async def _refresh_volumes(self, pod: Obj | None) -> None:
        try:
            await self.volumes.refresh(pod)
        except (VolumeError, ApiException) as exc:
            logger.warning("pod %s: volume refresh failed: %s", self.key, exc)

    async def delete_object(self) -> None:
        """Confirm the deletion: the pod's containers are gone, the object may go too."""
        with contextlib.suppress(ApiException):
            await body(
                self.core.delete_namespaced_pod(
                    self.name,
                    self.namespace,
                    body={"gracePeriodSeconds": 0, "preconditions": {"uid": self.uid}},
                    _preload_content=False,
                )
            )

    # -- what the containers need -----------------------------------------------------------

    async def env_objects(self, container: Obj) -> dict[tuple[str, str], Obj]:
        """The ConfigMaps and Secrets `container`'s env refers to, by (kind, name)."""
        wanted: set[tuple[str, str]] = set()
        for source in container.get("envFrom") or []:
            if "configMapRef" in source:
                wanted.add(("ConfigMap", source["configMapRef"]["name"]))
            if "secretRef" in source:
                wanted.add(("Secret", source["secretRef"]["name"]))
        for var in container.get("env") or []:
            source = var.get("valueFrom") or {}
            if "configMapKeyRef" in source:
                wanted.add(("ConfigMap", source["configMapKeyRef"]["name"]))
            if "secretKeyRef" in source:
                wanted.add(("Secret", source["secretKeyRef"]["name"]))
        found: dict[tuple[str, str], Obj] = {}
        for kind, name in wanted:
            read = (
                self.core.read_namespaced_config_map
                if kind == "ConfigMap"
                else self.core.read_namespaced_secret
            )
            obj = await optional(read(name, self.namespace, _preload_content=False))
            if obj is not None:
                found[(kind, name)] = obj
        return found

    def mounts_for(self, container: Obj, env: dict[str, str]) -> list[Obj]:
        mounts = [
            {"source": str(self.dir / "hosts"), "target": "/etc/hosts"},
            {"source": str(self.dir / "hostname"), "target": "/etc/hostname"},
        ]
        for vm in container.get("volumeMounts") or []:
            source = self.volumes.paths.get(vm["name"])
            if source is None:
                raise ConfigError(f"volumeMount {vm['name']!r} names no volume of the pod")
            sub = vm.get("subPath") or podspec.expand(vm.get("subPathExpr") or "", env)
            if sub:
                if os.path.isabs(sub) or ".." in Path(sub).parts:
                    raise ConfigError(f"subPath {sub!r} must be a relative path inside the volume")
                source = os.path.join(source, sub)
                if not os.path.exists(source):
                    os.makedirs(source, exist_ok=True)
            mounts.append(
                {"source": source, "target": vm["mountPath"], "readOnly": bool(vm.get("readOnly"))}
            )
        return mounts
