"""One pod on the test node: its network namespace, volumes, containers and reported status."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from localcluster import cgroups, network
from localcluster.layout import BRIDGE_IP, MAX_RESTART_BACKOFF, Layout
from localcluster.node import podspec
from localcluster.node.api import Obj, body, now, optional
from localcluster.node.podspec import ConfigError, ContainerStatus
from localcluster.node.probes import ProbeRunner, Target, run_action
from localcluster.node.volumes import PodVolumes, VolumeError

logger = logging.getLogger(__name__)
SHIM = str(Path(__file__).with_name("shim.py"))


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


async def run_cmd(argv: list[str], stdin: str | None = None) -> None:
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await proc.communicate(stdin.encode() if stdin is not None else None)
    if proc.returncode:
        raise RuntimeError(f"{' '.join(argv)}: {err.decode().strip()}")


def exit_code_of(returncode: int) -> int:
    return 128 - returncode if returncode < 0 else returncode


class Container:
    """A container of the pod as a local process, restarted by the pod's policy."""

    def __init__(self, worker: PodWorker, spec: Obj, status: ContainerStatus, init: bool) -> None:
        self.worker = worker
        self.spec = spec
        self.status = status
        self.init = init
        self.proc: asyncio.subprocess.Process | None = None
        self.env: dict[str, str] = {}
        self.restarts_in_a_row = 0
        self.runs = 0
        self.cgroup = cgroups.container_cgroup(worker.uid, spec["name"])

    @property
    def name(self) -> str:
        return self.spec["name"]

    def target(self) -> Target:
        pid = self.proc.pid if self.proc else 0
        return Target(self.worker.ip or "", self.spec, pid, self.env)

    # -- running ---------------------------------------------------------------------------

    async def supervise(self) -> int:
        """Run until the container is done for good (policy) or the pod terminates; last exit."""
        policy = self.worker.restart_policy
        if self.init and policy == "Always":
            policy = "OnFailure"  # init containers run to completion
        while True:
            if self.worker.terminating.is_set():
                return -1
            try:
                started = time.monotonic()
                code = await self.run_once()
            except ConfigError as exc:
                self.status.state = {
                    "waiting": {"reason": "CreateContainerConfigError", "message": str(exc)}
                }
                self.worker.changed()
                await self.worker.sleep_unless_terminating(2.0)
                continue
            if self.worker.terminating.is_set() or not podspec.should_restart(policy, code):
                return code
            if time.monotonic() - started > 2 * MAX_RESTART_BACKOFF:
                self.restarts_in_a_row = 0  # ran long enough: back-off starts over
            self.restarts_in_a_row += 1
            self.status.last_state = {"terminated": self.status.state["terminated"]}
            delay = podspec.restart_delay(self.restarts_in_a_row, self.worker.ctx.restart_backoff)
            if delay:
                self.status.state = {
                    "waiting": {
                        "reason": "CrashLoopBackOff",
                        "message": f"back-off {delay:g}s restarting failed container={self.name} "
                        f"pod={self.worker.name}_{self.worker.namespace}({self.worker.uid})",
                    }
                }
                self.worker.changed()
                await self.worker.sleep_unless_terminating(delay)

    async def run_once(self) -> int:
        worker = self.worker
        lookups = await worker.env_objects(self.spec)
        self.env = podspec.container_env(
            worker.pod,
            self.spec,
            lambda kind, name: lookups.get((kind, name)),
            path_prefix=worker.ctx.path_prefix,
            node_allocatable=worker.ctx.allocatable,
        )
        argv = podspec.container_argv(self.spec, self.env)
        mounts = worker.mounts_for(self.spec, self.env)
        restart = self.runs
        self.runs += 1
        self.status.restart_count = restart
        self.cgroup.mkdir(parents=True, exist_ok=True)
        spec_path = worker.dir / f"{self.name}.json"
        spec_path.write_text(
            json.dumps(
                {
                    "argv": argv,
                    "env": self.env,
                    "mounts": mounts,
                    "hostname": worker.hostname,
                    "workingDir": self.spec.get("workingDir"),
                    "cgroup": str(self.cgroup),
                    "createdPathsLog": str(worker.ctx.layout.created_paths),
                    "runAsUser": worker.security("runAsUser", self.spec),
                    "runAsGroup": worker.security("runAsGroup", self.spec),
                }
            )
        )
        log_path = worker.log_dir / self.name / f"{restart}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "ab") as log:
            self.proc = await asyncio.create_subprocess_exec(
                "nsenter",
                f"--net=/run/netns/{worker.netns}",
                "--",
                "unshare",
                "--mount",
                "--uts",
                "--propagation",
                "private",
                "--",
                sys.executable,
                "-I",
                "-S",
                SHIM,
                str(spec_path),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        started_at = now()
        container_id = f"local://{worker.uid}/{self.name}/{restart}"
        self.status.container_id = container_id
        self.status.state = {"running": {"startedAt": started_at}}
        self.status.ready = False
        self.status.started = False
        worker.changed()
        probes = asyncio.create_task(self._lifecycle(), name=f"probes {worker.key}/{self.name}")
        returncode = await self.proc.wait()
        probes.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await probes
        cgroups.kill(self.cgroup)  # the container ends with its main process
        code = exit_code_of(returncode)
        self.status.state = {
            "terminated": {
                "exitCode": code,
                "reason": podspec.exit_reason(code),
                "startedAt": started_at,
                "finishedAt": now(),
                "containerID": container_id,
            }
        }
        self.status.ready = False
        self.status.started = False
        worker.changed()
        return code

    async def _lifecycle(self) -> None:
        """postStart, then the startup probe, then liveness and readiness side by side."""
        hooks = self.spec.get("lifecycle") or {}
        if "postStart" in hooks:
            ok, why = await run_action(hooks["postStart"], self.target(), self.worker.grace_period)
            if not ok:
                logger.warning("%s/%s: postStart hook failed: %s", self.worker.key, self.name, why)
                await self.kill(self.worker.grace_period)
                return
        if self.init:
            return
        startup = self.spec.get("startupProbe")
        if startup:
            await ProbeRunner("startup", startup, self.target, self._startup_result).run(
                until_success=True
            )
        self.status.started = True
        readiness = self.spec.get("readinessProbe")
        if not readiness:
            self.status.ready = True
        self.worker.changed()
        runners = []
        if readiness:
            runners.append(ProbeRunner("readiness", readiness, self.target, self._readiness_result))
        liveness = self.spec.get("livenessProbe")
        if liveness:
            runners.append(ProbeRunner("liveness", liveness, self.target, self._liveness_result))
        if runners:
            await asyncio.gather(*(r.run() for r in runners))

    async def _startup_result(self, ok: bool, why: str) -> None:
        if not ok:
            logger.info(
                "%s/%s: startup probe failed, restarting: %s", self.worker.key, self.name, why
            )
            await self.kill(self.worker.grace_period)

    async def _readiness_result(self, ok: bool, why: str) -> None:
        self.status.ready = ok
        self.worker.changed()

    async def _liveness_result(self, ok: bool, why: str) -> None:
        if not ok:
            logger.info(
                "%s/%s: liveness probe failed, restarting: %s", self.worker.key, self.name, why
            )
            asyncio.get_running_loop().create_task(self.kill(self.worker.grace_period))

    # -- stopping ---------------------------------------------------------------------------

    async def kill(self, grace: float, run_pre_stop: bool = False) -> None:
        """preStop (when asked), SIGTERM, and SIGKILL for everything left after `grace` seconds."""
        proc = self.proc
        if proc is None or proc.returncode is not None:
            return
        deadline = time.monotonic() + grace
        pre_stop = (self.spec.get("lifecycle") or {}).get("preStop")
        if run_pre_stop and pre_stop:
            with contextlib.suppress(TimeoutError):
                ok, why = await asyncio.wait_for(
                    run_action(pre_stop, self.target(), max(grace, 0.1)), max(grace, 0.1)
                )
                if not ok:
                    logger.warning(
                        "%s/%s: preStop hook failed: %s", self.worker.key, self.name, why
                    )
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), max(deadline - time.monotonic(), 0))
        except TimeoutError:
            cgroups.kill(self.cgroup)
            try:
                await asyncio.wait_for(proc.wait(), 5)
            except TimeoutError:
                # Never let one lost exit status keep a pod from going away.
                logger.error(
                    "%s/%s: pid %s did not report its exit after SIGKILL",
                    self.worker.key,
                    self.name,
                    proc.pid,
                )


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
        self._dirty = asyncio.Event()
        self._start_time = now()
        self._last_status: Obj | None = None
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
        self._dirty.set()

    async def sleep_unless_terminating(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.terminating.wait(), seconds)

    # -- the pod's life ---------------------------------------------------------------------

    async def run(self) -> None:
        writer = asyncio.create_task(self._status_writer(), name=f"status {self.key}")
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
                await self._flush_status(writer)
                await self.delete_object()
            else:
                await self._flush_status(writer)

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

    # -- status -----------------------------------------------------------------------------

    def status(self) -> Obj:
        init = [c.status for c in self.init_containers]
        main = [c.status for c in self.containers]
        phase = podspec.pod_phase(self.restart_policy, init, main)
        previous = self.pod.get("status", {}).get("conditions") or []
        out: Obj = {
            "phase": phase,
            "conditions": podspec.pod_conditions(init, main, previous, now()),
            "hostIP": BRIDGE_IP,
            "startTime": self.pod.get("status", {}).get("startTime") or self._start_time,
            "containerStatuses": [s.to_api() for s in main],
        }
        if self.ip:
            out["podIP"] = self.ip
            out["podIPs"] = [{"ip": self.ip}]
        if init:
            out["initContainerStatuses"] = [s.to_api() for s in init]
        return out

    async def _status_writer(self) -> None:
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            await self._write_status()

    async def _write_status(self) -> None:
        if self.gone:
            return
        status = self.status()
        comparable = _without_times(status)
        if comparable == self._last_status:
            return
        try:
            answer = await body(
                self.core.patch_namespaced_pod_status(
                    self.name,
                    self.namespace,
                    {"status": status},
                    _content_type="application/merge-patch+json",
                    _preload_content=False,
                )
            )
            self.pod["status"] = answer.get("status", status)
            self._last_status = comparable
        except ApiException as exc:
            if exc.status == 404:
                self.gone = True
            else:
                logger.warning("pod %s: status update failed: %s", self.key, exc.reason)
                self._dirty.set()
                await asyncio.sleep(0.5)

    async def _flush_status(self, writer: asyncio.Task[None]) -> None:
        writer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await writer
        await self._write_status()


def _without_times(status: Obj) -> Obj:
    """The status minus condition timestamps, so an unchanged pod causes no write."""
    copy = json.loads(json.dumps(status))
    for c in copy.get("conditions", []):
        c.pop("lastTransitionTime", None)
    return copy
