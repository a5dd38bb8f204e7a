"""The hollow node: pods that choose it are reported Running and Ready without a process;
every other pod still runs on the real node, in the same cluster."""

from __future__ import annotations

import ipaddress

from kube import HOLLOW, Kube, container_status, is_ready, member_pids, pod, sh


async def test_a_hollow_pod_runs_without_a_process_and_goes_at_once(kube: Kube) -> None:
    await kube.create(
        pod(
            "hollow",
            sh("main", "exit 3"),  # would fail on the real node
            initContainers=[sh("init", "exit 1")],
            **HOLLOW,
        )
    )
    await kube.create(pod("real", sh("main", "sleep 3600")))
    hollow = await kube.wait_running("hollow")
    real = await kube.wait_running("real")
    assert hollow["spec"]["nodeName"] == "foundation-hollow-node"
    assert real["spec"]["nodeName"] == "foundation-local-node", "no toleration: the real node"
    assert ipaddress.ip_address(hollow["status"]["podIP"]) in ipaddress.ip_network("198.18.0.0/15")
    main = container_status(hollow, "main")
    assert main["state"].get("running") and main["ready"] and main["restartCount"] == 0
    assert hollow["status"]["initContainerStatuses"][0]["state"]["terminated"]["exitCode"] == 0
    assert member_pids(kube.ns, "hollow") == []
    assert not kube.kubectl("get", "pod", "hollow", "-o", "jsonpath={.status.message}")

    await kube.delete_pod("hollow")  # 30 s grace, but nothing to stop
    await kube.wait_gone("hollow", timeout=5)


async def test_hollow_restarts_are_reported_as_asked(kube: Kube) -> None:
    created = pod("crashy", sh("main", "true"), **HOLLOW)
    created["metadata"]["annotations"] = {"foundation.dev/hollow-restarts": "1"}
    await kube.create(created)
    await kube.wait_pod("crashy", lambda p: container_status(p, "main").get("restartCount") == 1)
    kube.kubectl(
        "annotate",
        "pod",
        "crashy",
        "--overwrite",
        "foundation.dev/hollow-restarts=3",
        "foundation.dev/hollow-exit-code=137",
    )
    after = await kube.wait_pod(
        "crashy", lambda p: container_status(p, "main").get("restartCount") == 3
    )
    main = container_status(after, "main")
    assert main["lastState"]["terminated"]["exitCode"] == 137
    assert is_ready(after)


async def test_an_agent_can_run_on_the_hollow_node(kube: Kube, operator: object) -> None:
    await kube.create_agent(
        "hollow-agent",
        replicas=2,
        podTemplate=HOLLOW,
        persistence={"store": "None"},
    )
    agent = await kube.wait_agent(
        "hollow-agent", lambda a: (a.get("status") or {}).get("ready") == "2/2", 60, "2/2 Ready"
    )
    assert agent["status"]["phase"] == "Running"
    members = await kube.members("hollow-agent")
    assert {m["spec"]["nodeName"] for m in members.values()} == {"foundation-hollow-node"}
    assert all(member_pids(kube.ns, name) == [] for name in members)
