"""A container of a pod on the test node: a local process with the container's command, env,
mounts and identity, its probes and lifecycle hooks, restarted by the pod's policy with a
kubelet's back-off."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from localcluster import cgroups
from localcluster.layout import MAX_RESTART_BACKOFF
from localcluster.node import podspec
from localcluster.node.api import Obj, now
from localcluster.node.podspec import ConfigError, ContainerStatus
from localcluster.node.probes import ProbeRunner, Target, run_action

if TYPE_CHECKING:
    from localcluster.node.pod import PodWorker

logger = logging.getLogger(__name__)
SHIM = str(Path(__file__).with_name("shim.py"))


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
            path_prefix=worker.ctx.path_for(self.spec.get("image", "")),
            node_allocatable=worker.ctx.allocatable,
        )
        argv = podspec.container_argv(self.spec, self.env)
        mounts = worker.mounts_for(self.spec, self.env)
        restart = self.runs
        self.runs += 1
        self.status.restart_count = restart
        self.cgroup.mkdir(parents=True, exist_ok=True)
        limit = podspec.memory_limit(self.spec)
        # Without the memory controller (not mounted), limits go unenforced, as on a node
        # without memory accounting.
        held = limit and cgroups.MEMORY_ROOT.parent.is_dir()
        memory = cgroups.memory_cgroup(worker.uid, self.name) if held else None
        if memory is not None and limit:
            cgroups.limit_memory(memory, limit)
        oom_before = cgroups.oom_kills(memory) if memory is not None else 0
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
                    "memoryCgroup": str(memory) if memory is not None else None,
                    "createdPathsLog": str(worker.ctx.layout.created_paths),
                    "runAsUser": worker.security("runAsUser", self.spec),
                    "runAsGroup": worker.security("runAsGroup", self.spec),
                    # A kubelet gives every container the pod's fsGroup and supplementalGroups.
                    "groups": worker.supplemental_groups(),
                    "readOnlyRoot": bool(
                        worker.security_of_container("readOnlyRootFilesystem", self.spec)
                    ),
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
        oom = memory is not None and cgroups.oom_kills(memory) > oom_before
        self.status.state = {
            "terminated": {
                "exitCode": code,
                "reason": podspec.exit_reason(code, oom),
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
