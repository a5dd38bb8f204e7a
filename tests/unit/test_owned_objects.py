"""Owned-object helpers against an in-memory stand-in for the API's create/read/patch/delete
semantics (409 on an existing name, resourceVersion preconditions), without a cluster."""

import pytest

from foundation_operator.core import owned
from foundation_operator.core.client import ApiError


class FakeKube:
    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], dict] = {}
        self.version = 0
        self.calls: list[str] = []

    def _key(self, kind: str, name: str) -> tuple[str, str]:
        return (kind, name)

    def _bump(self, obj: dict) -> dict:
        self.version += 1
        obj["metadata"]["resourceVersion"] = str(self.version)
        return obj

    async def create(self, obj: dict) -> dict:
        self.calls.append(f"create {obj['kind']}")
        key = self._key(obj["kind"], obj["metadata"]["name"])
        if key in self.objects:
            raise ApiError(status=409, reason="AlreadyExists")
        stored = {**obj, "metadata": {**obj["metadata"], "uid": f"uid-{len(self.objects)}"}}
        self.objects[key] = self._bump(stored)
        return stored

    async def read(self, kind: str, namespace: str, name: str) -> dict | None:
        self.calls.append(f"get {kind}")
        return self.objects.get(self._key(kind, name))

    async def patch(self, kind: str, namespace: str, name: str, patch: dict) -> dict:
        self.calls.append(f"patch {kind}")
        have = self.objects[self._key(kind, name)]
        meta = patch.get("metadata", {})
        if (
            "resourceVersion" in meta
            and meta["resourceVersion"] != (have["metadata"]["resourceVersion"])
        ):
            raise ApiError(status=409, reason="Conflict")
        for field, value in patch.items():
            if field == "metadata":
                for k, v in value.items():
                    if k != "resourceVersion":
                        have["metadata"][k] = v
            else:
                have[field] = value
        return self._bump(have)

    async def delete(self, kind, namespace, name, *, uid=None, resource_version=None, grace=None):
        self.calls.append(f"delete {kind}")
        have = self.objects.get(self._key(kind, name))
        if have is None or (
            resource_version and resource_version != have["metadata"]["resourceVersion"]
        ):
            return False
        del self.objects[self._key(kind, name)]
        return True


def service(name: str = "s", owners: list | None = None, **spec) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": "n", "ownerReferences": owners or []},
        "spec": spec,
    }


def ref(uid: str, kind: str = "Agent") -> dict:
    return owned.owner_reference("foundation.dev/v1alpha1", kind, uid, uid, controller=False)


async def test_create_or_read_creates_once_then_reads() -> None:
    kube = FakeKube()
    first, created = await owned.create_or_read(kube, service())
    again, created_again = await owned.create_or_read(kube, service())
    assert (created, created_again) == (True, False)
    assert again["metadata"]["uid"] == first["metadata"]["uid"]


async def test_ensure_patches_only_the_fields_that_differ() -> None:
    kube = FakeKube()
    await owned.ensure(kube, service(a=1))
    await owned.ensure(kube, service(a=1), fields=("spec",))
    assert kube.calls == ["create Service", "create Service", "get Service"]  # no patch
    await owned.ensure(kube, service(a=2), fields=("spec",))
    assert kube.calls[-1] == "patch Service"
    assert kube.objects[("Service", "s")]["spec"] == {"a": 2}


async def test_adopt_adds_an_owner_once_and_can_take_over_from_another_of_a_kind() -> None:
    kube = FakeKube()
    have, _ = await owned.create_or_read(kube, service(owners=[ref("old"), ref("x", "Other")]))
    assert await owned.adopt(kube, have, ref("new"), replacing_kind="Agent")
    owners = kube.objects[("Service", "s")]["metadata"]["ownerReferences"]
    assert [o["uid"] for o in owners] == ["x", "new"]
    assert not await owned.adopt(kube, kube.objects[("Service", "s")], ref("new"))


async def test_owner_lists_are_edited_only_at_the_version_they_were_read() -> None:
    kube = FakeKube()
    have, _ = await owned.create_or_read(kube, service(owners=[ref("a")]))
    stale = {**have, "metadata": {**have["metadata"]}}
    await owned.adopt(kube, have, ref("b"))  # someone else joined since `stale` was read
    with pytest.raises(ApiError) as conflict:
        await owned.adopt(kube, stale, ref("c"))
    assert conflict.value.status == 409
    owners = kube.objects[("Service", "s")]["metadata"]["ownerReferences"]
    assert [o["uid"] for o in owners] == ["a", "b"]  # nobody's entry was dropped


async def test_disown_keeps_the_object_for_other_owners_and_the_last_deletes_it() -> None:
    kube = FakeKube()
    have, _ = await owned.create_or_read(kube, service(owners=[ref("a"), ref("b")]))
    assert await owned.disown(kube, have, "a", delete_when_last=True)
    assert not await owned.disown(kube, kube.objects[("Service", "s")], "a")
    assert await owned.disown(kube, kube.objects[("Service", "s")], "b", delete_when_last=True)
    assert ("Service", "s") not in kube.objects
