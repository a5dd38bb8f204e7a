"""A small Kubernetes API client on httpx, for processes that live in a pod and make a handful of
calls: the Workflow runner (its Workflow, its Events, the Endpoints of the members it sends to).

Why not `kube` (kubernetes_asyncio): importing its client costs about 1 s of CPU and 50 MB
of generated models, paid by every runner pod at its start; 100 Workflows started at once pay
it 100 times on the node. The calls here are plain REST: paths, JSON in and out, a merge patch,
and the list-then-watch loop of `kube.list_and_watch`, with the same answers to the caller.

Credentials as a kubelet gives them: the service account's token (read again as it is
renewed) and CA under `/var/run/secrets/kubernetes.io/serviceaccount`, the API server from
KUBERNETES_SERVICE_HOST/PORT.
"""

from __future__ import annotations

import json
import os
import ssl
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx

Obj = dict[str, Any]
MERGE = "application/merge-patch+json"
ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")
TOKEN_SECONDS = 60.0  # how long a token read from its file is used before reading it again


class ApiError(Exception):
    """An answer outside 2xx: `status` and the server's `reason` and `message`."""

    def __init__(self, status: int, body: str) -> None:
        self.status = status
        self.body = body
        try:
            decoded = json.loads(body)
        except ValueError:
            decoded = {}
        self.reason = decoded.get("reason", "") if isinstance(decoded, dict) else ""
        self.message = (decoded.get("message") if isinstance(decoded, dict) else None) or body
        super().__init__(f"{status} {self.reason}: {self.message[:300]}".strip())


class Client:
    """JSON calls on paths of the API server; errors as `ApiError`."""

    def __init__(
        self, base_url: str, verify: ssl.SSLContext | bool, token_file: Path | None
    ) -> None:
        self._token_file = token_file
        self._token = ""
        self._token_read = -TOKEN_SECONDS
        self.http = httpx.AsyncClient(
            base_url=base_url, verify=verify, timeout=httpx.Timeout(30.0, connect=5.0)
        )

    @classmethod
    def in_cluster(cls, account: Path = ACCOUNT) -> Client:
        host = os.environ.get("KUBERNETES_SERVICE_HOST")
        port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
        if not host or not (account / "token").exists():
            raise RuntimeError(
                "not in a pod: KUBERNETES_SERVICE_HOST or the service account token is missing"
            )
        if ":" in host:
            host = f"[{host}]"
        verify = ssl.create_default_context(cafile=str(account / "ca.crt"))
        return cls(f"https://{host}:{port}", verify, account / "token")

    def _headers(self, content_type: str = "application/json") -> dict[str, str]:
        headers = {"Accept": "application/json", "Content-Type": content_type}
        if self._token_file is not None:
            if time.monotonic() - self._token_read >= TOKEN_SECONDS:
                self._token = self._token_file.read_text().strip()
                self._token_read = time.monotonic()
            headers["Authorization"] = f"Bearer {self._token}"
        return headers

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        params: dict[str, str] | None = None,
        content_type: str = "application/json",
    ) -> Obj:
        answer = await self.http.request(
            method,
            path,
            content=None if body is None else json.dumps(body).encode(),
            params=params,
            headers=self._headers(content_type),
        )
        if not answer.is_success:
            raise ApiError(answer.status_code, answer.text)
        return answer.json() if answer.content else {}

    async def get(self, path: str, params: dict[str, str] | None = None) -> Obj:
        return await self.request("GET", path, params=params)

    async def create(self, path: str, body: Obj) -> Obj:
        return await self.request("POST", path, body)

    async def merge_patch(self, path: str, body: Obj) -> Obj:
        return await self.request("PATCH", path, body, content_type=MERGE)

    async def list_and_watch(
        self, path: str, params: dict[str, str] | None = None, timeout_seconds: int = 240
    ) -> AsyncIterator[tuple[str, Obj]]:
        """As `kube.list_and_watch`: ("SYNC", the list) after every (re)list, then ("ADDED" |
        "MODIFIED" | "DELETED", obj); relists after 410 Gone, raises other errors."""
        while True:
            listing = await self.get(path, params)
            yield "SYNC", listing
            version = listing["metadata"]["resourceVersion"]
            gone = False
            while not gone:
                query = {
                    **(params or {}),
                    "watch": "true",
                    "resourceVersion": version,
                    "allowWatchBookmarks": "true",
                    "timeoutSeconds": str(timeout_seconds),
                }
                async with self.http.stream(
                    "GET",
                    path,
                    params=query,
                    headers=self._headers(),
                    timeout=httpx.Timeout(timeout_seconds + 30.0, connect=5.0),
                ) as answer:
                    if not answer.is_success:
                        text = (await answer.aread()).decode(errors="replace")
                        if answer.status_code == 410:
                            break
                        raise ApiError(answer.status_code, text)
                    async for line in answer.aiter_lines():
                        if not line:
                            continue
                        event = json.loads(line)
                        kind, obj = event["type"], event["object"]
                        if kind == "ERROR":
                            if obj.get("code") == 410:
                                gone = True  # too old: relist
                                break
                            raise ApiError(int(obj.get("code") or 500), json.dumps(obj))
                        version = obj["metadata"]["resourceVersion"]
                        if kind != "BOOKMARK":
                            yield kind, obj
                # The server ended the watch: go on from the last version seen.

    async def close(self) -> None:
        await self.http.aclose()
