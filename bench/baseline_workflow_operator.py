"""The Workflow benchmark's baseline: a chain of steps driven the idiomatic kopf way.

    kopf run bench/baseline_workflow_operator.py --standalone --namespace NS

No runner: the operator itself advances a BaselineWorkflow one step per handler call. The
handler sends step `status.next` to the member (the same task API and member the Foundation
run uses), waits for its record, and patches `status.next` and the step's result; that status
change is the event that calls the handler for the next step. Task ids are derived from the
object's uid and the step, so a repeated call is harmless.
"""

from __future__ import annotations

from typing import Any

import httpx
import kopf
from kubernetes_asyncio import client, config

GROUP, VERSION, PLURAL = "bench.foundation.dev", "v1", "baselineworkflows"


@kopf.on.startup()
async def connect(memo: kopf.Memo, settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.posting.enabled = False
    await config.load_kube_config()
    memo.custom = client.CustomObjectsApi(client.ApiClient())
    memo.http = httpx.AsyncClient(timeout=30)


@kopf.on.event(GROUP, VERSION, PLURAL)
async def advance(event: dict, memo: kopf.Memo, **_: Any) -> None:
    body = event["object"]
    if event.get("type") == "DELETED":
        return
    spec, status = body["spec"], body.get("status") or {}
    step = int(status.get("next", 0))
    if step >= int(spec["steps"]):
        return
    meta = body["metadata"]
    base = f"http://{spec['member']}/v1/tasks"
    task = f"{meta['uid']}.{step}"
    await memo.http.post(base, json={"id": task, "action": spec["action"]})
    record = (await memo.http.get(f"{base}/{task}", params={"wait": "30"})).json()
    results = dict(status.get("results") or {})
    results[str(step)] = record.get("result")
    await memo.custom.patch_namespaced_custom_object_status(
        GROUP,
        VERSION,
        meta["namespace"],
        PLURAL,
        meta["name"],
        {"status": {"next": step + 1, "results": results}},
        _content_type="application/merge-patch+json",
    )
