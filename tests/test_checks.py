"""One failing inventory per check: each problem must name the node, the field and the value."""

from __future__ import annotations

from dataclasses import replace
from ipaddress import ip_address, ip_network
from typing import Any

import pytest

from nosdn.checks import check_cluster
from nosdn.ipam import allocate
from nosdn.model import Cluster, Node
from nosdn.problems import Problem
from nosdn.sources.inventory import parse_inventory


def problems_of(data: dict[str, Any]) -> list[Problem]:
    cluster, problems = parse_inventory(data)
    if problems:
        return problems
    alloc = allocate(cluster)
    return [*alloc.problems, *check_cluster(alloc.cluster)]


def base(**top: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "clusterCIDRs": ["172.17.0.0/16"],
        "nodes": [
            {"name": "node1", "ip": "10.10.0.1", "podCIDR": "172.17.1.0/24"},
            {"name": "node2", "ip": "10.10.0.2", "podCIDR": "172.17.2.0/24"},
        ],
    }
    data.update(top)
    return data


def with_node(data: dict[str, Any], i: int, **fields: Any) -> dict[str, Any]:
    """Set node fields; a plural key replaces its singular shorthand (and vice versa)."""
    node = data["nodes"][i]
    for key in fields:
        for a, b in (("ips", "ip"), ("podCIDRs", "podCIDR")):
            if key in (a, b):
                node.pop(b if key == a else a, None)
    node.update(fields)
    return data


def the_one(problems: list[Problem], node: str | None, field: str, value: str) -> Problem:
    hits = [p for p in problems if p.node == node and p.field == field and value in p.value]
    assert hits, f"no problem for {node}/{field}/{value} in {[str(p) for p in problems]}"
    for hit in hits:
        text = str(hit)
        assert value in text
        assert field in text
        if node:
            assert node in text
    return hits[0]


def one_saying(
    problems: list[Problem], node: str | None, field: str, value: str, words: str
) -> Problem:
    """The problem for node/field/value whose message (or value) has ``words``."""
    the_one(problems, node, field, value)
    hits = [
        p
        for p in problems
        if p.node == node and p.field == field and value in p.value
        if words in p.message or words in p.value
    ]
    assert hits, f"no {node}/{field}/{value} problem says {words!r}: {[str(p) for p in problems]}"
    return hits[0]


def test_the_post_example_is_sound() -> None:
    assert problems_of(base()) == []


@pytest.mark.parametrize(
    ("data", "node", "field", "value", "words"),
    [
        (with_node(base(), 1, ip="10.10.0.300"), "node2", "ips", "10.10.0.300", "not an IP"),
        (with_node(base(), 1, podCIDR="172.17.2.0/33"), "node2", "podCIDRs", "/33", "not a valid"),
        (
            with_node(base(), 1, podCIDR="172.17.2.1/24"),
            "node2",
            "podCIDRs",
            "172.17.2.1/24",
            "host bits",
        ),
        (with_node(base(), 1, podCIDR="172.17.2.0"), "node2", "podCIDRs", "172.17.2.0", "prefix"),
        (with_node(base(), 1, name="node1"), "node1", "name", "node1", "more than one node"),
        (with_node(base(), 1, ip="10.10.0.1"), "node2", "ips", "10.10.0.1", "node1's address"),
        (
            with_node(base(), 1, podCIDR="172.17.1.128/25"),
            "node2",
            "podCIDRs",
            "172.17.1.128/25",
            "overlaps node node1's",
        ),
        (
            with_node(base(), 1, podCIDR="172.18.2.0/24"),
            "node2",
            "podCIDRs",
            "172.18.2.0/24",
            "outside clusterCIDRs",
        ),
        (
            with_node(base(clusterCIDRs=["10.0.0.0/8"]), 1, podCIDR="10.10.0.0/24"),
            "node2",
            "podCIDRs",
            "10.10.0.0/24",
            "node1's address",
        ),
        (
            with_node(base(clusterCIDRs=["10.0.0.0/8"]), 1, podCIDR="10.10.0.0/24"),
            None,
            "clusterCIDRs",
            "10.0.0.0/8",
            "node node1's address",
        ),
        (
            base(serviceCIDRs=["172.17.2.0/23"]),
            None,
            "serviceCIDRs",
            "172.17.2.0/23",
            "overlaps clusterCIDRs",
        ),
        (
            base(clusterCIDRs=[], serviceCIDRs=["172.17.0.0/23"]),
            "node1",
            "podCIDRs",
            "172.17.1.0/24",
            "overlaps serviceCIDRs",
        ),
        (
            with_node(base(clusterCIDRs=[]), 1, podCIDRs=["172.17.2.0/24", "fd00::/64"]),
            "node2",
            "podCIDRs",
            "fd00::/64",
            "no IPv6 address",
        ),
        (
            base(serviceCIDRs=["10.96.0.0/12"], serviceVia=["node9"]),
            None,
            "serviceVia",
            "node9",
            "names no node",
        ),
        (base(clusterCIDRs=["0.0.0.0/0"]), None, "clusterCIDRs", "0.0.0.0/0", "too short"),
        (
            with_node(base(clusterCIDRs=[]), 1, podCIDR="172.0.0.0/6"),
            "node2",
            "podCIDRs",
            "172.0.0.0/6",
            "too short",
        ),
        (
            with_node(base(), 1, ips=["10.10.0.2", "10.10.0.22"]),
            "node2",
            "ips",
            "10.10.0.22",
            "more than one IPv4",
        ),
        (with_node(base(), 1, ip=None), "node2", "ips", "[]", "no address"),
        (with_node(base(), 1, name="Node_2"), "Node_2", "name", "Node_2", "not a valid"),
        (
            base(
                nodes=[
                    {
                        "name": "node1",
                        "ip": "10.10.0.1",
                        "podCIDR": "172.17.1.0/24",
                        "podCIDRs": ["172.17.1.0/24"],
                    }
                ]
            ),
            "node1",
            "podCIDRs",
            "172.17.1.0/24",
            "both",
        ),
        (
            with_node(base(), 1, podcidr="172.17.2.0/24"),
            "node2",
            "podcidr",
            "172.17.2.0/24",
            "not a known node field",
        ),
        (base(nodeCIDRMaskSize=12), None, "nodeCIDRMaskSize", "12", "does not fit"),
        (
            base(clusterCIDRs=["172.17.0.0/16", "172.17.128.0/17"]),
            None,
            "clusterCIDRs",
            "172.17.128.0/17",
            "overlaps",
        ),
    ],
)
def test_each_check_names_node_field_value(
    data: dict[str, Any], node: str | None, field: str, value: str, words: str
) -> None:
    one_saying(problems_of(data), node, field, value, words)


def test_all_problems_reported_at_once() -> None:
    data = base()
    data["nodes"][0]["ip"] = "bogus"
    data["nodes"][1]["podCIDR"] = "172.17.2.1/24"
    data["nodes"].append({"name": "node3", "ip": "10.10.0.3", "podCIDR": "172.99.0.0/24"})
    cluster, parse_problems = parse_inventory(data)
    all_problems = parse_problems + check_cluster(cluster)
    fields = {(p.node, p.field) for p in all_problems}
    assert {("node1", "ips"), ("node2", "podCIDRs"), ("node3", "podCIDRs")} <= fields


def test_full_cluster_cidr_names_how_many_did_not_fit() -> None:
    data = base(clusterCIDRs=["172.17.0.0/23"])
    data["nodes"] = [{"name": f"n{i}", "ip": f"10.10.0.{i + 1}"} for i in range(5)]
    problem = the_one(problems_of(data), None, "clusterCIDRs", "172.17.0.0/23")
    assert "3 node(s) did not get" in problem.message


def test_a_subnet_over_many_nodes_blames_that_node_not_the_ones_it_covers() -> None:
    nodes = [
        {"name": f"n{i}", "ip": f"10.10.{i // 250}.{i % 250 + 1}", "podCIDR": f"172.17.{i}.0/24"}
        for i in range(200)
    ]
    nodes.insert(0, {"name": "a-wide", "ip": "10.11.0.1", "podCIDR": "172.17.0.0/20"})
    problems = problems_of(base(nodes=nodes))
    # first in the file, and yet the culprit: wider than the node mask, so refused on its own;
    # each of the 16 /24s inside it is named as its party, never as the node to fix
    assert {p.node for p in problems} == {"a-wide"}
    covered = {p.party for p in problems if "overlaps" in p.message}
    assert covered == {f"n{i}" for i in range(16)}
    assert any("wider than the cluster's node subnets (/24" in p.message for p in problems)


def _node(name: str, ip: str, *cidrs: str) -> Node:
    return Node(name, (ip_address(ip),), tuple(ip_network(c) for c in cidrs))


def _live(*nodes: Node, mask: int = 24) -> Cluster:
    return Cluster(nodes, cluster_cidrs=(ip_network("10.244.0.0/16"),), node_cidr_mask_size_v4=mask)


_ESTABLISHED = [
    replace(
        _node(f"p00{i}", f"10.0.0.{i}", f"10.244.{i}.0/24"), instance_id=f"i-000000000000000{i}"
    )
    for i in (1, 2, 3)
]


def _by(order: dict[str, int]) -> Any:
    return lambda n: (order[n.name], "")


def blamed(cluster: Cluster, order: dict[str, int]) -> set[str]:
    return {p.node for p in check_cluster(cluster, seniority=_by(order)) if p.node}


@pytest.mark.parametrize(
    ("newcomer", "why"),
    [
        (_node("a-cover", "10.0.0.9", "10.244.0.0/16"), "the whole cluster CIDR"),
        (_node("a-cover", "10.0.0.9", "10.244.2.0/23"), "a /23 over two nodes"),
        (_node("a-cover", "10.0.0.9", "0.0.0.0/0"), "the default route"),
        (_node("a-dup", "10.0.0.9", "10.244.2.0/24"), "a copy of p002's subnet, sorting first"),
        (_node("a-dup", "10.0.0.2", "10.244.9.0/24"), "p002's address"),
        (_node("a-dup", "10.244.2.7", "10.244.9.0/24"), "an address inside p002's subnet"),
        (_node("a-dup", "10.0.0.9", "10.0.0.0/24"), "a subnet over every node's address"),
        (
            replace(_node("a-dup", "10.0.0.9", "10.244.9.0/24"), instance_id="i-0000000000000002"),
            "p002's instance",
        ),
    ],
)
def test_a_conflicting_newcomer_is_blamed_never_the_established(newcomer: Node, why: str) -> None:
    order = {"p001": 1, "p002": 1, "p003": 1, newcomer.name: 2}
    cluster = _live(*_ESTABLISHED, newcomer)
    assert blamed(cluster, order) == {newcomer.name}, why


def test_the_newcomer_is_blamed_whatever_the_order_in_the_list() -> None:
    old = _node("zz-old", "10.0.0.1", "10.244.1.0/24")
    new = _node("aa-new", "10.0.0.2", "10.244.1.0/24")
    for nodes in ((old, new), (new, old)):
        problems = check_cluster(_live(*nodes), seniority=_by({"zz-old": 0, "aa-new": 1}))
        assert [(p.node, p.party) for p in problems] == [("aa-new", "zz-old")]


def test_a_tie_blames_every_party_of_the_conflict() -> None:
    a = _node("a", "10.0.0.1", "10.244.1.0/24")
    b = _node("b", "10.0.0.2", "10.244.1.0/24")
    c = _node("c", "10.0.0.3", "10.244.3.0/24")
    assert blamed(_live(a, b, c), {"a": 0, "b": 0, "c": 0}) == {"a", "b"}


def test_a_blamed_node_never_gets_another_blamed() -> None:
    # b overlaps senior a (b is skipped); c overlaps only b: c keeps its routes
    a = _node("a", "10.0.0.1", "10.244.0.0/25")
    b = _node("b", "10.0.0.2", "10.244.0.0/24")
    c = _node("c", "10.0.0.3", "10.244.0.128/25")
    assert blamed(_live(a, b, c, mask=25), {"a": 0, "b": 1, "c": 2}) == {"b"}


def test_in_an_inventory_the_later_of_two_conflicting_nodes_is_named() -> None:
    data = base()
    data["nodes"].insert(0, {"name": "aaa", "ip": "10.10.0.9", "podCIDR": "172.17.2.0/24"})
    problems = problems_of(data)
    # "aaa" is first in the file: node2 (later) is the one to fix, and the message says whose
    assert [(p.node, p.party) for p in problems] == [("node2", "aaa")]
    assert "overlaps node aaa's podCIDRs 172.17.2.0/24" in str(problems[0])


@pytest.mark.parametrize(
    ("cidr", "words"),
    [
        ("224.1.0.0/24", "multicast"),
        ("169.254.5.0/24", "link-local"),
        ("127.1.0.0/24", "loopback"),
        ("0.1.0.0/24", ""),
        ("fe80::/64", "link-local"),
        ("ff05::/64", "multicast"),
    ],
)
def test_special_purpose_pod_subnets_are_refused(cidr: str, words: str) -> None:
    cluster = Cluster(
        (
            Node(
                "a",
                (ip_address("10.0.0.1" if ":" not in cidr else "fd00::1"),),
                (ip_network(cidr),),
            ),
        )
    )
    problems = [p for p in check_cluster(cluster) if p.node == "a" and p.field == "podCIDRs"]
    assert any("overlaps" in p.message and words in p.message for p in problems), problems


@pytest.mark.parametrize("addr", ["255.255.255.255", "0.1.2.3", "240.0.0.9", "::ffff:10.0.0.1"])
def test_unusable_node_addresses_are_refused(addr: str) -> None:
    cluster = Cluster((Node("a", (ip_address(addr),)),))
    assert [p.field for p in check_cluster(cluster) if p.node == "a"] == ["ips"]
