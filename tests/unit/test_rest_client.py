"""The light API client against a real TLS server: kubeconfig credentials (inline client
certificate and CA, or a token), errors as the API server words them, counted requests."""

from __future__ import annotations

import base64
import json
import ssl
import subprocess
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from foundation_common.rest import ApiError, Client, Credentials, Unreachable
from foundation_operator.core import metrics
from foundation_operator.core.client import Api


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One self-signed certificate for 127.0.0.1: the server's, the CA, and the client's."""
    folder = tmp_path_factory.mktemp("pki")
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-subj", "/CN=tester", "-addext", "subjectAltName=IP:127.0.0.1",
            "-keyout", str(folder / "key.pem"), "-out", str(folder / "cert.pem"),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return folder


async def serve(pki: Path) -> TestServer:
    async def handle(request: web.Request) -> web.Response:
        peer = request.transport.get_extra_info("peercert") if request.transport else None
        who = dict(x[0] for x in peer["subject"])["commonName"] if peer else None
        if request.path.endswith("/big"):
            # As the API server answers past 128 KiB when the client accepts gzip.
            answer = web.json_response({"data": "x" * 300_000})
            answer.enable_compression()
            return answer
        if request.path.endswith("/missing"):
            status = {"kind": "Status", "reason": "NotFound", "message": 'pods "missing" not found'}
            return web.json_response(status, status=404)
        return web.json_response(
            {"client": who, "authorization": request.headers.get("Authorization")}
        )

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(pki / "cert.pem", pki / "key.pem")
    context.load_verify_locations(pki / "cert.pem")
    context.verify_mode = ssl.CERT_OPTIONAL
    app = web.Application()
    app.router.add_get("/{tail:.*}", handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server(ssl=context)
    return server


@pytest.fixture
async def url(pki: Path):
    """The URL of a TLS server with that certificate, for one test."""
    server = await serve(pki)
    yield f"https://127.0.0.1:{server.port}"
    await server.close()


def b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


async def test_a_client_certificate_given_inline_as_kubeconfigs_hold_it(
    pki: Path, url: str
) -> None:
    credentials = Credentials(
        server=url,
        ca_data=b64(pki / "cert.pem"),
        certificate_data=b64(pki / "cert.pem"),
        private_key_data=b64(pki / "key.pem"),
    )
    async with Client.with_credentials(credentials) as api:
        assert await api.get("/api/v1/pods") == {"client": "tester", "authorization": None}


async def test_a_token_and_a_ca_file(pki: Path, url: str) -> None:
    credentials = Credentials(server=url + "/", ca_path=str(pki / "cert.pem"), token="s3cret")
    async with Client.with_credentials(credentials) as api:
        answer = await api.get("/api/v1/pods")
    assert answer == {"client": None, "authorization": "Bearer s3cret"}


async def test_a_server_the_ca_does_not_vouch_for_is_refused(url: str) -> None:
    async with Client.with_credentials(Credentials(server=url)) as api:  # system CAs only
        with pytest.raises(Unreachable, match="CERTIFICATE_VERIFY_FAILED"):
            await api.get("/api/v1/pods")


async def test_errors_carry_the_servers_reason_and_message_and_are_counted(
    pki: Path, url: str
) -> None:
    counter = metrics.API_REQUESTS.labels(verb="get", kind="Pod", code="404")
    before = counter._value.get()
    async with Client.with_credentials(Credentials(url, ca_path=str(pki / "cert.pem"))) as api:
        with pytest.raises(ApiError) as error:
            await api.get("/api/v1/namespaces/x/pods/missing")
        assert (error.value.status, error.value.reason) == (404, "NotFound")
        assert error.value.message == 'pods "missing" not found'
        assert await Api(api).read("Pod", "x", "missing") is None
    assert counter._value.get() == before + 1


def test_an_error_without_a_status_body_keeps_what_it_has() -> None:
    error = ApiError(409, reason="Conflict")
    assert (error.status, error.reason, error.message) == (409, "Conflict", "Conflict")
    assert ApiError(502, "bad gateway").message == "bad gateway"
    assert json.loads(ApiError(500, '{"message": "m"}').body) == {"message": "m"}


def write_kubeconfig(path: Path, context: str, user: dict, **extra: object) -> None:
    config = {
        "current-context": context,
        "contexts": [{"name": context, "context": {"cluster": "c", "user": "u"}}],
        "clusters": [{"name": "c", "cluster": {"server": "https://1.2.3.4:6443", **extra}}],
        "users": [{"name": "u", "user": user}],
    }
    path.write_text(json.dumps(config))  # JSON is YAML


def test_a_kubeconfigs_current_context_with_paths_relative_to_its_file(tmp_path: Path) -> None:
    write_kubeconfig(
        tmp_path / "config",
        "dev",
        {"client-certificate": "pki/me.crt", "client-key": "/abs/me.key"},
        **{"certificate-authority": "pki/ca.crt"},
    )
    found = Credentials.from_kubeconfig(str(tmp_path / "config"))
    assert found.server == "https://1.2.3.4:6443"
    assert found.ca_path == str(tmp_path / "pki/ca.crt")
    assert found.certificate_path == str(tmp_path / "pki/me.crt")
    assert found.private_key_path == "/abs/me.key"
    assert found.token is None


def test_kubeconfig_files_joined_the_first_to_name_a_thing_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_kubeconfig(tmp_path / "a", "first", {"token": "from-a"})
    write_kubeconfig(
        tmp_path / "b", "second", {"token": "from-b"}, **{"insecure-skip-tls-verify": True}
    )
    monkeypatch.setenv("KUBECONFIG", f"{tmp_path / 'missing'}:{tmp_path / 'a'}:{tmp_path / 'b'}")
    found = Credentials.from_kubeconfig()
    assert (found.token, found.insecure) == ("from-a", False)


@pytest.mark.parametrize("plugin", ["exec", "auth-provider"])
def test_a_kubeconfig_plugin_is_refused_by_name(tmp_path: Path, plugin: str) -> None:
    write_kubeconfig(tmp_path / "config", "eks", {plugin: {"command": "aws"}})
    with pytest.raises(ValueError, match=f"context eks authenticates with an {plugin} plugin"):
        Credentials.from_kubeconfig(str(tmp_path / "config"))


def test_a_missing_kubeconfig_is_named(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="does not exist"):
        Credentials.from_kubeconfig(str(tmp_path / "nope"))


async def test_watch_events_split_by_line_however_the_chunks_fall() -> None:
    """A watch's events, one JSON object a line, from chunks that cut lines anywhere; a line of
    1 MiB (a Workflow's status can be that big) is one event, not an error."""
    from foundation_common.rest import _events

    big = {"type": "MODIFIED", "object": {"data": "x" * (1024 * 1024)}}
    text = json.dumps({"type": "ADDED", "object": {"n": 1}}) + "\n" + json.dumps(big) + "\n\n"
    text += json.dumps({"type": "DELETED", "object": {"n": 2}})  # no final newline

    class Chunks:
        async def iter_any(self):  # as aiohttp's StreamReader gives them
            for at in range(0, len(text), 7000):
                yield text[at : at + 7000].encode()

    events = [e async for e in _events(Chunks())]  # type: ignore[arg-type]
    assert [e["type"] for e in events] == ["ADDED", "MODIFIED", "DELETED"]
    assert len(events[1]["object"]["data"]) == 1024 * 1024


async def test_a_compressed_answer_is_read(pki: Path, url: str) -> None:
    """Found on the cluster: the API server gzips answers past 128 KiB (a member's ConfigMap
    with many task records), and an undecoded body stalled the member's store."""
    async with Client.with_credentials(Credentials(url, ca_path=str(pki / "cert.pem"))) as api:
        assert len((await api.get("/api/v1/namespaces/x/configmaps/big"))["data"]) == 300_000
