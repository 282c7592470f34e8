"""`trace` verdicts as a pure function of facts (no root): service routes, conflicts, wrong
next hops and pods nosdn has no route for — the cases the lab does not make."""

from __future__ import annotations

from ipaddress import ip_address, ip_network

from nosdn.backends.fake import FakeBackend
from nosdn.diagnose.facts import Facts, Neighbour, RouteLookup
from nosdn.diagnose.trace import explain
from nosdn.model import EXTERNAL, Cluster, InstalledRoute, Node, Target
from nosdn.reconcile import reconcile_once

CLUSTER = Cluster(
    nodes=(
        Node("node1", (ip_address("10.10.0.1"),), (ip_network("10.244.1.0/24"),)),
        Node("node2", (ip_address("10.10.0.2"),), (ip_network("10.244.2.0/24"),)),
    ),
    cluster_cidrs=(ip_network("10.244.0.0/16"),),
    service_cidrs=(ip_network("10.96.0.0/12"),),
    service_via=("node1", "node2"),
    name="t",
)
GW1, GW2 = ip_address("10.10.0.1"), ip_address("10.10.0.2")


def facts_for(target: Target, installed: list[InstalledRoute], ip: str, look: RouteLookup,
              neighbours: tuple[Neighbour, ...] = ()) -> Facts:  # fmt: skip
    res = reconcile_once(CLUSTER, target, FakeBackend(installed), dry_run=True)
    return Facts(
        cluster=CLUSTER,
        target=target,
        routes=res,
        installed=tuple(installed),
        lookups={ip_address(ip): look},
        neighbours=neighbours,
    )


def test_service_address_from_an_external_host_uses_the_ecmp_route() -> None:
    svc = ip_network("10.96.0.0/12")
    ok = InstalledRoute(svc, (GW1, GW2), True, "nosdn", "10.96.0.0/12 nhid 3 proto nosdn")
    ip = "10.96.0.10"
    f = facts_for(EXTERNAL, [ok], ip, RouteLookup(ip_address(ip), dev="eth0", gateway=GW2))
    t = explain(f, ip_address(ip))
    assert (t.kind, t.status) == ("service", "ok")
    assert t.verdict == "routed as nosdn wants, via 10.10.0.1, 10.10.0.2"
    # from a node, kube-proxy handles it locally: no route wanted, nothing wrong
    f = facts_for(Target.for_node("node1"), [], ip, RouteLookup(ip_address(ip), "unreachable"))
    assert explain(f, ip_address(ip)).status == "ok"


def test_conflict_and_wrong_next_hop_and_dead_neighbour() -> None:
    dst = ip_network("10.244.2.0/24")
    ip = "10.244.2.5"
    me = Target.for_node("node1")
    look = RouteLookup(ip_address(ip), dev="eth0", gateway=ip_address("10.10.0.9"))
    theirs = InstalledRoute(dst, (ip_address("10.10.0.9"),), False, "static", "x proto static")
    t = explain(facts_for(me, [theirs], ip, look), ip_address(ip))
    assert (t.status, t.verdict.split(":")[0]) == ("fail", "conflict")
    wrong = InstalledRoute(dst, (ip_address("10.10.0.9"),), True, "nosdn", "x proto nosdn")
    t = explain(facts_for(me, [wrong], ip, look), ip_address(ip))
    assert t.verdict.startswith("nosdn's route is wrong")
    right = InstalledRoute(dst, (GW2,), True, "nosdn", "10.244.2.0/24 via 10.10.0.2 proto nosdn")
    look = RouteLookup(ip_address(ip), dev="eth0", gateway=GW2)
    dead = (Neighbour(GW2, "eth0", "FAILED"),)
    t = explain(facts_for(me, [right], ip, look, dead), ip_address(ip))
    assert t.status == "fail"
    assert "next hop does not answer" in t.verdict
    assert [s.status for s in t.steps if s.label == "next hop"] == ["fail"]
    t = explain(facts_for(me, [right], ip, look), ip_address(ip))
    assert (t.status, t.path) == (
        "ok",
        ("node1", "─eth0→ 10.10.0.2 (node2)", f"─pod bridge→ pod {ip}"),
    )
