"""Certificates and keys of the local cluster, made once with openssl."""

from __future__ import annotations

import secrets
from pathlib import Path

from localcluster.layout import BRIDGE_IP, SERVICE_IP
from localcluster.processes import run

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
    if not (pki / "ca.crt").exists():
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
                str(pki / "ca.key"),
                "-out",
                str(pki / "ca.crt"),
                "-subj",
                "/CN=foundation-local-ca",
            ]
        )
    _signed(pki, "apiserver", "/CN=kube-apiserver", API_SANS)
    _signed(pki, "kubelet", "/CN=foundation-local-node", f"IP:{BRIDGE_IP},IP:127.0.0.1")
    if not (pki / "sa.key").exists():
        run(["openssl", "genrsa", "-out", str(pki / "sa.key"), "2048"])
        run(["openssl", "rsa", "-in", str(pki / "sa.key"), "-pubout", "-out", str(pki / "sa.pub")])
    tokens = pki / "tokens.csv"
    if not tokens.exists():
        token = secrets.token_hex(24)
        tokens.write_text(f'{token},admin,admin,"system:masters"\n')
        tokens.chmod(0o600)
    return tokens.read_text().split(",", 1)[0]


def _signed(pki: Path, name: str, subject: str, sans: str) -> None:
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
    ext.write_text(f"subjectAltName={sans}\nextendedKeyUsage=serverAuth,clientAuth\n")
    run(
        [
            "openssl",
            "x509",
            "-req",
            "-in",
            str(csr),
            "-CA",
            str(pki / "ca.crt"),
            "-CAkey",
            str(pki / "ca.key"),
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
