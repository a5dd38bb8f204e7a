"""The operator's API client: the kinds it manages, as plain dicts, every request counted.

Calls go through `foundation_common.kube.call` (checked statuses, no model building); this
module adds the operator's per-request metric (foundation_operator_api_requests_total).
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

from kubernetes_asyncio import client

from foundation_common.kube import MERGE, ApiException, Obj, connect, message_of, status_of
from foundation_common.kube import call as checked_call
from foundation_common.resources import Resource
from foundation_operator import metrics

__all__ = ["MERGE", "ApiException", "Kube", "Obj", "call", "connect", "message_of", "status_of"]


async def call(request: Awaitable[Any], verb: str, kind: str) -> Obj:
    """`foundation_common.kube.call`, counted by verb, kind and status."""

    def count(code: int) -> None:
        metrics.API_REQUESTS.labels(verb=verb, kind=kind, code=str(code)).inc()

    return await checked_call(request, count)


class Kube:
    """Typed enough for the operator: create, read, patch and delete the kinds it manages."""

    def __init__(self, api: client.ApiClient) -> None:
        self.api = api
        self.core = client.CoreV1Api(api)
        self.rbac = client.RbacAuthorizationV1Api(api)
        self.custom = client.CustomObjectsApi(api)

    def _core_kind(self, kind: str) -> tuple[Any, Any, Any, Any]:
        """(create, read, patch, delete) namespaced functions for a kind."""
        table = {
            "Pod": ("pod", self.core),
            "Service": ("service", self.core),
            "ServiceAccount": ("service_account", self.core),
            "ConfigMap": ("config_map", self.core),
            "PersistentVolumeClaim": ("persistent_volume_claim", self.core),
            "Event": ("event", self.core),
            "Role": ("role", self.rbac),
            "RoleBinding": ("role_binding", self.rbac),
        }
        name, api = table[kind]
        return (
            getattr(api, f"create_namespaced_{name}"),
            getattr(api, f"read_namespaced_{name}"),
            getattr(api, f"patch_namespaced_{name}"),
            getattr(api, f"delete_namespaced_{name}"),
        )

    async def create(self, obj: Obj) -> Obj:
        create, _, _, _ = self._core_kind(obj["kind"])
        return await call(
            create(obj["metadata"]["namespace"], obj, _preload_content=False), "create", obj["kind"]
        )

    async def read(self, kind: str, namespace: str, name: str) -> Obj | None:
        _, read, _, _ = self._core_kind(kind)
        try:
            return await call(read(name, namespace, _preload_content=False), "get", kind)
        except ApiException as exc:
            if status_of(exc) == 404:
                return None
            raise

    async def list(self, kind: str, namespace: str, label_selector: str) -> list[Obj]:
        table = {
            "ConfigMap": self.core.list_namespaced_config_map,
            "PersistentVolumeClaim": self.core.list_namespaced_persistent_volume_claim,
        }
        answer = await call(
            table[kind](namespace, label_selector=label_selector, _preload_content=False),
            "list",
            kind,
        )
        items = answer.get("items") or []
        for item in items:  # list items carry no kind of their own
            item.setdefault("kind", kind)
        return items

    async def patch(self, kind: str, namespace: str, name: str, patch: Obj) -> Obj:
        _, _, patch_fn, _ = self._core_kind(kind)
        return await call(
            patch_fn(name, namespace, patch, _content_type=MERGE, _preload_content=False),
            "patch",
            kind,
        )

    async def delete(
        self,
        kind: str,
        namespace: str,
        name: str,
        *,
        uid: str | None = None,
        resource_version: str | None = None,
        grace: int | None = None,
    ) -> bool:
        """Delete; False if it is gone, or the preconditions (uid, resourceVersion) fail."""
        _, _, _, delete = self._core_kind(kind)
        body: Obj = {}
        preconditions = {
            k: v for k, v in (("uid", uid), ("resourceVersion", resource_version)) if v
        }
        if preconditions:
            body["preconditions"] = preconditions
        if grace is not None:
            body["gracePeriodSeconds"] = grace
        try:
            await call(delete(name, namespace, body=body, _preload_content=False), "delete", kind)
            return True
        except ApiException as exc:
            if status_of(exc) in (404, 409):
                return False
            raise

    async def delete_custom(
        self, resource: Resource, namespace: str, name: str, *, uid: str | None = None
    ) -> bool:
        """Delete one of Foundation's custom objects; False if it is gone (or not that uid)."""
        body: Obj = {"preconditions": {"uid": uid}} if uid else {}
        try:
            await call(
                self.custom.delete_namespaced_custom_object(
                    resource.group,
                    resource.version,
                    namespace,
                    resource.plural,
                    name,
                    body=body,
                    _preload_content=False,
                ),
                "delete",
                resource.kind,
            )
            return True
        except ApiException as exc:
            if status_of(exc) in (404, 409):
                return False
            raise

    async def patch_custom(
        self, resource: Resource, namespace: str, name: str, patch: Obj, *, status: bool = False
    ) -> Obj:
        """Merge-patch one of Foundation's custom objects, or its status subresource."""
        fn = (
            self.custom.patch_namespaced_custom_object_status
            if status
            else self.custom.patch_namespaced_custom_object
        )
        return await call(
            fn(
                resource.group,
                resource.version,
                namespace,
                resource.plural,
                name,
                patch,
                _content_type=MERGE,
                _preload_content=False,
            ),
            "patch",
            f"{resource.kind}/status" if status else resource.kind,
        )
