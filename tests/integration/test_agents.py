"""The real operator supervising Agents on the local cluster, whose members are real processes."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import time

import httpx
import pytest

from kube import REPO, RESTART_BACKOFF, Kube, agent_condition, is_ready, phase

pytestmark = pytest.mark.usefixtures("operator")
LABEL = "foundation.dev/agent"


def running(n: int):
    return lambda a: phase(a) == "Running" and a["status"].get("ready") == f"{n}/{n}"


async def test_agent_runs_members_with_services_rbac_and_status(kube: Kube) -> None:
    await kube.create_agent("counter", replicas=2, capabilities=["count"])
    agent = await kube.wait_agent("counter", running(2), what="counter Running 2/2")
    members = await kube.members("counter")
    assert sorted(members) == ["counter-0", "counter-1"]
    for pod in members.values():
        owner = pod["metadata"]["ownerReferences"][0]
        assert (owner["kind"], owner["name"], owner["controller"]) == ("Agent", "counter", True)
        assert pod["metadata"]["labels"]["capability.foundation.dev/count"] == "true"
    assert await kube.names("Service") == ["counter", "foundation-cap-count"]
    assert await kube.names("ServiceAccount", f"{LABEL}=counter") == ["counter"]
    assert await kube.names("Role", f"{LABEL}=counter") == ["foundation-agent-counter"]
    assert await kube.names("RoleBinding", f"{LABEL}=counter") == ["foundation-agent-counter"]
    status = agent["status"]
    assert status["observedGeneration"] == agent["metadata"]["generation"]
    assert [m["name"] for m in status["members"]] == ["counter-0", "counter-1"]
    assert agent_condition(agent, "Ready")["reason"] == "AllMembersReady"
    assert agent_condition(agent, "Supervised")["status"] == "True"
    # No finalizer: the garbage collector removes members and objects (retainOnDelete aside).
    assert "foundation.dev/supervisor" not in (agent["metadata"].get("finalizers") or [])

    async def cap_endpoints() -> int:
        endpoints = await kube.get("Endpoints", "foundation-cap-count") or {}
        return sum(len(s.get("addresses") or []) for s in endpoints.get("subsets") or [])

    await kube.wait(lambda: _eq(cap_endpoints(), 2), what="both members behind the capability")
    assert (await kube.get("Service", "counter"))["spec"]["clusterIP"] == "None"
    async with httpx.AsyncClient() as http:
        scraped = (await http.get("http://127.0.0.1:19090/metrics")).text
    assert 'foundation_operator_agents{phase="Running"}' in scraped
    assert 'foundation_operator_reconciliations_total{resource="agent",result="ok"}' in scraped
    assert 'foundation_operator_api_requests_total{code="201",kind="Pod",verb="create"}' in scraped
    assert 'kind="Agent/status",verb="patch"' in scraped
    listing = subprocess.run(
        [str(REPO / "e2e/local/kubectl"), "-n", kube.ns, "get", "ag"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert listing.returncode == 0, listing.stderr
    printed = listing.stdout
    assert printed.split("\n")[0].split() == [
        "NAME",
        "PHASE",
        "READY",
        "RESTARTS",
        "STATE",
        "VERSION",
        "AGE",
    ]
    assert printed.split("\n")[1].split()[:4] == ["counter", "Running", "2/2", "0"]


async def _eq(value, expected) -> bool:
    return await value == expected


async def test_member_that_exits_fails_the_agent_by_restart_intensity(kube: Kube) -> None:
    await kube.create_agent("crasher", command=["sh", "-c", "echo starting; exit 1"])
    failed = await kube.wait_agent(
        "crasher", lambda a: phase(a) == "Failed", timeout=30, what="crasher Failed"
    )
    supervised = agent_condition(failed, "Supervised")
    assert supervised["status"] == "False"
    assert supervised["reason"] == "RestartIntensityExceeded"
    assert "member crasher-0" in supervised["message"]
    assert "last exit code 1" in supervised["message"]
    assert failed["status"]["restarts"] >= 4
    # onExhausted defaults to Stop: the members go and are not recreated.
    await kube.wait(lambda: _eq(kube.names("Pod", f"{LABEL}=crasher"), []), what="members stopped")
    events = await kube.core.list_namespaced_event(
        kube.ns, field_selector="involvedObject.name=crasher"
    )
    assert any(e.reason == "RestartIntensityExceeded" for e in events.items)
    await asyncio.sleep(1)
    assert await kube.names("Pod", f"{LABEL}=crasher") == []

    # The restartedAt annotation starts it again: members come back (and fail again).
    await kube.patch_agent(
        "crasher",
        {"metadata": {"annotations": {"foundation.dev/restartedAt": "2026-11-24T00:00:00Z"}}},
    )
    await kube.wait_agent(
        "crasher",
        lambda a: a["status"].get("observedRestartedAt") == "2026-11-24T00:00:00Z",
        what="restart acknowledged",
    )
    await kube.wait(
        lambda: _nonempty(kube.names("Pod", f"{LABEL}=crasher")), what="members recreated"
    )


async def _nonempty(value) -> bool:
    return bool(await value)


async def test_deleted_member_comes_back_and_counts_as_a_restart(kube: Kube) -> None:
    await kube.create_agent("solo", replicas=2)
    await kube.wait_agent("solo", running(2))
    before = await kube.members("solo")
    await kube.delete_pod("solo-0")

    async def replaced() -> bool:
        now = await kube.members("solo")
        pod = now.get("solo-0")
        return bool(pod and pod["metadata"]["uid"] != before["solo-0"]["metadata"]["uid"])

    await kube.wait(replaced, what="solo-0 recreated")
    after = await kube.members("solo")
    assert after["solo-1"]["metadata"]["uid"] == before["solo-1"]["metadata"]["uid"]  # OneForOne
    agent = await kube.wait_agent(
        "solo",
        lambda a: a["status"].get("restarts") == 1 and running(2)(a),
        what="one restart, Running again",
    )
    assert agent["status"]["phase"] == "Running"


async def test_one_for_all_restarts_every_sibling(kube: Kube) -> None:
    await kube.create_agent("trio", replicas=3, supervision={"strategy": "OneForAll"})
    await kube.wait_agent("trio", running(3))
    before = {n: p["metadata"]["uid"] for n, p in (await kube.members("trio")).items()}
    await kube.delete_pod("trio-1")

    async def all_replaced() -> bool:
        now = await kube.members("trio")
        live = {
            n: p["metadata"]["uid"]
            for n, p in now.items()
            if not p["metadata"].get("deletionTimestamp")
        }
        return len(live) == 3 and all(live[n] != before[n] for n in before if n in live)

    await kube.wait(all_replaced, what="all three members replaced")
    await kube.wait_agent("trio", running(3))


async def test_rest_for_one_restarts_the_member_and_those_after_it(kube: Kube) -> None:
    await kube.create_agent("chain", replicas=3, supervision={"strategy": "RestForOne"})
    await kube.wait_agent("chain", running(3))
    before = {n: p["metadata"]["uid"] for n, p in (await kube.members("chain")).items()}
    await kube.delete_pod("chain-1")

    async def rest_replaced() -> bool:
        now = {
            n: p["metadata"]["uid"]
            for n, p in (await kube.members("chain")).items()
            if not p["metadata"].get("deletionTimestamp")
        }
        return (
            len(now) == 3
            and now["chain-1"] != before["chain-1"]
            and now["chain-2"] != before["chain-2"]
        )

    await kube.wait(rest_replaced, what="chain-1 and chain-2 replaced")
    agent = await kube.wait_agent("chain", running(3))
    after = await kube.members("chain")
    assert after["chain-0"]["metadata"]["uid"] == before["chain-0"]
    # One failure; the sibling stopped with it is not a failure of its own.
    assert agent["status"]["restarts"] == 1


async def test_exhausted_agent_keeps_members_for_debugging_and_logs_it_as_json(
    kube: Kube,
) -> None:
    await kube.create_agent(
        "keeper",
        command=["sh", "-c", "echo starting; exit 3"],
        supervision={"onExhausted": "Keep"},
    )
    failed = await kube.wait_agent("keeper", lambda a: phase(a) == "Failed", timeout=30)
    assert agent_condition(failed, "Supervised")["reason"] == "RestartIntensityExceeded"
    assert "last exit code 3" in agent_condition(failed, "Supervised")["message"]
    await asyncio.sleep(1.5)
    pods = await kube.members("keeper")
    assert list(pods) == ["keeper-0"], "Keep leaves the member in place"
    assert not pods["keeper-0"]["metadata"].get("deletionTimestamp")

    # Every operator log line about this Agent is JSON carrying its namespace and name.
    log = REPO / ".local-cluster/logs/operator-tests-operator.log"
    about = [json.loads(line) for line in log.read_text().splitlines() if kube.ns in line]
    assert about, "the exhaustion is logged"
    for entry in about:
        assert entry.get("namespace") == kube.ns, entry
        assert entry.get("agent") == "keeper" or entry.get("pod", "").startswith("keeper-"), entry
    assert any("restarted" in e["message"] for e in about)


async def test_scaling_up_and_down_highest_ordinals_first(kube: Kube) -> None:
    await kube.create_agent("scaled", replicas=3)
    await kube.wait_agent("scaled", running(3))
    await kube.patch_agent("scaled", {"spec": {"replicas": 1}})
    await kube.wait(
        lambda: _eq(kube.names("Pod", f"{LABEL}=scaled"), ["scaled-0"]), what="scaled to 1"
    )
    await kube.patch_agent("scaled", {"spec": {"replicas": 2}})
    await kube.wait_agent("scaled", running(2))
    assert await kube.names("Pod", f"{LABEL}=scaled") == ["scaled-0", "scaled-1"]


async def test_kubectl_scale_and_an_autoscaler_scale_an_agent_through_its_scale_subresource(
    kube: Kube,
) -> None:
    await kube.create_agent("elastic", replicas=1, sidecar={"enabled": False})
    await kube.wait_agent("elastic", running(1))
    await asyncio.to_thread(kube.kubectl, "scale", "agent/elastic", "--replicas=3")
    await kube.wait_agent("elastic", running(3), what="elastic scaled to 3 by kubectl")
    scale = json.loads(
        await asyncio.to_thread(
            kube.kubectl,
            "get",
            "--raw",
            f"/apis/foundation.dev/v1alpha1/namespaces/{kube.ns}/agents/elastic/scale",
        )
    )
    assert scale["spec"]["replicas"] == 3
    assert scale["status"] == {"replicas": 3, "selector": "foundation.dev/agent=elastic"}
    # A HorizontalPodAutoscaler below its minimum scales the Agent up (no metrics are needed
    # for that), and the operator keeps what it set: nothing fights it.
    await asyncio.to_thread(kube.kubectl, "scale", "agent/elastic", "--replicas=1")
    await kube.wait_agent("elastic", lambda a: a["status"].get("replicas") == 1, what="back to 1")
    hpa = {
        "apiVersion": "autoscaling/v1",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "elastic"},
        "spec": {
            "scaleTargetRef": {
                "apiVersion": "foundation.dev/v1alpha1",
                "kind": "Agent",
                "name": "elastic",
            },
            "minReplicas": 2,
            "maxReplicas": 4,
            "targetCPUUtilizationPercentage": 80,
        },
    }
    await asyncio.to_thread(kube.kubectl, "apply", "-f", "-", stdin=json.dumps(hpa))
    agent = await kube.wait_agent("elastic", running(2), timeout=90, what="scaled to 2 by the HPA")
    assert agent["spec"]["replicas"] == 2


async def test_owned_objects_deleted_or_changed_by_hand_are_made_right_within_seconds(
    kube: Kube,
) -> None:
    await kube.create_agent("owner", capabilities=["drift"], sidecar={"enabled": False})
    await kube.wait_agent("owner", running(1))
    role = "foundation-agent-owner"
    before = {
        "role": (await kube.rbac.read_namespaced_role(role, kube.ns)).to_dict()["rules"],
        "selector": (await kube.get("Service", "owner"))["spec"]["selector"],
    }
    started = time.monotonic()
    for args in (
        ("delete", "serviceaccount", "owner"),
        ("delete", "rolebinding", role),
        ("delete", "service", "owner", "foundation-cap-drift"),
        ("patch", "role", role, "--type=merge", "-p", '{"rules": []}'),
    ):
        await asyncio.to_thread(kube.kubectl, *args)

    async def repaired() -> bool:
        service = await kube.get("Service", "owner")
        capability = await kube.get("Service", "foundation-cap-drift")
        accounts = await kube.names("ServiceAccount", f"{LABEL}=owner")
        bindings = await kube.names("RoleBinding", f"{LABEL}=owner")
        rules = (await kube.rbac.read_namespaced_role(role, kube.ns)).to_dict()["rules"]
        return bool(
            service
            and service["spec"]["selector"] == before["selector"]
            and capability
            and accounts == ["owner"]
            and bindings == [role]
            and rules == before["role"]
        )

    await kube.wait(repaired, timeout=30, what="the Agent's objects made right")
    took = time.monotonic() - started
    assert took < 10, f"repaired in {took:.1f} s"
    # A change that leaves what the operator manages alone is left alone.
    await asyncio.to_thread(kube.kubectl, "label", "role", role, "team=blue")
    labelled = await kube.rbac.read_namespaced_role(role, kube.ns)
    assert labelled.metadata.labels["team"] == "blue"


async def test_deleting_the_agent_leaves_nothing_behind(kube: Kube) -> None:
    await kube.create_agent("first", capabilities=["shared"])
    await kube.create_agent("second", capabilities=["shared"])
    await kube.wait_agent("first", running(1))
    await kube.wait_agent("second", running(1))
    await kube.delete_agent("first")
    await kube.wait(lambda: _eq(kube.agent("first"), None), what="first gone")
    for kind in ("Pod", "Service", "ServiceAccount", "Role", "RoleBinding", "ConfigMap"):
        await kube.wait(
            lambda k=kind: _eq(kube.names(k, f"{LABEL}=first"), []), what=f"{kind}s of first gone"
        )
    # The shared capability Service stays while "second" needs it...
    assert "foundation-cap-shared" in await kube.names("Service")
    await kube.delete_agent("second")
    # ...and goes with the last Agent that has the capability.
    await kube.wait(lambda: _eq(kube.names("Service"), []), what="all services gone")
    # The collector deletes members gracefully: they stop, then go.
    await kube.wait(lambda: _eq(kube.names("Pod"), []), what="all members gone")


async def test_invalid_specs_are_rejected_or_flagged_and_create_nothing(kube: Kube) -> None:
    from kubernetes_asyncio.client.exceptions import ApiException

    with pytest.raises(ApiException) as rejected:
        await kube.create_agent("bad", replicas=-1, supervision={"strategy": "Sometimes"})
    assert rejected.value.status == 422
    assert "spec.replicas" in rejected.value.body
    assert "spec.supervision.strategy" in rejected.value.body

    await kube.create_agent("lonely", serviceAccountName="does-not-exist")
    flagged = await kube.wait_agent(
        "lonely", lambda a: agent_condition(a, "Ready").get("reason") == "InvalidSpec"
    )
    assert (
        'ServiceAccount "does-not-exist" does not exist'
        in agent_condition(flagged, "Ready")["message"]
    )
    assert phase(flagged) == "Failed"
    assert await kube.names("Pod") == []
    assert await kube.names("Service") == []
    assert await kube.names("Role") == []


async def test_an_idle_agent_sees_no_writes(kube: Kube) -> None:
    await kube.create_agent("idle", replicas=2)
    await kube.wait_agent("idle", running(2))
    await asyncio.sleep(2)  # let the last probe results settle

    async def versions() -> dict[str, str]:
        agent = await kube.agent("idle")
        pods = await kube.members("idle")
        return {
            "agent": agent["metadata"]["resourceVersion"],
            **{n: p["metadata"]["resourceVersion"] for n, p in pods.items()},
        }

    first = await versions()
    await asyncio.sleep(6)
    assert await versions() == first


async def test_a_spec_change_rolls_members_one_at_a_time(kube: Kube) -> None:
    await kube.create_agent("rolling", replicas=3, config={"version": 1})
    await kube.wait_agent("rolling", running(3))
    old_hash = next(iter((await kube.members("rolling")).values()))["metadata"]["annotations"][
        "foundation.dev/template-hash"
    ]
    worst_unavailable = 0
    patched = False
    async with asyncio.timeout(90):
        async for pods in kube.watch_members("rolling"):
            if not patched:  # watching from before the change: no state goes unseen
                await kube.patch_agent("rolling", {"spec": {"config": {"version": 2}}})
                patched = True
                continue
            live = [p for p in pods.values() if not p["metadata"].get("deletionTimestamp")]
            ready = [p for p in live if is_ready(p)]
            worst_unavailable = max(worst_unavailable, 3 - len(ready))
            hashes = {p["metadata"]["annotations"]["foundation.dev/template-hash"] for p in live}
            if len(ready) == 3 and old_hash not in hashes:
                break
    assert worst_unavailable == 1, "members must be replaced one at a time"
    await kube.wait_agent("rolling", running(3))


async def test_operator_killed_mid_reconcile_converges_without_duplicates(
    kube: Kube, operator
) -> None:
    await kube.create_agent("survivor", replicas=4, capabilities=["resilient"])
    await kube.wait(lambda: kube.members("survivor"), what="a first member")  # mid-reconcile
    operator.stop(signal.SIGKILL)  # returns once the process is gone
    operator.start()
    agent = await kube.wait_agent("survivor", running(4), what="survivor Running 4/4")
    pods = await kube.members("survivor")
    assert sorted(pods) == [f"survivor-{i}" for i in range(4)]
    assert await kube.names("Service") == ["foundation-cap-resilient", "survivor"]
    service = await kube.core.read_namespaced_service("foundation-cap-resilient", kube.ns)
    assert [o.name for o in service.metadata.owner_references] == ["survivor"]
    assert agent["status"]["restarts"] == 0


async def test_member_account_may_touch_only_its_own_agent_and_state(kube: Kube) -> None:
    from kubernetes_asyncio import client

    await kube.create_agent("private", replicas=2)
    await kube.wait_agent("private", running(2))
    authz = client.AuthorizationV1Api(kube.api)
    user = f"system:serviceaccount:{kube.ns}:private"

    async def allowed(
        verb: str, resource: str, name: str = "", group: str = "", subresource: str = ""
    ) -> bool:
        review = await authz.create_subject_access_review(
            {
                "apiVersion": "authorization.k8s.io/v1",
                "kind": "SubjectAccessReview",
                "spec": {
                    "user": user,
                    "groups": ["system:serviceaccounts"],
                    "resourceAttributes": {
                        "namespace": kube.ns,
                        "verb": verb,
                        "group": group,
                        "resource": resource,
                        "subresource": subresource,
                        "name": name,
                    },
                },
            }
        )
        return bool(review.status.allowed)

    assert await allowed("patch", "agents", "private", "foundation.dev", "status")
    assert await allowed("get", "agents", "private", "foundation.dev")
    assert await allowed("update", "configmaps", "private-1-state")
    assert await allowed("list", "endpoints")
    assert await allowed("watch", "services")
    assert not await allowed("patch", "agents", "other", "foundation.dev", "status")
    assert not await allowed("update", "configmaps", "other-0-state")
    assert not await allowed("update", "configmaps", "private-2-state")  # no such member
    assert not await allowed("list", "secrets")
    assert not await allowed("create", "pods")
    assert not await allowed("delete", "agents", "private", "foundation.dev")


async def test_the_example_agent_runs_with_kubectl_apply(kube: Kube) -> None:
    kube.kubectl_apply(REPO / "examples/agent.yaml")
    agent = await kube.wait_agent("counter", running(2), what="the example Running 2/2")
    assert agent["spec"]["capabilities"] == ["count"]
    assert "foundation-cap-count" in await kube.names("Service")


async def test_with_the_defaults_a_crash_loop_fails_its_agent_within_two_minutes_at_stock_backoff(
    kube: Kube,
) -> None:
    # The node's back-off as a stock kubelet's (10 s, 20 s, 40 s...), for this test only.
    cluster = str(REPO / "e2e/local/cluster")
    subprocess.run([cluster, "up", "--restart-backoff", "10"], check=True, capture_output=True)
    try:
        started = time.monotonic()
        await kube.create_agent("looping", command=["sh", "-c", "echo starting; exit 1"])
        failed = await kube.wait_agent(
            "looping", lambda a: phase(a) == "Failed", timeout=150, what="looping Failed"
        )
        elapsed = time.monotonic() - started
        supervised = agent_condition(failed, "Supervised")
        assert supervised["reason"] == "RestartIntensityExceeded"
        assert "restarted 4 times within 120s (maxRestarts 3)" in supervised["message"]
        assert elapsed < 120, f"Failed after {elapsed:.0f} s"
    finally:
        subprocess.run(
            [cluster, "up", "--restart-backoff", RESTART_BACKOFF], check=True, capture_output=True
        )
