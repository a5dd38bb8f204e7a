"""How the console reaches the API server as the person using it: their kubeconfig on their
own machine (`Kubeconfig`), or, in a pod, each call with that person's own token
(`InCluster`); the console has no identity of its own to fall back on."""

from __future__ import annotations

from typing import Any

import aiohttp
from aiohttp import web

SESSION_COOKIE = "foundation-console"


class Unauthenticated(Exception):
    """No token to call the API server with: the user signs in first."""


class Cluster:
    """How calls reach the API server as the user."""

    def user_token(self, request: web.Request) -> str | None:
        return None

    async def close(self) -> None:
        return None

    async def request(
        self,
        request: web.Request,
        path: str,
        method: str,
        query: list[tuple[str, str]],
        body: Any,
        seconds: float,
        token: str | None = None,
    ) -> aiohttp.ClientResponse:
        raise NotImplementedError


class Kubeconfig(Cluster):
    """On the user's machine: their kubeconfig, whatever its authentication (a
    kubernetes_asyncio ApiClient made from it)."""

    def __init__(self, api: Any) -> None:
        self.api = api

    async def request(
        self,
        request: web.Request,
        path: str,
        method: str,
        query: list[tuple[str, str]],
        body: Any,
        seconds: float,
        token: str | None = None,
    ) -> aiohttp.ClientResponse:
        return await self.api.call_api(  # type: ignore[no-any-return]
            path,
            method,
            query_params=query,
            header_params={"Accept": "application/json", "Content-Type": "application/json"},
            body=body,
            auth_settings=["BearerToken"],
            _preload_content=False,
            _request_timeout=seconds,
        )


class InCluster(Cluster):
    """In a pod: the API server by its in-cluster address and CA, each call with the token of
    the user it is made for (an authenticating proxy's `Authorization: Bearer`, else the
    session cookie set at sign-in). The pod has no identity of its own to fall back on."""

    def __init__(self, server: str, ca_file: str | None) -> None:
        import ssl

        self.server = server.rstrip("/")
        # No CA file: plain HTTP (the tests' stand-in for the API server).
        self.ssl = ssl.create_default_context(cafile=ca_file) if ca_file else None
        self.http: aiohttp.ClientSession | None = None

    def user_token(self, request: web.Request) -> str | None:
        header = request.headers.get("Authorization", "")
        if header.lower().startswith("bearer ") and header[7:].strip():
            return header[7:].strip()
        return request.cookies.get(SESSION_COOKIE) or None

    async def close(self) -> None:
        if self.http is not None:
            await self.http.close()

    async def request(
        self,
        request: web.Request,
        path: str,
        method: str,
        query: list[tuple[str, str]],
        body: Any,
        seconds: float,
        token: str | None = None,
    ) -> aiohttp.ClientResponse:
        token = token or self.user_token(request)
        if not token:
            raise Unauthenticated("sign in: the console calls the cluster with your own token")
        if self.http is None:
            self.http = aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar())
        return await self.http.request(
            method,
            self.server + path,
            params=query,
            json=body,
            headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
            ssl=self.ssl if self.ssl is not None else False,
            timeout=aiohttp.ClientTimeout(total=seconds),
        )
