"""Pure rules a kubelet applies to a pod spec: env, `$(VAR)` expansion, phase, back-off.

Nothing here talks to the API or the operating system, so it is tested on plain dicts.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from localcluster.layout import APISERVER_PORT, BRIDGE_IP, MAX_RESTART_BACKOFF

Obj = dict[str, Any]
# Looks up `kind` ("ConfigMap" or "Secret") `name`; None when it does not exist.
Lookup = Callable[[str, str], Obj | None]

BASE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class ConfigError(Exception):
    """A container cannot be configured (CreateContainerConfigError); the message says why."""


_VAR_REF = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.\-]*)\)")


def expand(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes' `$(VAR)` expansion: known names are replaced, `$$` escapes, others stay."""

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1)
        return env.get(name, match.group(0))

    return _VAR_REF.sub(replace, text)


def field_value(pod: Obj, path: str) -> str:
    """The value of a downward-API fieldRef such as `metadata.labels['app']` or `status.podIP`."""
    meta, spec, status = pod.get("metadata", {}), pod.get("spec", {}), pod.get("status", {})
    subscript = re.fullmatch(r"metadata\.(labels|annotations)\['([^']+)'\]", path)
    if subscript:
        return str((meta.get(subscript.group(1)) or {}).get(subscript.group(2), ""))
    simple = {
        "metadata.name": meta.get("name"),
        "metadata.namespace": meta.get("namespace"),
        "metadata.uid": meta.get("uid"),
        "spec.nodeName": spec.get("nodeName"),
        "spec.serviceAccountName": spec.get("serviceAccountName"),
        "status.hostIP": status.get("hostIP"),
        "status.podIP": status.get("podIP"),
        "status.podIPs": ",".join(ip["ip"] for ip in status.get("podIPs") or []),
    }
    if path in simple:
        return str(simple[path] or "")
    if path in ("metadata.labels", "metadata.annotations"):
        values = meta.get(path.split(".")[1]) or {}
        return "\n".join(f'{k}="{v}"' for k, v in sorted(values.items()))
    raise ConfigError(f"unsupported fieldRef fieldPath {path!r}")


def _key_from(kind: str, ref: Obj, lookup: Lookup) -> str | None:
    obj = lookup(kind, ref["name"])
    optional = bool(ref.get("optional"))
    if obj is None:
        if optional:
            return None
        raise ConfigError(f'{kind.lower()} "{ref["name"]}" not found')
    key = ref["key"]
    if kind == "Secret":
        data = obj.get("data") or {}
        if key in data:
            return base64.b64decode(data[key]).decode()
    else:
        data = obj.get("data") or {}
        if key in data:
            return data[key]
    if optional:
        return None
    raise ConfigError(
        f"couldn't find key {key} in {kind} {obj['metadata']['namespace']}/{ref['name']}"
    )


def _all_from(kind: str, ref: Obj, lookup: Lookup) -> dict[str, str]:
    obj = lookup(kind, ref["name"])
    if obj is None:
        if ref.get("optional"):
            return {}
        raise ConfigError(f'{kind.lower()} "{ref["name"]}" not found')
    data = obj.get("data") or {}
    if kind == "Secret":
        return {k: base64.b64decode(v).decode() for k, v in data.items()}
    return dict(data)


def resource_value(container: Obj, ref: Obj, node_allocatable: Mapping[str, str]) -> str:
    resource = ref["resource"]
    section, _, name = resource.partition(".")
    value = ((container.get("resources") or {}).get(section) or {}).get(name)
    if value is None:
        # As a kubelet does: an unset limit reads as the node's allocatable amount.
        value = node_allocatable.get(name, "0")
    return str(value)


def container_env(
    pod: Obj,
    container: Obj,
    lookup: Lookup,
    *,
    path_prefix: str,
    node_allocatable: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The environment a kubelet gives `container`: defaults, envFrom, then env, in order."""
    env: dict[str, str] = {
        "PATH": f"{path_prefix}:{BASE_PATH}" if path_prefix else BASE_PATH,
        "HOSTNAME": pod["metadata"]["name"],
        "HOME": "/root",
        "KUBERNETES_SERVICE_HOST": BRIDGE_IP,
        "KUBERNETES_SERVICE_PORT": str(APISERVER_PORT),
        "KUBERNETES_SERVICE_PORT_HTTPS": str(APISERVER_PORT),
        "KUBERNETES_PORT": f"tcp://{BRIDGE_IP}:{APISERVER_PORT}",
    }
    for source in container.get("envFrom") or []:
        prefix = source.get("prefix", "")
        if "configMapRef" in source:
            values = _all_from("ConfigMap", source["configMapRef"], lookup)
        elif "secretRef" in source:
            values = _all_from("Secret", source["secretRef"], lookup)
        else:
            continue
        env.update({prefix + k: v for k, v in values.items()})
    for var in container.get("env") or []:
        name = var["name"]
        if "valueFrom" not in var:
            env[name] = expand(var.get("value", ""), env)
            continue
        source = var["valueFrom"]
        if "fieldRef" in source:
            value: str | None = field_value(pod, source["fieldRef"]["fieldPath"])
        elif "configMapKeyRef" in source:
            value = _key_from("ConfigMap", source["configMapKeyRef"], lookup)
        elif "secretKeyRef" in source:
            value = _key_from("Secret", source["secretKeyRef"], lookup)
        elif "resourceFieldRef" in source:
            value = resource_value(container, source["resourceFieldRef"], node_allocatable or {})
        else:
            raise ConfigError(f"env {name}: unsupported valueFrom {sorted(source)}")
        if value is not None:
            env[name] = value
    return env


def container_argv(container: Obj, env: Mapping[str, str]) -> list[str]:
    """command + args with `$(VAR)` expanded.

    The test node ignores images, so a container without a command cannot run there.
    """
    command = list(container.get("command") or [])
    args = list(container.get("args") or [])
    if not command:
        raise ConfigError(
            f"container {container['name']!r} has no command: the local test node runs containers"
            " as processes and ignores the image's entrypoint; set `command`"
        )
    return [expand(part, env) for part in command + args]


def restart_delay(consecutive_failures: int, base: float) -> float:
    """A kubelet's back-off: the first restart at once, then base, 2*base, ... up to 5 minutes."""
    if consecutive_failures <= 1:
        return 0.0
    return min(base * 2 ** (consecutive_failures - 2), MAX_RESTART_BACKOFF)


def should_restart(restart_policy: str, exit_code: int) -> bool:
    if restart_policy == "Always":
        return True
    if restart_policy == "OnFailure":
        return exit_code != 0
    return False


def exit_reason(exit_code: int, oom_killed: bool = False) -> str:
    if oom_killed:
        return "OOMKilled"
    return "Completed" if exit_code == 0 else "Error"


UNITS = {"": 1, "k": 10**3, "M": 10**6, "G": 10**9, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30}
QUANTITY = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(k|M|G|Ki|Mi|Gi)?$")


def memory_limit(container: Obj) -> int | None:
    """The container's memory limit in bytes, if it has one this node understands."""
    value = ((container.get("resources") or {}).get("limits") or {}).get("memory")
    found = QUANTITY.match(str(value)) if value is not None else None
    if found is None:
        return None
    return int(float(found.group(1)) * UNITS[found.group(2) or ""])


def resolve_port(container: Obj, port: int | str) -> int:
    if isinstance(port, int) or (isinstance(port, str) and port.isdigit()):
        return int(port)
    for declared in container.get("ports") or []:
        if declared.get("name") == port:
            return int(declared["containerPort"])
    raise ConfigError(f"container {container['name']!r} has no port named {port!r}")


@dataclass
class ContainerStatus:
    """One container's status as a kubelet reports it (`v1.ContainerStatus`)."""

    name: str
    image: str
    state: Obj
    last_state: Obj
    restart_count: int = 0
    ready: bool = False
    started: bool = False
    container_id: str = ""

    def to_api(self) -> Obj:
        out: Obj = {
            "name": self.name,
            "image": self.image,
            "imageID": "",
            "state": self.state,
            "lastState": self.last_state,
            "restartCount": self.restart_count,
            "ready": self.ready,
            "started": self.started,
        }
        if self.container_id:
            out["containerID"] = self.container_id
        return out

    @property
    def terminated(self) -> Obj | None:
        return self.state.get("terminated")

    @property
    def running(self) -> bool:
        return "running" in self.state


def pod_phase(
    restart_policy: str,
    init_statuses: Iterable[ContainerStatus],
    statuses: Iterable[ContainerStatus],
) -> str:
    """The pod phase from its containers, as the kubelet's getPhase decides it."""
    init_statuses, statuses = list(init_statuses), list(statuses)
    for init in init_statuses:
        done = init.terminated
        if done and done.get("exitCode") == 0:
            continue
        if done and restart_policy == "Never":
            return "Failed"
        return "Pending"
    running = sum(1 for s in statuses if s.running)
    terminated = [s.terminated for s in statuses if s.terminated]
    waiting_restarted = sum(
        1 for s in statuses if "waiting" in s.state and s.last_state.get("terminated")
    )
    if running or waiting_restarted:
        return "Running"
    if statuses and len(terminated) == len(statuses):
        # As the kubelet's getPhase: containers that will be restarted keep the pod Running.
        if restart_policy == "Always":
            return "Running"
        if all(t.get("exitCode") == 0 for t in terminated):
            return "Succeeded"
        if restart_policy == "OnFailure":
            return "Running"
        return "Failed"
    return "Pending"


def condition(kind: str, ok: bool, now: str, previous: Obj | None, reason: str = "") -> Obj:
    """A pod condition, keeping its lastTransitionTime while the status does not change."""
    status = "True" if ok else "False"
    since = previous["lastTransitionTime"] if previous and previous.get("status") == status else now
    out: Obj = {"type": kind, "status": status, "lastProbeTime": None, "lastTransitionTime": since}
    if reason and not ok:
        out["reason"] = reason
    return out


def pod_conditions(
    init_statuses: list[ContainerStatus],
    statuses: list[ContainerStatus],
    previous: list[Obj],
    now: str,
) -> list[Obj]:
    before = {c["type"]: c for c in previous}
    initialized = all((s.terminated or {}).get("exitCode") == 0 for s in init_statuses)
    ready = initialized and bool(statuses) and all(s.ready for s in statuses)
    out = [c for c in previous if c["type"] == "PodScheduled"]
    out.append(
        condition(
            "Initialized", initialized, now, before.get("Initialized"), "ContainersNotInitialized"
        )
    )
    out.append(condition("Ready", ready, now, before.get("Ready"), "ContainersNotReady"))
    out.append(
        condition(
            "ContainersReady", ready, now, before.get("ContainersReady"), "ContainersNotReady"
        )
    )
    return out
