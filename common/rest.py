"""A small Kubernetes API client on aiohttp: the operator's, the member runtime's, the
Workflow runner's and the sidecar's discovery.

Why not `kube` (kubernetes_asyncio): importing its client costs about 0.4 s of CPU and 35 to
50 MB of generated models, paid by every process that loads it (the operator at its start,
every runner pod, every sidecar that discovers). The calls here are plain REST: paths, JSON in
and out, a merge patch, and the list-then-watch loop of `kube.list_and_watch`, with the same
answers to the caller.

Credentials: inside a pod as a kubelet gives them (the service account's token, read again as
it is renewed, and CA under `/var/run/secrets/kubernetes.io/serviceaccount`, the API server from
KUBERNETES_SERVICE_HOST/PORT); outside, what a kubeconfig's current context names, as parsed
by the caller (`Credentials`: a token or a client certificate, and the CA).
"""

from __future__ import annotations

import base64
import json
import os
import ssl
import tempfile
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from foundation_common.access import TokenFile

Obj = dict[str, Any]
MERGE = "application/merge-patch+json"
ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")
# Connections kept open: enough for the operator's workers writing at once; an idle one is
# closed after KEEPALIVE_SECONDS, so a burst's connections (and their TLS buffers, 128 KiB
# each) do not stay after it.
POOL = 64
KEEPALIVE_SECONDS = 15.0


class ApiError(Exception):
    """An answer outside 2xx: `status` and the server's `reason` and `message`."""

    def __init__(self, status: int, body: str = "", *, reason: str = "") -> None:
        self.status = status
        self.body = body
        try:
            decoded = json.loads(body) if body else {}
        except ValueError:
            decoded = {}
        if not isinstance(decoded, dict):
            decoded = {}
        self.reason = decoded.get("reason") or reason
        self.message = str(decoded.get("message") or body or reason)
        super().__init__(f"{status} {self.reason}: {self.message[:300]}".strip())


@dataclass(frozen=True)
class Credentials:
    """Where the API server is and how to prove who we are, as a kubeconfig's context says.

    Paths or inline data (base64, as kubeconfigs hold it) for the CA and client certificate."""

    server: str
    token: str | None = None
    ca_path: str | None = None
    ca_data: str | None = None
    certificate_path: str | None = None
    certificate_data: str | None = None
    private_key_path: str | None = None
    private_key_data: str | None = None
    insecure: bool = False

    @classmethod
    def from_kubeconfig(cls, path: str | None = None) -> Credentials:
        """The current context of a kubeconfig: `path`, else KUBECONFIG (files joined as
        kubectl does: the first to name a context, cluster or user wins), else ~/.kube/config.

        A token or a client certificate, inline or in files (relative paths from the file that
        names them). Exec and auth-provider plugins are not run: they are refused by name."""
        names = path or os.environ.get("KUBECONFIG") or os.path.expanduser("~/.kube/config")
        files = [Path(os.path.expanduser(f)) for f in names.split(os.pathsep) if f]
        current = None
        sections: dict[str, dict[str, tuple[Obj, Path]]] = {
            "contexts": {},
            "clusters": {},
            "users": {},
        }
        for file in files:
            try:
                config = yaml.safe_load(file.read_text()) or {}
            except FileNotFoundError:
                if path or len(files) == 1:
                    raise ValueError(f"kubeconfig {file} does not exist") from None
                continue
            current = current or config.get("current-context")
            for section, entries in sections.items():
                singular = section[:-1]
                for entry in config.get(section) or []:
                    entries.setdefault(entry["name"], (entry.get(singular) or {}, file.parent))
        if not current:
            raise ValueError(f"kubeconfig {names}: no current-context")
        context = sections["contexts"].get(current, ({}, Path()))[0]
        try:
            cluster, cluster_dir = sections["clusters"][context.get("cluster", "")]
            user, user_dir = sections["users"].get(context.get("user", ""), ({}, Path()))
        except KeyError:
            raise ValueError(f"kubeconfig {names}: context {current} names no cluster") from None
        for plugin in ("exec", "auth-provider"):
            if plugin in user:
                raise ValueError(
                    f"kubeconfig {names}: the user of context {current} authenticates with an"
                    f" {plugin} plugin, which this client does not run; use a token or a client"
                    " certificate (or kubectl proxy)"
                )

        def file_of(entry: Obj, key: str, folder: Path) -> str | None:
            value = entry.get(key)
            return str(folder / os.path.expanduser(value)) if value else None

        return cls(
            server=cluster["server"],
            token=user.get("token")
            or (
                Path(file_of(user, "tokenFile", user_dir)).read_text().strip()
                if user.get("tokenFile")
                else None
            ),
            ca_path=file_of(cluster, "certificate-authority", cluster_dir),
            ca_data=cluster.get("certificate-authority-data"),
            certificate_path=file_of(user, "client-certificate", user_dir),
            certificate_data=user.get("client-certificate-data"),
            private_key_path=file_of(user, "client-key", user_dir),
            private_key_data=user.get("client-key-data"),
            insecure=bool(cluster.get("insecure-skip-tls-verify")),
        )

    def ssl_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(
            cafile=self.ca_path, cadata=_pem(self.ca_data) if self.ca_data else None
        )
        if self.insecure:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        certificate = self.certificate_path
        key = self.private_key_path
        if self.certificate_data or self.private_key_data:
            # ssl loads a certificate chain from files only: written once, readable by us alone,
            # and removed as soon as it is loaded.
            with tempfile.TemporaryDirectory(prefix="foundation-") as folder:
                if self.certificate_data:
                    certificate = os.path.join(folder, "cert.pem")
                    Path(certificate).write_text(_pem(self.certificate_data))
                if self.private_key_data:
                    key = os.path.join(folder, "key.pem")
                    Path(key).write_text(_pem(self.private_key_data))
                context.load_cert_chain(certificate, key)  # type: ignore[arg-type]
        elif certificate:
            context.load_cert_chain(certificate, key)
        return context


def connect(kubeconfig: str | None = None, pool: int = POOL) -> Client:
    """In a pod (and no kubeconfig named): the pod's service account. Else the kubeconfig's
    current context (`Credentials.from_kubeconfig`)."""
    if kubeconfig is None and in_cluster_server() is not None:
        return Client.in_cluster(pool=pool)
    return Client.with_credentials(Credentials.from_kubeconfig(kubeconfig), pool=pool)


def in_cluster_server(account: Path = ACCOUNT) -> str | None:
    """The API server as a pod finds it (KUBERNETES_SERVICE_HOST/PORT, as client-go does: no
    DNS needed), if this is a pod with a service account token mounted; else None."""
    host = os.environ.get("KUBERNETES_SERVICE_HOST")
    port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
    if not host or not (account / "token").exists():
        return None
    if ":" in host:
        host = f"[{host}]"
    return f"https://{host}:{port}"


def _pem(data: str) -> str:
    """Inline kubeconfig data: base64 of PEM text (or the PEM text itself)."""
    if "-----BEGIN" in data:
        return data
    return base64.b64decode(data).decode()


class Unreachable(Exception):
    """The API server did not answer: no connection, a broken one, or a timeout."""


class Client:
    """JSON calls on paths of the API server; errors as `ApiError`, no answer as `Unreachable`.

    On aiohttp, which every process using this client loads anyway (kopf, the runtime's and the
    sidecar's servers). httpx was tried first: its connection pool costs CPU that grows with the
    requests waiting for a connection (6 ms a request at 64 at once against the local API
    server, 0.7 ms at 4), and the operator makes many at once."""

    def __init__(
        self,
        base_url: str,
        verify: ssl.SSLContext | bool,
        token_file: Path | None,
        *,
        token: str | None = None,
        pool: int = POOL,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._verify = verify
        self._pool = pool
        self._token_file = TokenFile(token_file) if token_file is not None else None
        self._token = token or ""
        self._session: aiohttp.ClientSession | None = None

    def _http(self) -> aiohttp.ClientSession:
        """The session, made on first use: aiohttp wants it made inside the running loop."""
        if self._session is None:
            connector = aiohttp.TCPConnector(
                limit=self._pool,
                keepalive_timeout=KEEPALIVE_SECONDS,
                ssl=self._verify,  # a context, True (system CAs) or False (none), as aiohttp has it
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(total=30.0, connect=5.0),
                cookie_jar=aiohttp.DummyCookieJar(),  # the API server sets none
            )
        return self._session

    @classmethod
    def with_credentials(cls, credentials: Credentials, pool: int = POOL) -> Client:
        return cls(
            credentials.server,
            credentials.ssl_context(),
            None,
            token=credentials.token,
            pool=pool,
        )

    @classmethod
    def in_cluster(cls, account: Path = ACCOUNT, pool: int = POOL) -> Client:
        server = in_cluster_server(account)
        if server is None:
            raise RuntimeError(
                "not in a pod: KUBERNETES_SERVICE_HOST or the service account token is missing"
            )
        verify = ssl.create_default_context(cafile=str(account / "ca.crt"))
        return cls(server, verify, account / "token", pool=pool)

    def _headers(self, content_type: str = "application/json") -> dict[str, str]:
        headers = {"Accept": "application/json", "Content-Type": content_type}
        if self._token_file is not None:
            headers.update(self._token_file.header())
        elif self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        return headers

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        params: dict[str, str] | None = None,
        content_type: str = "application/json",
        on_status: Callable[[int], None] | None = None,
    ) -> Obj:
        """The decoded answer, or ApiError; `on_status` is told every answer's HTTP status
        (the operator counts its requests so)."""
        try:
            async with self._http().request(
                method,
                self.base_url + path,
                data=None if body is None else json.dumps(body).encode(),
                params=params,
                headers=self._headers(content_type),
            ) as answer:
                data = await answer.read()
                status = answer.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise Unreachable(f"{method} {path}: {exc!r}") from exc
        if on_status is not None:
            on_status(status)
        if not 200 <= status <= 299:
            raise ApiError(status, data.decode(errors="replace"))
        return json.loads(data) if data else {}

    async def get(self, path: str, params: dict[str, str] | None = None) -> Obj:
        return await self.request("GET", path, params=params)

    async def create(self, path: str, body: Obj) -> Obj:
        return await self.request("POST", path, body)

    async def merge_patch(self, path: str, body: Obj) -> Obj:
        return await self.request("PATCH", path, body, content_type=MERGE)

    async def replace(self, path: str, body: Obj) -> Obj:
        return await self.request("PUT", path, body)

    async def delete(self, path: str, body: Obj | None = None) -> Obj:
        return await self.request("DELETE", path, body)

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
                try:
                    async with self._http().get(
                        self.base_url + path,
                        params=query,
                        headers=self._headers(),
                        timeout=aiohttp.ClientTimeout(total=timeout_seconds + 30.0, connect=5.0),
                    ) as answer:
                        if answer.status == 410:
                            break
                        if not 200 <= answer.status <= 299:
                            text = (await answer.read()).decode(errors="replace")
                            raise ApiError(answer.status, text)
                        async for event in _events(answer.content):
                            kind, obj = event["type"], event["object"]
                            if kind == "ERROR":
                                if obj.get("code") == 410:
                                    gone = True  # too old: relist
                                    break
                                raise ApiError(int(obj.get("code") or 500), json.dumps(obj))
                            version = obj["metadata"]["resourceVersion"]
                            if kind != "BOOKMARK":
                                yield kind, obj
                except (aiohttp.ClientError, TimeoutError) as exc:
                    raise Unreachable(f"watching {path}: {exc!r}") from exc
                # The server ended the watch: go on from the last version seen.

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()


async def _events(stream: aiohttp.StreamReader) -> AsyncIterator[Obj]:
    """The watch events of a stream, one JSON object a line. Split here rather than with the
    stream's readline, which refuses lines over 128 KiB (a Workflow's status can be 1 MiB)."""
    pending: list[bytes] = []  # the pieces of a line not yet ended (joined once, when it ends)
    async for chunk in stream.iter_any():
        *ended, rest = chunk.split(b"\n")
        for line in ended:
            if pending:
                line, pending = b"".join([*pending, line]), []
            if line.strip():
                yield json.loads(line)
        if rest:
            pending.append(rest)
    line = b"".join(pending)
    if line.strip():
        yield json.loads(line)
