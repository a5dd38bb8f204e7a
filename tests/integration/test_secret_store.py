"""persistence.store Secret (issue 26): state and task records, inputs and results included,
in the member's Secret, which the built-in `view` role cannot read, where it reads the
ConfigMap store's. (The thousand increments through kills run on this store too:
test_agent_durability.)"""

from __future__ import annotations

import base64
import json
import ssl

import httpx
import pytest
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException
from test_access import account, bind

from kube import Kube, phase

pytestmark = pytest.mark.usefixtures("operator")


async def test_the_secret_store_keeps_tasks_out_of_the_view_roles_reach(kube: Kube) -> None:
    for name, store in (("open", "ConfigMap"), ("sealed", "Secret")):
        await kube.create_agent(
            name, agent="foundation_agent.agents:TaskAgent", persistence={"store": store}
        )
    for name in ("open", "sealed"):
        await kube.wait_agent(name, lambda a: phase(a) == "Running", timeout=90)
    async with await kube.member_client(timeout=30) as http:
        for name in ("open", "sealed"):
            ip = (await kube.pod(f"{name}-0"))["status"]["podIP"]
            task = {"id": "secret-talk", "action": "echo", "input": {"said": "the password is 42"}}
            assert (await http.post(f"http://{ip}:8080/v1/tasks", json=task)).status_code == 202
            done = (await http.get(f"http://{ip}:8080/v1/tasks/secret-talk?wait=30")).json()
            assert done["result"] == {"said": "the password is 42"}
    # The Secret holds the records (the result among them); no ConfigMap does.
    sealed = await kube.core.read_namespaced_secret("sealed-0-state", kube.ns)
    assert sealed.type == "Opaque" and sealed.metadata.owner_references[0].name == "sealed"
    records = json.loads(base64.b64decode(sealed.data["tasks.json"]))
    assert records["secret-talk"]["result"] == {"said": "the password is 42"}
    with pytest.raises(ApiException) as none:
        await kube.core.read_namespaced_config_map("sealed-0-state", kube.ns)
    assert none.value.status == 404
    # Someone with only `view` reads the ConfigMap store's records, not the Secret store's.
    await account(kube, "onlooker")
    await bind(kube, "onlooker", "view")
    answer = await kube.core.create_namespaced_service_account_token(
        "onlooker",
        kube.ns,
        {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {}},
    )  # for the API server's own audience
    bearer = {"Authorization": f"Bearer {answer.status.token}"}
    host = kube.api.configuration.host
    ca = kube.api.configuration.ssl_ca_cert
    async with httpx.AsyncClient(
        verify=ssl.create_default_context(cafile=ca), headers=bearer
    ) as api:
        base = f"{host}/api/v1/namespaces/{kube.ns}"
        seen = await api.get(f"{base}/configmaps/open-0-state")
        assert seen.status_code == 200 and "the password is 42" in seen.text
        hidden = await api.get(f"{base}/secrets/sealed-0-state")
        assert hidden.status_code == 403
    # The member's account may read and change its own Secret, and no other.
    rules = (
        await client.RbacAuthorizationV1Api(kube.api).read_namespaced_role(
            "foundation-agent-sealed", kube.ns
        )
    ).rules
    secret_rules = [r for r in rules if "secrets" in (r.resources or [])]
    assert [(r.resource_names, sorted(r.verbs)) for r in secret_rules] == [
        (["sealed-0-state"], ["get", "patch", "update"])
    ]
