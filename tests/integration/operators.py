"""`foundation-operator` processes the integration tests start and stop."""

from __future__ import annotations

import os
import signal
import subprocess

import httpx

from kube import REPO


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
        )
        env.update(self.env)
        self.proc = subprocess.Popen(
            [str(REPO / ".venv/bin/foundation-operator")],
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
