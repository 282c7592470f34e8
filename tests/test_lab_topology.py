"""The lab's shape, without root: names, addresses, the inventory it writes, the ping plan."""

from __future__ import annotations

import json
from ipaddress import ip_address, ip_network
from pathlib import Path

import pytest
import yaml

from nosdn.lab.cni import result_ips
from nosdn.lab.lifecycle import _exec_conflist, _teardown_order
from nosdn.lab.ping import Endpoint, probes
from nosdn.lab.topology import LabInputError, LabNames, LabSpec, build
from nosdn.model import Target
from nosdn.plan import desired_routes
from nosdn.render.cni import render_cni
from nosdn.sources.inventory import load_cluster


def test_addresses_and_subnets_dual_stack() -> None:
    topo = build(LabSpec(name="demo", nodes=3, ipv6=True, pods_per_node=2))
    n2 = topo.node("node2")
    assert n2.netns == "demo.node2"
    assert n2.ips == (ip_address("10.10.0.2"), ip_address("fd00:10::2"))
    assert n2.pod_cidrs == (ip_network("10.244.2.0/24"), ip_network("fd00:244:0:2::/64"))
    assert n2.pods == ("pod1", "pod2")
    assert topo.external_ips == (ip_address("10.10.0.254"), ip_address("fd00:10::fe"))
    assert topo.families == (4, 6)
    assert build(LabSpec(name="demo")).families == (4,)


def test_inventory_is_accepted_by_nosdn(tmp_path: Path) -> None:
    """The file `nosdn apply -f` reads in the lab passes every check and plans the routes."""
    topo = build(LabSpec(name="demo", nodes=3, ipv6=True))
    path = tmp_path / "inventory.yaml"
    path.write_text(yaml.safe_dump(topo.inventory()))
    cluster = load_cluster(path, warn=False)
    assert cluster == topo.cluster()
    routes = desired_routes(cluster, Target.for_node("node1"))
    assert {(str(r.dst), str(r.via[0])) for r in routes} == {
        ("10.244.2.0/24", "10.10.0.2"),
        ("10.244.3.0/24", "10.10.0.3"),
        ("fd00:244:0:2::/64", "fd00:10::2"),
        ("fd00:244:0:3::/64", "fd00:10::3"),
    }


def test_names_owned_exactly() -> None:
    names = LabNames("demo")
    for ns in ("demo.sw", "demo.ext", "demo.node1", "demo.node12.pod3"):
        assert names.owns(ns), ns
    for ns in (
        "demo",
        "demo.",
        "demo.node",
        "demo.router",
        "demo-2.node1",
        "demox.sw",
        "x.demo.sw",
    ):
        assert not names.owns(ns), ns
    # A lab named like another lab's prefix never claims that lab's namespaces.
    assert not LabNames("demo").owns("demo-2.sw")
    assert not LabNames("demo-2").owns("demo.sw")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "Demo"}, "lab name 'Demo' is not valid"),
        ({"name": "a.b"}, "lab name 'a.b' is not valid"),
        ({"name": "-x"}, "lab name '-x' is not valid"),
        ({"nodes": 0}, "--nodes 0"),
        ({"nodes": 201}, "--nodes 201"),
        ({"pods_per_node": 0}, "--pods-per-node 0"),
    ],
)
def test_bad_spec_is_refused(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(LabInputError, match=message):
        LabSpec(**kwargs)  # type: ignore[arg-type]


def test_spec_round_trips() -> None:
    spec = LabSpec(name="t-1", nodes=5, ipv6=True, pods_per_node=3)
    assert LabSpec.from_dict(json.loads(json.dumps(spec.as_dict()))) == spec


def test_probe_plan_is_every_pair_but_self() -> None:
    pods = [
        Endpoint(
            f"n{i}/p{j}", "ns", (ip_address(f"10.0.{i}.{j}"), ip_address(f"fd00::{i}:{j}")), "pod"
        )
        for i in (1, 2, 3)
        for j in (1, 2)
    ]
    nodes = [Endpoint(f"n{i}", "ns", (ip_address(f"10.1.0.{i}"),), "node") for i in (1, 2, 3)]
    both = probes([*pods, *nodes], pods, (4, 6))
    # v4: 6 pods x 5 others + 3 nodes x 6 pods; v6: only the pods have v6 sources
    assert len(both) == (30 + 18) + 30
    assert all(p.src.label != p.dst.label for p in both)
    assert {p.family for p in both} == {4, 6}


def test_result_ips_reads_the_pod_interface_only() -> None:
    result = {
        "cniVersion": "1.0.0",
        "interfaces": [
            {"name": "cni0", "mac": "aa"},
            {"name": "veth1", "mac": "bb"},
            {"name": "eth0", "mac": "cc", "sandbox": "/run/netns/x"},
        ],
        "ips": [
            {"interface": 2, "address": "10.244.1.2/24", "gateway": "10.244.1.1"},
            {"interface": 2, "address": "fd00:244:0:1::2/64", "gateway": "fd00:244:0:1::1"},
            {"interface": 0, "address": "10.99.0.1/24"},
        ],
    }
    assert result_ips(result) == ["10.244.1.2", "fd00:244:0:1::2"]


def test_executed_conflist_differs_only_in_host_local_data_dir() -> None:
    topo = build(LabSpec(name="demo", ipv6=True))
    rendered = render_cni(topo.cluster(), "node1")
    executed = _exec_conflist(rendered, Path("/run/nosdn/lab/demo/cni/node1/ipam"))
    assert executed["plugins"][0]["ipam"].pop("dataDir") == "/run/nosdn/lab/demo/cni/node1/ipam"
    assert executed == json.loads(rendered)


def test_teardown_order_pods_first_switch_last() -> None:
    order = _teardown_order(["d.sw", "d.node1", "d.node1.pod1", "d.ext", "d.node2.pod1"])
    assert order[:2] == ["d.node1.pod1", "d.node2.pod1"]
    assert order[-1] == "d.sw"
