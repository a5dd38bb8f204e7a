"""Dynamic provisioning for the default StorageClass: each claim gets a directory on this machine.

The PersistentVolume binder does not run in the local control plane, so this provisioner also
binds: it creates the volume pre-bound to the claim and records the binding on both objects, as
the binder would. A volume and its directory live until their claim is deleted.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
from pathlib import Path

from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from localcluster.layout import PROVISIONER, STORAGE_CLASS, Layout
from localcluster.node.api import Obj, body, list_and_watch

logger = logging.getLogger(__name__)


def volume_for(claim: Obj, path: Path) -> Obj:
    """The PersistentVolume that satisfies `claim` from the directory `path` (pure)."""
    meta = claim["metadata"]
    request = claim["spec"].get("resources", {}).get("requests", {}).get("storage", "1Gi")
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {
            "name": f"pvc-{meta['uid']}",
            "annotations": {"pv.kubernetes.io/provisioned-by": PROVISIONER},
            "labels": {"foundation.dev/provisioned-by": "local-path"},
        },
        "spec": {
            "capacity": {"storage": request},
            "accessModes": claim["spec"].get("accessModes") or ["ReadWriteOnce"],
            "persistentVolumeReclaimPolicy": "Delete",
            "storageClassName": STORAGE_CLASS,
            "volumeMode": claim["spec"].get("volumeMode", "Filesystem"),
            "hostPath": {"path": str(path), "type": "DirectoryOrCreate"},
            "claimRef": {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "namespace": meta["namespace"],
                "name": meta["name"],
                "uid": meta["uid"],
            },
        },
    }


def wants_volume(claim: Obj) -> bool:
    return (
        claim["spec"].get("storageClassName") == STORAGE_CLASS
        and not claim["spec"].get("volumeName")
        and not claim["metadata"].get("deletionTimestamp")
    )


class Provisioner:
    def __init__(self, api: client.ApiClient, layout: Layout) -> None:
        self.core = client.CoreV1Api(api)
        self.layout = layout

    async def run(self) -> None:
        async for kind, obj in list_and_watch(
            self.core.list_persistent_volume_claim_for_all_namespaces
        ):
            if kind == "SYNC":
                claims = {c["metadata"]["uid"] for c in obj["items"]}
                await self.collect_orphans(claims)
                for claim in obj["items"]:
                    await self.observe(claim)
            elif kind == "DELETED":
                await self.release(obj["metadata"]["uid"])
            else:
                await self.observe(obj)

    async def observe(self, claim: Obj) -> None:
        if not wants_volume(claim):
            return
        try:
            await self.provision(claim)
        except ApiException as exc:
            meta = claim["metadata"]
            logger.warning("provisioning %s/%s failed: %s", meta["namespace"], meta["name"], exc)

    async def provision(self, claim: Obj) -> None:
        meta = claim["metadata"]
        path = self.layout.volumes / f"pvc-{meta['uid']}"
        path.mkdir(parents=True, exist_ok=True)
        volume = volume_for(claim, path)
        name = volume["metadata"]["name"]
        try:
            await body(self.core.create_persistent_volume(volume, _preload_content=False))
        except ApiException as exc:
            if exc.status != 409:
                raise
        await body(
            self.core.patch_persistent_volume_status(
                name,
                {"status": {"phase": "Bound"}},
                _content_type="application/merge-patch+json",
                _preload_content=False,
            )
        )
        merge = "application/merge-patch+json"
        await body(
            self.core.patch_namespaced_persistent_volume_claim(
                meta["name"],
                meta["namespace"],
                {
                    "metadata": {
                        "annotations": {
                            "pv.kubernetes.io/bind-completed": "yes",
                            "pv.kubernetes.io/bound-by-controller": "yes",
                            "volume.beta.kubernetes.io/storage-provisioner": PROVISIONER,
                        }
                    },
                    "spec": {"volumeName": name},
                },
                _content_type=merge,
                _preload_content=False,
            )
        )
        await body(
            self.core.patch_namespaced_persistent_volume_claim_status(
                meta["name"],
                meta["namespace"],
                {
                    "status": {
                        "phase": "Bound",
                        "accessModes": volume["spec"]["accessModes"],
                        "capacity": volume["spec"]["capacity"],
                    }
                },
                _content_type=merge,
                _preload_content=False,
            )
        )
        logger.info("bound %s/%s to %s at %s", meta["namespace"], meta["name"], name, path)

    async def release(self, claim_uid: str) -> None:
        """The claim is gone: its volume and directory go too (reclaim policy Delete)."""
        name = f"pvc-{claim_uid}"
        with contextlib.suppress(ApiException):
            # As the binder would: a Bound volume keeps its pv-protection finalizer.
            await body(
                self.core.patch_persistent_volume_status(
                    name,
                    {"status": {"phase": "Released"}},
                    _content_type="application/merge-patch+json",
                    _preload_content=False,
                )
            )
        with contextlib.suppress(ApiException):
            await body(self.core.delete_persistent_volume(name, _preload_content=False))
        shutil.rmtree(self.layout.volumes / f"pvc-{claim_uid}", ignore_errors=True)

    async def collect_orphans(self, claims: set[str]) -> None:
        volumes = await body(
            self.core.list_persistent_volume(
                label_selector="foundation.dev/provisioned-by=local-path", _preload_content=False
            )
        )
        for volume in volumes["items"]:
            ref = volume["spec"].get("claimRef") or {}
            if ref.get("uid") not in claims:
                await self.release(ref.get("uid", ""))
