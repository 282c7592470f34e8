"""BGP on the wire: real BIRD in namespaces, each with the config nosdn rendered.

One router namespace runs BIRD with ``render --format bird --bgp`` (standalone: it exports what
it learns to its kernel table); node namespaces run BIRD with ``render --format bird-node``,
all on one bridge, dual stack, with an MD5 password. The router's kernel table must hold
exactly the nodes' pod subnets, each via its node. Then the nodes turn hostile: a node's config
edited by hand to also announce 0.0.0.0/0, another node's subnet and a /16 is cut down by the
router's per-node filter to its own subnet; a node unknown to the inventory, coming in as a
dynamic neighbour, gets only a subnet inside the cluster CIDR at the node mask through.

Every namespace has a unique name and is removed in teardown (the ``netns`` fixture); every BIRD
is killed by its pid in a finally; control sockets live in the test's tmp dir.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from conftest import ip, requires_root
from nosdn.model import Target
from nosdn.render import RenderOptions, read_passwords, render
from nosdn.render.bgp import render_bird_bgp
from nosdn.sources.inventory import load_cluster

pytestmark = [
    pytest.mark.root,
    requires_root,
    pytest.mark.skipif(not shutil.which("bird"), reason="bird2 is not installed"),
]

Netns = Callable[..., str]

INVENTORY = """\
clusterCIDRs: [172.17.0.0/16, fd00:17::/56]
bgp:
  asn: 64512
  gracefulRestartTime: 120
  nodeNetworks: [10.10.0.0/24, fd00:10::/64]
  peers:
    - {address: 10.10.0.254, asn: 65000, passwordFile: md5.key}
    - {address: "fd00:10::fe", asn: 65000, passwordFile: md5.key}
nodes:
  - {name: node1, ips: [10.10.0.1, "fd00:10::1"], podCIDRs: [172.17.1.0/24, "fd00:17:0:1::/64"]}
  - {name: node2, ips: [10.10.0.2, "fd00:10::2"], podCIDRs: [172.17.2.0/24, "fd00:17:0:2::/64"]}
"""
#: node3 is not in the router's inventory: it connects as a dynamic neighbour.
NODE3 = """\
  - {name: node3, ips: [10.10.0.3, "fd00:10::3"], podCIDRs: [172.17.3.0/24, "fd00:17:0:3::/64"]}
"""
EXPECTED = {
    ("172.17.1.0/24", "10.10.0.1"),
    ("172.17.2.0/24", "10.10.0.2"),
    ("fd00:17:0:1::/64", "fd00:10::1"),
    ("fd00:17:0:2::/64", "fd00:10::2"),
}


def _topology(netns: Netns, n: int) -> tuple[str, list[str]]:
    """A router namespace with a bridge, and ``n`` node namespaces on it (dual stack)."""
    router = netns("nosdn-bgpr")
    ip(router, "link", "add", "br0", "type", "bridge")
    ip(router, "addr", "add", "10.10.0.254/24", "dev", "br0")
    ip(router, "addr", "add", "fd00:10::fe/64", "dev", "br0", "nodad")
    ip(router, "link", "set", "br0", "up")
    nodes = []
    for i in range(1, n + 1):
        node = netns(f"nosdn-bgpn{i}")
        ip(router, "link", "add", f"n{i}", "type", "veth", "peer", "name", "eth0", "netns", node)
        ip(router, "link", "set", f"n{i}", "master", "br0", "up")
        ip(node, "addr", "add", f"10.10.0.{i}/24", "dev", "eth0")
        ip(node, "addr", "add", f"fd00:10::{i}/64", "dev", "eth0", "nodad")
        ip(node, "link", "set", "eth0", "up")
        ll = re.search(r"inet6 (fe80::\S+)/64", ip(node, "-6", "addr", "show", "dev", "eth0"))
        assert ll is not None
        _LINK_LOCAL[ll.group(1)] = f"fd00:10::{i}"
        nodes.append(node)
    return router, nodes


@contextmanager
def _birds(tmp: Path, configs: dict[str, str]) -> Iterator[dict[str, Path]]:
    """One BIRD per namespace (router first, so the nodes find it listening), each with its
    config and a control socket in ``tmp``; every one killed by pid at the end."""
    procs: list[subprocess.Popen[bytes]] = []
    sockets: dict[str, Path] = {}
    try:
        for i, (ns, text) in enumerate(configs.items()):
            conf, sock = tmp / f"bird{i}.conf", tmp / f"bird{i}.ctl"
            conf.write_text(text)
            conf.chmod(0o600)
            procs.append(
                subprocess.Popen(
                    ["ip", "netns", "exec", ns, "bird", "-f", "-c", str(conf), "-s", str(sock)],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
            sockets[ns] = sock
            _wait(lambda s=sock: s.exists(), 10, f"bird in {ns} did not start")  # type: ignore[misc]
        yield sockets
    finally:
        for p in procs:
            p.kill()
        for p in procs:
            p.wait(timeout=10)


def _wait(ok: Callable[[], object], timeout: float, what: str | Callable[[], str]) -> None:
    deadline = time.monotonic() + timeout
    while not ok():
        if time.monotonic() > deadline:
            raise AssertionError(what if isinstance(what, str) else what())
        time.sleep(0.2)


def _birdc(sock: Path, *cmd: str) -> str:
    return subprocess.run(
        ["birdc", "-s", str(sock), *cmd], capture_output=True, text=True, check=False, timeout=10
    ).stdout


#: Each node namespace's IPv6 link-local address, as its global one: BIRD installs an IPv6 BGP
#: route of a directly connected peer via the peer's link-local next hop.
_LINK_LOCAL: dict[str, str] = {}


def _learned(router: str) -> set[tuple[str, str]]:
    """The router's kernel routes put there by BIRD, as (prefix, next hop)."""
    out = ip(router, "route", "show", "proto", "bird") + ip(
        router, "-6", "route", "show", "proto", "bird"
    )
    found = re.findall(r"^(\S+) via (\S+)", out, re.M)
    return {(dst, _LINK_LOCAL.get(via, via)) for dst, via in found}


def _established(sock: Path, count: int) -> bool:
    return _birdc(sock, "show", "protocols").count("Established") >= count


def _render_all(tmp: Path, extra_nodes: str = "") -> tuple[str, dict[str, str]]:
    (tmp / "md5.key").write_text("Lab-md5-key.1\n")
    inv = tmp / "inventory.yaml"
    inv.write_text(INVENTORY)
    cluster = load_cluster(inv, warn=False)
    options = read_passwords(cluster, "bird", RenderOptions(bgp=True))
    router = render_bird_bgp(cluster, options, standalone=True)
    with_more = tmp / "with-more.yaml"
    with_more.write_text(INVENTORY + extra_nodes)
    nodes_cluster = load_cluster(with_more, warn=False)
    nodes = {}
    for n in nodes_cluster.nodes:
        o = RenderOptions(target=Target.for_node(n.name))
        nodes[n.name] = render(
            nodes_cluster, "bird-node", read_passwords(nodes_cluster, "bird-node", o)
        )
    return router, nodes


def test_the_router_learns_exactly_the_pod_subnets(netns: Netns, tmp_path: Path) -> None:
    router_conf, node_confs = _render_all(tmp_path)
    router, (ns1, ns2) = _topology(netns, 2)
    configs = {router: router_conf, ns1: node_confs["node1"], ns2: node_confs["node2"]}
    with _birds(tmp_path, configs) as socks:
        _wait(
            lambda: _learned(router) == EXPECTED, 30, lambda: f"router learned {_learned(router)}"
        )
        # four sessions: node1 and node2, IPv4 and IPv6, each an explicit (strict) neighbour
        assert _established(socks[router], 4)
        assert "nosdn_kubernetes_node1_v4" in _birdc(socks[router], "show", "protocols")
        time.sleep(1)
        assert _learned(router) == EXPECTED
        # the nodes learn nothing and touch no route of their own namespace
        for ns in (ns1, ns2):
            assert ip(ns, "route", "show", "proto", "bird") == ""


def _hostile(conf: str, extra: list[str]) -> str:
    """A node config edited by hand: more static routes, and an export filter that lets
    everything out."""
    routes = "".join(f"    route {p} blackhole;\n" for p in extra if ":" not in p)
    routes6 = "".join(f"    route {p} blackhole;\n" for p in extra if ":" in p)
    conf = conf.replace("    ipv4;\n", "    ipv4;\n" + routes, 1)
    conf = conf.replace("    ipv6;\n", "    ipv6;\n" + routes6, 1)
    return re.sub(r"export filter nosdn_export_v[46];", "export all;", conf)


def test_the_router_filters_reject_what_a_node_must_not_announce(
    netns: Netns, tmp_path: Path
) -> None:
    router_conf, node_confs = _render_all(tmp_path, NODE3)
    router, (ns1, ns2, ns3) = _topology(netns, 3)
    bad = ["0.0.0.0/0", "172.17.1.0/24", "172.17.0.0/16", "172.17.9.0/24", "10.96.0.0/12",
           "::/0", "fd00:17::/56", "fd00:17:0:1::/64"]  # fmt: skip
    node2 = _hostile(node_confs["node2"], bad)
    # a dynamic neighbour may announce any /24 of the cluster CIDR (the router cannot know which
    # is its own): node3's hostile routes are the ones no node may announce
    node3 = _hostile(node_confs["node3"], ["0.0.0.0/0", "172.17.0.0/16", "172.17.3.0/25",
                                           "10.96.0.0/12", "::/0", "fd00:17::/56"])  # fmt: skip
    configs = {router: router_conf, ns1: node_confs["node1"], ns2: node2, ns3: node3}
    with _birds(tmp_path, configs) as socks:
        want = EXPECTED | {("172.17.3.0/24", "10.10.0.3"), ("fd00:17:0:3::/64", "fd00:10::3")}
        _wait(lambda: _learned(router) == want, 40, lambda: f"router learned {_learned(router)}")
        assert _established(socks[router], 6)
        # the hostile nodes did send what they must not: BIRD on them exports it ...
        for ns, sock in ((ns2, socks[ns2]), (ns3, socks[ns3])):
            sent = _birdc(sock, "show", "route", "export", "nosdn_peer_10_10_0_254")
            assert "0.0.0.0/0" in sent, (ns, sent)
            assert "172.17.0.0/16" in sent
        time.sleep(1)
        # ... and the router took none of it: node2 (inventory) only its own subnet, node3
        # (dynamic) only a subnet inside the cluster CIDR at exactly /24 or /64
        assert _learned(router) == want
        dyn = _birdc(socks[router], "show", "protocols")
        assert "nosdn_kubernetes_dyn1_v4_" in dyn  # node3 came in through the listen range
