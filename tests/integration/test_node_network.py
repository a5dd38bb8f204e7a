"""Pod networking: an address per pod, shared by its containers; readiness drives Endpoints."""

from __future__ import annotations

import httpx

from kube import Kube, container_status, pod
from servers import FETCH, TOGGLE_SERVER, python


async def test_two_pods_talk_by_pod_ip(kube: Kube) -> None:
    # Ready only once the tcpSocket probe connects: the server is listening before the client runs.
    tcp_ready = {"tcpSocket": {"port": 8080}, "periodSeconds": 1}
    await kube.create(pod("server", python("serve", TOGGLE_SERVER, readinessProbe=tcp_ready)))
    server = await kube.wait_running("server")
    ip = server["status"]["podIP"]
    await kube.create(
        pod(
            "client",
            python("fetch", FETCH, env=[{"name": "TARGET_URL", "value": f"http://{ip}:8080/"}]),
            restartPolicy="Never",
        )
    )
    done = await kube.wait_pod("client", lambda p: p["status"].get("phase") == "Succeeded")
    assert kube.log(done, "fetch").strip() == "answer: server"  # the server's hostname
    assert done["status"]["podIP"] != ip


async def test_containers_of_a_pod_share_localhost(kube: Kube) -> None:
    await kube.create(
        pod(
            "pair",
            python("serve", TOGGLE_SERVER),
            python(
                "fetch",
                FETCH + "\nimport time; time.sleep(600)",
                env=[{"name": "TARGET_URL", "value": "http://127.0.0.1:8080/"}],
            ),
        )
    )
    ready = await kube.wait_running("pair")
    await kube.wait(
        lambda: "answer: pair" in kube.log(ready, "fetch"),
        timeout=30,
        what="the sidecar's answer over localhost",
    )


async def test_readiness_flips_the_endpoints_address(kube: Kube) -> None:
    await kube.create(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "web"},
            "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]},
        }
    )
    manifest = pod(
        "web-0",
        python(
            "serve",
            TOGGLE_SERVER,
            readinessProbe={
                "httpGet": {"path": "/ready", "port": 8080},
                "periodSeconds": 1,
                "failureThreshold": 1,
            },
        ),
    )
    manifest["metadata"]["labels"] = {"app": "web"}
    await kube.create(manifest)
    running = await kube.wait_pod(
        "web-0", lambda p: "running" in container_status(p, "serve").get("state", {})
    )
    ip = running["status"]["podIP"]

    async def addresses(field: str) -> list[str]:
        endpoints = await kube.get("Endpoints", "web") or {}
        return [a["ip"] for s in endpoints.get("subsets") or [] for a in s.get(field) or []]

    async def toggle() -> None:
        async with httpx.AsyncClient() as http:

            async def served() -> bool:
                try:
                    return (await http.post(f"http://{ip}:8080/toggle")).status_code == 200
                except httpx.TransportError:
                    return False

            await kube.wait(served, timeout=20, what="the toggle server")

    await kube.wait(lambda: _contains(addresses("notReadyAddresses"), ip), what="not ready")
    assert ip not in await addresses("addresses")

    await toggle()
    await kube.wait(lambda: _contains(addresses("addresses"), ip), what="ready address")
    assert container_status(await kube.pod("web-0"), "serve")["ready"] is True

    await toggle()
    await kube.wait(lambda: _contains(addresses("notReadyAddresses"), ip), what="not ready again")
    assert ip not in await addresses("addresses")


async def _contains(listing, item: str) -> bool:
    return item in await listing
