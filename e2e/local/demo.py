"""`make demo`: Foundation on the local cluster, as a new user meets it.

The operator installed from the chart (Helm 4's engine, as a platform team would), watching
the demo's namespace only; the example Agent applied with kubectl; tasks sent with the
`foundation` CLI through the API server; a member killed and its state shown restored; the
example Workflow run across the Agents. Every step prints the command it runs. Run it again:
it upgrades the release and goes through the same steps.

    .venv/bin/python e2e/local/demo.py          # after e2e/local/cluster up
    .venv/bin/python e2e/local/demo.py --down   # remove the demo (release and namespace)
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
KUBECONFIG = REPO / ".local-cluster/kubeconfig"
API_URL = "https://10.244.0.1:6443"  # the local API server (localcluster.layout.API_URL)
KUBECTL = str(REPO / "e2e/local/kubectl")
FOUNDATION = str(REPO / ".venv/bin/foundation")
NAMESPACE = "foundation-demo"
RELEASE = "foundation-demo"
VALUES = {
    "watchNamespaces": [NAMESPACE],  # only the demo's: `make test` runs its own operators
    "replicas": 1,
    "leaderElection": {"enabled": False},
    "logFormat": "text",
}
ENV = dict(os.environ, KUBECONFIG=str(KUBECONFIG))
DOOR = "v1alpha1.access.foundation.dev"  # people's door: the CLI's way in
CREATOR = "foundation-workflow-creator"  # the door's webhook: who created each Workflow
STEPS = 9


def say(step: int, text: str) -> None:
    print(f"\n[{step}/{STEPS}] {text}", flush=True)


def run(*argv: str, shown: str | None = None, check: bool = True) -> str:
    """Run a command, printing it as a user would type it, and its output."""
    print(f"  $ {shown or shlex.join(argv)}", flush=True)
    done = subprocess.run(argv, env=ENV, capture_output=True, text=True)
    out = (done.stdout + done.stderr).rstrip()
    if out:
        print("    " + out.replace("\n", "\n    "), flush=True)
    if check and done.returncode != 0:
        raise SystemExit(f"demo: `{shown or shlex.join(argv)}` failed ({done.returncode})")
    return done.stdout


def kubectl(*args: str, check: bool = True) -> str:
    return run(KUBECTL, *args, shown=shlex.join(["kubectl", *args]), check=check)


def foundation(*args: str) -> dict:
    out = run(
        FOUNDATION, "-n", NAMESPACE, *args, shown=shlex.join(["foundation", "-n", NAMESPACE, *args])
    )
    return json.loads(out)


def pod(name: str) -> dict:
    """The pod as the API has it now ({} if none), without printing."""
    return current("pod", name)


def current(kind: str, name: str) -> dict:
    """The object as the API has it now ({} if none), without printing."""
    done = subprocess.run(
        [KUBECTL, "get", kind, name, "-n", NAMESPACE, "-o", "json", "--ignore-not-found"],
        env=ENV,
        capture_output=True,
        text=True,
    )
    return json.loads(done.stdout) if done.returncode == 0 and done.stdout.strip() else {}


def is_ready(pod: dict) -> bool:
    if pod["metadata"].get("deletionTimestamp"):
        return False
    conditions = pod.get("status", {}).get("conditions", [])
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def ours(kind: str, name: str) -> bool:
    """Whether this release makes a cluster-wide object of the chart's (the shared ClusterRoles,
    people's door's APIService; docs/security.md): yes unless something else made it already
    (another release, or `make test`'s harness)."""
    found = subprocess.run(
        [KUBECTL, "get", kind, name, "-o", "json"],
        capture_output=True,
        env=ENV,
        check=False,
    )
    if found.returncode != 0:
        return True
    annotations = json.loads(found.stdout)["metadata"].get("annotations") or {}
    return bool(annotations.get("meta.helm.sh/release-name") == RELEASE)


def helm_release() -> None:
    import helm_python

    helm = helm_python.Config(kubeconfig_path=str(KUBECONFIG), namespace=NAMESPACE)
    try:
        chart = REPO / "charts/foundation"
        installed = any(r.get("name") == RELEASE for r in helm.list())
        verb = "upgrade" if installed else "install"
        print(
            f"  $ helm {verb} {RELEASE} charts/foundation -n {NAMESPACE} --wait "
            f"--set watchNamespaces={{{NAMESPACE}}},replicas=1,leaderElection.enabled=false",
            flush=True,
        )
        started = time.monotonic()
        call = helm.upgrade if installed else helm.install
        door = ours("apiservice", DOOR)
        values = {
            **VALUES,
            "clusterRoles": {"create": ours("clusterrole", "foundation-agent-member")},
            # The chart's APIService is made below (Kubernetes 1.20's aggregator panics on the
            # server-side apply Helm 4 makes; 1.21 and later take it from the chart).
            "door": {
                "apiService": {"create": False},
                "publicURL": API_URL,
                "creatorWebhook": {"create": ours("mutatingwebhookconfiguration", CREATOR)},
            },
        }
        release = call(chart, RELEASE, values, namespace=NAMESPACE, wait="watcher", timeout=180)
        if door:
            door_api_service()
        print(
            f"    release {RELEASE}: {release['status']}, revision {release.get('version')}, "
            f"in {time.monotonic() - started:.1f} s",
            flush=True,
        )
    finally:
        helm.close()


def door_api_service() -> None:
    """People's door's APIService as the chart makes it (templates/door.yaml), with the CA of
    the release's door Secret, applied client-side."""
    ca = subprocess.run(
        [KUBECTL, "get", "secret", f"{RELEASE}-operator-door-tls", "-n", NAMESPACE,
         "-o", "jsonpath={.data.ca\\.crt}"],
        env=ENV, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    api_service = {
        "apiVersion": "apiregistration.k8s.io/v1",
        "kind": "APIService",
        "metadata": {
            "name": DOOR,
            "labels": {"app.kubernetes.io/managed-by": "foundation-demo"},
            "annotations": {"meta.helm.sh/release-name": RELEASE},
        },
        "spec": {
            "group": "access.foundation.dev",
            "version": "v1alpha1",
            "service": {"name": f"{RELEASE}-operator-door", "namespace": NAMESPACE, "port": 443},
            "caBundle": ca,
            "groupPriorityMinimum": 1000,
            "versionPriority": 15,
        },
    }
    done = subprocess.run(
        [KUBECTL, "apply", "-f", "-"], input=json.dumps(api_service), env=ENV, text=True,
        capture_output=True, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(f"demo: the door's APIService: {done.stderr.strip()}")
    print(f"    apiservice {DOOR}: applied (people's door)", flush=True)


def down() -> None:
    import helm_python

    if not kubectl("get", "namespace", NAMESPACE, "-o", "name", "--ignore-not-found"):
        print(f"  nothing to remove: no namespace {NAMESPACE}", flush=True)
        return
    # The Agents and Workflows first, while the operator is there to release them.
    kubectl("delete", "workflows,agents", "--all", "-n", NAMESPACE, "--timeout=60s", check=False)
    helm = helm_python.Config(kubeconfig_path=str(KUBECONFIG), namespace=NAMESPACE)
    try:
        print(f"  $ helm uninstall {RELEASE} -n {NAMESPACE}", flush=True)
        helm.uninstall(RELEASE, ignore_not_found=True, wait="watcher", timeout=120)
    finally:
        helm.close()
    for name in kubectl("get", "agents", "-n", NAMESPACE, "-o", "name", check=False).split():
        # Still there (the operator was gone already): nothing will release its finalizer.
        kubectl(
            "patch",
            name,
            "-n",
            NAMESPACE,
            "--type=merge",
            "-p",
            '{"metadata":{"finalizers":null}}',
            check=False,
        )
    if ours("apiservice", DOOR):
        kubectl("delete", "apiservice", DOOR, "--ignore-not-found")
    kubectl("delete", "namespace", NAMESPACE, "--ignore-not-found", "--wait=true")


def demo() -> None:
    began = time.monotonic()
    say(1, "The operator, from the chart, watching only the demo's namespace")
    if not kubectl("get", "namespace", NAMESPACE, "-o", "name", "--ignore-not-found"):
        kubectl("create", "namespace", NAMESPACE)
    helm_release()
    kubectl("get", "pods", "-n", NAMESPACE, "-l", f"app.kubernetes.io/instance={RELEASE}")

    say(2, "An Agent: two members of CounterAgent offering the capability `count`")
    kubectl("apply", "-n", NAMESPACE, "-f", "examples/agent.yaml")
    kubectl("wait", "-n", NAMESPACE, "--for=condition=Ready", "agent/counter", "--timeout=120s")
    kubectl("get", "agents", "-n", NAMESPACE)

    say(3, "Tasks, sent with the CLI through the API server (no port-forward)")
    first = f"demo-{uuid.uuid4().hex[:6]}"
    increment = ("send", "counter", "increment", "--input", '{"by": 5}', "--id", first)
    record = foundation(*increment, "--member", "0", "--wait")
    count = record["result"]["count"]
    again = foundation(*increment, "--member", "0", "--wait")  # a retried send: the same id
    if again["result"]["count"] != count:
        raise SystemExit("demo: the same task id applied twice")
    print(f"  the same id twice is one task: the count stays {count}", flush=True)

    say(4, "A member killed: its pod deleted, made again by the Agent, its state restored")
    old = pod("counter-0")
    kubectl("delete", "pod", "counter-0", "-n", NAMESPACE, "--wait=false")
    deadline = time.monotonic() + 120
    while True:  # the new pod (another uid), Ready
        new = pod("counter-0")
        if new and new["metadata"]["uid"] != old["metadata"]["uid"] and is_ready(new):
            break
        if time.monotonic() > deadline:
            raise SystemExit("demo: counter-0 did not come back within 120 s")
        time.sleep(0.5)
    kubectl("wait", "-n", NAMESPACE, "--for=condition=Ready", "agent/counter", "--timeout=120s")
    after = foundation("send", "counter", "get", "--member", "0", "--wait")
    if after["result"]["count"] != count:
        raise SystemExit(f"demo: the count was {count}, after the restart {after['result']}")
    print(f"  counter-0 is a new pod, and its count is still {count}", flush=True)

    say(5, "A Workflow: steps across two Agents, results flowing between them")
    kubectl("delete", "workflow", "tally", "-n", NAMESPACE, "--ignore-not-found", "--wait=true")
    kubectl("apply", "-n", NAMESPACE, "-f", "examples/workflow.yaml")
    kubectl(
        "wait", "-n", NAMESPACE, "--for=condition=Succeeded", "workflow/tally", "--timeout=180s"
    )
    kubectl("get", "workflow", "tally", "-n", NAMESPACE, "-o", "jsonpath={.status.output}")

    say(6, "A map: a planner lists the work, and one step sends a task per item")
    kubectl("delete", "workflow", "visits", "-n", NAMESPACE, "--ignore-not-found", "--wait=true")
    kubectl("apply", "-n", NAMESPACE, "-f", "examples/workflow-map.yaml")
    kubectl(
        "wait", "-n", NAMESPACE, "--for=condition=Succeeded", "workflow/visits", "--timeout=180s"
    )
    kubectl("get", "workflow", "visits", "-n", NAMESPACE)
    kubectl("get", "workflow", "visits", "-n", NAMESPACE, "-o", "jsonpath={.status.output}")

    say(7, "A person in the loop: an approval, given with the CLI")
    kubectl(
        "delete", "workflow", "newsletter", "-n", NAMESPACE, "--ignore-not-found", "--wait=true"
    )
    kubectl("apply", "-n", NAMESPACE, "-f", "examples/workflow-approval.yaml")
    deadline = time.monotonic() + 180
    while True:  # the approval step waiting for a decision
        found = current("workflow", "newsletter")
        review = {s["name"]: s for s in (found.get("status") or {}).get("steps") or []}
        if review.get("review", {}).get("reason") == "WaitingForApproval":
            print(f"  waiting: {review['review']['prompt']}", flush=True)
            break
        if time.monotonic() > deadline:
            raise SystemExit("demo: the newsletter's approval did not come up within 180 s")
        time.sleep(0.5)
    foundation(
        "approve", "newsletter", "review", "--message", "looks good",
        "--input", '{"subject": "Hello from Foundation"}',
    )  # fmt: skip
    kubectl(
        "wait", "-n", NAMESPACE, "--for=condition=Succeeded", "workflow/newsletter",
        "--timeout=120s",
    )  # fmt: skip
    kubectl("get", "workflow", "newsletter", "-n", NAMESPACE, "-o", "jsonpath={.status.output}")

    say(8, "What runs now")
    kubectl("get", "agents,workflows", "-n", NAMESPACE)

    say(9, f"Done in {time.monotonic() - began:.0f} s. Next:")
    print(
        f"""  export KUBECONFIG={KUBECONFIG}
  .venv/bin/foundation -n {NAMESPACE} send counter increment --input '{{"by": 1}}' --wait
  e2e/local/kubectl -n {NAMESPACE} describe agent counter
  .venv/bin/foundation -n {NAMESPACE} card counter   (every Agent speaks A2A: docs/protocols.md)
  e2e/local/kubectl -n {NAMESPACE} get workflow tally -o yaml
  docs/getting-started.md: write an agent of your own
  make demo-down   (removes the demo; e2e/local/cluster down stops the cluster)""",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--down", action="store_true", help="remove the demo")
    args = parser.parse_args()
    os.chdir(REPO)
    if args.down:
        down()
    else:
        demo()
    sys.stdout.flush()


if __name__ == "__main__":
    main()
