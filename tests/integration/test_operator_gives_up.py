"""When kopf stops on its own, the operator exits non-zero instead of living on without watches.

Found in CI: a restarted API server answered 404 for the Agent CRD's watch while it installed
its CRDs; kopf 1.45 takes that for fatal, stopped its watchers, and the operator's pod stayed
Running and Ready, supervising nothing. Here the 404 is served on purpose, by a proxy between
the operator and the API server, so the path runs every time.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from pathlib import Path

import aiohttp
import pytest
import yaml
from aiohttp import web

from kube import REPO, Kube
from operators import OperatorProcess

pytestmark = pytest.mark.integration
WATCH = "/apis/foundation.dev/v1alpha1/"


class Proxy:
    """Plain HTTP on loopback to the API server; once `refuse_watches` is set, Agent and
    Workflow watches are answered 404 and the open ones are cut."""

    def __init__(self, kubeconfig: str) -> None:
        config = yaml.safe_load(Path(kubeconfig).read_text())
        cluster = config["clusters"][0]["cluster"]
        self.upstream = cluster["server"]
        self.token = config["users"][0]["user"]["token"]
        self.ssl = ssl.create_default_context(cafile=cluster["certificate-authority"])
        self.refuse_watches = False
        self.refused = 0
        self.open: set[aiohttp.ClientResponse] = set()  # upstream watches in progress

    def refuse(self) -> None:
        """From now on: cut the open watches (as a restarted server does), refuse new ones."""
        self.refuse_watches = True
        for answer in self.open:
            answer.close()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        watching = request.path.startswith(WATCH) and request.query.get("watch") == "true"
        if watching and self.refuse_watches:
            self.refused += 1
            status = {"kind": "Status", "status": "Failure", "reason": "NotFound", "code": 404}
            return web.json_response(status, status=404)
        headers = {k: v for k, v in request.headers.items() if k in ("Accept", "Content-Type")}
        headers["Authorization"] = f"Bearer {self.token}"
        async with self.session.request(
            request.method,
            self.upstream + request.path_qs,
            data=(await request.read()) or None,
            headers=headers,
            ssl=self.ssl,
            timeout=aiohttp.ClientTimeout(total=None),
        ) as answer:
            out = web.StreamResponse(status=answer.status)
            out.content_type = answer.content_type
            if "Content-Encoding" in answer.headers:
                out.headers["Content-Encoding"] = answer.headers["Content-Encoding"]
            await out.prepare(request)
            if watching:
                self.open.add(answer)
            try:
                async for chunk in answer.content.iter_any():
                    await out.write(chunk)
            except aiohttp.ClientError:
                pass  # cut by refuse(): the stream ends here
            finally:
                self.open.discard(answer)
            return out

    async def start(self) -> int:
        self.session = aiohttp.ClientSession(auto_decompress=False)
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        self.runner = web.AppRunner(app, shutdown_timeout=1.0)  # open streams: cut at once
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        return site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        await self.runner.cleanup()
        await self.session.close()


async def test_the_operator_exits_when_kopf_stops_on_its_own(
    kube: Kube, cluster: str, operator: OperatorProcess, tmp_path: Path
) -> None:
    """(`operator`: the CRDs installed; the tests' own operator goes on beside this one.)"""
    proxy = Proxy(cluster)
    port = await proxy.start()
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        json.dumps(
            {
                "current-context": "proxy",
                "contexts": [{"name": "proxy", "context": {"cluster": "p", "user": "u"}}],
                "clusters": [{"name": "p", "cluster": {"server": f"http://127.0.0.1:{port}"}}],
                "users": [{"name": "u", "user": {"token": "the-proxy-adds-the-real-one"}}],
            }
        )
    )
    process = OperatorProcess(
        str(kubeconfig),
        identity="tests-operator-gives-up",
        health=18085,
        metrics=19095,
        env={"FOUNDATION_LEADER_ELECTION": "false", "FOUNDATION_NAMESPACES": kube.ns},
    )
    log = REPO / ".local-cluster/logs/operator-tests-operator-gives-up.log"
    seen = log.stat().st_size if log.exists() else 0  # the log is appended to across runs
    process.start()
    try:
        for _ in range(300):  # ready: its watches have started
            if await process.ready():
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("the operator behind the proxy did not become ready in 30 s")
        proxy.refuse()  # the open watches end; new ones get 404
        assert process.proc is not None
        code = await asyncio.to_thread(process.proc.wait, 60)
        assert code == 1, "kopf stopped, so the operator must exit non-zero"
        assert proxy.refused >= 1
        said = log.read_bytes()[seen:].decode(errors="replace")
        assert "kopf stopped on its own; exiting so a fresh operator starts" in said
    finally:
        process.stop()
        await proxy.stop()
