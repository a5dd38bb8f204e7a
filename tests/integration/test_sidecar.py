"""The sidecar in member pods on the local cluster: calls go from inside a member pod (as the
agent makes them, through 127.0.0.1:15000) to a misbehaving server on the bridge address and to
the members of other Agents found by capability."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import httpx
import pytest
from aiohttp import web

from kube import Kube, in_pod, member_pids, phase, secret
from localcluster.layout import BRIDGE_IP
from servers import FAILING_MEMBER

pytestmark = pytest.mark.usefixtures("operator")


def running(n: int):
    return lambda a: phase(a) == "Running" and a["status"].get("ready") == f"{n}/{n}"


class Upstream:
    """A server on the bridge address whose behaviour the test sets; counts calls."""

    def __init__(self) -> None:
        self.failing = False
        self.calls = 0
        self.authorization: list[str | None] = []

    async def handle(self, request: web.Request) -> web.Response:
        self.calls += 1
        self.authorization.append(request.headers.get("Authorization"))
        return web.Response(status=500 if self.failing else 200, text="upstream")

    async def start(self) -> str:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, BRIDGE_IP, 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        return f"http://{BRIDGE_IP}:{port}"


CALLS = """
import json, sys, time, httpx
with httpx.Client(base_url="http://127.0.0.1:15000", timeout=10) as c:
    out = []
    for _ in range({n}):
        started = time.monotonic()
        r = c.get("{path}")
        out.append([r.status_code, r.headers.get("x-foundation-circuit"),
                    r.headers.get("x-foundation-member"), time.monotonic() - started])
        time.sleep({pause})
print(json.dumps(out))
"""

LOAD = """
import asyncio, json, time, httpx
async def main():
    codes = {{}}
    async with httpx.AsyncClient(base_url="http://127.0.0.1:15000") as c:
        end = time.monotonic() + {seconds}
        async def worker():
            while time.monotonic() < end:
                r = await c.get("{path}")
                codes[r.status_code] = codes.get(r.status_code, 0) + 1
                await asyncio.sleep(0.02)
        await asyncio.gather(*(worker() for _ in range(4)))
    print(json.dumps(codes))
asyncio.run(main())
"""


async def test_circuit_opens_fails_fast_recovers_gradually_and_rate_limits_hold(
    kube: Kube,
) -> None:
    upstream = Upstream()
    url = await upstream.start()
    breaker = {
        "failureThreshold": 3,
        "openSeconds": 2,
        "halfOpenMaxCalls": 1,
        "recoverySeconds": 3,
    }
    sidecar = {
        "upstreams": [
            {"name": "flaky", "url": url, "retries": 0, "circuitBreaker": breaker},
            {"name": "limited", "url": url, "rateLimit": {"requestsPerSecond": 20}},
        ]
    }
    try:
        await kube.create_agent("caller", sidecar=sidecar)
        await kube.wait_agent("caller", running(1), what="caller Running")

        upstream.failing = True
        calls = await in_pod(kube, "caller-0", CALLS.format(n=8, path="/upstream/flaky/x", pause=0))
        assert [c[0] for c in calls] == [500, 500, 500] + [503] * 5
        assert {c[1] for c in calls[3:]} == {"open"}
        assert upstream.calls == 3  # open: the upstream is spared
        assert max(c[3] for c in calls[3:]) < 0.05  # and callers fail fast

        upstream.failing = False
        await asyncio.sleep(2.2)  # openSeconds
        calls = await in_pod(
            kube, "caller-0", CALLS.format(n=80, path="/upstream/flaky/x", pause=0.05)
        )
        codes = [c[0] for c in calls]
        assert codes[0] == 200  # the half-open probe
        refused = [i for i, c in enumerate(calls) if c[1] == "recovering"]
        assert refused, "recovery lets only a share through at first"
        first, last = codes[1:21], codes[-20:]
        assert first.count(503) > 0 and last.count(503) == 0
        assert first.count(200) < 20

        upstream.calls = 0
        codes = await in_pod(kube, "caller-0", LOAD.format(seconds=10, path="/upstream/limited/x"))
        allowed = codes.get("200", 0)
        assert abs(allowed - 220) <= 0.05 * 220, codes  # a burst of 20, then 20/s for 10 s
        assert codes.get("429", 0) > 200, codes
        # The upstream sees the limit too (a retry after a connection error stays in its token).
        assert abs(upstream.calls - 220) <= 0.05 * 220, (upstream.calls, codes)

        pod = await kube.pod("caller-0")
        async with httpx.AsyncClient() as http:
            scraped = (await http.get(f"http://{pod['status']['podIP']}:15090/metrics")).text
        assert 'foundation_sidecar_circuit_state{state="closed",upstream="flaky"} 1.0' in scraped
        assert 'foundation_sidecar_circuit_transitions_total{to="open",upstream="flaky"} 1.0' in (
            scraped
        )
        assert 'foundation_sidecar_rate_limited_total{scope="upstream",upstream="limited"}' in (
            scraped
        )
    finally:
        await upstream.runner.cleanup()


async def test_an_upstreams_api_key_comes_from_a_secret_and_reaches_only_the_upstream(
    kube: Kube,
) -> None:
    upstream = Upstream()
    url = await upstream.start()
    try:
        await kube.create(secret("model-keys", {"token": b"s3cret"}))
        # The test's upstream listens on the node's address: plain HTTP by an IP, said so.
        authorization = {
            "secretKeyRef": {"name": "model-keys", "key": "token"},
            "allowPlainHttp": True,
        }
        await kube.create_agent(
            "keyed",
            sidecar={"upstreams": [{"name": "api", "url": url, "authorization": authorization}]},
        )
        await kube.wait_agent("keyed", running(1), what="keyed Running")
        calls = await in_pod(kube, "keyed-0", CALLS.format(n=1, path="/upstream/api/v1/x", pause=0))
        assert calls[0][0] == 200
        assert upstream.authorization == ["Bearer s3cret"]
        # The agent's own environment does not hold it.
        pod = await kube.pod("keyed-0")
        agent_env = {e["name"] for e in pod["spec"]["containers"][0]["env"]}
        assert not any(name.startswith("FOUNDATION_UPSTREAM_SECRET") for name in agent_env)
        pids = member_pids(kube.ns, "keyed-0")
        assert pids and all(b"s3cret" not in Path(f"/proc/{p}/environ").read_bytes() for p in pids)
    finally:
        await upstream.runner.cleanup()


DELIVER = """
import asyncio, json
from foundation_agent.client import Sidecar
async def main():
    async with Sidecar() as s:
        first = await s.send_task("calc", "increment", {"by": 5}, id="order-1")
        again = await s.send_task("calc", "increment", {"by": 5}, id="order-1")
        for _ in range(100):
            record = await s.task(first)
            if record["status"] == "succeeded":
                break
            await asyncio.sleep(0.1)
    print(json.dumps([first.member, again.member, again.record["status"] != "", record]))
asyncio.run(main())
"""


async def test_capability_calls_reach_two_agents_avoid_a_failing_member_and_follow_readiness(
    kube: Kube,
) -> None:
    await kube.create_agent("alpha", replicas=2, capabilities=["calc"])
    await kube.create_agent("beta", capabilities=["calc"])
    await kube.create_agent(
        "broken", capabilities=["calc"], command=[sys.executable, "-c", FAILING_MEMBER]
    )
    await kube.create_agent("caller", sidecar={}, calls={"capabilities": ["calc"]})
    for name, n in (("alpha", 2), ("beta", 1), ("broken", 1), ("caller", 1)):
        await kube.wait_agent(name, running(n), what=f"{name} Running")

    calls = await in_pod(
        kube, "caller-0", CALLS.format(n=30, path="/agents/calc/readyz?via=sidecar", pause=0)
    )
    assert {c[0] for c in calls} == {200}  # broken-0's 503s were retried on others
    members = {c[2] for c in calls}
    assert members == {"alpha-0", "alpha-1", "beta-0"}
    pod = await kube.pod("caller-0")
    async with httpx.AsyncClient() as http:
        scraped = (await http.get(f"http://{pod['status']['podIP']}:15090/metrics")).text
    assert 'foundation_sidecar_ejections_total{capability="calc"} 1.0' in scraped
    assert 'foundation_sidecar_capability_members{capability="calc"} 4.0' in scraped

    delivered = await in_pod(kube, "caller-0", DELIVER)
    first_member, again_member, _, record = delivered
    assert first_member == again_member and first_member != "broken-0"
    assert record["status"] == "succeeded" and record["result"] == {"count": 5}

    # broken-0 turns unready while its pod stays: the caller's sidecar drops it.
    broken = await kube.pod("broken-0")
    async with httpx.AsyncClient() as http:
        await http.post(f"http://{broken['status']['podIP']}:8080/toggle")

        async def members_seen() -> str:
            scraped = (await http.get(f"http://{pod['status']['podIP']}:15090/metrics")).text
            return 'foundation_sidecar_capability_members{capability="calc"} 3.0' in scraped

        await kube.wait(members_seen, what="the sidecar sees broken-0 unready")
    endpoints = await kube.get("Endpoints", "foundation-cap-calc")
    unready = [
        a["targetRef"]["name"]
        for s in endpoints["subsets"]
        for a in s.get("notReadyAddresses") or []
    ]
    assert unready == ["broken-0"]

    await kube.patch_agent("beta", {"spec": {"replicas": 0}})

    async def beta_gone() -> bool:
        endpoints = await kube.get("Endpoints", "foundation-cap-calc") or {}
        names = {
            a["targetRef"]["name"]
            for s in endpoints.get("subsets") or []
            for a in s.get("addresses") or []
        }
        return "beta-0" not in names

    await kube.wait(beta_gone, what="beta-0 out of the capability's Endpoints")
    calls = await in_pod(
        kube, "caller-0", CALLS.format(n=20, path="/agents/calc/readyz?via=sidecar", pause=0)
    )
    assert {c[0] for c in calls} == {200}
    assert {c[2] for c in calls} == {"alpha-0", "alpha-1"}
