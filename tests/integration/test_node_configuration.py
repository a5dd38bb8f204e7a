"""What a container is given: env, volumes, its service-account token, RBAC-limited API access."""

from __future__ import annotations

import subprocess

from kube import REPO, Kube, configmap, pod, secret, sh
from servers import IN_CLUSTER_CLIENT, python


async def test_env_from_values_fields_configmaps_and_secrets(kube: Kube) -> None:
    await kube.create(configmap("settings", {"mode": "fast", "level": "3"}))
    await kube.create(secret("creds", {"password": b"s3cret"}))
    env = [
        {"name": "GREETING", "value": "hello"},
        {"name": "EXPANDED", "value": "$(GREETING) world"},
        {"name": "MY_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        {"name": "MY_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "MY_NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        {"name": "TIER", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['tier']"}}},
        {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "mode"}}},
        {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "password"}}},
    ]
    script = "env; echo args: $0"
    manifest = pod(
        "env",
        sh(
            "main",
            script,
            env=env,
            envFrom=[{"prefix": "CFG_", "configMapRef": {"name": "settings"}}],
            args=["$(MODE)"],
        ),
        restartPolicy="Never",
    )
    manifest["metadata"]["labels"] = {"tier": "gold"}
    await kube.create(manifest)
    done = await kube.wait_pod("env", lambda p: p["status"].get("phase") == "Succeeded")
    lines = dict(line.split("=", 1) for line in kube.log(done, "main").splitlines() if "=" in line)
    assert lines["GREETING"] == "hello"
    assert lines["EXPANDED"] == "hello world"
    assert lines["MY_IP"] == done["status"]["podIP"]
    assert lines["MY_NAME"] == "env"
    assert lines["MY_NS"] == kube.ns
    assert lines["TIER"] == "gold"
    assert lines["MODE"] == "fast"
    assert lines["PASSWORD"] == "s3cret"
    assert lines["CFG_level"] == "3"
    assert lines["KUBERNETES_SERVICE_HOST"] == "10.244.0.1"
    assert lines["HOSTNAME"] == "env"
    assert "args: fast" in kube.log(done, "main")


async def test_missing_configmap_is_a_config_error_until_it_exists(kube: Kube) -> None:
    env = [{"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "late", "key": "mode"}}}]
    await kube.create(pod("waits", sh("main", "echo mode=$MODE; sleep 600", env=env)))

    def waiting_reason(p: dict) -> str:
        state = (p["status"].get("containerStatuses") or [{}])[0].get("state", {})
        return state.get("waiting", {}).get("reason", "")

    blocked = await kube.wait_pod(
        "waits", lambda p: waiting_reason(p) == "CreateContainerConfigError"
    )
    message = blocked["status"]["containerStatuses"][0]["state"]["waiting"]["message"]
    assert 'configmap "late" not found' in message
    await kube.create(configmap("late", {"mode": "now"}))
    running = await kube.wait_running("waits")
    await kube.wait(lambda: "mode=now" in kube.log(running, "main"), what="the container's output")


async def test_volumes_configmap_secret_downward_api_and_empty_dir(kube: Kube) -> None:
    await kube.create(configmap("files", {"app.conf": "port=1\n", "other": "x"}))
    await kube.create(secret("keys", {"key.pem": b"PEM"}))
    mounts = [
        {"name": "conf", "mountPath": "/etc/app", "readOnly": True},
        {"name": "keys", "mountPath": "/etc/keys"},
        {"name": "info", "mountPath": "/etc/podinfo"},
        {"name": "scratch", "mountPath": "/scratch"},
        {"name": "keys", "mountPath": "/scratch/only-the-key.pem", "subPath": "key.pem"},
    ]
    script = (
        "cat /etc/app/renamed.conf; cat /etc/keys/key.pem; echo; cat /etc/podinfo/labels; "
        "echo; ls /etc/app; touch /etc/app/nope 2>/dev/null || echo read-only; "
        "cat /scratch/from-init; cat /scratch/only-the-key.pem; echo"
    )
    manifest = pod(
        "vols",
        sh("main", script, volumeMounts=mounts),
        initContainers=[
            sh(
                "init",
                "echo shared > /scratch/from-init",
                volumeMounts=[{"name": "scratch", "mountPath": "/scratch"}],
            )
        ],
        restartPolicy="Never",
        volumes=[
            {
                "name": "conf",
                "configMap": {
                    "name": "files",
                    "items": [{"key": "app.conf", "path": "renamed.conf"}],
                },
            },
            {"name": "keys", "secret": {"secretName": "keys"}},
            {
                "name": "info",
                "downwardAPI": {
                    "items": [{"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]
                },
            },
            {"name": "scratch", "emptyDir": {}},
        ],
    )
    manifest["metadata"]["labels"] = {"app": "vols"}
    await kube.create(manifest)
    done = await kube.wait_pod("vols", lambda p: p["status"].get("phase") == "Succeeded")
    assert kube.log(done, "main").splitlines() == [
        "port=1",
        "PEM",
        'app="vols"',
        "renamed.conf",
        "read-only",
        "shared",
        "PEM",
    ]


async def test_in_cluster_client_uses_its_token_and_rbac_limits_it(kube: Kube) -> None:
    await kube.create(
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "reader"}}
    )
    await kube.create(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": "configmap-reader"},
            "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"]}],
        }
    )
    await kube.create(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "reader"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "Role",
                "name": "configmap-reader",
            },
            "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": kube.ns}],
        }
    )
    await kube.create(configmap("visible", {"a": "b"}))
    await kube.create(
        pod(
            "client",
            python("list", IN_CLUSTER_CLIENT),
            serviceAccountName="reader",
            restartPolicy="Never",
        )
    )
    done = await kube.wait_pod(
        "client", lambda p: p["status"].get("phase") in ("Succeeded", "Failed")
    )
    output = kube.log(done, "list")
    assert done["status"]["phase"] == "Succeeded", output
    assert "configmaps: kube-root-ca.crt,visible" in output
    assert "secrets: denied 403" in output


async def test_kubectl_logs_reads_the_container_log_through_the_api(kube: Kube) -> None:
    await kube.create(
        pod("talker", sh("main", "echo line-one; echo line-two"), restartPolicy="Never")
    )
    await kube.wait_pod("talker", lambda p: p["status"].get("phase") == "Succeeded")
    out = subprocess.run(
        [str(REPO / "e2e/local/kubectl"), "-n", kube.ns, "logs", "talker", "--tail=1"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out == "line-two\n"


async def test_a_restricted_container_runs_as_its_user_with_fs_group_and_a_read_only_root(
    kube: Kube,
) -> None:
    script = (
        "id; touch /data/ok && echo wrote-volume; stat -c 'volume-group=%g mode=%a' /data; "
        "touch /etc/nope 2>/dev/null || echo root-refused; "
        f"touch {REPO}/nope 2>/dev/null || echo repo-refused"
    )
    manifest = pod(
        "restricted",
        sh(
            "main",
            script,
            securityContext={"readOnlyRootFilesystem": True, "allowPrivilegeEscalation": False},
            volumeMounts=[{"name": "data", "mountPath": "/data"}],
        ),
        restartPolicy="Never",
        securityContext={"runAsUser": 1234, "runAsGroup": 2345, "fsGroup": 3456},
        volumes=[{"name": "data", "emptyDir": {}}],
    )
    await kube.create(manifest)
    done = await kube.wait_pod("restricted", lambda p: p["status"].get("phase") == "Succeeded")
    out = kube.log(done, "main")
    # The process's own ids, the fsGroup among its groups; the volume is the group's.
    assert "uid=1234 gid=2345 groups=2345,3456" in out
    assert "wrote-volume" in out and "volume-group=3456 mode=2777" in out
    # Outside its volumes nothing is writable: not the root, not another mount (the repo).
    assert "root-refused" in out and "repo-refused" in out
    assert not (REPO / "nope").exists()
