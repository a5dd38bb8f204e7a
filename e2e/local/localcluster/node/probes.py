"""Probes and lifecycle hooks as a kubelet runs them: httpGet, tcpSocket and exec."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

from localcluster.node.podspec import ConfigError, resolve_port

Obj = dict[str, Any]
logger = logging.getLogger(__name__)


@dataclass
class Target:
    """Where a probe or hook acts: the pod's address, the container's spec, its process and env."""

    pod_ip: str
    container: Obj
    pid: int
    env: Mapping[str, str]


async def run_action(action: Obj, target: Target, timeout: float) -> tuple[bool, str]:
    """Run one handler (a probe's or a hook's); (succeeded, why not)."""
    try:
        if "httpGet" in action:
            return await _http_get(action["httpGet"], target, timeout)
        if "tcpSocket" in action:
            return await _tcp(action["tcpSocket"], target, timeout)
        if "exec" in action:
            return await _exec(action["exec"]["command"], target, timeout)
    except ConfigError as exc:
        return False, str(exc)
    return False, f"unsupported handler {sorted(action)}"


_shared: aiohttp.ClientSession | None = None


def _session() -> aiohttp.ClientSession:
    """One client for every httpGet probe and hook of the node: a session per probe costs more
    CPU than the probe itself once hundreds of pods are probed every few seconds. Like a
    kubelet's prober it does not keep connections alive."""
    global _shared
    if _shared is None or _shared.closed:
        _shared = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(force_close=True, limit=0),
            cookie_jar=aiohttp.DummyCookieJar(),
        )
    return _shared


async def _http_get(spec: Obj, target: Target, timeout: float) -> tuple[bool, str]:
    scheme = spec.get("scheme", "HTTP").lower()
    host = spec.get("host") or target.pod_ip
    port = resolve_port(target.container, spec["port"])
    path = spec.get("path", "/")
    url = f"{scheme}://{host}:{port}{path if path.startswith('/') else '/' + path}"
    headers = {h["name"]: h["value"] for h in spec.get("httpHeaders") or []}
    headers.setdefault("User-Agent", "kube-probe/1.20")
    if scheme == "http":
        return await _plain_http_get(host, port, path, headers, timeout, url)
    try:
        async with _session().get(
            url,
            headers=headers,
            ssl=False,
            allow_redirects=False,
            timeout=aiohttp.ClientTimeout(total=timeout),
        ) as resp:
            if 200 <= resp.status < 400:
                return True, ""
            return False, f"HTTP probe failed with statuscode: {resp.status}"
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        return False, f'Get "{url}": {type(exc).__name__}: {exc}'


async def _plain_http_get(
    host: str, port: int, path: str, headers: dict[str, str], timeout: float, url: str
) -> tuple[bool, str]:
    """One HTTP/1.1 GET on a fresh connection, read up to the status line: what a kubelet's
    prober needs, at a fraction of a client library's cost per probe."""
    request = (
        f"GET {path if path.startswith('/') else '/' + path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
    )
    request += "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    request += "Connection: close\r\n\r\n"
    writer = None
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(request.encode())
            status_line = await reader.readline()
        code = int(status_line.split()[1])
    except (OSError, TimeoutError, ValueError, IndexError) as exc:
        return False, f'Get "{url}": {type(exc).__name__}: {exc}'
    finally:
        if writer is not None:
            writer.close()
    if 200 <= code < 400:
        return True, ""
    return False, f"HTTP probe failed with statuscode: {code}"


async def _tcp(spec: Obj, target: Target, timeout: float) -> tuple[bool, str]:
    host = spec.get("host") or target.pod_ip
    port = resolve_port(target.container, spec["port"])
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except (OSError, TimeoutError) as exc:
        return False, f"dial tcp {host}:{port}: {exc}"
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True, ""


async def _exec(command: list[str], target: Target, timeout: float) -> tuple[bool, str]:
    # Inside the container's namespaces (network, mounts, hostname) with its environment.
    proc = await asyncio.create_subprocess_exec(
        "nsenter",
        "-t",
        str(target.pid),
        "-n",
        "-m",
        "-u",
        "--",
        *command,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=dict(target.env),
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return False, f"command {command} timed out after {timeout:g}s"
    if proc.returncode == 0:
        return True, ""
    return False, f"command {command} exited with {proc.returncode}: {out.decode()[-200:]}"


class ProbeRunner:
    """One probe of one container: counts results against its thresholds, reports changes."""

    def __init__(
        self,
        kind: str,
        probe: Obj,
        target: Callable[[], Target],
        on_change: Callable[[bool, str], Awaitable[None]],
    ) -> None:
        self.kind = kind
        self.probe = probe
        self.target = target
        self.on_change = on_change
        self.period = float(probe.get("periodSeconds", 10))
        self.timeout = float(probe.get("timeoutSeconds", 1))
        self.success_threshold = int(probe.get("successThreshold", 1))
        self.failure_threshold = int(probe.get("failureThreshold", 3))

    async def run(self, until_success: bool = False) -> None:
        """Probe forever (or, for startup probes, until the first success)."""
        await asyncio.sleep(float(self.probe.get("initialDelaySeconds", 0)))
        successes = failures = 0
        state: bool | None = None
        while True:
            ok, why = await run_action(self.probe, self.target(), self.timeout)
            if ok:
                successes, failures = successes + 1, 0
                if successes >= self.success_threshold and state is not True:
                    state = True
                    await self.on_change(True, "")
                    if until_success:
                        return
            else:
                successes, failures = 0, failures + 1
                if failures >= self.failure_threshold and state is not False:
                    state = False
                    logger.info("%s probe failed: %s", self.kind, why)
                    await self.on_change(False, why)
                    if self.kind != "readiness":
                        failures = 0
            await asyncio.sleep(self.period)
