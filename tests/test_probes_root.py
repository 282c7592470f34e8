"""Datapath probes in the lab's namespaces (root): a `Prober` per node, each with its sockets in
its node's namespace, probing the peers' pod bridge addresses over the routes `nosdn apply`
programmed. Broken by hand (a route deleted here, a firewall on the peer), the probe series
change and the Event names the peer and the likely cause; repaired, the peer answers again.

Each test makes its own lab with a unique name and removes it in teardown; no packet leaves
the lab's namespaces.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from ipaddress import ip_address, ip_network
from pathlib import Path
from typing import Any

import pytest

from conftest import requires_root
from nosdn.agent.metrics import AgentMetrics
from nosdn.agent.probes import (
    Pinger,
    Prober,
    Target,
    bridge_address,
    ensure_bridge,
    kernel_diagnosis,
    targets,
)
from nosdn.backends.kernel import KernelBackend
from nosdn.lab import Lab, LabSpec, down, up
from nosdn.lab import netns as ns
from nosdn.model import Node
from nosdn.sources.nodes import NodeInfo

pytestmark = [pytest.mark.root, requires_root]


class Events:
    """Collects what the prober records (the `EventRecorder` surface it uses)."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, str]] = []

    def record(self, etype: str, reason: str, message: str, **_: Any) -> bool:
        self.seen.append((etype, reason, message))
        return True


@pytest.fixture
def lab_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    name = f"p-{secrets.token_hex(3)}"
    monkeypatch.setenv("NOSDN_LAB_DIR", str(tmp_path / "labs"))
    try:
        yield name
    finally:
        down(name)
        assert [n for n in ns.list_netns() if n.startswith(f"{name}.")] == []


def infos(lab: Lab) -> list[NodeInfo]:
    return [NodeInfo(n.name, n) for n in lab.topo.cluster().nodes]


def prober(lab: Lab, node: str, events: Events) -> tuple[Prober, AgentMetrics]:
    netns = lab.topo.node(node).netns
    pinger = Pinger(netns)
    me = next(n for n in lab.topo.cluster().nodes if n.name == node)
    m = AgentMetrics()

    def route_used() -> Any:
        return KernelBackend(netns=netns).route_used

    p = Prober(
        lambda: infos(lab),
        node,
        m,
        pinger=pinger,
        events=events,
        diagnose=kernel_diagnosis(route_used, pinger, lambda: list(me.ips), timeout=0.5),
        ensure_bridge=ensure_bridge(netns, "cni0"),
        batch=8,
        timeout=0.5,
    )
    return p, m


def value(m: AgentMetrics, name: str, **labels: str) -> float | None:
    return m.registry.get_sample_value(name, labels)


def test_targets_are_bridge_to_bridge() -> None:
    def node(i: int, *nets: str) -> NodeInfo:
        ips = (ip_address(f"10.10.0.{i}"), ip_address(f"fd00::{i}"))
        return NodeInfo(f"node{i}", Node(f"node{i}", ips, tuple(ip_network(n) for n in nets)))

    nodes = [
        node(1, "fd00:244:1::/64", "10.244.1.0/24"),
        node(2, "10.244.2.0/24"),
        node(3, "fd00:244:3::/64"),  # IPv6 only: probed over IPv6
        node(4),  # no subnet yet: nothing to probe
    ]
    ts = {t.peer: t for t in targets(nodes, "node1")}
    assert set(ts) == {"node2", "node3"}
    t: Target = ts["node2"]
    assert (str(t.src), str(t.dst), str(t.node_ip)) == ("10.244.1.1", "10.244.2.1", "10.10.0.2")
    t = ts["node3"]
    assert (str(t.src), str(t.dst), str(t.node_ip)) == ("fd00:244:1::1", "fd00:244:3::1", "fd00::3")
    assert targets(nodes, "node4") == []


def test_probes_see_a_route_deleted_and_a_firewall_and_the_repair(lab_name: str) -> None:
    lab = up(LabSpec(name=lab_name, nodes=3, pods_per_node=1), routes=True)
    # node3 as a node without pods: no pod bridge (the CNI plugin makes it on the first pod);
    # its prober makes it, so that its peers' probes are answered
    ns.run(["ip", "-n", lab.topo.node("node3").netns, "link", "del", "cni0"])
    events = {n: Events() for n in ("node1", "node2", "node3")}
    probers = {n: prober(lab, n, events[n]) for n in events}
    try:
        for _ in range(2):  # the first makes the bridges, the second sees every peer
            for p, _m in probers.values():
                p.step()
        for n in ("node1", "node2", "node3"):
            addr = ns.run(["ip", "-n", lab.topo.node(n).netns, "-o", "addr", "show", "cni0"])
            assert f"10.244.{n[-1]}.1/24" in addr.stdout
        p1, m1 = probers["node1"]
        p1.step()
        assert value(m1, "nosdn_probe_peers", state="reachable") == 2
        assert value(m1, "nosdn_probe_peers", state="unreachable") == 0
        assert value(m1, "nosdn_probe_peer_reachable", peer="node2") == 1
        assert value(m1, "nosdn_probe_peer_reachable", peer="node3") == 1
        answered = value(m1, "nosdn_probes_total", result="answered")
        assert answered is not None
        assert answered >= 2
        rtts = value(m1, "nosdn_probe_rtt_seconds_count")
        assert rtts == answered
        assert p1.report()["unreachable"] == []

        # 1. node1's route to node3's pods, deleted by hand
        node1 = lab.topo.node("node1").netns
        ns.run(["ip", "-n", node1, "route", "del", "10.244.3.0/24"])
        p1.step()
        assert value(m1, "nosdn_probe_peer_reachable", peer="node3") == 1  # one loss: not yet
        p1.step()
        assert value(m1, "nosdn_probe_peer_reachable", peer="node3") == 0
        assert value(m1, "nosdn_probe_peer_reachable", peer="node2") == 1
        assert value(m1, "nosdn_probe_peers", state="unreachable") == 1
        (bad,) = p1.report()["unreachable"]
        assert bad["peer"] == "node3"
        assert bad["cause"] == "route missing here: no route for 10.244.3.0/24"
        etype, reason, msg = events["node1"].seen[-1]
        assert (etype, reason) == ("Warning", "PeerUnreachable")
        assert "node3 does not answer over the pod path (10.244.1.1 -> 10.244.3.1" in msg
        assert "route missing here" in msg

        ns.run(["ip", "-n", node1, "route", "add", "10.244.3.0/24", "via", "10.10.0.3"])
        p1.step()
        assert value(m1, "nosdn_probe_peer_reachable", peer="node3") == 1
        assert events["node1"].seen[-1][1] == "PeerReachable"

        # 2. node2 drops pod traffic from node1's pods (its node address still answers)
        node2 = lab.topo.node("node2").netns
        rules = (
            "add table inet nosdn_test_fw\n"
            "add chain inet nosdn_test_fw in { type filter hook input priority 0; }\n"
            "add rule inet nosdn_test_fw in ip saddr 10.244.1.0/24 drop\n"
        )
        ns.run(["ip", "netns", "exec", node2, "nft", "-f", "-"], input=rules)
        try:
            p1.step()
            p1.step()
            assert value(m1, "nosdn_probe_peer_reachable", peer="node2") == 0
            (bad,) = p1.report()["unreachable"]
            assert bad["peer"] == "node2"
            assert (
                "node2 answers on its node address 10.10.0.2 but not on its pod bridge"
                in (bad["cause"])
            )
            # node2's own probe of node1 fails too: node1's answers are dropped on the way in
            p2, m2 = probers["node2"]
            p2.step()
            p2.step()
            assert value(m2, "nosdn_probe_peer_reachable", peer="node1") == 0
            assert value(m2, "nosdn_probe_peer_reachable", peer="node3") == 1
        finally:
            ns.run(["ip", "netns", "exec", node2, "nft", "delete table inet nosdn_test_fw"])
        p1.step()
        assert value(m1, "nosdn_probe_peers", state="reachable") == 2
    finally:
        for p, _m in probers.values():
            p.pinger.close()


def test_per_peer_series_are_bounded_unreachable_first(lab_name: str) -> None:
    lab = up(LabSpec(name=lab_name, nodes=4, pods_per_node=1), routes=True)
    p, m = prober(lab, "node1", Events())
    p.max_series = 1
    ns.run(["ip", "-n", lab.topo.node("node1").netns, "route", "del", "10.244.4.0/24"])
    try:
        for _ in range(3):
            p.step()
        assert value(m, "nosdn_probe_peer_reachable", peer="node4") == 0
        assert value(m, "nosdn_probe_peer_reachable", peer="node2") is None
        assert value(m, "nosdn_probe_peers", state="reachable") == 2
    finally:
        p.pinger.close()


def test_ipv6_echo_over_the_pod_path(lab_name: str) -> None:
    """Dual-stack: the IPv6 pod bridge addresses answer an ICMPv6 echo (the kernel computes
    its checksum) over nosdn's IPv6 routes; a deleted IPv6 route is a send error."""
    lab = up(LabSpec(name=lab_name, nodes=2, ipv6=True, pods_per_node=1), routes=True)
    v6 = {n.name: next(c for c in n.pod_cidrs if c.version == 6) for n in lab.topo.cluster().nodes}
    src, dst = bridge_address(v6["node1"]), bridge_address(v6["node2"])
    pinger = Pinger(lab.topo.node("node1").netns)
    try:
        (rtt,) = pinger.ping([(src, dst)], 1.0)
        assert isinstance(rtt, float), rtt
        ns.run(["ip", "-n", lab.topo.node("node1").netns, "-6", "route", "del", str(v6["node2"])])
        (lost,) = pinger.ping([(src, dst)], 0.5)
        assert not isinstance(lost, float)
    finally:
        pinger.close()
