"""Allocation: no overlaps, stable as nodes come and go, written back keeping comments."""

from __future__ import annotations

import ipaddress
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from nosdn.checks import check_cluster
from nosdn.ipam import allocate
from nosdn.model import Cluster, Node
from nosdn.sources.inventory import load_cluster, parse_inventory, write_allocation


def cluster_of(n: int, cidrs: tuple[str, ...] = ("172.17.0.0/16", "fd00:17::/56")) -> Cluster:
    nodes = tuple(
        Node(
            f"n{i}",
            (
                ipaddress.ip_address(f"10.10.{i // 200}.{i % 200 + 1}"),
                ipaddress.ip_address(f"fd00:10::{i + 1:x}"),
            ),
        )
        for i in range(n)
    )
    return Cluster(nodes, tuple(ipaddress.ip_network(c) for c in cidrs))


def subnets(c: Cluster) -> dict[str, tuple[object, ...]]:
    return {n.name: n.pod_cidrs for n in c.nodes}


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(min_value=1, max_value=40),
    removed=st.sets(st.integers(min_value=0, max_value=39), max_size=10),
    added=st.integers(min_value=0, max_value=10),
)
def test_allocation_is_stable_and_never_overlaps(n: int, removed: set[int], added: int) -> None:
    first = allocate(cluster_of(n)).cluster
    assert check_cluster(first) == []
    assert all(len(node.pod_cidrs) == 2 for node in first.nodes)
    # remove some nodes, add new ones: every surviving node keeps exactly its subnets
    kept = tuple(node for i, node in enumerate(first.nodes) if i not in removed)
    extra = tuple(
        Node(
            f"new{i}",
            (ipaddress.ip_address(f"10.20.0.{i + 1}"), ipaddress.ip_address(f"fd00:20::{i + 1:x}")),
        )
        for i in range(added)
    )
    second = allocate(Cluster(kept + extra, first.cluster_cidrs)).cluster
    before = subnets(first)
    for node in second.nodes:
        if node.name in before:
            assert node.pod_cidrs == before[node.name]
    assert check_cluster(second) == []


def test_new_nodes_reuse_the_lowest_free_subnet() -> None:
    first = allocate(cluster_of(3)).cluster
    assert [str(n.pod_cidrs[0]) for n in first.nodes] == [
        "172.17.0.0/24",
        "172.17.1.0/24",
        "172.17.2.0/24",
    ]
    without_middle = Cluster(
        (first.nodes[0], first.nodes[2], Node("late", (ipaddress.ip_address("10.99.0.1"),))),
        first.cluster_cidrs,
    )
    late = allocate(without_middle).cluster.nodes[2]
    assert str(late.pod_cidrs[0]) == "172.17.1.0/24"


def test_allocator_skips_subnets_holding_node_or_service_addresses() -> None:
    c = Cluster(
        (
            Node("a", (ipaddress.ip_address("172.17.0.9"),)),
            Node("b", (ipaddress.ip_address("10.0.0.2"),)),
        ),
        (ipaddress.ip_network("172.17.0.0/16"),),
        service_cidrs=(ipaddress.ip_network("172.17.1.0/24"),),
    )
    got = [str(n.pod_cidrs[0]) for n in allocate(c).cluster.nodes]
    assert got == ["172.17.2.0/24", "172.17.3.0/24"]


def test_write_back_keeps_comments_order_and_indentation(tmp_path: Path) -> None:
    f = tmp_path / "inv.yaml"
    f.write_text(
        "# my cluster\nclusterCIDRs: [172.17.0.0/16]  # pods\nnodes:\n"
        "  - name: node1\n    ip: 10.10.0.1  # rack 1\n    podCIDR: 172.17.1.0/24\n"
        "  - name: node2\n    ip: 10.10.0.2\n    instanceId: i-0abc\n"
    )
    cluster, problems = parse_inventory(__import__("yaml").safe_load(f.read_text()))
    assert problems == []
    write_allocation(f, allocate(cluster))
    text = f.read_text()
    assert text.startswith("# my cluster\n")
    assert "# rack 1" in text
    assert "# pods" in text
    assert (
        "  - name: node2\n    ip: 10.10.0.2\n    podCIDRs: [172.17.0.0/24]\n    instanceId" in text
    )
    # and the written file now loads with node2 pinned
    assert str(load_cluster(f).node("node2").pod_cidrs[0]) == "172.17.0.0/24"  # type: ignore[union-attr]
