"""The two-segment lab's shape, without root: who sits on which segment, the router's
addresses, what `nosdn apply` and the router will be asked to carry, and the refusals."""

from __future__ import annotations

from ipaddress import ip_address, ip_network
from pathlib import Path

import pytest
import yaml

from nosdn.lab.lifecycle import _teardown_order
from nosdn.lab.topology import LabInputError, LabNames, LabSpec, build
from nosdn.model import ROUTER
from nosdn.plan import desired_routes
from nosdn.render.routers import bird_config
from nosdn.sources.inventory import load_cluster


def test_nodes_split_in_order_and_keep_their_host_numbers() -> None:
    topo = build(LabSpec(name="demo", nodes=5, ipv6=True, segments=2, router="bird"))
    assert [(n.name, n.segment) for n in topo.nodes] == [
        ("node1", 1), ("node2", 1), ("node3", 1), ("node4", 2), ("node5", 2),
    ]  # fmt: skip
    assert topo.node("node4").ips == (ip_address("10.10.1.4"), ip_address("fd00:10:0:1::4"))
    assert topo.node("node2").ips == (ip_address("10.10.0.2"), ip_address("fd00:10::2"))
    assert [s.switch_ns for s in topo.segments] == ["demo.sw", "demo.sw2"]
    assert topo.segment(2).gateways == (ip_address("10.10.1.253"), ip_address("fd00:10:0:1::fd"))
    assert topo.router is not None
    assert topo.router.netns == "demo.rt"
    assert topo.router.router_id == "10.10.0.253"
    assert [(dev, port, seg) for dev, port, seg, _ in topo.router.ports] == [
        ("eth1", "rt", 1), ("eth2", "rt", 2),
    ]  # fmt: skip
    assert topo.external_ips == (ip_address("10.10.0.254"), ip_address("fd00:10::fe"))


def test_single_segment_lab_is_unchanged() -> None:
    topo = build(LabSpec(name="demo", nodes=3))
    assert topo.router is None
    assert [s.switch_ns for s in topo.segments] == ["demo.sw"]
    assert topo.segments[0].gateways == ()
    assert all(n.segment == 1 for n in topo.nodes)
    assert LabSpec.from_dict({"name": "x", "nodes": 2, "ipv6": False, "pods_per_node": 1}) == (
        LabSpec(name="x", nodes=2, pods_per_node=1)
    )  # a state file from before segments existed still loads


def test_inventory_and_router_routes(tmp_path: Path) -> None:
    topo = build(LabSpec(name="demo", nodes=4, segments=2, router="bird"))
    path = tmp_path / "inventory.yaml"
    path.write_text(yaml.safe_dump(topo.inventory()))
    cluster = load_cluster(path, warn=False)
    routes = desired_routes(cluster, ROUTER)
    assert {(str(r.dst), str(r.via[0])) for r in routes} == {
        ("10.244.1.0/24", "10.10.0.1"),
        ("10.244.2.0/24", "10.10.0.2"),
        ("10.244.3.0/24", "10.10.1.3"),
        ("10.244.4.0/24", "10.10.1.4"),
    }
    conf = bird_config(routes, cluster=cluster.name)
    assert "route 10.244.3.0/24 via 10.10.1.3;" in conf


def test_router_namespaces_are_owned_and_torn_down_last() -> None:
    names = LabNames("demo")
    for ns in ("demo.rt", "demo.sw2", "demo.sw8"):
        assert names.owns(ns), ns
    for ns in ("demo.sw1", "demo.sw10", "demo.rt2", "demo.router"):
        assert not names.owns(ns), ns
    order = _teardown_order(["demo.sw2", "demo.rt", "demo.node1", "demo.sw", "demo.node1.pod1"])
    assert order[0] == "demo.node1.pod1"
    assert set(order[-2:]) == {"demo.sw", "demo.sw2"}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"segments": 2}, "need a router between them — add --router-daemon bird"),
        ({"router": "bird"}, "use it with --segments 2"),
        ({"segments": 2, "router": "quagga"}, "--router-daemon quagga: choose one of bird, frr"),
        ({"segments": 4, "nodes": 3, "router": "bird"}, "use at least --nodes 4"),
        ({"segments": 9, "nodes": 9, "router": "bird"}, "--segments 9"),
    ],
)
def test_bad_router_specs(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(LabInputError, match=message):
        LabSpec(**kwargs)  # type: ignore[arg-type]


def test_segment_networks_do_not_overlap_pods() -> None:
    topo = build(LabSpec(name="demo", nodes=8, ipv6=True, segments=8, router="frr"))
    nets = [n for s in topo.segments for n in s.nets]
    assert ip_network("10.10.7.0/24") in nets
    assert ip_network("fd00:10:0:7::/64") in nets
    assert not any(n.overlaps(c) for n in nets for c in topo.cluster().cluster_cidrs)  # type: ignore[arg-type]
