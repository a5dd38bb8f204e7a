"""People's door for the tests' operator, which runs on this machine and not in a pod: what the
chart makes for an operator in a pod, made here by hand.

- an account the door relays with (`relay agents/tasks`, as the chart grants the operator's),
  and a token of it for audience foundation.dev, written to a file the operator reads;
- a serving certificate for the door's Service name, from a CA of its own;
- the APIService `access.foundation.dev` on a Service whose Endpoints are this machine's address
  on the cluster's bridge, where the operator listens (the API server routes to endpoints).
"""

from __future__ import annotations

import base64
import json
import subprocess
import time
from pathlib import Path
from typing import Any

import yaml

from foundation_common import access
from foundation_operator.door.routes import GROUP_VERSION
from kube import REPO
from localcluster import pki
from localcluster.layout import API_URL

KUBECTL = str(REPO / "e2e/local/kubectl")
NAMESPACE = "foundation-door-tests"
ACCOUNT = "door"
SERVICE = "foundation-door"
HOST = "10.244.0.1"  # the machine on the cluster's bridge (localcluster.layout.BRIDGE_IP)
PORT = 18443
RELAYER = f"system:serviceaccount:{NAMESPACE}:{ACCOUNT}"
API_SERVICE = f"{access.DOOR_VERSION}.{access.GROUP}"
DOOR_FROM = [{"ipBlock": {"cidr": f"{HOST}/32"}}]
WEBHOOK = "foundation-workflow-creator"
FILES = REPO / ".local-cluster" / "door"


def _kubectl(*args: str, input: str | None = None) -> str:
    done = subprocess.run(
        [KUBECTL, *args], input=input, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"kubectl {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


def certificate() -> str:
    """The door's serving certificate and key under FILES (tls.crt, tls.key), from a CA of its
    own (ca.crt), made as the local cluster makes its own; the CA's PEM."""
    FILES.mkdir(parents=True, exist_ok=True)
    pki.make_ca(FILES, "ca", "/CN=foundation-door-ca")
    pki.signed(
        FILES, "tls", f"/CN={SERVICE}.{NAMESPACE}.svc", f"DNS:{SERVICE}.{NAMESPACE}.svc,IP:{HOST}"
    )
    return (FILES / "ca.crt").read_text()


def objects(ca: str) -> list[dict[str, Any]]:
    labels = {"app.kubernetes.io/name": "foundation-door-tests"}
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}},
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": ACCOUNT, "namespace": NAMESPACE},
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": "foundation-door-tests", "labels": labels},
            "rules": [
                {
                    "apiGroups": [access.GROUP],
                    "resources": ["agents/tasks"],
                    "verbs": [access.RELAY],
                }
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": "foundation-door-tests", "labels": labels},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "foundation-door-tests",
            },
            "subjects": [{"kind": "ServiceAccount", "name": ACCOUNT, "namespace": NAMESPACE}],
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": SERVICE, "namespace": NAMESPACE},
            "spec": {"ports": [{"name": "https", "port": 443, "targetPort": PORT}]},
        },
        {
            "apiVersion": "v1",
            "kind": "Endpoints",
            "metadata": {"name": SERVICE, "namespace": NAMESPACE},
            "subsets": [{"addresses": [{"ip": HOST}], "ports": [{"name": "https", "port": PORT}]}],
        },
        {
            "apiVersion": "apiregistration.k8s.io/v1",
            "kind": "APIService",
            "metadata": {
                "name": API_SERVICE,
                "labels": labels,
                # Taken over from `make demo`'s release while the tests run (it points at this
                # operator; the demo's CLI comes through it too): the demo's next upgrade, which
                # then leaves it out, keeps it.
                "annotations": {
                    "helm.sh/resource-policy": "keep",
                    "meta.helm.sh/release-name": "foundation-tests",
                },
            },
            "spec": {
                "group": access.GROUP,
                "version": access.DOOR_VERSION,
                "service": {"namespace": NAMESPACE, "name": SERVICE, "port": 443},
                "caBundle": base64.b64encode(ca.encode()).decode(),
                "groupPriorityMinimum": 1000,
                "versionPriority": 1,
            },
        },
    ]


def webhook(ca: str) -> dict[str, Any]:
    """Who created each Workflow: the door's admission webhook, as the chart makes it."""
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {
            "name": WEBHOOK,
            "annotations": {
                "helm.sh/resource-policy": "keep",
                "meta.helm.sh/release-name": "foundation-tests",
            },
        },
        "webhooks": [
            {
                "name": "creator.workflows.foundation.dev",
                "clientConfig": {
                    "service": {
                        "namespace": NAMESPACE,
                        "name": SERVICE,
                        "path": "/mutate/workflows",
                        "port": 443,
                    },
                    "caBundle": base64.b64encode(ca.encode()).decode(),
                },
                "rules": [
                    {
                        "apiGroups": ["foundation.dev"],
                        "apiVersions": ["v1alpha1"],
                        "operations": ["CREATE"],
                        "resources": ["workflows"],
                        "scope": "Namespaced",
                    }
                ],
                "failurePolicy": "Fail",
                "sideEffects": "None",
                "admissionReviewVersions": ["v1"],
                "timeoutSeconds": 5,
            }
        ],
    }


def token() -> Path:
    """A token of the door's account for audience foundation.dev (a day), in a file."""
    request = {
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenRequest",
        "spec": {"audiences": [access.AUDIENCE], "expirationSeconds": 86400},
    }
    answer = _kubectl(
        "create",
        "--raw",
        f"/api/v1/namespaces/{NAMESPACE}/serviceaccounts/{ACCOUNT}/token",
        "-f",
        "-",
        input=json.dumps(request),
    )
    path = FILES / "token"
    path.write_text(json.loads(answer)["status"]["token"])
    return path


def install() -> dict[str, str]:
    """The door's objects applied; the operator's environment for serving it."""
    ca = certificate()
    _kubectl("apply", "-f", "-", input=yaml.safe_dump_all([*objects(ca), webhook(ca)]))
    path = token()
    return {
        "FOUNDATION_DOOR_PORT": str(PORT),
        "FOUNDATION_DOOR_HOST": HOST,
        "FOUNDATION_DOOR_CERT_FILE": str(FILES / "tls.crt"),
        "FOUNDATION_DOOR_KEY_FILE": str(FILES / "tls.key"),
        "FOUNDATION_DOOR_TOKEN_FILE": str(path),
        "FOUNDATION_DOOR_PUBLIC_URL": API_URL,
        # Members' NetworkPolicies admit the door: here this machine, not a pod.
        "FOUNDATION_DOOR_FROM": json.dumps(DOOR_FROM),
    }


def uninstall() -> None:
    """The APIService removed (it would point at an operator that is gone): `make demo` makes
    its own again."""
    _kubectl("delete", "apiservice", API_SERVICE, "--ignore-not-found")
    _kubectl("delete", "mutatingwebhookconfiguration", WEBHOOK, "--ignore-not-found")


def wait_serving(timeout: float = 60.0) -> None:
    """Until the door answers through the API server (its discovery document): after the
    operator restarts, the APIService may still read Available while no door serves."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        try:
            _kubectl("get", "--raw", f"/apis/{GROUP_VERSION}")
            return
        except RuntimeError as exc:
            last = str(exc)
        time.sleep(0.2)
    raise AssertionError(f"the door did not answer within {timeout:.0f} s ({last})")


def wait_available(timeout: float = 60.0) -> None:
    """Until the API server has found the door (its APIService Available)."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        found = json.loads(_kubectl("get", "apiservice", API_SERVICE, "-o", "json"))
        for condition in (found.get("status") or {}).get("conditions") or []:
            if condition["type"] == "Available":
                if condition["status"] == "True":
                    return
                last = f"{condition.get('reason')}: {condition.get('message')}"
        time.sleep(0.2)
    raise AssertionError(f"{GROUP_VERSION} not available within {timeout:.0f} s ({last})")
