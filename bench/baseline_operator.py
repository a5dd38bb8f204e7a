"""The benchmark's baseline: a minimal kopf operator, one pod per object, default settings.

    kopf run bench/baseline_operator.py --standalone --namespace NS

Each BaselineAgent gets one pod shaped like a Foundation member (same command and probes),
created from an on.create handler as kopf's documentation shows.
"""

from __future__ import annotations

from typing import Any

import kopf
from kubernetes_asyncio import client, config


@kopf.on.startup()
async def connect(memo: kopf.Memo, **_: Any) -> None:
    await config.load_kube_config()
    memo.core = client.CoreV1Api(client.ApiClient())


@kopf.on.create("bench.foundation.dev", "v1", "baselineagents")
async def create(spec: dict, name: str, namespace: str, memo: kopf.Memo, **_: Any) -> None:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": f"{name}-0", "labels": {"bench": "baseline"}},
        "spec": {
            "containers": [
                {
                    "name": "agent",
                    "image": "foundation-agent:dev",
                    "command": spec["command"],
                    "ports": [{"name": "http", "containerPort": 8080}],
                    "readinessProbe": {
                        "httpGet": {"path": "/readyz", "port": "http"},
                        "periodSeconds": 2,
                    },
                }
            ],
            # The hollow node (bench/agents_at_scale.py --hollow), when the object asks for it.
            **{k: spec[k] for k in ("nodeSelector", "tolerations") if k in spec},
        },
    }
    kopf.adopt(pod)
    await memo.core.create_namespaced_pod(namespace, pod)
