"""The test node's view of the API: `localcluster.apiclient` (on kubernetes_asyncio, whose
generated API calls the node's modules use), under the names the node's modules use."""

from __future__ import annotations

from datetime import UTC, datetime

from localcluster.apiclient import Obj, connect, list_and_watch, optional
from localcluster.apiclient import call as body

__all__ = ["Obj", "body", "connect", "list_and_watch", "now", "optional"]


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
