"""What people's door costs: a task sent through the API server and the operator's door, against
the same task sent straight to the member with a token, in the same run.

    .venv/bin/python bench/door_latency.py [--calls 300]

On the local cluster: the operator run as a process for a namespace of its own, serving the
door as the tests' harness does (tests/integration/door.py: the APIService, its Service and
Endpoints, a relay account; removed after), one CounterAgent member requiring tokens.
- Sequential sends (`POST .../agents/counter/tasks`, accepted, not waited for), `--calls` each
  way, alternating: the door with the admin's token (the API server authenticates, authorizes,
  relays; the door finds a ready member, relays with its token; the member authorizes the
  person again), and straight to the member's task API with a foundation.dev token. p50, p99,
  and their difference.
- A send with `wait` through the door (accepted and done in one call), p50 and p99.
Run it alone: it serves the door on the harness's port, and removes the cluster's door objects
after (`make demo` makes its own again). A benchmark, not a test: it asserts
nothing and prints JSON.
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

import httpx
from harness import KUBECONFIG, REPO, agent_body, delete_namespace, new_namespace, operator_env
from kubernetes_asyncio import client, config

sys.path[:0] = [str(REPO / "tests/integration"), str(REPO / "e2e/local")]
import door  # noqa: E402

from localcluster.layout import API_URL  # noqa: E402


def quantiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50_ms": round(1000 * ordered[len(ordered) // 2], 2),
        "p99_ms": round(1000 * ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], 2),
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=300)
    args = parser.parse_args()
    ns = f"bench-door-{uuid.uuid4().hex[:5]}"
    configuration = client.Configuration()
    await config.load_kube_config(config_file=KUBECONFIG, client_configuration=configuration)
    api = client.ApiClient(configuration)
    core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
    rbac = client.RbacAuthorizationV1Api(api)
    await new_namespace(core, ns)
    env = {**operator_env(ns, 18091, 19191), **door.install()}
    log = open(REPO / ".local-cluster/logs/bench-door-operator.log", "ab")
    operator = subprocess.Popen(
        [str(REPO / ".venv/bin/python"), "-m", "foundation_operator"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        await asyncio.to_thread(door.wait_available)
        await custom.create_namespaced_custom_object(
            "foundation.dev",
            "v1alpha1",
            ns,
            "agents",
            agent_body(
                "counter",
                "foundation_agent.agents:CounterAgent",
                sidecar={"enabled": False},
                callers={"requireToken": True},
            ),
        )
        await core.create_namespaced_service_account(ns, {"metadata": {"name": "tester"}})
        await rbac.create_namespaced_role_binding(
            ns,
            {
                "metadata": {"name": "tester"},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "ClusterRole",
                    "name": "foundation-agent-caller",
                },
                "subjects": [{"kind": "ServiceAccount", "name": "tester", "namespace": ns}],
            },
        )
        token = await core.create_namespaced_service_account_token(
            "tester",
            ns,
            {"spec": {"audiences": ["foundation.dev"], "expirationSeconds": 3600}},
        )
        member = {"Authorization": f"Bearer {token.status.token}"}
        admin = {"Authorization": f"Bearer {configuration.api_key['BearerToken'].split()[-1]}"}
        verify = ssl.create_default_context(cafile=str(REPO / ".local-cluster/pki/ca.crt"))
        base = f"{API_URL}/apis/access.foundation.dev/v1alpha1/namespaces/{ns}/agents/counter"
        ip = ""
        for _ in range(600):
            pod = (await core.list_namespaced_pod(ns, label_selector="foundation.dev/agent")).items
            ready = [p for p in pod if any(
                c.type == "Ready" and c.status == "True" for c in (p.status.conditions or [])
            )]  # fmt: skip
            if ready:
                ip = ready[0].status.pod_ip
                break
            await asyncio.sleep(0.1)
        direct, through, waited = [], [], []
        async with httpx.AsyncClient(verify=verify, timeout=30) as http:
            for i in range(-20, args.calls):  # 20 to warm caches and connections
                task = {"action": "increment", "input": {"by": 1}}
                started = time.perf_counter()
                answer = await http.post(
                    f"{base}/tasks", json={**task, "id": f"d-{i}"}, headers=admin
                )
                door_seconds = time.perf_counter() - started
                assert answer.status_code == 202, answer.text
                started = time.perf_counter()
                answer = await http.post(
                    f"http://{ip}:8080/v1/tasks", json={**task, "id": f"m-{i}"}, headers=member
                )
                member_seconds = time.perf_counter() - started
                assert answer.status_code == 202, answer.text
                if i >= 0:
                    through.append(door_seconds)
                    direct.append(member_seconds)
            for i in range(min(args.calls, 100)):
                started = time.perf_counter()
                answer = await http.post(
                    f"{base}/tasks?wait=10",
                    json={"id": f"w-{i}", "action": "increment", "input": {"by": 1}},
                    headers=admin,
                )
                assert answer.json()["status"] == "succeeded", answer.text
                waited.append(time.perf_counter() - started)
        door_q, member_q = quantiles(through), quantiles(direct)
        print(
            json.dumps(
                {
                    "calls": args.calls,
                    "through_the_door": door_q,
                    "straight_to_the_member": member_q,
                    "door_adds": {
                        k: round(door_q[k] - member_q[k], 2) for k in ("p50_ms", "p99_ms")
                    },
                    "send_and_wait_through_the_door": quantiles(waited),
                },
                indent=2,
            )
        )
    finally:
        operator.terminate()
        operator.wait(timeout=30)
        door.uninstall()
        await delete_namespace(core, custom, ns, ["counter"])
        await api.close()


if __name__ == "__main__":
    asyncio.run(main())
