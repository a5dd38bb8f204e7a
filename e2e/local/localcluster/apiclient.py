"""The test harness's API calls: kubernetes_asyncio, plain dicts, checked statuses, and its
list-then-watch loop. The test node, the integration tests and the benchmarks use it; the
product never does (it calls the API through `foundation_common.rest`).

kubernetes_asyncio raises for error statuses only when it decodes the body itself; calls here
use `_preload_content=False` (no model building) and check the status in `call`.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from kubernetes_asyncio import client, config, watch
from kubernetes_asyncio.client.exceptions import ApiException

Obj = dict[str, Any]
MERGE = "application/merge-patch+json"
TOKEN_FILE = "/var/run/secrets/kubernetes.io/serviceaccount/token"

__all__ = [
    "MERGE",
    "ApiException",
    "Obj",
    "call",
    "connect",
    "list_and_watch",
    "message_of",
    "optional",
    "status_of",
]


def in_cluster() -> bool:
    return bool(os.environ.get("KUBERNETES_SERVICE_HOST")) and os.path.exists(TOKEN_FILE)


async def connect(kubeconfig: str | None = None) -> client.ApiClient:
    """A client from `kubeconfig` if given; else in-cluster credentials inside a pod, else the
    kubeconfig (KUBECONFIG or ~/.kube/config)."""
    configuration = client.Configuration()
    if kubeconfig is None and in_cluster():
        config.load_incluster_config(client_configuration=configuration)
    else:
        await config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
    configuration.connection_pool_maxsize = 64
    return client.ApiClient(configuration)


async def call(request: Awaitable[Any], on_status: Callable[[int], None] | None = None) -> Obj:
    """The decoded answer of a `_preload_content=False` request, or ApiException.

    `on_status` is told every answer's HTTP status (the operator counts its requests so)."""
    response = await request
    data = await response.read()
    if on_status is not None:
        on_status(response.status)
    if not 200 <= response.status <= 299:
        error = ApiException(status=response.status, reason=response.reason)
        error.body = data.decode(errors="replace")
        raise error
    return json.loads(data) if data else {}


async def optional(request: Awaitable[Any]) -> Obj | None:
    """Like `call`, but None for 404."""
    try:
        return await call(request)
    except ApiException as exc:
        if status_of(exc) == 404:
            return None
        raise


def status_of(exc: ApiException) -> int:
    return int(exc.status or 0)


def message_of(exc: ApiException) -> str:
    """What the API server said: the Status object's message, else the body or the reason."""
    try:
        decoded = json.loads(exc.body or "{}")
    except ValueError:
        return str(exc.body or exc.reason)[:500]
    message = decoded.get("message") if isinstance(decoded, dict) else None
    return str(message or exc.reason)


async def list_and_watch(
    list_call: Any, *args: Any, timeout_seconds: int = 240, **kwargs: Any
) -> AsyncIterator[tuple[str, Obj]]:
    """Events of a collection, starting with a full list; relists after 410 Gone.

    Yields ("SYNC", {"items": [...], ...}) after every (re)list, then
    ("ADDED" | "MODIFIED" | "DELETED", obj). Other errors are raised: the caller decides how to
    wait before starting again (`foundation_common.retry.Backoff`).
    """
    while True:
        listing = await call(list_call(*args, _preload_content=False, **kwargs))
        yield "SYNC", listing
        version = listing["metadata"]["resourceVersion"]
        while True:
            # "object": keep events as dicts instead of building generated models.
            watcher = watch.Watch(return_type="object")
            try:
                # The server ends the watch before aiohttp's 300 s default client timeout.
                async for event in watcher.stream(
                    list_call,
                    *args,
                    resource_version=version,
                    timeout_seconds=timeout_seconds,
                    allow_watch_bookmarks=True,
                    **kwargs,
                ):
                    raw = event["raw_object"]
                    version = raw["metadata"]["resourceVersion"]
                    if event["type"] != "BOOKMARK":
                        yield event["type"], raw
                # The server ended the watch: go on from the last version seen.
            except ApiException as exc:
                if status_of(exc) == 410:
                    break  # too old: relist
                raise
            finally:
                watcher.stop()
