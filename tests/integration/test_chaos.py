"""Chaos: 1,000 Agents created while the operator is SIGKILLed three times and etcd and the API
server are each killed and started again. The end state is exact: every Agent Ready, exactly
one member pod per replica (no duplicate, none missing), every pod owned by its Agent (no
orphan), and nothing else of the Agents' missing or left over.

Members run on the test cluster's hollow node (no processes), so 1,000 Agents fit in the suite.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from kubernetes_asyncio.client.exceptions import ApiException

from kube import HOLLOW, REPO, Kube
from operators import OperatorProcess

pytestmark = [pytest.mark.usefixtures("operator"), pytest.mark.disruptive]

AGENTS = 1000
RUN = REPO / ".local-cluster" / "run"


async def retrying(
    call: Callable[[], Awaitable[Any]],
    ok: frozenset[int] = frozenset(),
    again: frozenset[int] = frozenset(),
) -> Any:
    """`call` until the control plane answers it (it is restarted under us): server errors,
    refused connections, timeouts and statuses in `again` are retried for up to 90 s;
    statuses in `ok` end it."""
    deadline = time.monotonic() + 90
    while True:
        try:
            return await call()
        except ApiException as exc:
            if exc.status in ok:
                return None
            transient = exc.status >= 500 or exc.status == 429 or exc.status in again
            if not transient or time.monotonic() > deadline:
                raise
        except (aiohttp.ClientError, TimeoutError, OSError):
            if time.monotonic() > deadline:
                raise
        await asyncio.sleep(0.2)


def kill_component(name: str) -> None:
    """SIGKILL a component of the local cluster (no clean shutdown), then `cluster up`, which
    starts what is not running and waits for it."""
    pid = int((RUN / f"{name}.pid").read_text().split()[0])
    os.killpg(pid, signal.SIGKILL)
    while os.path.exists(f"/proc/{pid}") and "Z" not in _state(pid):
        time.sleep(0.05)
    subprocess.run([str(REPO / "e2e/local/cluster"), "up"], check=True, capture_output=True)


def _state(pid: int) -> str:
    try:
        return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "Z"


async def test_agents_come_out_exact_after_operator_kills_and_control_plane_restarts(
    kube: Kube, operator: OperatorProcess
) -> None:
    created = 0
    progress = asyncio.Event()
    done: list[str] = []

    def kill_operator() -> None:
        operator.stop(signal.SIGKILL)
        operator.start()

    # (after this many Agents created, fault)
    faults: list[tuple[int, str, Callable[[], None]]] = [
        (100, "operator SIGKILL 1", kill_operator),
        (250, "etcd killed and restarted", lambda: kill_component("etcd")),
        (400, "operator SIGKILL 2", kill_operator),
        (550, "kube-apiserver killed and restarted", lambda: kill_component("kube-apiserver")),
        (700, "operator SIGKILL 3", kill_operator),
    ]

    async def chaos() -> None:
        for threshold, what, fault in faults:
            while created < threshold:
                progress.clear()
                await progress.wait()
            await asyncio.to_thread(fault)
            done.append(what)

    def replicas(i: int) -> int:
        return 2 if i % 10 == 0 else 1

    gate = asyncio.Semaphore(16)

    async def create(i: int) -> None:
        nonlocal created
        body = {
            "apiVersion": "foundation.dev/v1alpha1",
            "kind": "Agent",
            "metadata": {"name": f"a{i}", "namespace": kube.ns},
            "spec": {
                "image": "foundation-agent:dev",
                "agent": "foundation_agent.agents:CounterAgent",
                "replicas": replicas(i),
                "persistence": {"store": "None"},
                "sidecar": {"enabled": False},
                "podTemplate": HOLLOW,
            },
        }
        async with gate:
            # A create whose answer was lost may have happened: 409 is that Agent. A restarted
            # API server answers 404 for custom resources until it has read the CRDs again.
            await retrying(
                lambda: kube.custom.create_namespaced_custom_object(
                    "foundation.dev", "v1alpha1", kube.ns, "agents", body
                ),
                ok=frozenset({409}),
                again=frozenset({404}),
            )
            created += 1
            progress.set()

    chaos_task = asyncio.create_task(chaos())
    await asyncio.gather(*(create(i) for i in range(AGENTS)))
    await asyncio.wait_for(chaos_task, 120)
    assert done == [what for _, what, _ in faults]

    async def all_ready() -> bool:
        listed = await retrying(
            lambda: kube.custom.list_namespaced_custom_object(
                "foundation.dev", "v1alpha1", kube.ns, "agents"
            )
        )
        ready = [
            a
            for a in listed["items"]
            if (a.get("status") or {}).get("phase") == "Running"
            and a["status"].get("ready") == f"{a['spec']['replicas']}/{a['spec']['replicas']}"
        ]
        return len(listed["items"]) == AGENTS and len(ready) == AGENTS

    await kube.wait(all_ready, 300, f"all {AGENTS} Agents Running and Ready")

    listed = await kube.custom.list_namespaced_custom_object(
        "foundation.dev", "v1alpha1", kube.ns, "agents"
    )
    agents = {a["metadata"]["name"]: a for a in listed["items"]}
    assert sorted(agents) == sorted(f"a{i}" for i in range(AGENTS))
    for name, agent in agents.items():
        ready = {c["type"]: c["status"] for c in agent["status"]["conditions"]}
        assert ready.get("Ready") == "True", (name, agent["status"]["conditions"])

    response = await kube.core.list_namespaced_pod(kube.ns, _preload_content=False)
    members: dict[str, list[str]] = defaultdict(list)
    for pod in json.loads(await response.read())["items"]:
        meta = pod["metadata"]
        owner = meta["labels"].get("foundation.dev/agent")
        assert owner in agents, f"orphan pod {meta['name']} (agent {owner!r})"
        (ref,) = [r for r in meta.get("ownerReferences") or [] if r.get("controller")]
        assert ref["uid"] == agents[owner]["metadata"]["uid"], f"{meta['name']}: owner's uid"
        assert not meta.get("deletionTimestamp"), f"{meta['name']} still going at the end"
        members[owner].append(meta["labels"]["foundation.dev/member"])
    for i in range(AGENTS):
        name = f"a{i}"
        assert sorted(members[name]) == [str(m) for m in range(replicas(i))], (
            f"{name}: members {members[name]}, want one per replica"
        )

    # The objects each Agent owns: one each, none left over from a half-done pass.
    named = sorted(f"a{i}" for i in range(AGENTS))
    for kind in ("ServiceAccount", "Role", "RoleBinding", "Service"):
        names = await kube.names(kind, "foundation.dev/agent")
        prefix = "foundation-agent-" if kind in ("Role", "RoleBinding") else ""
        assert names == sorted(prefix + n for n in named), kind
