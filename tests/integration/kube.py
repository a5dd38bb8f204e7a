"""Small helpers the integration tests share: objects as dicts, waiting for conditions."""

from __future__ import annotations

import asyncio
import base64
import inspect
import json
import os
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from localcluster.apiclient import list_and_watch
from localcluster.network import pod_netns

REPO = Path(__file__).resolve().parents[2]
PYTHON = str(REPO / ".venv/bin/python")
# A short back-off base, so restart intensity (3 restarts in 5 s by default) can be reached by
# crash-looping containers: a kubelet's 10 s base spaces restarts 10, 20, 40 s apart.
RESTART_BACKOFF = "0.25"
Obj = dict[str, Any]


class Kube:
    """The API as the tests use it, scoped to one namespace."""

    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        self.api = api
        self.ns = namespace
        self.core = client.CoreV1Api(api)
        self.rbac = client.RbacAuthorizationV1Api(api)
        self.custom = client.CustomObjectsApi(api)
        self._caller: dict[str, str] | None = None

    async def caller(self) -> dict[str, str]:
        """Headers for calling members straight (their pod's address), as an in-cluster caller
        does: a projected-style token (audience foundation.dev) of the account `tester`, which
        may send, read and cancel any task of this namespace's Agents. Made once a test."""
        if self._caller is None:
            await self.create({"kind": "ServiceAccount", "metadata": {"name": "tester"}})
            for role in (
                "foundation-agent-caller",
                "foundation-agent-reader",
                "foundation-agent-canceller",
            ):
                await self.create(
                    {
                        "kind": "RoleBinding",
                        "metadata": {"name": f"tester-{role}"},
                        "roleRef": {
                            "apiGroup": "rbac.authorization.k8s.io",
                            "kind": "ClusterRole",
                            "name": role,
                        },
                        "subjects": [
                            {"kind": "ServiceAccount", "name": "tester", "namespace": self.ns}
                        ],
                    }
                )
            answer = await self.core.create_namespaced_service_account_token(
                "tester",
                self.ns,
                {
                    "apiVersion": "authentication.k8s.io/v1",
                    "kind": "TokenRequest",
                    "spec": {"audiences": ["foundation.dev"], "expirationSeconds": 7200},
                },
            )
            self._caller = {"Authorization": f"Bearer {answer.status.token}"}
        return self._caller

    async def member_client(self, **options: Any) -> httpx.AsyncClient:
        """An HTTP client for members' task API and A2A ports, with `caller`'s token."""
        return httpx.AsyncClient(headers=await self.caller(), **options)

    async def create_namespace(self) -> None:
        await self.core.create_namespace({"metadata": {"name": self.ns}})
        # The service-account admission plugin rejects pods until the default account exists.
        await self.wait(lambda: self._default_account(), timeout=30, what="default serviceaccount")

    async def _default_account(self) -> bool:
        try:
            await self.core.read_namespaced_service_account("default", self.ns)
            return True
        except ApiException:
            return False

    async def delete_namespace(self) -> None:
        try:
            await self.core.delete_namespace(self.ns)
        except ApiException as exc:
            if exc.status != 404:
                raise

    async def create(self, obj: Obj) -> Obj:
        """Create a core/v1 or rbac object from a dict in this namespace."""
        kind = obj["kind"]
        obj.setdefault("metadata", {})["namespace"] = self.ns
        creators = {
            "Pod": self.core.create_namespaced_pod,
            "ConfigMap": self.core.create_namespaced_config_map,
            "Secret": self.core.create_namespaced_secret,
            "Service": self.core.create_namespaced_service,
            "ServiceAccount": self.core.create_namespaced_service_account,
            "PersistentVolumeClaim": self.core.create_namespaced_persistent_volume_claim,
            "Role": self.rbac.create_namespaced_role,
            "RoleBinding": self.rbac.create_namespaced_role_binding,
        }
        response = await creators[kind](self.ns, obj, _preload_content=False)
        return json.loads(await response.read())

    async def pod(self, name: str) -> Obj:
        response = await self.core.read_namespaced_pod(name, self.ns, _preload_content=False)
        return json.loads(await response.read())

    async def get(self, kind: str, name: str) -> Obj | None:
        readers = {
            "Endpoints": self.core.read_namespaced_endpoints,
            "PersistentVolumeClaim": self.core.read_namespaced_persistent_volume_claim,
            "Pod": self.core.read_namespaced_pod,
            "Service": self.core.read_namespaced_service,
            "ConfigMap": self.core.read_namespaced_config_map,
            "ServiceAccount": self.core.read_namespaced_service_account,
        }
        try:
            response = await readers[kind](name, self.ns, _preload_content=False)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        if response.status == 404:
            return None
        return json.loads(await response.read())

    async def delete_pod(self, name: str, grace: int | None = None) -> None:
        body = {} if grace is None else {"gracePeriodSeconds": grace}
        await self.core.delete_namespaced_pod(name, self.ns, body=body)

    async def wait(self, check: Callable[[], Any], timeout: float = 60, what: str = "") -> Any:
        """Poll `check` (plain or async) until it returns something truthy; its value."""
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            last = check()
            if inspect.isawaitable(last):
                last = await last
            if last:
                return last
            await asyncio.sleep(0.1)
        raise AssertionError(f"timed out after {timeout:g}s waiting for {what or check}: {last!r}")

    async def wait_pod(
        self, name: str, predicate: Callable[[Obj], bool], timeout: float = 60, what: str = ""
    ) -> Obj:
        async def check() -> Obj | None:
            pod = await self.get("Pod", name)
            return pod if pod and predicate(pod) else None

        return await self.wait(check, timeout, what or f"pod {name}")

    async def wait_running(self, name: str, timeout: float = 60) -> Obj:
        return await self.wait_pod(name, lambda p: is_ready(p), timeout, f"pod {name} Ready")

    async def wait_gone(self, name: str, timeout: float = 60) -> None:
        async def gone() -> bool:
            return await self.get("Pod", name) is None

        await self.wait(gone, timeout, f"pod {name} gone")

    # -- Agents ---------------------------------------------------------------------------

    async def create_agent(self, name: str, **spec: Any) -> Obj:
        """An Agent of CounterAgent by default; without the sidecar unless `sidecar` is given
        (a member pod then starts one process, not two: most tests need no sidecar)."""
        spec.setdefault("sidecar", {"enabled": False})
        body = {
            "apiVersion": "foundation.dev/v1alpha1",
            "kind": "Agent",
            "metadata": {"name": name, "namespace": self.ns},
            "spec": {
                "image": "foundation-agent:dev",
                "agent": "foundation_agent.agents:CounterAgent",
                **spec,
            },
        }
        return await self.custom.create_namespaced_custom_object(
            "foundation.dev", "v1alpha1", self.ns, "agents", body
        )

    async def agent(self, name: str) -> Obj | None:
        try:
            return await self.custom.get_namespaced_custom_object(
                "foundation.dev", "v1alpha1", self.ns, "agents", name
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    async def patch_custom(self, plural: str, name: str, patch: Obj) -> Obj:
        """A merge patch of one of Foundation's objects (`agents`, `workflows`)."""
        return await self.custom.patch_namespaced_custom_object(
            "foundation.dev",
            "v1alpha1",
            self.ns,
            plural,
            name,
            patch,
            _content_type="application/merge-patch+json",
        )

    async def patch_agent(self, name: str, patch: Obj) -> Obj:
        return await self.patch_custom("agents", name, patch)

    async def delete_agent(self, name: str) -> None:
        await self.custom.delete_namespaced_custom_object(
            "foundation.dev", "v1alpha1", self.ns, "agents", name
        )

    async def wait_agent(
        self, name: str, predicate: Callable[[Obj], bool], timeout: float = 60, what: str = ""
    ) -> Obj:
        async def check() -> Obj | None:
            agent = await self.agent(name)
            return agent if agent and predicate(agent) else None

        return await self.wait(check, timeout, what or f"agent {name}")

    # -- Workflows ----------------------------------------------------------------------------

    async def create_workflow(self, name: str, **spec: Any) -> Obj:
        body = {
            "apiVersion": "foundation.dev/v1alpha1",
            "kind": "Workflow",
            "metadata": {"name": name, "namespace": self.ns},
            "spec": spec,
        }
        return await self.custom.create_namespaced_custom_object(
            "foundation.dev", "v1alpha1", self.ns, "workflows", body
        )

    async def patch_workflow(self, name: str, patch: Obj) -> Obj:
        return await self.patch_custom("workflows", name, patch)

    async def workflow(self, name: str) -> Obj | None:
        try:
            return await self.custom.get_namespaced_custom_object(
                "foundation.dev", "v1alpha1", self.ns, "workflows", name
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    async def wait_workflow(
        self, name: str, predicate: Callable[[Obj], bool], timeout: float = 60, what: str = ""
    ) -> Obj:
        async def check() -> Obj | None:
            workflow = await self.workflow(name)
            return workflow if workflow and predicate(workflow) else None

        return await self.wait(check, timeout, what or f"workflow {name}")

    async def members(self, agent: str) -> dict[str, Obj]:
        """The Agent's member pods by name (terminating ones included)."""
        response = await self.core.list_namespaced_pod(
            self.ns, label_selector=f"foundation.dev/agent={agent}", _preload_content=False
        )
        return {p["metadata"]["name"]: p for p in json.loads(await response.read())["items"]}

    async def watch_members(self, agent: str) -> AsyncIterator[dict[str, Obj]]:
        """The Agent's member pods after the initial list and after every change: a watch sees
        every state they pass through, which polling can miss."""
        pods: dict[str, Obj] = {}
        async for kind, obj in list_and_watch(
            self.core.list_namespaced_pod,
            self.ns,
            label_selector=f"foundation.dev/agent={agent}",
        ):
            if kind == "SYNC":
                pods = {p["metadata"]["name"]: p for p in obj["items"]}
            elif kind == "DELETED":
                pods.pop(obj["metadata"]["name"], None)
            else:
                pods[obj["metadata"]["name"]] = obj
            yield dict(pods)

    async def names(self, kind: str, label_selector: str = "") -> list[str]:
        listers = {
            "Pod": self.core.list_namespaced_pod,
            "Service": self.core.list_namespaced_service,
            "ServiceAccount": self.core.list_namespaced_service_account,
            "ConfigMap": self.core.list_namespaced_config_map,
            "Role": self.rbac.list_namespaced_role,
            "RoleBinding": self.rbac.list_namespaced_role_binding,
        }
        response = await listers[kind](
            self.ns, label_selector=label_selector, _preload_content=False
        )
        return sorted(i["metadata"]["name"] for i in json.loads(await response.read())["items"])

    def kubectl(self, *args: str, stdin: str | None = None) -> str:
        """The local cluster's kubectl in this namespace, as a user runs it (its kubeconfig,
        not $KUBECONFIG); its output, or an assertion naming the command and its error."""
        done = subprocess.run(
            [str(REPO / "e2e/local/kubectl"), "-n", self.ns, *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=150,
            env={k: v for k, v in os.environ.items() if k != "KUBECONFIG"},
        )
        assert done.returncode == 0, f"kubectl {' '.join(args)}: {done.stderr}"
        return done.stdout

    def kubectl_apply(self, manifest: Path) -> None:
        """`kubectl apply -f` in this namespace."""
        self.kubectl("apply", "-f", str(manifest))

    def log(self, pod: Obj, container: str, restart: int = 0) -> str:
        """A container's log file as the test node writes it."""
        meta = pod["metadata"]
        path = (
            REPO
            / ".local-cluster/logs/pods"
            / f"{meta['namespace']}_{meta['name']}_{meta['uid']}"
            / container
            / f"{restart}.log"
        )
        return path.read_text() if path.exists() else ""


# The test cluster's hollow node: pods with these run without processes (e2e/local/README.md).
HOLLOW = {
    "nodeSelector": {"foundation.dev/hollow": "true"},
    "tolerations": [{"key": "foundation.dev/hollow", "operator": "Exists", "effect": "NoSchedule"}],
}


def is_ready(pod: Obj) -> bool:
    conditions = {c["type"]: c["status"] for c in pod.get("status", {}).get("conditions") or []}
    return conditions.get("Ready") == "True"


def container_status(pod: Obj, name: str) -> Obj:
    for status in pod.get("status", {}).get("containerStatuses") or []:
        if status["name"] == name:
            return status
    return {}


def pod(name: str, *containers: Obj, **spec: Any) -> Obj:
    """A pod manifest; containers as dicts, extra spec fields as keywords."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"containers": list(containers), "terminationGracePeriodSeconds": 5, **spec},
    }


def sh(name: str, script: str, **fields: Any) -> Obj:
    """A container that runs a shell script."""
    return {"name": name, "image": "busybox", "command": ["sh", "-c", script], **fields}


def configmap(name: str, data: dict[str, str]) -> Obj:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data}


def secret(name: str, data: dict[str, bytes]) -> Obj:
    encoded = {k: base64.b64encode(v).decode() for k, v in data.items()}
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "data": encoded}


def phase(agent: Obj) -> str:
    return (agent.get("status") or {}).get("phase", "")


def agent_condition(agent: Obj, kind: str) -> Obj:
    for cond in (agent.get("status") or {}).get("conditions") or []:
        if cond["type"] == kind:
            return cond
    return {}


def member_pids(namespace: str, pod: str) -> list[int]:
    """The runtime processes of a member pod (the test node runs containers as processes)."""
    wanted = {
        f"FOUNDATION_NAMESPACE={namespace}".encode(),
        f"FOUNDATION_MEMBER_NAME={pod}".encode(),
    }
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = set((entry / "environ").read_bytes().split(b"\0"))
        except OSError:
            continue
        if wanted <= environ:
            pids.append(int(entry.name))
    return pids


async def in_pod(kube: Kube, pod: str, program: str, timeout: float = 60) -> object:
    """Run a Python program in the pod's network namespace, as the agent would run there; its
    last line of output, as JSON."""
    uid = (await kube.pod(pod))["metadata"]["uid"]
    proc = await asyncio.create_subprocess_exec(
        "ip", "netns", "exec", pod_netns(uid), PYTHON, "-c", program,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    assert proc.returncode == 0, err.decode()
    return json.loads(out.decode().strip().splitlines()[-1])
