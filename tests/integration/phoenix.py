"""Arize Phoenix (e2e/local/phoenix) as the tests' trace store: started on the cluster's bridge
address, where members, sidecars and runners reach it, storing in a directory of its own; its
REST API answers which spans it holds."""

from __future__ import annotations

import os
import socket
import subprocess
import tempfile
import time
from typing import Any

import httpx

from kube import REPO
from localcluster.layout import BRIDGE_IP


def free_port() -> int:
    with socket.socket() as s:
        s.bind((BRIDGE_IP, 0))
        return int(s.getsockname()[1])


class Phoenix:
    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://{BRIDGE_IP}:{self.port}"  # OTLP/HTTP at /v1/traces, and its API
        self.workdir = tempfile.mkdtemp(prefix="phoenix-")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, within: float = 120) -> None:
        program = subprocess.run(
            [str(REPO / "e2e/local/phoenix"), "--bin"], capture_output=True, text=True, check=True
        ).stdout.strip()
        self.log = open(REPO / ".local-cluster" / "logs" / "phoenix.log", "ab")
        env = dict(
            os.environ,
            PHOENIX_WORKING_DIR=self.workdir,
            PHOENIX_HOST=BRIDGE_IP,
            PHOENIX_PORT=str(self.port),
            PHOENIX_GRPC_PORT=str(free_port()),
            PHOENIX_TELEMETRY_ENABLED="false",
        )
        env.pop("OTEL_EXPORTER_OTLP_ENDPOINT", None)
        self.proc = subprocess.Popen(
            [program, "serve"], env=env, stdout=self.log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + within
        while True:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(
                    f"Phoenix did not start (exit {self.proc.poll()}): see .local-cluster/logs/"
                    "phoenix.log"
                )
            time.sleep(0.5)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.log.close()

    async def spans(self, trace_id: str | None = None) -> list[dict[str, Any]]:
        """Every span Phoenix holds (of one trace, if given), by its REST API's pages."""
        found: list[dict[str, Any]] = []
        cursor = None
        async with httpx.AsyncClient(timeout=30) as http:
            while True:
                params: dict[str, Any] = {"limit": 1000}
                if cursor:
                    params["cursor"] = cursor
                answer = await http.get(f"{self.url}/v1/projects/default/spans", params=params)
                answer.raise_for_status()
                page = answer.json()
                found += page["data"]
                cursor = page.get("next_cursor")
                if not cursor:
                    break
        if trace_id is not None:
            found = [s for s in found if s["context"]["trace_id"] == trace_id]
        return found
