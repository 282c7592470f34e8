"""One failing inventory per check: each problem must name the node, the field and the value."""

from __future__ import annotations

import random
from collections.abc import Iterator
from ipaddress import ip_address, ip_network
from typing import Any

import pytest

from nosdn.checks import _every_problem, _plainly_sound, check_cluster
from nosdn.inventory import parse_inventory
from nosdn.ipam import allocate
from nosdn.model import Cluster, Node
from nosdn.problems import Problem


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
    text = str(hits[0])
    assert value in text
    assert field in text
    if node:
        assert node in text
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
    problem = the_one(problems_of(data), node, field, value)
    assert words in problem.message or words in problem.value


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


def test_overlap_sweep_finds_nested_subnets_far_apart_in_order() -> None:
    nodes = [
        {"name": f"n{i}", "ip": f"10.10.{i // 250}.{i % 250 + 1}", "podCIDR": f"172.17.{i}.0/24"}
        for i in range(200)
    ]
    nodes.append({"name": "wide", "ip": "10.11.0.1", "podCIDR": "172.17.0.0/20"})
    problems = problems_of(base(nodes=nodes))
    overlapping = {p.node for p in problems if "overlaps" in p.message}
    # the sweep sorts "wide" before n0: each of the 16 /24s inside the /20 is reported once,
    # against "wide"; no /24 outside it is
    assert overlapping == {f"n{i}" for i in range(16)}
    assert all("wide's podCIDRs 172.17.0.0/20" in p.message for p in problems)


def _near_sound_clusters(count: int) -> Iterator[Cluster]:
    """Sound IPv4 clusters, most with one or two things wrong: the edges of the quick proof."""
    rng = random.Random(20240611)
    a, n = ip_address, ip_network

    def node(name: str, ip: str | None, *cidrs: str) -> Node:
        return Node(name, (a(ip),) if ip else (), tuple(n(c) for c in cidrs))

    wrong_names = ["Node", "a\n", "-a", "a..b", "a" * 254, "", "a_b", "b\nc", "node-1"]
    wrong_ips = ["127.0.0.1", "0.0.0.0", "224.0.0.1", "239.255.255.255", "169.254.3.3"]
    wrong_ips += ["240.0.0.1", "10.64.3.7", "10.96.0.1", "126.255.255.255", "10.0.0.2", "fd00::5"]
    wrong_pods = ["10.64.1.0/24", "10.64.0.0/16", "10.64.1.128/25", "10.0.0.0/24", "10.65.0.0/24"]
    wrong_pods += ["10.64.200.0/31", "8.0.0.0/7", "10.96.0.0/24", "fd64::/64", "10.64.250.0/23"]
    wrong_pods += ["fd00::/24"]
    for _ in range(count):
        size = rng.choice([2, 3, 5, 40])
        nodes = [
            node(f"node-{i}", f"10.0.0.{i + 1}", *([f"10.64.{i}.0/24"] if i % 7 else []))
            for i in range(size)
        ]
        for _ in range(rng.choice([0, 0, 1, 2])):
            i = rng.randrange(size)
            old = nodes[i]
            kind = rng.randrange(6)
            if kind == 0:
                nodes[i] = Node(rng.choice(wrong_names), old.ips, old.pod_cidrs)
            elif kind == 1:
                nodes[i] = Node(old.name, (a(rng.choice(wrong_ips)),), old.pod_cidrs)
            elif kind == 2:
                nodes[i] = Node(old.name, (*old.ips, a(rng.choice(["10.9.9.9", "fd00::9"]))))
            elif kind == 3:
                nodes[i] = Node(old.name, (), old.pod_cidrs)
            elif kind == 4:
                nodes[i] = Node(old.name, old.ips, (n(rng.choice(wrong_pods)),))
            else:
                nodes[i] = Node(old.name, old.ips, (*old.pod_cidrs, n("10.64.251.0/24")))
        yield Cluster(
            tuple(nodes),
            cluster_cidrs=rng.choice(
                [(), (n("10.64.0.0/16"),), (n("10.64.0.0/16"), n("fd00::/48")), (n("10.0.0.0/8"),)]
            ),
            service_cidrs=rng.choice([(), (n("10.96.0.0/12"),), (n("fd96::/108"),)]),
            node_cidr_mask_size_v4=24 if rng.random() < 0.9 else rng.choice([8, 31]),
            service_via=("node-1",) if rng.random() < 0.9 else rng.choice([(), ("nope",)]),
        )


def test_the_quick_proof_of_soundness_never_hides_a_problem() -> None:
    """check_cluster answers [] without running the checks when bulk operations show the
    cluster sound; on clusters at the edge of that proof it must agree with every check run."""
    quick = 0
    for cluster in _near_sound_clusters(3000):
        assert check_cluster(cluster) == _every_problem(cluster)
        quick += _plainly_sound(cluster)
    assert quick > 300  # the proof is exercised, not only the fallback
