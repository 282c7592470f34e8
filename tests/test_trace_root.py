"""`nosdn trace IP` on the two-segment BIRD lab (root): a local pod, a pod on a same-segment
node (nosdn's host route), a pod on the other segment (off-link: left to the router), an
address in no pod subnet, and a remote pod whose route was deleted (exit 1, says so).

Trace runs inside node1's namespace, as ``ip netns exec NODE python -m nosdn trace``, and its
JSON is compared with the kernel's own ``ip route get``.
"""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from ipaddress import ip_network
from typing import Any

import pytest

from conftest import requires_root
from nosdn.lab import Lab, LabSpec, down, up
from nosdn.lab import netns as ns

pytestmark = [
    pytest.mark.root,
    pytest.mark.slow,
    requires_root,
    pytest.mark.skipif(not shutil.which("bird"), reason="bird2 is not installed"),
]


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    name = f"tr-{secrets.token_hex(3)}"
    root = tmp_path_factory.mktemp("labs")
    try:
        yield up(
            LabSpec(name=name, nodes=4, ipv6=True, pods_per_node=1, segments=2, router="bird"),
            root=root,
        )
    finally:
        down(name, root=root)
        assert not [n for n in ns.list_netns() if n.startswith(f"{name}.")]


def trace(lab: Lab, ip: str, *args: str) -> tuple[int, dict[str, Any], str]:
    node1 = lab.topo.node("node1").netns
    base = [
        "ip", "netns", "exec", node1, sys.executable, "-m", "nosdn", "trace", ip,
        "-f", str(lab.paths.inventory), "--cni-conf", str(lab.paths.conflist("node1")),
    ]  # fmt: skip
    js = subprocess.run([*base, "-o", "json", *args], capture_output=True, text=True, check=False)
    assert js.returncode in (0, 1), js.stderr
    text = subprocess.run([*base, *args], capture_output=True, text=True, check=False)
    assert text.returncode == js.returncode
    return js.returncode, json.loads(js.stdout), text.stdout


def route_get(lab: Lab, ip: str) -> dict[str, Any]:
    out = ns.run(["ip", "-n", lab.topo.node("node1").netns, "-j", "route", "get", ip]).stdout
    result: dict[str, Any] = json.loads(out)[0]
    return result


def pod_ip(lab: Lab, node: str, family: int = 4) -> str:
    return next(ip for ip in lab.state.pods[f"{node}/pod1"] if (":" in ip) == (family == 6))


def test_local_pod(lab: Lab) -> None:
    ip = pod_ip(lab, "node1")
    rc, t, text = trace(lab, ip)
    assert rc == 0
    assert (t["addressKind"], t["node"], t["status"]) == ("local-pod", "node1", "ok")
    assert t["kernel"]["dev"] == "cni0" == route_get(lab, ip)["dev"]
    assert t["kernel"]["gateway"] is None
    assert t["route"].startswith("10.244.1.0/24 dev cni0 proto kernel")
    assert t["hops"] == [{"to": ip, "dev": "cni0", "what": "pod"}]  # data, no arrows
    assert f"node1 ─cni0→ pod {ip}" in text
    assert "delivered locally on cni0" in text


@pytest.mark.parametrize("family", [4, 6])
def test_remote_pod_same_segment(lab: Lab, family: int) -> None:
    ip = pod_ip(lab, "node2", family)
    rc, t, text = trace(lab, ip)
    gw = "10.10.0.2" if family == 4 else "fd00:10::2"
    assert rc == 0
    assert (t["addressKind"], t["node"], t["status"]) == ("pod", "node2", "ok")
    assert t["kernel"]["gateway"] == gw == route_get(lab, ip)["gateway"]
    assert t["routeOwner"] == "nosdn"
    assert t["wanted"]["via"] == [gw]
    assert t["hops"][0] == {"to": gw, "dev": "eth0", "what": "node2"}
    assert f"node1 ─eth0→ {gw} (node2)" in text
    assert f"routed as nosdn wants, via {gw}" in text


def test_offlink_pod_other_segment(lab: Lab) -> None:
    ip = pod_ip(lab, "node4")
    rc, t, text = trace(lab, ip)
    assert rc == 0
    assert (t["addressKind"], t["node"], t["status"]) == ("offlink-pod", "node4", "ok")
    assert t["kernel"]["gateway"] == "10.10.0.253" == route_get(lab, ip)["gateway"]
    assert t["route"].startswith("0.0.0.0/0 via 10.10.0.253")
    assert t["routeOwner"] != "nosdn"
    assert "off-link" in text
    assert t["hops"] == [
        {"to": "10.10.0.253", "dev": "eth0", "what": "router"},
        {"to": "10.10.1.4", "dev": None, "what": "node", "node": "node4"},
        {"to": ip, "dev": "pod bridge", "what": "pod"},
    ]
    assert f"node1 ─eth0→ 10.10.0.253 (router) ─→ node4 (10.10.1.4) ─pod bridge→ pod {ip}" in text
    # ...and the router it is left to really carries node4's subnet (BIRD, proto bird)
    assert lab.topo.router is not None
    via = ns.run(["ip", "-n", lab.topo.router.netns, "route", "get", ip]).stdout
    assert "via 10.10.1.4" in via


def test_address_in_no_pod_subnet(lab: Lab) -> None:
    rc, t, text = trace(lab, "192.0.2.7")
    assert rc == 0
    assert (t["addressKind"], t["node"], t["wanted"]) == ("outside", None, None)
    assert "in no pod subnet or service CIDR" in text
    rc, t, _ = trace(lab, "10.244.200.1")
    assert (t["addressKind"], t["status"]) == ("unallocated", "warn")


def test_remote_pod_with_its_route_deleted(lab: Lab) -> None:
    ip = pod_ip(lab, "node2")
    node1 = lab.topo.node("node1").netns
    ns.run(["ip", "-n", node1, "route", "del", "10.244.2.0/24"])
    try:
        rc, t, text = trace(lab, ip)
        assert rc == 1
        assert t["status"] == "fail"
        # without its host route the packet takes the default route to the router
        assert t["kernel"]["gateway"] == "10.10.0.253"
        assert "nosdn's route is missing" in t["verdict"]
        assert "fail: nosdn's route is missing" in text
    finally:
        ns.run(
            ["ip", "netns", "exec", node1, sys.executable, "-m", "nosdn", "apply",
             "-f", str(lab.paths.inventory), "--node", "node1"]
        )  # fmt: skip
    assert trace(lab, ip)[0] == 0


def test_remote_pod_shadowed_or_redirected_names_the_route_the_kernel_used(lab: Lab) -> None:
    """nosdn's /24 to node2 is right, but the kernel uses another route: someone else's more
    specific blackhole, a more specific static route via another host, or a route of another
    table an ip rule sends the address to. Trace names that route and says why (exit 1)."""
    ip = pod_ip(lab, "node2")
    node1 = lab.topo.node("node1").netns
    half = str(ip_network(f"{ip}/25", strict=False))
    cases = [
        (["route", "add", "blackhole", half, "proto", "static"], f"blackhole {half} proto static"),
        (
            ["route", "add", half, "via", "10.10.0.253", "proto", "static"],
            f"{half} via 10.10.0.253 dev eth0 proto static",
        ),
        (
            ["route", "add", half, "via", "10.10.0.253", "proto", "static", "table", "100"],
            f"{half} via 10.10.0.253 dev eth0 proto static table 100",
        ),
    ]
    try:
        for add, route in cases:
            ns.run(["ip", "-n", node1, *add])
            if "table" in add:
                ns.run(
                    ["ip", "-n", node1, "rule", "add", "to", half, "lookup", "100", "pref", "100"]
                )
            rc, t, text = trace(lab, ip)
            assert rc == 1, text
            assert t["route"] == route
            assert t["routeOwner"] == "static"
            if "table" in add:
                assert "a policy rule (ip rule) sends it to table 100" in t["verdict"]
            else:
                assert t["verdict"].startswith("shadowed: the kernel uses ")
                assert "more specific than nosdn's 10.244.2.0/24" in t["verdict"]
            ns.run(["ip", "-n", node1, "route", "del", *add[2:]])
            ns.run(["ip", "-n", node1, "rule", "del", "pref", "100"], check=False)
    finally:
        for add, _ in cases:
            ns.run(["ip", "-n", node1, "route", "del", *add[2:]], check=False)
        ns.run(["ip", "-n", node1, "rule", "del", "pref", "100"], check=False)
    assert trace(lab, ip)[0] == 0
