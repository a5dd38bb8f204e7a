"""Becomes a pod's container: runs inside the pod's network namespace and a new mount and UTS
namespace, bind-mounts the volumes at their mountPaths, then execs the container's command.

Started by the test node as
    nsenter --net=/run/netns/NS --
        unshare --mount --uts --propagation private -- python -I -S shim.py SPEC
so it must use the standard library only. SPEC is a JSON file written by the node.
"""

import ctypes
import json
import os
import socket
import sys

MS_RDONLY, MS_REMOUNT, MS_BIND, MS_REC = 1, 32, 4096, 16384
_libc = ctypes.CDLL(None, use_errno=True)


def mount(source, target, flags):
    if _libc.mount(source.encode(), target.encode(), None, flags, None) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {source} on {target}: {os.strerror(err)}")


def ensure_target(path, is_file, created_log):
    """Create a missing mount point, recording what was created so `cluster down` removes it."""
    if os.path.lexists(path):
        return
    parent = os.path.dirname(path)
    ensure_target(parent, False, created_log)
    if is_file:
        open(path, "a").close()
    else:
        try:
            os.mkdir(path)
        except FileExistsError:
            return  # another pod's container made it at the same moment

    with open(created_log, "a") as log:
        log.write(path + "\n")


# Per-mount options of /proc/self/mountinfo that a remount must keep.
KEPT = {
    "nosuid": 2,
    "nodev": 4,
    "noexec": 8,
    "noatime": 1024,
    "nodiratime": 2048,
    "relatime": 1 << 21,
    "strictatime": 1 << 24,
}
LIVE = ("/proc", "/sys", "/dev")  # kernel filesystems a container keeps as they are


def read_only_root(volumes):
    """readOnlyRootFilesystem: every mount this container sees becomes read-only here (its
    mount namespace is private), except its volumes and what lies below them."""
    with open("/proc/self/mountinfo") as f:
        entries = [line.split() for line in f]
    for fields in entries:
        point = fields[4].encode().decode("unicode_escape")
        if any(point == v or point.startswith(v.rstrip("/") + "/") for v in volumes):
            continue
        if any(point == p or point.startswith(p + "/") for p in LIVE):
            continue
        options = fields[5].split(",")
        if "ro" in options:
            continue
        flags = MS_BIND | MS_REMOUNT | MS_RDONLY
        for option in options:
            flags |= KEPT.get(option, 0)
        try:
            mount(point, point, flags)
        except OSError:
            if point == "/":
                raise  # the one that must not be left writable
            # Another mount point this namespace cannot change (stale, overmounted): as it is.


def main(spec_path):
    with open(spec_path) as f:
        spec = json.load(f)
    # Join the container's cgroup first, so everything it starts can be found and killed.
    with open(os.path.join(spec["cgroup"], "cgroup.procs"), "w") as procs:
        procs.write(str(os.getpid()))
    if spec.get("memoryCgroup"):  # held to the container's memory limit
        with open(os.path.join(spec["memoryCgroup"], "cgroup.procs"), "w") as procs:
            procs.write(str(os.getpid()))
    socket.sethostname(spec["hostname"])
    mounts = sorted(spec["mounts"], key=lambda m: m["target"].count("/"))
    # Hold every source open first: a volume mounted over a parent of the node's state
    # directory (say at /work) would hide the sources of the mounts after it.
    sources = [os.open(m["source"], os.O_PATH) for m in mounts]
    for m, fd in zip(mounts, sources, strict=True):
        source = f"/proc/self/fd/{fd}"
        target = os.path.realpath(m["target"])
        ensure_target(target, os.path.isfile(source), spec["createdPathsLog"])
        mount(source, target, MS_BIND | MS_REC)
        if m.get("readOnly"):
            mount(source, target, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_REC)
    for fd in sources:
        os.close(fd)
    if spec.get("readOnlyRoot"):
        read_only_root([os.path.realpath(m["target"]) for m in mounts])
    os.chdir(spec.get("workingDir") or "/")
    if spec.get("runAsGroup") is not None or spec.get("groups"):
        os.setgroups(spec.get("groups") or [])
    if spec.get("runAsGroup") is not None:
        os.setgid(spec["runAsGroup"])
    if spec.get("runAsUser") is not None:
        os.setuid(spec["runAsUser"])
    argv, env = spec["argv"], spec["env"]
    try:
        os.execvpe(argv[0], argv, env)
    except OSError as exc:
        print(f"failed to start container command {argv[0]!r}: {exc.strerror}", file=sys.stderr)
        sys.exit(128)


if __name__ == "__main__":
    try:
        main(sys.argv[1])
    except OSError as exc:
        print(f"failed to create container: {exc}", file=sys.stderr)
        sys.exit(128)
