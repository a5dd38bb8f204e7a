"""What an Agent that sleeps when idle costs and gives (issue 29): the first task to a sleeping
Agent until it is accepted, against the same task to the Agent awake, in the same run; and the
pods and memory of Agents asleep against the same Agents awake.

    .venv/bin/python bench/agent_wake.py [--wakes 10] [--agents 100]

On the local cluster: the operator run as a process for a namespace of its own, serving
people's door as the tests' harness does (tests/integration/door.py).
- `wake`: one CounterAgent (no sidecar) with `sleepAfterIdleSeconds: 2`; `--wakes` times: wait
  until it sleeps (no member pod), then `POST .../agents/counter/tasks` through the door with
  the admin's token, timed to its 202 (the door asks for the wake, holds the call, relays it
  once a member is ready: the pod's start, the runtime's start and its state's load
  included). Against it, `--wakes` sends to it awake. p50 and p99.
- `idle`: `--agents` CounterAgents as users make them (with their sidecar), all awake: their
  pods, and the memory of the processes of those pods (the test node runs containers as
  processes; PSS, shared pages split); then each told `sleepAfterIdleSeconds: 5`, all asleep:
  the same. And the state objects each keeps either way.
Run it alone: it serves the door on the harness's port, and removes the cluster's door objects
after. A benchmark, not a test: it asserts nothing and prints JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import ssl
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
from harness import KUBECONFIG, REPO, agent_body, delete_namespace, new_namespace, operator_env
from kubernetes_asyncio import client, config

sys.path[:0] = [str(REPO / "tests/integration"), str(REPO / "e2e/local")]
import door  # noqa: E402

from localcluster.layout import API_URL  # noqa: E402

GROUP, VERSION = "foundation.dev", "v1alpha1"


def quantiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50_ms": round(1000 * ordered[len(ordered) // 2], 1),
        "p99_ms": round(1000 * ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], 1),
        "n": len(ordered),
    }


def pods_pss_mb(namespace: str, agent: str = "") -> tuple[int, float]:
    """Processes of the namespace's pods (their FOUNDATION_NAMESPACE; with `agent`, only its
    members' runtimes), and their PSS in MB."""
    count, total = 0, 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
            if f"FOUNDATION_NAMESPACE={namespace}\0".encode() not in environ:
                continue
            if agent and f"\0FOUNDATION_AGENT_NAME={agent}\0".encode() not in environ:
                continue
            for line in (entry / "smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1]) / 1024
                    count += 1
        except OSError:
            continue
    return count, round(total, 1)


async def phases(custom: client.CustomObjectsApi, ns: str) -> dict[str, str]:
    listing = await custom.list_namespaced_custom_object(GROUP, VERSION, ns, "agents")
    return {
        a["metadata"]["name"]: (a.get("status") or {}).get("phase", "") for a in listing["items"]
    }


async def until(check, timeout: float = 600, what: str = "", poll: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        await asyncio.sleep(poll)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--wakes", type=int, default=10)
    parser.add_argument("--agents", type=int, default=100)
    parser.add_argument(
        "--no-sidecars",
        action="store_true",
        help="the idle Agents without their sidecar (100 with sidecars overload 2 cores)",
    )
    args = parser.parse_args()
    ns = f"bench-wake-{uuid.uuid4().hex[:5]}"
    configuration = client.Configuration()
    await config.load_kube_config(config_file=KUBECONFIG, client_configuration=configuration)
    api = client.ApiClient(configuration)
    core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
    await new_namespace(core, ns)
    env = {**operator_env(ns, 18092, 19192), **door.install()}
    log = open(REPO / ".local-cluster/logs/bench-wake-operator.log", "ab")
    operator = subprocess.Popen(
        [str(REPO / ".venv/bin/python"), "-m", "foundation_operator"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    out: dict = {}
    names = ["counter", "warm", "scaler", "spared"] + [f"idle-{i}" for i in range(args.agents)]
    gate = asyncio.Semaphore(16)  # writes at once

    async def create(name: str, **spec) -> None:
        """A CounterAgent, without its sidecar unless `sidecar` says otherwise."""
        spec.setdefault("sidecar", {"enabled": False})
        body = agent_body(name, "foundation_agent.agents:CounterAgent", **spec)
        async with gate:
            await custom.create_namespaced_custom_object(GROUP, VERSION, ns, "agents", body)

    async def patch(name: str, spec: dict) -> None:
        async with gate:
            await custom.patch_namespaced_custom_object(
                GROUP,
                VERSION,
                ns,
                "agents",
                name,
                {"spec": spec},
                _content_type="application/merge-patch+json",
            )

    try:
        await asyncio.to_thread(door.wait_available)
        await create("counter", sleepAfterIdleSeconds=2)
        await create("warm", sleepAfterIdleSeconds=2, warmWhileAsleep=True)
        admin = {"Authorization": f"Bearer {configuration.api_key['BearerToken'].split()[-1]}"}
        verify = ssl.create_default_context(cafile=str(REPO / ".local-cluster/pki/ca.crt"))
        door_url = f"{API_URL}/apis/access.foundation.dev/v1alpha1/namespaces/{ns}/agents"

        async def asleep() -> bool:
            pods = await core.list_namespaced_pod(ns, label_selector="foundation.dev/agent=counter")
            return (await phases(custom, ns)).get("counter") == "Sleeping" and not pods.items

        async def parked() -> bool:
            """The warm Agent asleep, its member pod made for this sleep and ready."""
            agent = await custom.get_namespaced_custom_object(GROUP, VERSION, ns, "agents", "warm")
            since = (agent.get("status") or {}).get("asleepSince")
            pods = await core.list_namespaced_pod(ns, label_selector="foundation.dev/agent=warm")
            return bool(since) and any(
                (p.metadata.annotations or {}).get("foundation.dev/parkedFor") == since
                and not p.metadata.deletion_timestamp
                and any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])
                for p in pods.items
            )

        async def send(http: httpx.AsyncClient, agent: str, body: dict) -> float:
            started = time.perf_counter()
            for _ in range(30):  # as a client does: a 503 again after its Retry-After
                answer = await http.post(f"{door_url}/{agent}/tasks", json=body, headers=admin)
                if answer.status_code != 503:
                    break
                await asyncio.sleep(float(answer.headers.get("Retry-After", 1)))
            assert answer.status_code == 202, answer.text
            return time.perf_counter() - started

        cold, warm, awake, parked_pss = [], [], [], []
        async with httpx.AsyncClient(verify=verify, timeout=70) as http:
            for i in range(args.wakes):
                await until(asleep, 120, "counter asleep")
                body = {"id": f"wake-{i}", "action": "increment", "input": {"by": 1}}
                cold.append(await send(http, "counter", body))
                for j in range(3):  # awake: the same call, the member ready
                    body = {"id": f"awake-{i}-{j}", "action": "get"}
                    awake.append(await send(http, "counter", body))
                await until(parked, 120, "warm asleep, parked")
                parked_pss.append(pods_pss_mb(ns, "warm")[1])
                body = {"id": f"wake-{i}", "action": "increment", "input": {"by": 1}}
                warm.append(await send(http, "warm", body))
        out["wake"] = {
            "asleep_cold": quantiles(cold),
            "asleep_warm": quantiles(warm),
            "awake": quantiles(awake),
            "parked_member_pss_mb": sorted(parked_pss)[len(parked_pss) // 2],
        }

        # A scale-up: replicas 1 -> 2 until the new member is ready in the Agent's Endpoints;
        # cold (a new pod: start, imports, load, first probe), and with spec.warmSpares: 1
        # (the parked spare claimed).
        for name, spares in (("scaler", 0), ("spared", 1)):
            await create(name, warmSpares=spares)

        async def ready_members(name: str, want: int) -> bool:
            try:
                found = await core.read_namespaced_endpoints(name, ns)
            except client.ApiException:
                return False
            ready = sum(len(s.addresses or []) for s in found.subsets or [])
            return ready == want

        async def spare_ready(name: str) -> bool:
            listed = await core.list_namespaced_pod(
                ns, label_selector=f"foundation.dev/spare-of={name}"
            )
            return any(
                p.metadata.name == f"{name}-1"
                and not p.metadata.deletion_timestamp
                and any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])
                for p in listed.items
            )

        async def scale(name: str, replicas: int) -> None:
            await patch(name, {"replicas": replicas})

        for name, spares in (("scaler", 0), ("spared", 1)):
            await until(lambda name=name: ready_members(name, 1), 120, f"{name} ready")
            ups = []
            for _ in range(args.wakes):
                if spares:
                    await until(lambda name=name: spare_ready(name), 120, "a spare ready")
                started = time.perf_counter()
                await scale(name, 2)
                await until(lambda name=name: ready_members(name, 2), 120, "up", poll=0.02)
                ups.append(time.perf_counter() - started)
                await scale(name, 1)
                await until(lambda name=name: ready_members(name, 1), 120, "scaled down")
            out["wake"]["scale_up_warm" if spares else "scale_up_cold"] = quantiles(ups)

        for name in ("counter", "warm", "scaler", "spared"):  # out of the idle measures' way
            await custom.delete_namespaced_custom_object(GROUP, VERSION, ns, "agents", name)

        async def wake_pods_gone() -> bool:  # members and spares
            listed = await core.list_namespaced_pod(ns)
            return not listed.items

        await until(wake_pods_gone, 120, "the wake bench's pods gone")

        # -- idle cost ---------------------------------------------------------------------
        started = time.monotonic()
        idlers = names[4:]
        # As users make them (with their sidecar, unless --no-sidecars); awake until all are
        # (their pods start over a minute or more here): then told to sleep after 5 s.
        sidecar = {"enabled": not args.no_sidecars}
        await asyncio.gather(
            *(create(n, sleepAfterIdleSeconds=3600, sidecar=sidecar) for n in idlers)
        )

        async def all_in(phase: str) -> bool:
            found = await phases(custom, ns)
            return all(found.get(n) == phase for n in idlers)

        await until(lambda: all_in("Running"), 900, "all awake")
        out["idle"] = {
            "agents": args.agents,
            "sidecars": not args.no_sidecars,
            "all_awake_after_s": round(time.monotonic() - started),
        }
        pods = await core.list_namespaced_pod(ns, label_selector="foundation.dev/agent")
        processes, pss = pods_pss_mb(ns)
        out["idle"]["awake"] = {
            "pods": len(pods.items),
            "processes": processes,
            "pss_mb": pss,
        }
        started = time.monotonic()

        # Asleep and warm: each keeps its member's pod, parked.
        await asyncio.gather(
            *(patch(n, {"sleepAfterIdleSeconds": 5, "warmWhileAsleep": True}) for n in idlers)
        )
        await until(lambda: all_in("Sleeping"), 900, "all asleep")

        async def all_parked() -> bool:
            listed = await core.list_namespaced_pod(ns, label_selector="foundation.dev/agent")
            ready = [
                p
                for p in listed.items
                if p.metadata.labels["foundation.dev/agent"] in idlers
                and (p.metadata.annotations or {}).get("foundation.dev/parkedFor")
                and any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])
            ]
            return len(ready) == len(idlers)

        await until(all_parked, 900, "all parked")
        processes, pss = pods_pss_mb(ns)
        out["idle"]["asleep_warm"] = {
            "pods": len(idlers),
            "processes": processes,
            "pss_mb": pss,
            "all_parked_after_s": round(time.monotonic() - started),
        }
        # Asleep, not warm: no pod.
        started = time.monotonic()
        await asyncio.gather(*(patch(n, {"warmWhileAsleep": False}) for n in idlers))

        async def no_pods() -> bool:
            listed = await core.list_namespaced_pod(ns, label_selector="foundation.dev/agent")
            return not listed.items

        await until(no_pods, 300, "their pods gone")
        processes, pss = pods_pss_mb(ns)
        out["idle"]["asleep"] = {
            "pods": 0,
            "processes": processes,
            "pss_mb": pss,
            "all_asleep_after_s": round(time.monotonic() - started),
        }
        configmaps = await core.list_namespaced_config_map(ns)
        out["idle"]["state_objects_kept"] = len(
            [c for c in configmaps.items if c.metadata.name.endswith("-state")]
        )
    finally:
        operator.terminate()
        operator.wait(30)
        await delete_namespace(core, custom, ns, names)
        await api.close()
        door.uninstall()
    print(json.dumps(out))


if __name__ == "__main__":
    asyncio.run(main())
