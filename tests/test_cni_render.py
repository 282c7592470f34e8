"""render_cni: the conflist a node's pods get their addresses from (pure, no root)."""

from __future__ import annotations

import json
from ipaddress import ip_address, ip_network

import pytest

from nosdn.model import Cluster, Node
from nosdn.render.cni import CONFLIST_PATH, render_cni


def cluster() -> Cluster:
    return Cluster(
        nodes=(
            Node(
                "dual",
                (ip_address("10.10.0.1"), ip_address("fd00:10::1")),
                (ip_network("10.244.1.0/24"), ip_network("fd00:244:0:1::/64")),
            ),
            # v6 listed first and two v4 subnets: families must still come out v4 then v6
            Node(
                "multi",
                (ip_address("10.10.0.2"), ip_address("fd00:10::2")),
                (
                    ip_network("fd00:244:0:2::/64"),
                    ip_network("10.244.2.0/24"),
                    ip_network("10.244.102.0/24"),
                ),
            ),
            Node("v4", (ip_address("10.10.0.3"),), (ip_network("10.244.3.0/24"),)),
            Node("bare", (ip_address("10.10.0.4"),), ()),
        ),
        cluster_cidrs=(ip_network("10.244.0.0/16"), ip_network("fd00:244::/56")),
    )


def test_dual_stack_golden() -> None:
    assert json.loads(render_cni(cluster(), "dual")) == {
        "cniVersion": "1.0.0",
        "name": "nosdn",
        "plugins": [
            {
                "type": "bridge",
                "bridge": "cni0",
                "isGateway": True,
                "ipMasq": False,
                "hairpinMode": True,
                "mtu": 1500,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": "10.244.1.0/24"}], [{"subnet": "fd00:244:0:1::/64"}]],
                    "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}],
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }


def test_ipv4_only_has_one_range_set_and_one_default_route() -> None:
    conf = json.loads(render_cni(cluster(), "v4", mtu=9000, bridge="pods0"))
    bridge = conf["plugins"][0]
    assert [p["type"] for p in conf["plugins"]] == ["bridge", "portmap"]
    assert bridge["mtu"] == 9000
    assert bridge["bridge"] == "pods0"
    assert bridge["ipam"]["ranges"] == [[{"subnet": "10.244.3.0/24"}]]
    assert bridge["ipam"]["routes"] == [{"dst": "0.0.0.0/0"}]
    assert "dataDir" not in bridge["ipam"]  # production keeps host-local's default state dir


def test_one_range_set_per_family_v4_first() -> None:
    ipam = json.loads(render_cni(cluster(), "multi"))["plugins"][0]["ipam"]
    assert ipam["ranges"] == [
        [{"subnet": "10.244.2.0/24"}, {"subnet": "10.244.102.0/24"}],
        [{"subnet": "fd00:244:0:2::/64"}],
    ]
    assert ipam["routes"] == [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}]


def test_same_input_same_bytes() -> None:
    text = render_cni(cluster(), "dual")
    assert text == render_cni(cluster(), "dual")
    assert text.endswith("}\n")
    assert CONFLIST_PATH == "/etc/cni/net.d/10-nosdn.conflist"


def test_unknown_node_is_named() -> None:
    with pytest.raises(ValueError, match=r"node 'ghost' is not in the inventory.*dual"):
        render_cni(cluster(), "ghost")


def test_node_without_pod_subnets_is_named() -> None:
    with pytest.raises(ValueError, match=r"node bare: podCIDRs is empty.*nosdn allocate"):
        render_cni(cluster(), "bare")


@pytest.mark.parametrize(("node", "mtu"), [("v4", 67), ("v4", 65536), ("dual", 1279)])
def test_mtu_out_of_range(node: str, mtu: int) -> None:
    with pytest.raises(ValueError, match=rf"node {node}: mtu {mtu} is out of range"):
        render_cni(cluster(), node, mtu=mtu)


def test_ipv4_only_node_accepts_small_mtu() -> None:
    assert json.loads(render_cni(cluster(), "v4", mtu=576))["plugins"][0]["mtu"] == 576


@pytest.mark.parametrize("bridge", ["", "a" * 16, "cni/0", "cni 0"])
def test_bad_bridge_name(bridge: str) -> None:
    with pytest.raises(ValueError, match="not a valid Linux interface name"):
        render_cni(cluster(), "v4", bridge=bridge)
