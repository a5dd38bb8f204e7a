"""Restart policies, back-off, probes and init containers as a kubelet applies them."""

from __future__ import annotations

import asyncio
import os
import time

from kube import RESTART_BACKOFF, Kube, container_status, pod, sh


async def test_pvc_data_survives_a_crash_and_the_restart_finds_it(kube: Kube) -> None:
    await kube.create(
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": "data"},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": "1Gi"}},
            },
        }
    )
    script = (
        "if [ -f /data/marker ]; then echo found $(cat /data/marker); exit 0; fi; "
        "echo first-run > /data/marker; exit 3"
    )
    await kube.create(
        pod(
            "writer",
            sh("main", script, volumeMounts=[{"name": "data", "mountPath": "/data"}]),
            restartPolicy="OnFailure",
            volumes=[{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}],
        )
    )
    done = await kube.wait_pod(
        "writer", lambda p: p["status"].get("phase") == "Succeeded", what="writer Succeeded"
    )
    status = container_status(done, "main")
    assert status["restartCount"] == 1
    assert status["lastState"]["terminated"]["exitCode"] == 3
    assert "found first-run" in kube.log(done, "main", restart=1)

    # The claim outlives the pod: a new pod reads the same file...
    await kube.delete_pod("writer")
    await kube.wait_gone("writer")
    await kube.create(
        pod(
            "reader",
            sh("main", "cat /data/marker", volumeMounts=[{"name": "data", "mountPath": "/data"}]),
            restartPolicy="Never",
            volumes=[{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}],
        )
    )
    read = await kube.wait_pod("reader", lambda p: p["status"].get("phase") == "Succeeded")
    assert kube.log(read, "main").strip() == "first-run"

    # ...until the claim is deleted: then its volume and directory go.
    claim = await kube.get("PersistentVolumeClaim", "data")
    volume = claim["spec"]["volumeName"]
    path = (await kube.core.read_persistent_volume(volume)).spec.host_path.path
    await kube.delete_pod("reader")
    await kube.wait_gone("reader")
    await kube.core.delete_namespaced_persistent_volume_claim("data", kube.ns)

    async def volume_gone() -> bool:
        volumes = await kube.core.list_persistent_volume()
        return volume not in [v.metadata.name for v in volumes.items]

    await kube.wait(volume_gone, what=f"persistentvolume {volume} deleted")
    await kube.wait(lambda: not os.path.exists(path), what=f"{path} removed")


async def test_crash_loop_backs_off_and_reports_last_exit(kube: Kube) -> None:
    await kube.create(pod("crasher", sh("main", "echo crashing; exit 2")))
    seen_backoff = await kube.wait_pod(
        "crasher",
        lambda p: (
            container_status(p, "main").get("state", {}).get("waiting", {}).get("reason")
            == "CrashLoopBackOff"
        ),
        what="CrashLoopBackOff",
    )
    status = container_status(seen_backoff, "main")
    assert status["lastState"]["terminated"]["exitCode"] == 2
    assert status["lastState"]["terminated"]["reason"] == "Error"
    assert seen_backoff["status"]["phase"] == "Running"

    # Restart 1 comes at once, then back-off base, 2 x base, 4 x base: the gaps double.
    first_seen: dict[int, float] = {}
    deadline = time.monotonic() + 30
    while len(first_seen) < 4 and time.monotonic() < deadline:
        count = container_status(await kube.pod("crasher"), "main").get("restartCount", 0)
        first_seen.setdefault(count, time.monotonic())
        await asyncio.sleep(0.05)
    assert {2, 3, 4} <= set(first_seen), first_seen
    base = float(RESTART_BACKOFF)
    assert first_seen[3] - first_seen[2] >= 1.6 * base, first_seen
    # Against the base, not the gap before: a restart seen late under load lengthens one gap
    # and shortens the next (seen: 0.77 s then 1.07 s for 0.5 s and 1 s). 3 x base still fails
    # a back-off that stopped doubling at 2 x base.
    assert first_seen[4] - first_seen[3] >= 3 * base, first_seen


async def test_never_policy_fails_the_pod_without_restart(kube: Kube) -> None:
    await kube.create(pod("once", sh("main", "exit 7"), restartPolicy="Never"))
    failed = await kube.wait_pod("once", lambda p: p["status"].get("phase") == "Failed")
    status = container_status(failed, "main")
    assert status["restartCount"] == 0
    assert status["state"]["terminated"]["exitCode"] == 7


async def test_liveness_failure_restarts_the_container(kube: Kube) -> None:
    script = "touch /probe/healthy; sleep 2; rm /probe/healthy; sleep 600"
    await kube.create(
        pod(
            "live",
            sh(
                "main",
                script,
                volumeMounts=[{"name": "probe", "mountPath": "/probe"}],
                livenessProbe={
                    "exec": {"command": ["cat", "/probe/healthy"]},
                    "periodSeconds": 1,
                    "failureThreshold": 2,
                },
            ),
            volumes=[{"name": "probe", "emptyDir": {}}],
            terminationGracePeriodSeconds=2,
        )
    )
    restarted = await kube.wait_pod(
        "live",
        lambda p: container_status(p, "main").get("restartCount", 0) >= 1,
        timeout=30,
        what="a liveness restart",
    )
    last = container_status(restarted, "main")["lastState"]["terminated"]
    assert last["exitCode"] == 143  # SIGTERM from the kubelet
    assert last["reason"] == "Error"


async def test_startup_probe_gates_started_and_readiness(kube: Kube) -> None:
    script = "sleep 2; touch /probe/started; sleep 600"
    await kube.create(
        pod(
            "slow",
            sh(
                "main",
                script,
                volumeMounts=[{"name": "probe", "mountPath": "/probe"}],
                startupProbe={
                    "exec": {"command": ["test", "-f", "/probe/started"]},
                    "periodSeconds": 1,
                    "failureThreshold": 30,
                },
            ),
            volumes=[{"name": "probe", "emptyDir": {}}],
        )
    )
    early = await kube.wait_pod(
        "slow", lambda p: "running" in container_status(p, "main").get("state", {})
    )
    assert container_status(early, "main")["started"] is False
    assert container_status(early, "main")["ready"] is False
    ready = await kube.wait_running("slow")
    assert container_status(ready, "main")["started"] is True
    assert container_status(ready, "main")["restartCount"] == 0


async def test_init_containers_run_in_order_before_the_main_ones(kube: Kube) -> None:
    mounts = [{"name": "work", "mountPath": "/work"}]
    await kube.create(
        pod(
            "ordered",
            sh("main", "echo main >> /work/order; cat /work/order", volumeMounts=mounts),
            initContainers=[
                sh("first", "sleep 1; echo first >> /work/order", volumeMounts=mounts),
                sh("second", "echo second >> /work/order", volumeMounts=mounts),
            ],
            restartPolicy="Never",
            volumes=[{"name": "work", "emptyDir": {}}],
        )
    )
    done = await kube.wait_pod("ordered", lambda p: p["status"].get("phase") == "Succeeded")
    assert kube.log(done, "main").split() == ["first", "second", "main"]
    inits = {s["name"]: s for s in done["status"]["initContainerStatuses"]}
    assert inits["first"]["state"]["terminated"]["reason"] == "Completed"
    assert inits["second"]["state"]["terminated"]["exitCode"] == 0


async def test_failed_init_container_with_never_fails_the_pod(kube: Kube) -> None:
    await kube.create(
        pod(
            "blocked",
            sh("main", "echo never"),
            initContainers=[sh("init", "exit 1")],
            restartPolicy="Never",
        )
    )
    failed = await kube.wait_pod("blocked", lambda p: p["status"].get("phase") == "Failed")
    assert container_status(failed, "main")["state"]["waiting"]["reason"] == "PodInitializing"
    assert kube.log(failed, "main") == ""
