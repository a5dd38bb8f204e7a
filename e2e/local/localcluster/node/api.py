"""The test node's view of the API: kubernetes_asyncio calls that return plain dicts."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable
from datetime import UTC, datetime
from typing import Any

from kubernetes_asyncio import client, config, watch
from kubernetes_asyncio.client.exceptions import ApiException

from foundation_operator.k8s import call

Obj = dict[str, Any]


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def connect(kubeconfig: str) -> client.ApiClient:
    configuration = client.Configuration()
    await config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
    configuration.connection_pool_maxsize = 64
    return client.ApiClient(configuration)


# One way to decode a `_preload_content=False` answer and check its status: the operator's.
body = call


async def optional(call: Awaitable[Any]) -> Obj | None:
    """Like `body`, but None for 404."""
    try:
        return await body(call)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


async def list_and_watch(list_call: Any, **kwargs: Any) -> AsyncIterator[tuple[str, Obj]]:
    """Events of a collection, starting with a full list as SYNC events; relists after 410 Gone.

    Yields ("SYNC", {"items": [...]}) after every (re)list, then
    ("ADDED" | "MODIFIED" | "DELETED", obj).
    """
    while True:
        listing = await body(list_call(_preload_content=False, **kwargs))
        yield "SYNC", listing
        version = listing["metadata"]["resourceVersion"]
        while True:
            # "object": keep events as dicts instead of building generated models.
            watcher = watch.Watch(return_type="object")
            try:
                # The server ends the watch before aiohttp's 300 s default client timeout.
                async for event in watcher.stream(
                    list_call,
                    resource_version=version,
                    timeout_seconds=240,
                    allow_watch_bookmarks=True,
                    **kwargs,
                ):
                    raw = event["raw_object"]
                    version = raw["metadata"]["resourceVersion"]
                    if event["type"] != "BOOKMARK":
                        yield event["type"], raw
            except ApiException as exc:
                if exc.status == 410:
                    break  # too old: relist
                raise
            finally:
                watcher.stop()
