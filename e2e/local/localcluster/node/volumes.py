"""A pod's volumes as directories on this machine, ready to be bind-mounted into its containers.

Supported: emptyDir, configMap, secret, downwardAPI, projected (serviceAccountToken, configMap,
secret, downwardAPI), persistentVolumeClaim and hostPath. Projections are refreshed while the pod
runs, as a kubelet does; service-account tokens are renewed at 80 % of their lifetime.
"""

from __future__ import annotations

import asyncio
import base64
import os
import stat
import time
from pathlib import Path
from typing import Any

from kubernetes_asyncio import client

from localcluster.node.api import Obj, body, optional
from localcluster.node.podspec import field_value

Files = dict[str, tuple[bytes, int]]


class VolumeError(Exception):
    """A volume cannot be set up yet or at all (FailedMount); the message says which and why."""


def write_files(root: Path, files: Files) -> bool:
    """Make `root` hold exactly `files` (path -> content, mode); True if anything changed."""
    changed = False
    root.mkdir(parents=True, exist_ok=True)
    for rel, (content, mode) in files.items():
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            same = target.read_bytes() == content and (target.stat().st_mode & 0o777) == mode
        except FileNotFoundError:
            same = False
        if same:
            continue
        tmp = target.with_name(f".{target.name}.tmp")
        tmp.write_bytes(content)
        tmp.chmod(mode)
        os.replace(tmp, target)
        changed = True
    wanted = {root / rel for rel in files}
    for dirpath, _, filenames in os.walk(root, topdown=False):
        for name in filenames:
            path = Path(dirpath) / name
            if path not in wanted:
                path.unlink()
                changed = True
        if Path(dirpath) != root and not os.listdir(dirpath):
            os.rmdir(dirpath)
    return changed


def key_files(
    data: dict[str, bytes], items: list[Obj] | None, default_mode: int, what: str, optional_: bool
) -> Files:
    """configMap/secret keys as files: every key, or just `items` at their paths and modes."""
    if not items:
        return {key: (value, default_mode) for key, value in data.items()}
    files: Files = {}
    for item in items:
        if item["key"] not in data:
            if optional_:
                continue
            raise VolumeError(f"{what} has no key {item['key']!r}")
        files[item["path"]] = (data[item["key"]], item.get("mode", default_mode))
    return files


def configmap_data(cm: Obj) -> dict[str, bytes]:
    data = {k: v.encode() for k, v in (cm.get("data") or {}).items()}
    data.update({k: base64.b64decode(v) for k, v in (cm.get("binaryData") or {}).items()})
    return data


def secret_data(secret: Obj) -> dict[str, bytes]:
    return {k: base64.b64decode(v) for k, v in (secret.get("data") or {}).items()}


def downward_files(pod: Obj, items: list[Obj], default_mode: int) -> Files:
    files: Files = {}
    for item in items:
        if "fieldRef" in item:
            value = field_value(pod, item["fieldRef"]["fieldPath"])
        else:
            ref = item["resourceFieldRef"]
            value = ""
            for container in pod["spec"]["containers"]:
                if container["name"] == ref.get("containerName", container["name"]):
                    section, _, name = ref["resource"].partition(".")
                    value = str(
                        ((container.get("resources") or {}).get(section) or {}).get(name, "")
                    )
                    break
        files[item["path"]] = (value.encode(), item.get("mode", default_mode))
    return files


def apply_fs_group(root: Path, group: int, writable: bool) -> None:
    """Every file of a volume to `group`; in a writable one (emptyDir, a claim) the group may
    also do what the owner may, and directories are setgid."""
    for path in [root, *root.rglob("*")]:
        if path.is_symlink():
            continue
        os.chown(path, -1, group)
        if writable:
            mode = path.stat().st_mode
            extra = ((mode & 0o700) >> 3) | (stat.S_ISGID if path.is_dir() else 0)
            path.chmod((mode & 0o7777) | extra)


class PodVolumes:
    """Sets up and refreshes the volumes of one pod under `root` (its directory)."""

    def __init__(self, api: client.ApiClient, pod: Obj, root: Path) -> None:
        self.core = client.CoreV1Api(api)
        self.pod = pod
        self.root = root
        self.paths: dict[str, str] = {}
        self._token_expiry: dict[tuple[str, int], float] = {}

    @property
    def namespace(self) -> str:
        return self.pod["metadata"]["namespace"]

    async def prepare(self) -> dict[str, str]:
        for volume in self.pod["spec"].get("volumes") or []:
            self.paths[volume["name"]] = await self._prepare(volume)
            await self._own(volume)
        return self.paths

    async def _own(self, volume: Obj) -> None:
        """fsGroup, as a kubelet applies it: the volume's files belong to that group, which may
        write what the owner may (directories setgid, so new files join the group too).
        hostPath volumes are left as they are."""
        group = (self.pod["spec"].get("securityContext") or {}).get("fsGroup")
        if group is None or "hostPath" in volume or volume["name"] not in self.paths:
            return
        writable = "emptyDir" in volume or "persistentVolumeClaim" in volume
        # A walk of every file: off the node's event loop (a claim may hold many).
        path = Path(self.paths[volume["name"]])
        await asyncio.to_thread(apply_fs_group, path, int(group), writable)

    async def refresh(self, pod: Obj | None = None) -> None:
        """Bring projected content up to date (changed objects, labels, expiring tokens)."""
        if pod is not None:
            self.pod = pod
        for volume in self.pod["spec"].get("volumes") or []:
            if any(k in volume for k in ("configMap", "secret", "downwardAPI", "projected")):
                await self._prepare(volume)
                await self._own(volume)

    async def _prepare(self, volume: Obj) -> str:
        name = volume["name"]
        target = self.root / "volumes" / name
        if "emptyDir" in volume:
            target.mkdir(parents=True, exist_ok=True)
            target.chmod(0o777)  # as a kubelet makes it: any container's user may write
        elif "configMap" in volume:
            write_files(target, await self._key_files("ConfigMap", volume["configMap"]))
        elif "secret" in volume:
            write_files(target, await self._key_files("Secret", volume["secret"]))
        elif "downwardAPI" in volume:
            source = volume["downwardAPI"]
            mode = source.get("defaultMode", 0o644)
            write_files(target, downward_files(self.pod, source.get("items") or [], mode))
        elif "projected" in volume:
            write_files(target, await self._projected_files(name, volume["projected"]))
        elif "persistentVolumeClaim" in volume:
            return await self._claim_path(volume["persistentVolumeClaim"]["claimName"])
        elif "hostPath" in volume:
            path = Path(volume["hostPath"]["path"])
            kind = volume["hostPath"].get("type", "")
            if kind == "DirectoryOrCreate":
                path.mkdir(parents=True, exist_ok=True)
            elif kind == "FileOrCreate" and not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                path.touch()
            elif not path.exists():
                raise VolumeError(f"hostPath {path} of volume {name!r} does not exist")
            return str(path)
        else:
            kinds = sorted(k for k in volume if k != "name")
            raise VolumeError(f"volume {name!r}: the local test node does not support {kinds}")
        return str(target)

    async def _key_files(self, kind: str, source: Obj, default_mode: int = 0o644) -> Files:
        """A configMap or secret source as files (`kind` is "ConfigMap" or "Secret")."""
        mode = source.get("defaultMode", default_mode)
        name = source.get("secretName") or source["name"]
        if kind == "ConfigMap":
            read, decode = self.core.read_namespaced_config_map, configmap_data
        else:
            read, decode = self.core.read_namespaced_secret, secret_data
        obj = await optional(read(name, self.namespace, _preload_content=False))
        what = f'{kind.lower()} "{name}"'
        optional_ = bool(source.get("optional"))
        if obj is None:
            if optional_:
                return {}
            raise VolumeError(f"{what} not found")
        return key_files(decode(obj), source.get("items"), mode, what, optional_)

    async def _projected_files(self, volume_name: str, projected: Obj) -> Files:
        mode = projected.get("defaultMode", 0o644)
        files: Files = {}
        for index, source in enumerate(projected.get("sources") or []):
            if "serviceAccountToken" in source:
                files.update(
                    await self._token_file(volume_name, index, source["serviceAccountToken"], mode)
                )
            elif "configMap" in source:
                files.update(await self._key_files("ConfigMap", source["configMap"], mode))
            elif "secret" in source:
                files.update(await self._key_files("Secret", source["secret"], mode))
            elif "downwardAPI" in source:
                files.update(
                    downward_files(self.pod, source["downwardAPI"].get("items") or [], mode)
                )
        return files

    async def _token_file(self, volume: str, index: int, source: Obj, mode: int) -> Files:
        target = self.root / "volumes" / volume / source["path"]
        key = (volume, index)
        if target.exists() and time.time() < self._token_expiry.get(key, 0):
            return {source["path"]: (target.read_bytes(), mode)}
        seconds = int(source.get("expirationSeconds", 3600))
        spec: dict[str, Any] = {
            "expirationSeconds": seconds,
            "boundObjectRef": {
                "apiVersion": "v1",
                "kind": "Pod",
                "name": self.pod["metadata"]["name"],
                "uid": self.pod["metadata"]["uid"],
            },
        }
        if source.get("audience"):
            spec["audiences"] = [source["audience"]]
        account = self.pod["spec"].get("serviceAccountName") or "default"
        answer = await body(
            self.core.create_namespaced_service_account_token(
                account,
                self.namespace,
                {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec},
                _preload_content=False,
            )
        )
        self._token_expiry[key] = time.time() + 0.8 * seconds
        return {source["path"]: (answer["status"]["token"].encode(), mode)}

    async def _claim_path(self, claim: str) -> str:
        pvc = await optional(
            self.core.read_namespaced_persistent_volume_claim(
                claim, self.namespace, _preload_content=False
            )
        )
        if pvc is None:
            raise VolumeError(f'persistentvolumeclaim "{claim}" not found')
        volume_name = pvc["spec"].get("volumeName")
        if not volume_name or pvc.get("status", {}).get("phase") != "Bound":
            raise VolumeError(f'persistentvolumeclaim "{claim}" is not bound yet')
        pv = await body(self.core.read_persistent_volume(volume_name, _preload_content=False))
        spec = pv["spec"]
        path = (spec.get("hostPath") or spec.get("local") or {}).get("path")
        if not path:
            raise VolumeError(f"persistentvolume {volume_name} has no hostPath or local path")
        Path(path).mkdir(parents=True, exist_ok=True)
        return path
