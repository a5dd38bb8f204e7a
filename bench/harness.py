"""What the benchmarks on the local cluster share: a namespace of their own, and the operator
run as a process for it alone (no leader election, its own ports).

They need a cluster the integration tests have prepared (the CRDs, and the cluster-wide roles
their setup installs, such as the members' `foundation-agent-member`): `e2e/local/cluster up`,
then any integration test (`.venv/bin/pytest tests/integration/test_suspend.py`), then the
benchmark. On a cluster only just started, an Agent's create is a 404, or its members cannot
review their callers."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

from kubernetes_asyncio import client

REPO = Path(__file__).resolve().parents[1]
KUBECONFIG = str(REPO / ".local-cluster/kubeconfig")
GROUP, VERSION = "foundation.dev", "v1alpha1"


def operator_env(ns: str, health_port: int, metrics_port: int) -> dict[str, str]:
    """`foundation-operator`'s environment: this namespace only, leading at once."""
    return dict(
        os.environ,
        KUBECONFIG=KUBECONFIG,
        FOUNDATION_HEALTH_PORT=str(health_port),
        FOUNDATION_METRICS_PORT=str(metrics_port),
        FOUNDATION_HEALTH_HOST="127.0.0.1",
        FOUNDATION_LEADER_ELECTION="false",
        FOUNDATION_NAMESPACES=ns,
        FOUNDATION_AGENT_IMAGE="foundation-agent:dev",
    )


def rss_mb(pid: int) -> float:
    """A process's resident set, in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def rss_by_mapping(pid: int) -> dict[str, float]:
    """Where a process's resident set lies, in MB: glibc's main heap, anonymous maps (Python's
    arenas, other malloc arenas, thread stacks) and mapped files (the interpreter, libraries)."""
    out = {"heap": 0.0, "anonymous": 0.0, "files": 0.0}
    where = "anonymous"
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        fields = line.split()
        if "-" in fields[0] and len(fields) >= 5 and ":" in fields[3]:  # a mapping's header
            path = fields[5] if len(fields) > 5 else ""
            where = "files" if path.startswith("/") else "anonymous"
            where = "heap" if path == "[heap]" else where
        elif fields[0] == "Rss:":
            out[where] += int(fields[1]) / 1024
    return {k: round(v, 1) for k, v in out.items()}


def agent_body(name: str, agent: str, **spec: Any) -> dict:
    """An Agent of class `agent` for the benchmarks (the test node runs commands, not images)."""
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Agent",
        "metadata": {"name": name},
        "spec": {"image": "foundation-agent:dev", "agent": agent, **spec},
    }


async def new_namespace(core: client.CoreV1Api, ns: str) -> None:
    """Create it, and wait for its default account (pods are refused without it)."""
    await core.create_namespace({"metadata": {"name": ns}})
    for _ in range(300):
        if (await core.list_namespaced_service_account(ns)).items:
            return
        await asyncio.sleep(0.1)


async def delete_namespace(
    core: client.CoreV1Api, custom: client.CustomObjectsApi, ns: str, agents: list[str]
) -> None:
    """Delete it once the operator is gone: the Agents' finalizers would hold it."""
    for name in agents:
        try:
            await custom.patch_namespaced_custom_object(
                GROUP,
                VERSION,
                ns,
                "agents",
                name,
                {"metadata": {"finalizers": None}},
                _content_type="application/merge-patch+json",
            )
        except client.ApiException as exc:
            if exc.status != 404:
                raise
    await core.delete_namespace(ns)
