"""The two console scripts on the local cluster: the operator runs, the agent runs in a pod."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import time

import httpx

from kube import REPO, Kube, container_status


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_operator_starts_serves_health_and_metrics_and_stops_on_sigterm(cluster: str) -> None:
    health, metrics = _free_port(), _free_port()
    env = dict(
        os.environ,
        KUBECONFIG=cluster,
        FOUNDATION_HEALTH_PORT=str(health),
        FOUNDATION_HEALTH_HOST="127.0.0.1",
        FOUNDATION_METRICS_PORT=str(metrics),
    )
    proc = subprocess.Popen(
        [str(REPO / ".venv/bin/foundation-operator")],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        async with httpx.AsyncClient() as http:
            deadline = time.monotonic() + 30
            while True:
                try:
                    answer = await http.get(f"http://127.0.0.1:{health}/readyz")
                    if answer.status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert proc.poll() is None, proc.stdout.read()
                assert time.monotonic() < deadline, "not ready within 30 s"
                await asyncio.sleep(0.2)
            health_report = answer.json()
            assert health_report["version"] == "0.1.0"
            # The leader, or a standby if the tests' operator holds the Lease.
            assert health_report["role"] in ("leader", "standby")
            assert health_report["ready"] is True
            assert (await http.get(f"http://127.0.0.1:{health}/healthz")).status_code == 200
            scraped = (await http.get(f"http://127.0.0.1:{metrics}/metrics")).text
            assert 'foundation_operator_build_info{version="0.1.0"} 1.0' in scraped
    finally:
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=20)
    assert proc.returncode == 0, output
    assert "leader election on (Lease foundation-operator" in output
    assert "is standing for Lease" in output


def test_operator_rejects_bad_configuration_clearly() -> None:
    env = dict(os.environ, FOUNDATION_HEALTH_PORT="not-a-port")
    result = subprocess.run(
        [str(REPO / ".venv/bin/foundation-operator")],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "FOUNDATION_HEALTH_PORT" in result.stderr


async def test_sample_agent_pod_becomes_ready_and_stops_gracefully(kube: Kube) -> None:
    kube.kubectl_apply(REPO / "examples/sample-pod.yaml")
    ready = await kube.wait_running("sample-agent")
    # Tokenless: the sample pod's runtime lets such calls through (Permissive), and it has no
    # right to review a token.
    async with httpx.AsyncClient() as http:
        base = f"http://{ready['status']['podIP']}:8080"
        answer = await http.get(f"{base}/healthz")
        task = await http.post(f"{base}/v1/tasks", json={"id": "t1", "action": "increment"})
    assert answer.json()["status"] == "ok"
    assert task.status_code == 202 and task.json()["id"] == "t1"
    assert container_status(ready, "agent")["restartCount"] == 0
    await kube.delete_pod("sample-agent")
    await kube.wait_gone("sample-agent")
    log = kube.log(ready, "agent")
    assert "SIGTERM: taking no more tasks, finishing the one in flight, saving" in log
    # Three writes: the initial state, the task accepted, the task done with its effect.
    assert "stopped at state version 3" in log
