"""The cluster's bridge and each pod's network namespace, as `ip` commands.

The commands are built by pure functions so the node can run them without blocking its event
loop and tests can read them. Pods get a route to the pod network only: they reach each other
and the API server on the bridge address, nothing beyond this machine.
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path

from localcluster.layout import (
    BRIDGE,
    BRIDGE_IP,
    NETNS_PREFIX,
    POD_CIDR,
    POD_PREFIX_LEN,
    VETH_PREFIX,
)
from localcluster.processes import run

NETNS_DIR = Path("/run/netns")
NEIGHBOUR_TABLE = {"gc_thresh1": 4096, "gc_thresh2": 16384, "gc_thresh3": 32768}


def bridge_exists() -> bool:
    return Path(f"/sys/class/net/{BRIDGE}").exists()


def ensure_bridge() -> None:
    if not bridge_exists():
        run(["ip", "link", "add", BRIDGE, "type", "bridge"])
    addrs = run(["ip", "-4", "-o", "addr", "show", "dev", BRIDGE])
    if f"{BRIDGE_IP}/" not in addrs:
        run(["ip", "addr", "add", f"{BRIDGE_IP}/{POD_PREFIX_LEN}", "dev", BRIDGE])
    run(["ip", "link", "set", BRIDGE, "up"])
    # The machine talks to every pod: past 512 neighbours (the kernel's default gc_thresh2)
    # ARP entries are dropped and pods go unreachable ("neighbor table overflow").
    for knob, wanted in NEIGHBOUR_TABLE.items():
        path = Path("/proc/sys/net/ipv4/neigh/default") / knob
        if int(path.read_text()) < wanted:
            path.write_text(f"{wanted}\n")
    # Bridged frames must not be filtered by iptables rules another tool may have installed.
    for knob in ("bridge-nf-call-iptables", "bridge-nf-call-ip6tables"):
        path = Path("/proc/sys/net/bridge") / knob
        if path.exists():
            path.write_text("0\n")


def delete_bridge() -> None:
    if bridge_exists():
        run(["ip", "link", "del", BRIDGE])


def pod_netns(pod_uid: str) -> str:
    return NETNS_PREFIX + pod_uid.replace("-", "")[:12]


def pod_veth(pod_uid: str) -> str:
    return VETH_PREFIX + pod_uid.replace("-", "")[:12]


def setup_batches(netns: str, veth: str, ip: str) -> list[tuple[list[str], str]]:
    """`ip -batch` runs (argv, commands) that give a new namespace `netns` the address `ip`.

    Two processes instead of six: pod start is bound by process creation on small machines.
    """
    host = "\n".join(
        [
            f"netns add {netns}",
            f"link add {veth} type veth peer name eth0 netns {netns}",
            f"link set {veth} master {BRIDGE} up",
        ]
    )
    inside = "\n".join(
        [
            f"addr add {ip}/{POD_PREFIX_LEN} dev eth0",
            "link set eth0 up",
            "link set lo up",
        ]
    )
    return [(["ip", "-batch", "-"], host), (["ip", "-n", netns, "-batch", "-"], inside)]


def teardown_command(netns: str) -> list[str]:
    """Deleting the namespace destroys the veth pair with it."""
    return ["ip", "netns", "del", netns]


def our_namespaces() -> list[str]:
    if not NETNS_DIR.is_dir():
        return []
    return sorted(n for n in os.listdir(NETNS_DIR) if n.startswith(NETNS_PREFIX))


class AddressPool:
    """Pod addresses from the pod network, skipping the bridge's; freed ones are reused last."""

    def __init__(self, cidr: str = POD_CIDR, reserved: tuple[str, ...] = (BRIDGE_IP,)) -> None:
        self._network = ipaddress.ip_network(cidr)
        self._reserved = {ipaddress.ip_address(r) for r in reserved}
        self._hosts = self._network.hosts()
        self._free: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = []
        self._used: set[str] = set()

    def allocate(self) -> str:
        for candidate in self._hosts:
            if candidate not in self._reserved and str(candidate) not in self._used:
                self._used.add(str(candidate))
                return str(candidate)
        while self._free:
            candidate = self._free.pop(0)
            if str(candidate) not in self._used:
                self._used.add(str(candidate))
                return str(candidate)
        raise RuntimeError(f"pod network {self._network} has no free address")

    def release(self, ip: str) -> None:
        if ip in self._used:
            self._used.discard(ip)
            self._free.append(ipaddress.ip_address(ip))
