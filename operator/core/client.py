"""The operator's API client: the kinds it manages, as plain dicts, every request counted.

Calls are plain REST through `foundation_common.rest` (no generated models: kubernetes_asyncio's
cost the operator about 35 MB and 0.4 s of CPU at its start, and kopf loads them too when they
are importable, see `__main__`); this module adds the paths of the kinds the operator manages
and its per-request metric (foundation_operator_api_requests_total).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from foundation_common import rest
from foundation_common.resources import Resource
from foundation_common.rest import (
    ACCOUNT,
    MERGE,
    ApiError,
    Client,
    Credentials,
    Obj,
    in_cluster_server,
)
from foundation_operator.core import metrics

__all__ = [
    "MERGE",
    "Api",
    "ApiError",
    "Client",
    "Obj",
    "call",
    "connect",
    "kopf_credentials",
    "path_of",
]


# kind -> (API prefix, plural)
PATHS = {
    "Pod": ("/api/v1", "pods"),
    "Service": ("/api/v1", "services"),
    "Endpoints": ("/api/v1", "endpoints"),
    "ServiceAccount": ("/api/v1", "serviceaccounts"),
    "ConfigMap": ("/api/v1", "configmaps"),
    "Secret": ("/api/v1", "secrets"),
    "PersistentVolumeClaim": ("/api/v1", "persistentvolumeclaims"),
    "Event": ("/api/v1", "events"),
    "Role": ("/apis/rbac.authorization.k8s.io/v1", "roles"),
    "RoleBinding": ("/apis/rbac.authorization.k8s.io/v1", "rolebindings"),
    "ClusterRoleBinding": ("/apis/rbac.authorization.k8s.io/v1", "clusterrolebindings"),
    "Lease": ("/apis/coordination.k8s.io/v1", "leases"),
    "NetworkPolicy": ("/apis/networking.k8s.io/v1", "networkpolicies"),
    "Deployment": ("/apis/apps/v1", "deployments"),
    "WorkflowTemplate": ("/apis/foundation.dev/v1alpha1", "workflowtemplates"),
    "Workflow": ("/apis/foundation.dev/v1alpha1", "workflows"),
}


def path_of(kind: str, namespace: str | None, name: str | None = None) -> str:
    """The REST path of a kind's collection (in a namespace, or across the cluster when
    `namespace` is None) or of one object."""
    prefix, plural = PATHS[kind]
    return _path(prefix, plural, namespace, name)


def _path(prefix: str, plural: str, namespace: str | None, name: str | None) -> str:
    path = prefix
    if namespace is not None:
        path += f"/namespaces/{quote(namespace, safe='')}"
    path += f"/{plural}"
    if name is not None:
        path += f"/{quote(name, safe='')}"
    return path


def kopf_credentials(kubeconfig: str | None = None) -> Any:
    """Credentials as kopf wants them (`kopf.ConnectionInfo`), found as our own client finds
    them (`foundation_common.rest.connect`). In a pod: the API server from
    KUBERNETES_SERVICE_HOST/PORT (kopf's own service-account login names
    kubernetes.default.svc, which needs the cluster's DNS), the service account's token and CA.
    Else the kubeconfig's current context."""
    import kopf  # the operator's dependency; imported here so the CLI's startup does not pay

    server = in_cluster_server() if kubeconfig is None else None
    if server is not None:
        return kopf.ConnectionInfo(
            server=server,
            ca_path=str(ACCOUNT / "ca.crt"),
            token=(ACCOUNT / "token").read_text().strip(),
            priority=LOGIN_PRIORITY,
        )
    found = Credentials.from_kubeconfig(kubeconfig)
    return kopf.ConnectionInfo(
        server=found.server,
        token=found.token,
        ca_path=found.ca_path,
        ca_data=found.ca_data,
        certificate_path=found.certificate_path,
        certificate_data=found.certificate_data,
        private_key_path=found.private_key_path,
        private_key_data=found.private_key_data,
        insecure=found.insecure or None,
        priority=LOGIN_PRIORITY,
    )


LOGIN_PRIORITY = 100  # above kopf's own logins, which stay as fallbacks


async def connect(kubeconfig: str | None = None) -> Client:
    """The operator's client: in a pod, the service account's (its token read again as the
    kubelet renews it); else the kubeconfig's."""
    return rest.connect(kubeconfig)


async def call(
    api: Client,
    verb: str,
    kind: str,
    path: str,
    body: Obj | None = None,
    params: dict[str, str] | None = None,
) -> Obj:
    """One request, counted by verb, kind and the answer's status."""

    def count(code: int) -> None:
        metrics.API_REQUESTS.labels(verb=verb, kind=kind, code=str(code)).inc()

    return await api.request(
        METHODS[verb],
        path,
        body,
        params,
        content_type=MERGE if verb == "patch" else "application/json",
        on_status=count,
    )


METHODS = {"create": "POST", "get": "GET", "list": "GET", "patch": "PATCH", "delete": "DELETE"}


class Api:
    """Typed enough for the operator: create, read, patch and delete the kinds it manages."""

    def __init__(self, api: Client) -> None:
        self.api = api

    async def create(self, obj: Obj) -> Obj:
        kind = obj["kind"]
        path = path_of(kind, obj["metadata"].get("namespace"))  # None: cluster-scoped
        return await call(self.api, "create", kind, path, obj)

    async def read(self, kind: str, namespace: str | None, name: str) -> Obj | None:
        try:
            return await call(self.api, "get", kind, path_of(kind, namespace, name))
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    async def list(self, kind: str, namespace: str, label_selector: str) -> list[Obj]:
        answer = await call(
            self.api,
            "list",
            kind,
            path_of(kind, namespace),
            None,
            {"labelSelector": label_selector},
        )
        items = answer.get("items") or []
        for item in items:  # list items carry no kind of their own
            item.setdefault("kind", kind)
        return items

    async def patch(self, kind: str, namespace: str | None, name: str, patch: Obj) -> Obj:
        return await call(self.api, "patch", kind, path_of(kind, namespace, name), patch)

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
        body: Obj = {}
        preconditions = {
            k: v for k, v in (("uid", uid), ("resourceVersion", resource_version)) if v
        }
        if preconditions:
            body["preconditions"] = preconditions
        if grace is not None:
            body["gracePeriodSeconds"] = grace
        try:
            await call(self.api, "delete", kind, path_of(kind, namespace, name), body or None)
            return True
        except ApiError as exc:
            if exc.status in (404, 409):
                return False
            raise

    async def delete_custom(
        self, resource: Resource, namespace: str, name: str, *, uid: str | None = None
    ) -> bool:
        """Delete one of Foundation's custom objects; False if it is gone (or not that uid)."""
        body: Obj | None = {"preconditions": {"uid": uid}} if uid else None
        try:
            await call(self.api, "delete", resource.kind, resource.path(namespace, name), body)
            return True
        except ApiError as exc:
            if exc.status in (404, 409):
                return False
            raise

    async def patch_custom(
        self, resource: Resource, namespace: str, name: str, patch: Obj, *, status: bool = False
    ) -> Obj:
        """Merge-patch one of Foundation's custom objects, or its status subresource."""
        path = resource.path(namespace, name) + ("/status" if status else "")
        kind = f"{resource.kind}/status" if status else resource.kind
        return await call(self.api, "patch", kind, path, patch)
