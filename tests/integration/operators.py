"""`foundation-operator` processes the integration tests start and stop."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import httpx

from kube import REPO

# Inside .venv, which lint skips and whose packages it views, and outside .local-cluster, which
# no process may name once the cluster is down (test_cluster_lifecycle).
IMAGE = REPO / ".venv" / "image"
# What the agent image does not install: the CLI's extra (`foundation[cli]`).
NOT_IN_IMAGE = ("kubernetes_asyncio",)
BUILT: list[Path] = []  # made in this session


def image_python() -> Path:
    """A Python that has .venv's packages but not the CLI's extra, as the image has them, made
    of links (milliseconds, so it follows .venv). kopf loads kubernetes_asyncio's models into
    any process where the package is importable (37 MB, 0.4 s of CPU, and the suite about 5 %
    slower, measured); the operator the tests run must not pay for what the image leaves out."""
    venv = REPO / ".venv"
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    packages = venv / "lib" / version / "site-packages"
    shutil.rmtree(IMAGE, ignore_errors=True)
    site = IMAGE / "lib" / version / "site-packages"
    site.mkdir(parents=True)
    for entry in packages.iterdir():
        if not entry.name.startswith(NOT_IN_IMAGE):
            (site / entry.name).symlink_to(entry)
    shutil.copy(venv / "pyvenv.cfg", IMAGE / "pyvenv.cfg")
    (IMAGE / "bin").mkdir()
    (IMAGE / "bin" / "python").symlink_to((venv / "bin" / "python").resolve())
    BUILT.append(IMAGE)
    return IMAGE / "bin" / "python"


class OperatorProcess:
    """`foundation-operator` running on this machine against the local cluster.

    It stands for the default Lease with a fixed identity, so a restarted process leads again
    at once; a second one (another identity) waits as a standby.
    """

    LEASE_SECONDS = 4

    def __init__(
        self,
        kubeconfig: str,
        identity: str = "tests-operator",
        health: int = 18080,
        metrics: int = 19090,
        env: dict[str, str] | None = None,
    ) -> None:
        self.kubeconfig = kubeconfig
        self.identity = identity
        self.health = health
        self.metrics = metrics
        self.env = env or {}
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.log = open(REPO / ".local-cluster" / "logs" / f"operator-{self.identity}.log", "ab")
        env = dict(
            os.environ,
            KUBECONFIG=self.kubeconfig,
            FOUNDATION_HEALTH_HOST="127.0.0.1",
            FOUNDATION_HEALTH_PORT=str(self.health),
            FOUNDATION_METRICS_PORT=str(self.metrics),
            FOUNDATION_LOG_FORMAT="json",
            FOUNDATION_IDENTITY=self.identity,
            FOUNDATION_LEASE_DURATION_SECONDS=str(self.LEASE_SECONDS),
            # Runner pods' image (the test node runs commands, not images).
            FOUNDATION_AGENT_IMAGE="foundation-agent:dev",
            # The demo's operator (`make demo`) has that namespace; one supervisor an Agent.
            FOUNDATION_EXCLUDED_NAMESPACES="foundation-demo",
            # As the chart's agents.secretStore.enabled: Agents may keep state in Secrets.
            FOUNDATION_SECRET_STORE="true",
        )
        env.update(self.env)
        python = IMAGE / "bin" / "python"
        if not BUILT or not python.exists():  # made again once a session: .venv may change
            python = image_python()
        self.proc = subprocess.Popen(
            [str(python), "-m", "foundation_operator"],
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def stop(self, sig: int = signal.SIGTERM) -> int | None:
        """Stop it; its exit code."""
        if self.proc is None:
            return None
        self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self.proc = None
        self.log.close()
        return code

    def role_now(self) -> str:
        """`role`, for synchronous fixtures."""
        try:
            answer = httpx.get(f"http://127.0.0.1:{self.health}/healthz", timeout=2)
        except httpx.TransportError:
            return "starting"
        return str(answer.json()["role"])

    async def role(self) -> str:
        """ "leader", "standby" or "starting" (also while its health endpoint is not up)."""
        async with httpx.AsyncClient() as http:
            try:
                answer = await http.get(f"http://127.0.0.1:{self.health}/healthz", timeout=2)
            except httpx.TransportError:
                return "starting"
        return str(answer.json()["role"])

    async def ready(self) -> bool:
        """Whether /readyz answers 200 (a leader's watches have started)."""
        async with httpx.AsyncClient() as http:
            try:
                answer = await http.get(f"http://127.0.0.1:{self.health}/readyz", timeout=2)
            except httpx.TransportError:
                return False
        return answer.status_code == 200
