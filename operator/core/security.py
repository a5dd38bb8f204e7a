"""The "restricted" Pod Security Standard: what every pod the operator makes is given, and a pure
checker of the profile's rules.

Kubernetes 1.20 has no Pod Security Admission, and a hardened cluster of today enforces the
profile on every namespace, so the operator's pods must meet it by construction; `violations`
is run over every pod the operator builds and every pod the chart renders (unit tests).
The rules are the profile's as of Kubernetes 1.30 (baseline's included):
https://kubernetes.io/docs/concepts/security/pod-security-standards/
"""

from __future__ import annotations

from typing import Any

from foundation_common import access

Obj = dict[str, Any]
UID = 10001  # non-root, as the image's user
# Scratch space, the root filesystem being read-only: an emptyDir, which TMPDIR names. Not at
# /tmp itself: where containers see the node's filesystem (the local cluster's test node), a
# volume over /tmp would hide what lives there (a checkout under /tmp, its .venv).
SCRATCH_VOLUME = "tmp"
SCRATCH_MOUNT = "/var/lib/foundation/tmp"


def container_context() -> Obj:
    """A container's securityContext: nothing to escalate, no capabilities, a read-only root."""
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }


def pod_context(fs_group: bool = True) -> Obj:
    """A pod's securityContext: a non-root uid and gid, RuntimeDefault seccomp, and fsGroup so
    that volumes (a member's PVC) are writable by that group."""
    context: Obj = {
        "runAsNonRoot": True,
        "runAsUser": UID,
        "runAsGroup": UID,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    if fs_group:
        context["fsGroup"] = UID
    return context


def scratch_volume() -> Obj:
    return {"name": SCRATCH_VOLUME, "emptyDir": {}}


def scratch_mount() -> Obj:
    return {"name": SCRATCH_VOLUME, "mountPath": SCRATCH_MOUNT}


def scratch_env() -> Obj:
    return {"name": "TMPDIR", "value": SCRATCH_MOUNT}


# The caller token: a projected ServiceAccount token bound to Foundation's audience, with which
# the pod's sidecar, runtime or runner proves who it is to the members it calls
# (foundation_common.access). Short-lived and renewed by the kubelet; useless to the API server.
CALLER_TOKEN_VOLUME = "foundation-token"


def caller_token_volume() -> Obj:
    return {
        "name": CALLER_TOKEN_VOLUME,
        "projected": {
            "defaultMode": 0o444,
            "sources": [
                {
                    "serviceAccountToken": {
                        "audience": access.AUDIENCE,
                        "expirationSeconds": access.TOKEN_SECONDS,
                        "path": "token",
                    }
                }
            ],
        },
    }


def caller_token_mount() -> Obj:
    return {"name": CALLER_TOKEN_VOLUME, "mountPath": access.TOKEN_DIR, "readOnly": True}


ALLOWED_VOLUMES = {
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
}
ALLOWED_CAPABILITIES = {"NET_BIND_SERVICE"}
SAFE_SYSCTLS = {
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
}
SELINUX_TYPES = {"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"}


def violations(pod_spec: Obj) -> list[str]:
    """What in a pod spec breaks the restricted profile, as `field: why`; empty if none."""
    found: list[str] = []
    pod_ctx = pod_spec.get("securityContext") or {}
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        if pod_spec.get(field):
            found.append(f"spec.{field}: host namespaces are not allowed")
    for volume in pod_spec.get("volumes") or []:
        kinds = set(volume) - {"name"}
        if not kinds <= ALLOWED_VOLUMES:
            found.append(f"volume {volume.get('name')}: {', '.join(sorted(kinds))} not allowed")
    for sysctl in pod_ctx.get("sysctls") or []:
        if sysctl.get("name") not in SAFE_SYSCTLS:
            found.append(f"spec.securityContext.sysctls: {sysctl.get('name')} is not safe")
    found += _context_problems("spec.securityContext", pod_ctx)
    containers = [
        (kind, c)
        for kind in ("initContainers", "containers", "ephemeralContainers")
        for c in pod_spec.get(kind) or []
    ]
    for kind, c in containers:
        where = f"{kind}[{c.get('name')}]"
        ctx = c.get("securityContext") or {}
        found += _context_problems(f"{where}.securityContext", ctx)
        if ctx.get("privileged"):
            found.append(f"{where}: privileged is not allowed")
        if ctx.get("allowPrivilegeEscalation") is not False:
            found.append(f"{where}: allowPrivilegeEscalation must be false")
        capabilities = ctx.get("capabilities") or {}
        if "ALL" not in (capabilities.get("drop") or []):
            found.append(f"{where}: capabilities must drop ALL")
        extra = set(capabilities.get("add") or []) - ALLOWED_CAPABILITIES
        if extra:
            found.append(
                f"{where}: capabilities may add NET_BIND_SERVICE only, not {sorted(extra)}"
            )
        if ctx.get("procMount") not in (None, "Default"):
            found.append(f"{where}: procMount must be Default")
        for port in c.get("ports") or []:
            if port.get("hostPort"):
                found.append(f"{where}: hostPort {port['hostPort']} is not allowed")
        # Non-root and seccomp: the container's own setting, else the pod's.
        if not ctx.get("runAsNonRoot", pod_ctx.get("runAsNonRoot")):
            found.append(f"{where}: runAsNonRoot must be true (in the pod or the container)")
        seccomp = (ctx.get("seccompProfile") or pod_ctx.get("seccompProfile") or {}).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            found.append(f"{where}: seccompProfile must be RuntimeDefault or Localhost")
    return found


def _context_problems(where: str, ctx: Obj) -> list[str]:
    found = []
    if ctx.get("runAsUser") == 0:
        found.append(f"{where}.runAsUser: 0 (root) is not allowed")
    if ctx.get("runAsNonRoot") is False:
        found.append(f"{where}.runAsNonRoot: false is not allowed")
    if (ctx.get("seccompProfile") or {}).get("type") == "Unconfined":
        found.append(f"{where}.seccompProfile: Unconfined is not allowed")
    if (ctx.get("seLinuxOptions") or {}).get("type", "") not in SELINUX_TYPES:
        found.append(f"{where}.seLinuxOptions.type: not allowed")
    if (ctx.get("windowsOptions") or {}).get("hostProcess"):
        found.append(f"{where}.windowsOptions.hostProcess: not allowed")
    return found
