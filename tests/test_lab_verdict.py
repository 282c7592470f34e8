"""`nosdn.lab.verdict`: a failed ping matrix said by its pattern (no root: results are built
by hand, as `lab check` would return them for a lab of three nodes with two pods each)."""

from __future__ import annotations

from collections.abc import Callable
from ipaddress import ip_address

from nosdn.lab.ping import Endpoint, Probe, ProbeResult, probes
from nosdn.lab.verdict import groups, owner

NODES = ("node1", "node2", "node3")


def endpoints() -> tuple[list[Endpoint], list[Endpoint]]:
    pods, sources = [], []
    for i, n in enumerate(NODES, 1):
        for j in (1, 2):
            ips = (ip_address(f"10.244.{i}.{j + 1}"), ip_address(f"fd00:244:0:{i}::{j + 1}"))
            pods.append(Endpoint(f"{n}/pod{j}", f"lab.{n}.pod{j}", ips, "pod"))
    nodes = [
        Endpoint(n, f"lab.{n}", (ip_address(f"10.10.0.{i}"), ip_address(f"fd00:10::{i}")), "node")
        for i, n in enumerate(NODES, 1)
    ]
    ext = Endpoint("external", "lab.ext", (ip_address("10.10.0.200"),), "external")
    sources = [*pods, *nodes, ext]
    return sources, pods


def matrix(fails: Callable[[Probe], bool]) -> list[ProbeResult]:
    sources, pods = endpoints()
    return [
        ProbeResult(p, not fails(p), "Destination Host Unreachable" if fails(p) else "")
        for p in probes(sources, pods, (4, 6))
    ]


def test_all_well_is_no_group() -> None:
    assert groups(matrix(lambda p: False)) == ([], [])


def test_one_missing_route_is_one_pair() -> None:
    """node2 lacks its route to node1's pods: node2 and its pods reach none of them, and
    node1's pods get no reply from node2's (the replies need that route); node1 itself does
    (its address is on the link)."""
    results = matrix(
        lambda p: (
            (owner(p.src) == "node2" and owner(p.dst) == "node1")
            or (p.src.kind == "pod" and owner(p.src) == "node1" and owner(p.dst) == "node2")
        )
    )
    found, left = groups(results)
    assert [g.text for g in found] == [
        "every ping between node1's pods and node2's pods fails, both ways (IPv4): "
        "node2 cannot reach the other's pods either",
        "every ping between node1's pods and node2's pods fails, both ways (IPv6): "
        "node2 cannot reach the other's pods either",
    ]
    assert [g.suspect for g in found] == ["node2", "node2"]
    assert left == []
    assert sum(len(g.results) for g in found) == sum(not r.ok for r in results)


def test_a_node_nobody_reaches() -> None:
    found, left = groups(
        matrix(lambda p: owner(p.dst) == "node3" and owner(p.src) != "node3" and p.family == 4)
    )
    assert [(g.text, g.suspect) for g in found] == [
        ("every ping to node3's pods from elsewhere fails (IPv4)", "node3")
    ]
    assert left == []


def test_no_routes_at_all() -> None:
    found, _ = groups(matrix(lambda p: owner(p.src) != owner(p.dst)))
    assert [g.text for g in found] == [
        "no ping crosses from one node to another (IPv4): no routes, or none work",
        "no ping crosses from one node to another (IPv6): no routes, or none work",
    ]


def test_one_way_only() -> None:
    found, left = groups(matrix(lambda p: owner(p.src) == "node2" and owner(p.dst) == "node1"))
    assert [g.text for g in found] == [
        "every ping from node2 to node1's pods fails (IPv4)",
        "every ping from node2 to node1's pods fails (IPv6)",
    ]
    assert left == []


def test_the_external_host_alone() -> None:
    found, _ = groups(matrix(lambda p: p.src.label == "external"))
    assert [(g.text, g.suspect) for g in found] == [
        ("every ping from the external host to other nodes' pods fails (IPv4)", "external")
    ]


def test_a_lone_failure_is_listed_alone() -> None:
    lone = ("node1/pod1", "node2/pod2", 4)
    found, left = groups(matrix(lambda p: (p.src.label, p.dst.label, p.family) == lone))
    assert found == []
    assert [(r.probe.src.label, r.probe.dst.label) for r in left] == [lone[:2]]
