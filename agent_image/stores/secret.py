"""The Secret store: the ConfigMap store's document in the member's Secret `<agent>-<i>-state`.

For state and task records (inputs, results, chat histories) that the built-in `view` role,
which reads ConfigMaps, must not: who may read a Secret is a narrower grant (docs/runtime.md,
"who can read what"). The same 1 MiB limit, the same optimistic concurrency; the values are
base64 on the wire, as the Secret API has them. The operator only creates the empty Secret (it
may not read or change Secrets); the member's account may get and patch its own, by name.
"""

from __future__ import annotations

import base64
from typing import Any

from foundation_agent.stores.configmap import ConfigMapStore
from foundation_common.rest import Client


def to_wire(data: dict[str, str]) -> dict[str, str]:
    return {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}


def from_wire(data: dict[str, str] | None) -> dict[str, str]:
    return {k: base64.b64decode(v).decode() for k, v in (data or {}).items()}


class SecretStore(ConfigMapStore):
    kind = "Secret"

    def __init__(self, api: Client, namespace: str, name: str) -> None:
        super().__init__(api, namespace, name)
        self.path = f"/api/v1/namespaces/{namespace}/secrets/{name}"

    async def _call(self, method: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        if body is not None and "data" in body:
            body = {**body, "data": to_wire(body["data"])}
        answer = await super()._call(method, body)
        return {**answer, "data": from_wire(answer.get("data"))}
