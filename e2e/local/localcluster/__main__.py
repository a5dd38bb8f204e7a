"""`e2e/local/cluster up|down|status`: the local cluster's command line."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

from localcluster import cgroups, control_plane, layout, network, pki, processes
from localcluster.layout import Layout

PROVISION = Path(__file__).resolve().parents[1] / "provision"
# Stopped in this order: the node first, so it can stop its pods while the API still answers.
STOP_ORDER = ["node", "kube-scheduler", "kube-controller-manager", "kube-apiserver", "etcd"]


def say(message: str) -> None:
    print(f"cluster: {message}", flush=True)


def preflight() -> None:
    """Fail loudly when the machine lacks what pods need; never degrade silently."""
    problems = []
    if os.geteuid() != 0:
        problems.append("must run as root (namespaces, bind mounts, bridge)")
    for tool in ("ip", "unshare", "nsenter", "openssl", "mount"):
        if shutil.which(tool) is None:
            problems.append(f"`{tool}` is not installed")
    for ns in ("mnt", "net", "uts"):
        if not Path(f"/proc/self/ns/{ns}").exists():
            problems.append(f"the kernel has no {ns} namespaces")
    if not cgroups.available():
        problems.append(f"the cgroup v1 pids controller is not mounted at {cgroups.PIDS_MOUNT}")
    if not problems and subprocess.run(["unshare", "--mount", "--net", "--uts", "true"]).returncode:
        problems.append("`unshare --mount --net --uts` fails: namespaces are not permitted here")
    if problems:
        raise SystemExit(
            "cluster: cannot run pods on this machine:\n  - " + "\n  - ".join(problems)
        )


def provision() -> Path:
    out = subprocess.run([str(PROVISION)], stdout=subprocess.PIPE, text=True)
    if out.returncode != 0:
        raise SystemExit("cluster: provisioning failed (see the messages above)")
    return Path(out.stdout.strip().splitlines()[-1])


def read_config(lay: Layout) -> dict:
    try:
        return json.loads(lay.config.read_text())
    except (FileNotFoundError, ValueError):
        return {}


def let_container_users_through(*paths: Path) -> None:
    """Containers that run as another user (a pod's runAsUser) start the project's Python and
    code, which an image would carry readable by any user: every directory above them must let
    such users pass (o+x: pass through, not list). pyenv's home under /root is 0700."""
    for path in paths:
        real = path.resolve()
        for directory in [real, *real.parents] if real.is_dir() else real.parents:
            mode = directory.stat().st_mode
            if not mode & stat.S_IXOTH:
                directory.chmod(mode | stat.S_IXOTH)


def up(lay: Layout, restart_backoff: float | None) -> None:
    started_at = time.monotonic()
    preflight()
    let_container_users_through(Path(sys.executable), Path(__file__).resolve().parents[3])
    bin_dir = provision()
    lay.state.mkdir(parents=True, exist_ok=True)
    config = read_config(lay)
    backoff = (
        restart_backoff
        if restart_backoff is not None
        else config.get("restartBackoffSeconds", layout.DEFAULT_RESTART_BACKOFF)
    )
    lay.config.write_text(json.dumps({"restartBackoffSeconds": backoff, "binDir": str(bin_dir)}))
    bin_link = lay.state / "bin"
    if not bin_link.is_symlink() or bin_link.resolve() != bin_dir.resolve():
        bin_link.unlink(missing_ok=True)
        bin_link.symlink_to(bin_dir)

    token = pki.ensure(lay.pki)
    lay.kubeconfig.write_text(control_plane.kubeconfig_text(lay, token))
    lay.kubeconfig.chmod(0o600)
    network.ensure_bridge()
    cgroups.ensure_root()

    env = dict(os.environ)
    env["PATH"] = f"{bin_dir}:{env.get('PATH', '')}"
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1])
    started = []
    for component in control_plane.components(lay, bin_dir, token, backoff):
        pid = processes.read_pid(lay.run, component.name)
        if pid is None and component.listens and control_plane.port_taken(*component.listens):
            host, port = component.listens
            raise RuntimeError(
                f"{host}:{port}, where {component.name} listens, is taken by a process this "
                f"cluster ({lay.state}) did not start: another checkout's local cluster? "
                "Stop it with its own `e2e/local/cluster down`."
            )
        if pid is None:
            processes.start(lay.run, lay.logs, component.name, component.argv, env)
            started.append(component.name)
        elif component.name == "node" and config.get("restartBackoffSeconds") != backoff:
            os.kill(pid, signal.SIGHUP)  # the node re-reads config.json
        control_plane.wait_until(
            component.ready,
            component.ready_timeout,
            component.name,
            lay.logs / f"{component.name}.log",
        )
    if started:
        kubectl(lay, ["apply", "-f", "-"], input=control_plane.BOOTSTRAP)
    wait_for_node(lay, token)
    wait_for_default_service_account(lay, token)
    what = f"started {', '.join(started)}" if started else "already running"
    say(f"{what}; ready in {time.monotonic() - started_at:.1f} s")
    say(f"kubeconfig: {lay.kubeconfig}   kubectl: e2e/local/kubectl")


def kubectl(lay: Layout, args: list[str], input: str | None = None, check: bool = True) -> str:
    argv = [str(lay.state / "bin" / "kubectl"), f"--kubeconfig={lay.kubeconfig}", *args]
    return processes.run(argv, input=input, check=check)


def wait_for_node(lay: Layout, token: str, timeout: float = 60.0) -> None:
    def ready() -> bool:
        node = control_plane.api_get(lay, token, f"/api/v1/nodes/{layout.NODE_NAME}")
        if node is None:
            return False
        conditions = {c["type"]: c["status"] for c in node["status"].get("conditions", [])}
        taints = node["spec"].get("taints") or []
        return conditions.get("Ready") == "True" and not any(
            t["key"].startswith("node.kubernetes.io/not-ready") for t in taints
        )

    control_plane.wait_until(ready, timeout, "the test node", lay.logs / "node.log")


def wait_for_default_service_account(lay: Layout, token: str, timeout: float = 60.0) -> None:
    path = "/api/v1/namespaces/default/serviceaccounts/default"
    control_plane.wait_until(
        lambda: control_plane.api_get(lay, token, path) is not None,
        timeout,
        "the default service account",
        lay.logs / "kube-controller-manager.log",
    )


def down(lay: Layout) -> None:
    for name in STOP_ORDER:
        if processes.stop(lay.run, name, timeout=40.0 if name == "node" else 15.0):
            say(f"stopped {name}")
    leftovers = cgroups.kill_all()
    if leftovers:
        say(f"killed {leftovers} leftover pod processes")
    cgroups.remove_all()
    for netns in network.our_namespaces():
        processes.run(["ip", "netns", "del", netns], check=False)
    for link in Path("/sys/class/net").iterdir():
        if link.name.startswith(layout.VETH_PREFIX):
            processes.run(["ip", "link", "del", link.name], check=False)
    network.delete_bridge()
    remove_created_paths(lay)
    for path in (lay.etcd_data, lay.pods, lay.volumes, lay.run):
        shutil.rmtree(path, ignore_errors=True)
    problems = leftover_report(lay)
    if problems:
        raise SystemExit("cluster: down left something behind:\n  - " + "\n  - ".join(problems))
    say("down: no process, mount or network namespace left")


def remove_created_paths(lay: Layout) -> None:
    """Remove mount points the node created on this machine, deepest first, if still empty."""
    if not lay.created_paths.exists():
        return
    paths = {line for line in lay.created_paths.read_text().splitlines() if line}
    for path in sorted(paths, key=lambda p: p.count("/"), reverse=True):
        target = Path(path)
        try:
            if target.is_dir() and not target.is_symlink():
                target.rmdir()
            elif target.is_file() and target.stat().st_size == 0:
                target.unlink()
        except OSError:
            pass  # not empty any more: somebody else's now
    lay.created_paths.unlink()


def leftover_report(lay: Layout) -> list[str]:
    problems = []
    for name in STOP_ORDER:
        if processes.read_pid(lay.run, name):
            problems.append(f"{name} still runs")
    if cgroups.pids():
        problems.append(f"pod processes still run: {cgroups.pids()}")
    if network.our_namespaces():
        problems.append(f"network namespaces remain: {network.our_namespaces()}")
    if network.bridge_exists():
        problems.append(f"bridge {layout.BRIDGE} remains")
    with open("/proc/self/mountinfo") as mountinfo:
        ours = [line.split()[4] for line in mountinfo if str(lay.state) in line.split()[4]]
    if ours:
        problems.append(f"mounts remain: {ours}")
    return problems


def status(lay: Layout) -> int:
    config = read_config(lay)
    running = 0
    for name in reversed(STOP_ORDER):
        pid = processes.read_pid(lay.run, name)
        running += pid is not None
        print(f"{name:<24} {'running, pid ' + str(pid) if pid else 'stopped'}")
    print(
        f"{'restart back-off':<24} {config.get('restartBackoffSeconds', '-')} s (doubling to "
        f"{layout.MAX_RESTART_BACKOFF:.0f} s)"
    )
    print(f"{'kubeconfig':<24} {lay.kubeconfig if lay.kubeconfig.exists() else '-'}")
    if running == len(STOP_ORDER):
        pods = kubectl(
            lay,
            [
                "get",
                "pods",
                "-A",
                "--no-headers",
                f"--field-selector=spec.nodeName={layout.NODE_NAME}",
            ],
            check=False,
        )
        nodes = kubectl(lay, ["get", "nodes", "--no-headers"], check=False).strip()
        for i, line in enumerate(nodes.splitlines() or ["-"]):
            print(f"{'nodes' if i == 0 else '':<24} {line}")
        print(f"{'pods on the node':<24} {len(pods.splitlines())}")
        print(f"{'pod network namespaces':<24} {len(network.our_namespaces())}")
        return 0
    return 0 if running == 0 else 1


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="e2e/local/cluster", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    up_parser = sub.add_parser("up", help="start the cluster (idempotent)")
    up_parser.add_argument(
        "--restart-backoff",
        type=float,
        metavar="SECONDS",
        help="base of the containers' restart back-off (default "
        f"{layout.DEFAULT_RESTART_BACKOFF:.0f}"
        " s, as a kubelet's; it doubles up to 5 minutes)",
    )
    sub.add_parser("down", help="stop everything and remove the cluster's state")
    sub.add_parser("status", help="say what runs")
    args = parser.parse_args(argv)
    lay = Layout.default()
    try:
        if args.command == "up":
            if args.restart_backoff is not None and args.restart_backoff <= 0:
                parser.error("--restart-backoff must be positive")
            up(lay, args.restart_backoff)
        elif args.command == "down":
            down(lay)
        else:
            sys.exit(status(lay))
    except RuntimeError as exc:
        raise SystemExit(f"cluster: {exc}") from None


if __name__ == "__main__":
    main()
