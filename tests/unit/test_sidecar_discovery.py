"""Discovery by capability: members from Endpoints, balancing, affinity, outlier ejection; the
`/agents/<capability>` route against real member servers on loopback; the agents' client."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from foundation_agent.client import DeliveryError, Sidecar
from foundation_agent.sidecar.proxy import Proxy
from foundation_common.access import CallerToken
from foundation_common.discovery import Capability, Directory, RestEndpoints, ready_members
from foundation_common.sidecar import Discovery, SidecarConfig


def endpoints(ready: dict[str, str], not_ready: dict[str, str] | None = None) -> dict:
    """An Endpoints object as the API serves it: pod name -> host:port."""
    subsets = []
    for name, address in ready.items():
        ip, port = address.rsplit(":", 1)
        subsets.append(
            {
                "addresses": [{"ip": ip, "targetRef": {"kind": "Pod", "name": name}}],
                "notReadyAddresses": [
                    {"ip": "10.0.0.99", "targetRef": {"kind": "Pod", "name": n}}
                    for n in (not_ready or {})
                ],
                "ports": [{"name": "http", "port": int(port)}],
            }
        )
    return {"subsets": subsets}


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_only_ready_addresses_are_members() -> None:
    found = ready_members(endpoints({"a-0": "10.0.0.1:8080"}, not_ready={"a-1": "x"}))
    assert found == {"a-0": "10.0.0.1:8080"}
    assert ready_members(None) == {} and ready_members({"subsets": None}) == {}


def test_round_robin_and_affinity_that_is_stable_while_the_member_stays() -> None:
    cap = Capability("calc", Discovery())
    cap.update(endpoints({f"a-{i}": f"10.0.0.{i}:8080" for i in range(3)}))
    spread = Counter(cap.pick().name for _ in range(30))
    assert spread == {"a-0": 10, "a-1": 10, "a-2": 10}
    chosen = cap.pick("task-42").name
    assert all(cap.pick("task-42").name == chosen for _ in range(10))
    # Another member leaving does not move the key; its own member leaving does.
    others = {f"a-{i}": f"10.0.0.{i}:8080" for i in range(3) if f"a-{i}" != chosen}
    cap.update(endpoints({**others, chosen: "10.0.0.9:8080"}))
    assert cap.pick("task-42").name == chosen
    cap.update(endpoints(others))
    assert cap.pick("task-42").name in others
    # Keys spread over members.
    assert len({cap.pick(f"k{i}").name for i in range(50)}) == 2


def test_failures_in_a_row_eject_a_member_for_growing_times_and_panic_uses_all() -> None:
    clock = Clock()
    cap = Capability("calc", Discovery(eject_after_failures=3, eject_seconds=10), clock)
    cap.update(endpoints({"a-0": "10.0.0.1:8080", "b-0": "10.0.0.2:8080"}))
    bad, good = cap.members["a-0"], cap.members["b-0"]
    cap.record(bad, ok=False)
    cap.record(bad, ok=True)  # a success resets the run
    cap.record(bad, ok=False)
    cap.record(bad, ok=False)
    assert {cap.pick().name for _ in range(4)} == {"a-0", "b-0"}
    cap.record(bad, ok=False)  # third in a row: ejected for 10 s
    assert {cap.pick().name for _ in range(4)} == {"b-0"}
    clock.now += 10.1
    assert {cap.pick().name for _ in range(4)} == {"a-0", "b-0"}
    for _ in range(3):
        cap.record(bad, ok=False)  # ejected again, in a row: 20 s
    clock.now += 15
    assert {cap.pick().name for _ in range(4)} == {"b-0"}
    for _ in range(3):
        cap.record(good, ok=False)  # both ejected: use them all rather than none
    assert {cap.pick().name for _ in range(4)} == {"a-0", "b-0"}
    # Tried members are avoided within one call.
    assert cap.pick(avoid=frozenset({"a-0"})).name == "b-0"
    assert cap.pick(avoid=frozenset({"a-0", "b-0"})) is None


class MemberServer:
    """A member's task API on loopback: answers with its name, or fails as told."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.mode = "ok"
        self.calls = 0
        self.tasks: dict[str, dict] = {}

    async def handle(self, request: web.Request) -> web.Response:
        self.calls += 1
        if self.mode == "fail":
            return web.json_response({"error": "broken"}, status=503)
        if request.method == "POST" and request.path == "/v1/tasks":
            task = await request.json()
            known = task["id"] in self.tasks
            self.tasks.setdefault(task["id"], {"id": task["id"], "status": "queued"})
            return web.json_response(self.tasks[task["id"]], status=200 if known else 202)
        if request.path.startswith("/v1/tasks/"):
            record = self.tasks.get(request.path.rsplit("/", 1)[1])
            return web.json_response(record or {"error": "unknown"}, status=200 if record else 404)
        forwarded = {k: v for k, v in request.headers.items() if k.startswith("X-Forwarded-")}
        # A card names where it was fetched (as a member does for a caller it does not relay for).
        here = f"http://{request.host}/"
        return web.json_response(
            {
                "member": self.name,
                "path": request.path_qs,
                "forwarded": forwarded,
                "supportedInterfaces": [{"url": here}, {"url": here + "v03"}],
                "documentationUrl": "https://example.com/docs",
                "authorization": request.headers.get("Authorization"),
                "sender": request.headers.get("X-Foundation-Sender"),
            }
        )


@pytest.fixture
async def members():
    servers, started = {}, []
    for name in ("a-0", "a-1", "b-0"):
        member = MemberServer(name)
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", member.handle)
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        member.address = f"127.0.0.1:{server.port}"
        servers[name] = member
        started.append(server)
    yield servers
    for server in started:
        await server.close()


async def proxy_for(
    members: dict[str, MemberServer], token: CallerToken | None = None, **discovery: object
):
    config = SidecarConfig.model_validate({"discovery": discovery})

    def no_api():
        raise AssertionError("the test feeds the Endpoints itself")

    directory = Directory(config.discovery, "ns", RestEndpoints(connect=no_api))
    cap = directory.capabilities["foundation-cap-calc"] = Capability("calc", config.discovery)
    cap.update(endpoints({n: m.address for n, m in members.items()}))
    # Agent tally's own Service, as the route asks for it (port a2a: 8081); its members a-0
    # and a-1 serve on their loopback ports, as the test's Endpoints say.
    tally = directory.capabilities["tally:8081"] = Capability(
        "tally", config.discovery, service="tally"
    )
    tally.update(endpoints({n: m.address for n, m in members.items() if n.startswith("a-")}))
    client = TestClient(TestServer(Proxy(config, directory, token).app()))
    await client.start_server()
    return client, cap


async def test_capability_calls_reach_every_member_and_say_which(members) -> None:
    client, _ = await proxy_for(members)
    seen = Counter()
    for _ in range(9):
        answer = await client.get("/agents/calc/hello?x=1")
        body = await answer.json()
        assert answer.status == 200 and body["path"] == "/hello?x=1"
        assert answer.headers["X-Foundation-Member"] == body["member"]
        seen[body["member"]] += 1
    assert seen == {"a-0": 3, "a-1": 3, "b-0": 3}
    unknown = await client.get("/agents/nobody/hello")
    assert unknown.status == 503 and "no ready member of capability nobody" in await unknown.text()
    await client.close()


async def test_calls_into_members_carry_this_pods_token_never_the_agents_word(
    members, tmp_path
) -> None:
    (tmp_path / "token").write_text("pod-token\n")
    client, _ = await proxy_for(members, CallerToken(str(tmp_path / "token")))
    forged = {"Authorization": "Bearer stolen", "X-Foundation-Sender": "system:admin"}
    for path in ("/agents/calc/v1/actions", "/a2a/tally/"):
        body = await (await client.get(path, headers=forged)).json()
        assert body["authorization"] == "Bearer pod-token"
        assert body["sender"] is None
    await client.close()
    # Outside a cluster (no token mounted): nothing is sent, and the agent's header neither.
    client, _ = await proxy_for(members, CallerToken(str(tmp_path / "none")))
    body = await (await client.get("/agents/calc/x", headers=forged)).json()
    assert body["authorization"] is None and body["sender"] is None
    await client.close()


async def test_a2a_calls_reach_an_agents_service_and_say_where_they_came_through(
    members,
) -> None:
    """`/a2a/<agent>/...`: the Agent's own Service on port a2a; its card names this route as
    the Agent's URL (the member names the address it was called at); a POST (A2A messages are
    keyed by their id) goes to another member when one fails."""
    client, _ = await proxy_for(members)
    answer = await client.get(
        "/a2a/tally/.well-known/agent-card.json", headers={"X-Forwarded-Host": "evil.example"}
    )
    body = await answer.json()
    assert answer.status == 200 and body["path"] == "/.well-known/agent-card.json"
    assert body["forwarded"] == {}  # the agent's forwarding headers stop at the sidecar
    route = f"http://{client.host}:{client.port}/a2a/tally/"
    assert body["supportedInterfaces"] == [{"url": route}, {"url": route + "v03"}]
    assert body["documentationUrl"] == "https://example.com/docs"
    members["a-0"].mode = "fail"
    for _ in range(4):
        answer = await client.post("/a2a/tally/", json={"jsonrpc": "2.0"})
        assert answer.status == 200 and (await answer.json())["member"] == "a-1"
    bad = await client.get("/a2a/Not_An_Agent/x")
    assert bad.status == 400 and "DNS-1035" in await bad.text()
    await client.close()


async def test_a_failing_member_is_retried_around_then_ejected(members) -> None:
    client, cap = await proxy_for(members, eject_after_failures=2, eject_seconds=60)
    members["a-1"].mode = "fail"
    for _ in range(12):
        answer = await client.get("/agents/calc/hello")
        assert answer.status == 200, await answer.text()
        assert (await answer.json())["member"] != "a-1"
    assert members["a-1"].calls == 2  # two failures in a row, then ejected
    assert cap.members["a-1"].ejected_until > 0
    # A POST without an idempotency key is not sent twice: the member's 503 comes back.
    members["a-1"].mode = "ok"
    cap.members["a-1"].ejected_until = 0
    members["a-0"].mode = members["b-0"].mode = "fail"
    answers = [(await client.post("/agents/calc/work", data=b"x")).status for _ in range(3)]
    assert sorted(answers) == [200, 503, 503]
    await client.close()


async def test_a_dead_member_is_skipped_for_any_method(members) -> None:
    client, cap = await proxy_for(members)
    cap.update(endpoints({"gone-0": "127.0.0.1:1", "b-0": members["b-0"].address}))
    for _ in range(4):
        answer = await client.post("/agents/calc/work", data=b"x")
        assert answer.status == 200 and answer.headers["X-Foundation-Member"] == "b-0"
    await client.close()


async def test_send_task_delivers_once_to_one_member_and_reads_it_back(members) -> None:
    client, _ = await proxy_for(members)
    async with Sidecar(str(client.make_url(""))) as sidecar:
        first = await sidecar.send_task("calc", "increment", {"by": 1}, id="t-1")
        again = await sidecar.send_task("calc", "increment", {"by": 1}, id="t-1")
        assert first.member == again.member and first.record["id"] == "t-1"
        holders = [m for m in members.values() if "t-1" in m.tasks]
        assert [m.name for m in holders] == [first.member]
        assert (await sidecar.task(first))["status"] == "queued"
        with pytest.raises(DeliveryError, match="not accepted by capability none"):
            await sidecar.send_task("none", "increment", id="t-2", deadline_seconds=0.5)
    await client.close()


async def test_send_task_retries_through_refusals_until_accepted(members) -> None:
    client, cap = await proxy_for(members)
    cap.update(endpoints({"a-0": members["a-0"].address}))
    members["a-0"].mode = "fail"

    async def recover() -> None:
        await asyncio.sleep(0.4)
        members["a-0"].mode = "ok"

    async with Sidecar(str(client.make_url(""))) as sidecar:
        recovering = asyncio.create_task(recover())
        delivered = await sidecar.send_task("calc", "increment", id="t-3", deadline_seconds=10)
        await recovering
    assert delivered.attempts > 1 and delivered.member == "a-0"
    assert list(members["a-0"].tasks) == ["t-3"]
    await client.close()


def test_sidecar_settings_come_from_the_environment_and_name_bad_values() -> None:
    from foundation_agent.sidecar.server import SidecarSettings
    from foundation_common.settings import SettingsError

    settings = SidecarSettings.from_env(
        {
            "FOUNDATION_SIDECAR_CONFIG": '{"upstreams": [{"name": "llm", "url": "http://x.test"}]}',
            "FOUNDATION_NAMESPACE": "team",
        }
    )
    assert settings.sidecar_config.upstreams[0].name == "llm"
    assert (settings.sidecar_host, settings.sidecar_port) == ("127.0.0.1", 15000)
    with pytest.raises(SettingsError, match="FOUNDATION_SIDECAR_CONFIG"):
        SidecarSettings.from_env({"FOUNDATION_SIDECAR_CONFIG": '{"upstreams": [{"name": "X"}]}'})


async def test_a_service_upstream_balances_over_its_ready_endpoints(members) -> None:
    """`upstreams[].service`: an in-cluster server of several replicas, reached through its
    Endpoints (no cluster DNS or kube-proxy), behind the upstream's breaker."""
    config = SidecarConfig.model_validate(
        {
            "upstreams": [
                {
                    "name": "llm",
                    "service": {"name": "model-server"},
                    "circuitBreaker": {"failureThreshold": 3, "openSeconds": 60},
                }
            ],
            "discovery": {"ejectAfterFailures": 1, "ejectSeconds": 60},
        }
    )

    def no_api():
        raise AssertionError("the test feeds the Endpoints itself")

    directory = Directory(config.discovery, "ns", RestEndpoints(connect=no_api))
    # The loopback servers listen on ports of their own: the upstream takes the Service's
    # port named http (ports chosen by number: the test below).
    service = Capability("llm", config.discovery, service="model-server")
    directory.capabilities["model-server"] = service
    service.update(endpoints({n: members[n].address for n in ("a-0", "a-1")}))
    # Agent tally's own Service, as the route asks for it (port a2a: 8081); its members a-0
    # and a-1 serve on their loopback ports, as the test's Endpoints say.
    tally = directory.capabilities["tally:8081"] = Capability(
        "tally", config.discovery, service="tally"
    )
    tally.update(endpoints({n: m.address for n, m in members.items() if n.startswith("a-")}))
    client = TestClient(TestServer(Proxy(config, directory).app()))
    await client.start_server()
    seen = Counter()
    for _ in range(6):
        answer = await client.get("/upstream/llm/v1/models")
        assert answer.status == 200
        assert answer.headers["X-Foundation-Member"] == (await answer.json())["member"]
        seen[answer.headers["X-Foundation-Member"]] += 1
    assert seen == {"a-0": 3, "a-1": 3}
    # A failing endpoint is ejected, and the call (idempotent) goes to the other one.
    members["a-1"].mode = "fail"
    for _ in range(4):
        answer = await client.get("/upstream/llm/v1/models")
        assert answer.status == 200 and answer.headers["X-Foundation-Member"] == "a-0"
    assert service.members["a-1"].ejected_until > 0
    # No endpoint ready: a clear 503 at once, counted by the breaker, which opens.
    service.update({"subsets": []})
    for _ in range(3):
        answer = await client.post("/upstream/llm/v1/chat/completions", data=b"{}")
        assert answer.status == 503
        assert "no ready endpoint of service model-server for upstream llm" in await answer.text()
    refused = await client.post("/upstream/llm/v1/chat/completions", data=b"{}")
    assert refused.status == 503 and refused.headers["X-Foundation-Circuit"] == "open"
    await client.close()


def test_endpoints_ports_are_chosen_by_number_or_by_name() -> None:
    both = {
        "subsets": [
            {
                "addresses": [{"ip": "10.0.0.1", "targetRef": {"name": "m-0"}}],
                "ports": [{"name": "metrics", "port": 9090}, {"name": "http", "port": 8000}],
            }
        ]
    }
    assert ready_members(both) == {"m-0": "10.0.0.1:8000"}
    assert ready_members(both, 9090) == {"m-0": "10.0.0.1:9090"}
    assert ready_members(both, 1234) == {}


def test_an_upstream_is_either_a_url_or_a_service() -> None:
    with pytest.raises(ValueError, match="upstream llm: set either url or service"):
        SidecarConfig.model_validate({"upstreams": [{"name": "llm"}]})
    with pytest.raises(ValueError, match="set either url or service"):
        SidecarConfig.model_validate(
            {"upstreams": [{"name": "llm", "url": "http://x", "service": {"name": "s"}}]}
        )


class SliceApi:
    """The light client's surface, serving EndpointSlices of one API version as a watch would:
    a listing, then the events the test queues."""

    def __init__(self, served: str | None) -> None:
        self.served = served
        self.paths: list[tuple[str, object]] = []
        self.events: asyncio.Queue = asyncio.Queue()
        self.slices: list[dict] = []

    async def get(self, path: str) -> dict:
        from foundation_common.rest import ApiError

        if self.served is None or path != f"/apis/{self.served}":
            raise ApiError(404, "not served")
        return {}

    async def list_and_watch(self, path: str, params: object, timeout_seconds: int = 0):
        self.paths.append((path, params))
        yield "SYNC", {"items": list(self.slices), "metadata": {"resourceVersion": "1"}}
        while True:
            yield await self.events.get()


def endpoint_slice(name: str, ready: dict[str, bool | None], port: int = 8080) -> dict:
    endpoints = []
    for i, (pod, is_ready) in enumerate(ready.items()):
        conditions = {} if is_ready is None else {"ready": is_ready}
        endpoints.append(
            {
                "addresses": [f"10.1.0.{i + 1}"],
                "conditions": conditions,
                "targetRef": {"kind": "Pod", "name": pod},
            }
        )
    return {
        "metadata": {"name": name},
        "endpoints": endpoints,
        "ports": [{"name": "http", "port": port, "protocol": "TCP"}],
    }


@pytest.mark.parametrize("served", ["discovery.k8s.io/v1", "discovery.k8s.io/v1beta1"])
async def test_members_come_from_endpoint_slices_where_the_api_serves_them(served) -> None:
    api = SliceApi(served)
    api.slices = [endpoint_slice("cap-x-1", {"a-0": True, "a-1": None, "a-2": False})]
    directory = Directory(Discovery(), "team", RestEndpoints(api))
    cap = await directory.get("x", wait=5)
    # Ready and unknown count, not-ready does not.
    assert {m.name: m.address for m in cap.members.values()} == {
        "a-0": "10.1.0.1:8080",
        "a-1": "10.1.0.2:8080",
    }
    assert api.paths == [
        (
            f"/apis/{served}/namespaces/team/endpointslices",
            {"labelSelector": "kubernetes.io/service-name=foundation-cap-x"},
        )
    ]
    # A second slice of the same Service adds its members; a deleted slice takes its own away.
    api.events.put_nowait(("ADDED", endpoint_slice("cap-x-2", {"b-0": True}, port=9090)))
    await until_members(cap, {"a-0", "a-1", "b-0"})
    assert cap.members["b-0"].address == "10.1.0.1:9090"
    api.events.put_nowait(("DELETED", endpoint_slice("cap-x-1", {})))
    await until_members(cap, {"b-0"})
    await directory.close()


async def test_members_come_from_endpoints_where_no_slices_are_served() -> None:
    api = SliceApi(None)
    api.slices = [endpoints({"a-0": "10.0.0.1:8080"})]
    directory = Directory(Discovery(), "team", RestEndpoints(api))
    cap = await directory.get("x", wait=5)
    assert list(cap.members) == ["a-0"]
    assert api.paths == [
        ("/api/v1/namespaces/team/endpoints", {"fieldSelector": "metadata.name=foundation-cap-x"})
    ]
    await directory.close()


async def until_members(cap: Capability, names: set[str]) -> None:
    for _ in range(200):
        if set(cap.members) == names:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"members {set(cap.members)}, not {names}")
