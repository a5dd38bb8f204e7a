"""Certificates and keys of the local cluster, made once with openssl."""

from __future__ import annotations

import secrets
from pathlib import Path

from localcluster.layout import BRIDGE_IP, SERVICE_IP
from localcluster.processes import run

FRONT_PROXY_CLIENT = "front-proxy-client"

API_SANS = ",".join(
    [
        "IP:127.0.0.1",
        f"IP:{BRIDGE_IP}",
        f"IP:{SERVICE_IP}",
        "DNS:localhost",
        "DNS:kubernetes",
        "DNS:kubernetes.default",
        "DNS:kubernetes.default.svc",
        "DNS:kubernetes.default.svc.cluster.local",
    ]
)


def ensure(pki: Path) -> str:
    """Create what is missing under `pki`; return the admin bearer token."""
    pki.mkdir(parents=True, exist_ok=True)
    make_ca(pki, "ca", "/CN=foundation-local-ca")
    signed(pki, "apiserver", "/CN=kube-apiserver", API_SANS)
    signed(pki, "kubelet", "/CN=foundation-local-node", f"IP:{BRIDGE_IP},IP:127.0.0.1")
    # The front proxy: the API server's client identity towards aggregated API servers, from a
    # CA of its own, as kubeadm makes it (a server trusting it trusts only the API server's relay).
    make_ca(pki, "front-proxy-ca", "/CN=foundation-local-front-proxy-ca")
    signed(pki, "front-proxy-client", f"/CN={FRONT_PROXY_CLIENT}", None, ca="front-proxy-ca")
    if not (pki / "sa.key").exists():
        run(["openssl", "genrsa", "-out", str(pki / "sa.key"), "2048"])
        run(["openssl", "rsa", "-in", str(pki / "sa.key"), "-pubout", "-out", str(pki / "sa.pub")])
    tokens = pki / "tokens.csv"
    if not tokens.exists():
        token = secrets.token_hex(24)
        tokens.write_text(f'{token},admin,admin,"system:masters"\n')
        tokens.chmod(0o600)
    return tokens.read_text().split(",", 1)[0]


def make_ca(pki: Path, name: str, subject: str) -> None:
    if (pki / f"{name}.crt").exists():
        return
    run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "3650",
            "-keyout",
            str(pki / f"{name}.key"),
            "-out",
            str(pki / f"{name}.crt"),
            "-subj",
            subject,
        ]
    )


def signed(pki: Path, name: str, subject: str, sans: str | None, ca: str = "ca") -> None:
    if (pki / f"{name}.crt").exists():
        return
    key, csr, crt = (pki / f"{name}.{ext}" for ext in ("key", "csr", "crt"))
    run(
        [
            "openssl",
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(csr),
            "-subj",
            subject,
        ]
    )
    ext = pki / f"{name}.ext"
    ext.write_text(
        (f"subjectAltName={sans}\n" if sans else "") + "extendedKeyUsage=serverAuth,clientAuth\n"
    )
    run(
        [
            "openssl",
            "x509",
            "-req",
            "-in",
            str(csr),
            "-CA",
            str(pki / f"{ca}.crt"),
            "-CAkey",
            str(pki / f"{ca}.key"),
            "-CAcreateserial",
            "-days",
            "3650",
            "-extfile",
            str(ext),
            "-out",
            str(crt),
        ]
    )
    csr.unlink()
    ext.unlink()
