"""`nosdn doctor` verdicts on hosts the lab does not build (root): hand-made namespaces where a
check that looked fine was wrong, each proven with real packets before and after the fix.

Multi-homed node: node1 has its address 10.10.0.1 on ``a1``, and a second interface ``a0`` on a
more specific network that holds node2's address, so nosdn's route to node2's pods leaves by
``a0``. node2 sends its pods' packets to node1's address, so they arrive on ``a1``: strict
reverse-path filtering there drops them, although the route to node2 and the route back to its
pods leave by the same interface.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from conftest import ip, requires_root

pytestmark = [pytest.mark.root, requires_root]

INVENTORY = """\
clusterCIDRs: [10.244.0.0/16]
nodes:
  - {name: node1, ips: [10.10.0.1], podCIDRs: [10.244.1.0/24]}
  - {name: node2, ips: [10.10.0.2], podCIDRs: [10.244.2.0/24]}
"""


def _in(ns: str, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        ["ip", "netns", "exec", ns, *argv], capture_output=True, text=True, check=False, timeout=60
    )
    if check:
        assert proc.returncode == 0, f"{argv}: {proc.stdout}{proc.stderr}"
    return proc


def _doctor(ns: str, inv: Path, tmp: Path) -> dict[str, dict[str, Any]]:
    proc = _in(
        ns, sys.executable, "-m", "nosdn", "doctor", "-f", str(inv),
        "--cni-conf", str(tmp / "none.conflist"), "-o", "json", check=False,
    )  # fmt: skip
    assert proc.returncode in (0, 1), proc.stderr
    return {c["check"]: c for c in json.loads(proc.stdout)["checks"]}


def _neigh(ns: str, addr: str, owner_ns: str, owner_dev: str, dev: str) -> None:
    """A permanent neighbour entry in ``ns``: ``addr`` is at ``owner_dev``'s MAC (in owner_ns)."""
    link = json.loads(ip(owner_ns, "-j", "link", "show", owner_dev))[0]
    ip(ns, "neigh", "replace", addr, "lladdr", link["address"], "dev", dev, "nud", "permanent")


def _pod_pings_node1(node2: str) -> bool:
    """A packet from a pod address of node2 to node1's address, and its answer."""
    proc = _in(node2, "ping", "-c", "1", "-W", "2", "-I", "10.244.2.1", "10.10.0.1", check=False)
    return proc.returncode == 0


def test_rp_filter_strict_where_the_node_address_is_on_another_interface(
    netns: Callable[..., str], tmp_path: Path
) -> None:
    node1, node2 = netns("nosdn-mh1"), netns("nosdn-mh2")
    for a, b in (("a0", "p0"), ("a1", "p1")):
        ip(node1, "link", "add", a, "type", "veth", "peer", "name", b, "netns", node2)
        ip(node1, "link", "set", a, "up")
        ip(node2, "link", "set", b, "up")
    ip(node1, "addr", "add", "10.10.0.1/24", "dev", "a1")  # node1's address
    ip(node1, "addr", "add", "10.10.0.11/25", "dev", "a0")  # more specific: node2 is via a0
    ip(node2, "addr", "add", "10.10.0.2/24", "dev", "p1")
    ip(node2, "addr", "add", "10.244.2.1/32", "dev", "lo")  # a pod address of node2
    # ARP answered already, as for real pods: here the "pod" address is node2's own, so its
    # ARP requests would carry it and strict mode would drop those too
    _neigh(node2, "10.10.0.1", node1, "a1", "p1")
    _neigh(node1, "10.10.0.2", node2, "p0", "a0")
    for key in ("all", "p0", "p1", "lo"):
        _in(node2, "sysctl", "-qw", f"net.ipv4.conf.{key}.rp_filter=0")
    _in(node1, "sysctl", "-qw", "net.ipv4.ip_forward=1")
    _in(node1, "sysctl", "-qw", "net.ipv4.conf.all.rp_filter=1")
    inv = tmp_path / "inventory.yaml"
    inv.write_text(INVENTORY)
    _in(node1, sys.executable, "-m", "nosdn", "apply", "-f", str(inv))
    assert "via 10.10.0.2 dev a0" in ip(node1, "route", "show", "10.244.2.0/24")

    assert not _pod_pings_node1(node2)  # the kernel drops them: strict, and arrival on a1
    seen = _doctor(node1, inv, tmp_path)["rp_filter"]
    assert seen["status"] == "fail", seen
    assert seen["fix"] == "sysctl -w net.ipv4.conf.a1.rp_filter=2"
    assert seen["details"] == [
        "node2's pods (10.244.2.0/24) arrive on a1 (where this node's address 10.10.0.1 is), "
        "but the route back leaves via a0"
    ]
    _in(node1, "sh", "-c", seen["fix"])
    assert _pod_pings_node1(node2)
    assert _doctor(node1, inv, tmp_path)["rp_filter"]["status"] == "ok"
