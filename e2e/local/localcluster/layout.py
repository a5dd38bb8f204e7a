"""Where the local cluster keeps its files, ports and addresses: one place for all of them."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[3]


@dataclass(frozen=True)
class Layout:
    """Files under the state directory (`.local-cluster/` at the repository root)."""

    state: Path

    @classmethod
    def default(cls) -> Layout:
        override = os.environ.get("FOUNDATION_LOCAL_CLUSTER_DIR")
        return cls(Path(override).resolve() if override else REPO_ROOT / ".local-cluster")

    @property
    def kubeconfig(self) -> Path:
        return self.state / "kubeconfig"

    @property
    def config(self) -> Path:
        return self.state / "config.json"

    @property
    def images(self) -> Path:
        """Images the test node runs from another environment than this checkout's:
        {"image:tag": "/path/to/venv/bin"} (an earlier release's code, say)."""
        return self.state / "images.json"

    @property
    def pki(self) -> Path:
        return self.state / "pki"

    @property
    def etcd_data(self) -> Path:
        return self.state / "etcd"

    @property
    def run(self) -> Path:
        return self.state / "run"

    @property
    def logs(self) -> Path:
        return self.state / "logs"

    @property
    def pod_logs(self) -> Path:
        return self.logs / "pods"

    @property
    def pods(self) -> Path:
        return self.state / "pods"

    @property
    def volumes(self) -> Path:
        return self.state / "volumes"

    @property
    def created_paths(self) -> Path:
        """Mount points the test node had to create on this machine; removed by `down`."""
        return self.state / "created-paths"


# The cluster's network: one bridge, pods on a /16, the API server on the bridge address.
BRIDGE = "flbr0"
BRIDGE_IP = "10.244.0.1"
POD_PREFIX_LEN = 16
POD_CIDR = "10.244.0.0/16"
SERVICE_CIDR = "10.96.0.0/12"
SERVICE_IP = "10.96.0.1"
NETNS_PREFIX = "flpod-"
VETH_PREFIX = "flv"

ETCD_CLIENT_PORT = 23790
ETCD_PEER_PORT = 23800
APISERVER_PORT = 6443
KUBELET_PORT = 10250
API_URL = f"https://{BRIDGE_IP}:{APISERVER_PORT}"

NODE_NAME = "foundation-local-node"
STORAGE_CLASS = "local-path"
PROVISIONER = "foundation.dev/local-path"

# Every container process of the test node lives in a cgroup below this one (pids controller),
# so nothing a pod starts can outlive `down`, even a process that daemonizes.
CGROUP_ROOT = Path("/sys/fs/cgroup/pids/foundation-local")
# A container with a memory limit also joins a group below this one (memory controller, v1),
# so the kernel kills it past the limit, as a kubelet's would (OOMKilled).
MEMORY_ROOT = Path("/sys/fs/cgroup/memory/foundation-local")

DEFAULT_RESTART_BACKOFF = 10.0
MAX_RESTART_BACKOFF = 300.0
