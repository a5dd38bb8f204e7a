"""The control plane's processes: how each is started, when it counts as ready, in what order."""

from __future__ import annotations

import json
import socket
import ssl
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from localcluster import layout
from localcluster import pki as pki_
from localcluster.layout import Layout


@dataclass(frozen=True)
class Component:
    name: str
    argv: list[str]
    ready: Callable[[], bool]
    ready_timeout: float = 60.0
    # The address it listens on, to tell a clash with another cluster from a failure.
    listens: tuple[str, int] | None = None


def kubeconfig_text(layout_: Layout, token: str) -> str:
    ca = layout_.pki / "ca.crt"
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "foundation-local",
                    "cluster": {"server": layout.API_URL, "certificate-authority": str(ca)},
                }
            ],
            "users": [{"name": "admin", "user": {"token": token}}],
            "contexts": [
                {
                    "name": "foundation-local",
                    "context": {"cluster": "foundation-local", "user": "admin"},
                }
            ],
            "current-context": "foundation-local",
        },
        indent=2,
    )


def _http_ok(url: str, *, token: str | None = None, ca: Path | None = None) -> bool:
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    context = ssl.create_default_context(cafile=str(ca)) if ca else None
    try:
        with urllib.request.urlopen(request, timeout=2, context=context) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def api_get(layout_: Layout, token: str, path: str) -> dict[str, Any] | None:
    """GET `path` from the API server, or None when it does not answer 200 with JSON. Straight
    HTTP rather than kubectl: kubectl first discovers every API group, and an aggregated group
    whose server is down (the operator's door between test runs) makes that take seconds."""
    request = urllib.request.Request(f"{layout.API_URL}{path}")
    request.add_header("Authorization", f"Bearer {token}")
    context = ssl.create_default_context(cafile=str(layout_.pki / "ca.crt"))
    try:
        with urllib.request.urlopen(request, timeout=2, context=context) as response:
            body = json.loads(response.read())
    except (urllib.error.URLError, OSError, ValueError):
        return None
    return body if isinstance(body, dict) else None


def api_ready(layout_: Layout, token: str) -> bool:
    return _http_ok(f"{layout.API_URL}/readyz", token=token, ca=layout_.pki / "ca.crt")


def components(
    layout_: Layout, bin_dir: Path, token: str, restart_backoff: float
) -> list[Component]:
    pki = layout_.pki
    etcd_url = f"http://127.0.0.1:{layout.ETCD_CLIENT_PORT}"
    kubeconfig = str(layout_.kubeconfig)
    # Bound service-account tokens (projected volumes, as clusters from 1.21 on do by default).
    gates = "BoundServiceAccountTokenVolume=true"
    return [
        Component(
            "etcd",
            [
                "etcd",
                "--name",
                "local",
                "--data-dir",
                str(layout_.etcd_data),
                "--listen-client-urls",
                etcd_url,
                "--advertise-client-urls",
                etcd_url,
                "--listen-peer-urls",
                f"http://127.0.0.1:{layout.ETCD_PEER_PORT}",
                "--initial-advertise-peer-urls",
                f"http://127.0.0.1:{layout.ETCD_PEER_PORT}",
                "--initial-cluster",
                f"local=http://127.0.0.1:{layout.ETCD_PEER_PORT}",
                "--quota-backend-bytes",
                str(4 * 1024**3),
                "--log-level",
                "warn",
            ],
            lambda: _http_ok(f"{etcd_url}/health"),
            listens=("127.0.0.1", layout.ETCD_CLIENT_PORT),
        ),
        Component(
            "kube-apiserver",
            [
                str(bin_dir / "kube-apiserver"),
                f"--etcd-servers={etcd_url}",
                f"--bind-address={layout.BRIDGE_IP}",
                f"--advertise-address={layout.BRIDGE_IP}",
                f"--secure-port={layout.APISERVER_PORT}",
                f"--tls-cert-file={pki / 'apiserver.crt'}",
                f"--tls-private-key-file={pki / 'apiserver.key'}",
                f"--client-ca-file={pki / 'ca.crt'}",
                f"--service-account-key-file={pki / 'sa.pub'}",
                f"--service-account-signing-key-file={pki / 'sa.key'}",
                "--service-account-issuer=https://kubernetes.default.svc",
                "--api-audiences=https://kubernetes.default.svc",
                f"--token-auth-file={pki / 'tokens.csv'}",
                "--authorization-mode=RBAC",
                f"--service-cluster-ip-range={layout.SERVICE_CIDR}",
                "--allow-privileged=true",
                "--kubelet-preferred-address-types=InternalIP",
                # The aggregation layer, for Foundation's own door (an APIService): the API server
                # authenticates and authorizes people, then relays them as the front proxy.
                f"--requestheader-client-ca-file={pki / 'front-proxy-ca.crt'}",
                f"--requestheader-allowed-names={pki_.FRONT_PROXY_CLIENT}",
                "--requestheader-username-headers=X-Remote-User",
                "--requestheader-group-headers=X-Remote-Group",
                "--requestheader-extra-headers-prefix=X-Remote-Extra-",
                f"--proxy-client-cert-file={pki / 'front-proxy-client.crt'}",
                f"--proxy-client-key-file={pki / 'front-proxy-client.key'}",
                # To the APIService's endpoints directly: the test node runs no kube-proxy.
                "--enable-aggregator-routing=true",
                f"--feature-gates={gates}",
                "--profiling=false",
                "--v=1",
            ],
            lambda: api_ready(layout_, token),
            ready_timeout=90.0,
            listens=(layout.BRIDGE_IP, layout.APISERVER_PORT),
        ),
        Component(
            "kube-controller-manager",
            [
                str(bin_dir / "kube-controller-manager"),
                f"--kubeconfig={kubeconfig}",
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
                "--port=0",
                f"--service-account-private-key-file={pki / 'sa.key'}",
                f"--root-ca-file={pki / 'ca.crt'}",
                "--use-service-account-credentials=false",
                # No legacy token Secret per ServiceAccount (serviceaccount-token), as on
                # Kubernetes 1.24 and later: pods get bound, projected tokens (the gate below),
                # and the controller's two writes per ServiceAccount are writes users' clusters
                # no longer make.
                "--controllers=*,-nodeipam,-nodelifecycle,-cloud-node-lifecycle,-service,-route,"
                "-attachdetach,-persistentvolume-binder,-serviceaccount-token",
                "--kube-api-qps=200",
                "--kube-api-burst=400",
                "--concurrent-gc-syncs=40",
                f"--feature-gates={gates}",
                "--v=1",
            ],
            lambda: True,
        ),
        Component(
            "kube-scheduler",
            [
                str(bin_dir / "kube-scheduler"),
                f"--kubeconfig={kubeconfig}",
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
                "--port=0",
                "--kube-api-qps=400",
                "--kube-api-burst=800",
                "--v=1",
            ],
            lambda: True,
        ),
        Component(
            "node",
            [
                sys.executable,
                "-m",
                "localcluster.node",
                "--kubeconfig",
                kubeconfig,
                "--state",
                str(layout_.state),
                "--restart-backoff",
                str(restart_backoff),
            ],
            lambda: True,
        ),
    ]


def port_taken(host: str, port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex((host, port)) == 0


def wait_until(check: Callable[[], bool], timeout: float, what: str, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    tail = ""
    if log.exists():
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-20:])
    raise RuntimeError(f"{what} not ready after {timeout:.0f} s; last lines of {log}:\n{tail}")


BOOTSTRAP = f"""
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: {layout.STORAGE_CLASS}
  annotations:
    storageclass.kubernetes.io/is-default-class: "true"
provisioner: {layout.PROVISIONER}
reclaimPolicy: Delete
volumeBindingMode: Immediate
"""
