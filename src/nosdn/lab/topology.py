"""The shape of a lab, computed before anything is made: names, addresses and pod subnets.

A lab is a pure function of four values (name, node count, IPv6 or not, pods per node), so
``lab check`` and ``lab down`` can recompute everything from the state file and even from the
lab's name alone after a crash. Every namespace name starts with ``<lab>.`` and follows one of a
few fixed patterns (`LabNames.owns`), which is how ``lab down`` finds what is its own without
ever touching a namespace someone else made.

Addresses live in private ranges that exist only inside the lab (the switch namespace is not
connected to anything else), so several labs can reuse them side by side.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from ipaddress import IPv4Network, IPv6Network, ip_interface
from typing import Any

from nosdn.model import Cluster, IPAddress, IPNetwork, Node

DEFAULT_NAME = "nosdn-lab"
MAX_NODES = 200
MAX_PODS_PER_NODE = 50

NODE_NET_V4 = IPv4Network("10.10.0.0/24")
NODE_NET_V6 = IPv6Network("fd00:10::/64")
CLUSTER_CIDR_V4 = IPv4Network("10.244.0.0/16")
CLUSTER_CIDR_V6 = IPv6Network("fd00:244::/56")
NODE_MASK_V4 = 24
NODE_MASK_V6 = 64
#: Host number of the external host on the node network (nodes are 1..MAX_NODES).
EXTERNAL_HOST = 254

_NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$")


class LabInputError(ValueError):
    """A lab parameter is out of range; the message says which and what to use."""


def check_name(name: str) -> str:
    if not _NAME_RE.match(name):
        raise LabInputError(
            f"lab name {name!r} is not valid — use 1 to 32 lowercase letters, digits and '-' "
            "(not at either end), e.g. demo or t-3f9a"
        )
    return name


@dataclass(frozen=True, slots=True)
class LabNames:
    """How one lab names its namespaces (``<lab>.sw``, ``<lab>.node1``, ``<lab>.node1.pod1``,
    ``<lab>.ext``). Interfaces need no prefix: each lives in a namespace of its own lab."""

    lab: str

    @property
    def prefix(self) -> str:
        return f"{self.lab}."

    @property
    def switch(self) -> str:
        return f"{self.lab}.sw"

    @property
    def external(self) -> str:
        return f"{self.lab}.ext"

    def node(self, node: str) -> str:
        return f"{self.lab}.{node}"

    def pod(self, node: str, pod: str) -> str:
        return f"{self.lab}.{node}.{pod}"

    def owns(self, netns: str) -> bool:
        """True for exactly the namespace names this lab makes."""
        if not netns.startswith(self.prefix):
            return False
        rest = netns[len(self.prefix) :]
        return rest in {"sw", "ext"} or re.fullmatch(r"node\d+(\.pod\d+)?", rest) is not None


@dataclass(frozen=True, slots=True)
class LabNode:
    name: str  # node1 ...
    netns: str
    port: str  # its veth's name on the switch
    ips: tuple[IPAddress, ...]
    pod_cidrs: tuple[IPNetwork, ...]
    pods: tuple[str, ...]  # pod1 ...


@dataclass(frozen=True, slots=True)
class LabSpec:
    """What the user asked for; everything else is derived from it."""

    name: str = DEFAULT_NAME
    nodes: int = 3
    ipv6: bool = False
    pods_per_node: int = 2

    def __post_init__(self) -> None:
        check_name(self.name)
        if not 1 <= self.nodes <= MAX_NODES:
            raise LabInputError(
                f"--nodes {self.nodes}: a lab has 1 to {MAX_NODES} nodes — e.g. --nodes 3"
            )
        if not 1 <= self.pods_per_node <= MAX_PODS_PER_NODE:
            raise LabInputError(
                f"--pods-per-node {self.pods_per_node}: use 1 to {MAX_PODS_PER_NODE} "
                "(the ping matrix grows with the square of the pod count)"
            )

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "nodes": self.nodes,
            "ipv6": self.ipv6,
            "pods_per_node": self.pods_per_node,
        }

    @staticmethod
    def from_dict(data: dict[str, Any]) -> LabSpec:
        return LabSpec(
            name=str(data["name"]),
            nodes=int(data["nodes"]),
            ipv6=bool(data["ipv6"]),
            pods_per_node=int(data["pods_per_node"]),
        )


def _host(net: IPv4Network | IPv6Network, n: int) -> IPAddress:
    return net.network_address + n


def _subnet(cidr: IPNetwork, mask: int, index: int) -> IPNetwork:
    size = 1 << (cidr.max_prefixlen - mask)
    return ip_interface(f"{cidr.network_address + index * size}/{mask}").network


@dataclass(frozen=True, slots=True)
class Topology:
    spec: LabSpec
    names: LabNames
    nodes: tuple[LabNode, ...]
    external_ips: tuple[IPAddress, ...]
    families: tuple[int, ...]

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def switch_ns(self) -> str:
        return self.names.switch

    @property
    def external_ns(self) -> str:
        return self.names.external

    def node(self, name: str) -> LabNode:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)

    def cluster(self) -> Cluster:
        v6 = self.spec.ipv6
        return Cluster(
            nodes=tuple(Node(n.name, n.ips, n.pod_cidrs) for n in self.nodes),
            cluster_cidrs=(CLUSTER_CIDR_V4, CLUSTER_CIDR_V6) if v6 else (CLUSTER_CIDR_V4,),
            node_cidr_mask_size_v4=NODE_MASK_V4,
            node_cidr_mask_size_v6=NODE_MASK_V6,
            name=self.name,
        )

    def inventory(self) -> dict[str, Any]:
        """The inventory file of the lab's cluster, as `nosdn.inventory` reads it."""
        cluster = self.cluster()
        data: dict[str, Any] = {
            "clusterName": cluster.name,
            "clusterCIDRs": [str(c) for c in cluster.cluster_cidrs],
            "nodeCIDRMaskSize": cluster.node_cidr_mask_size_v4,
        }
        if self.spec.ipv6:
            data["nodeCIDRMaskSizeIPv6"] = cluster.node_cidr_mask_size_v6
        data["nodes"] = [
            {
                "name": n.name,
                "ips": [str(ip) for ip in n.ips],
                "podCIDRs": [str(c) for c in n.pod_cidrs],
            }
            for n in cluster.nodes
        ]
        return data


def node_prefixlen(family: int) -> int:
    return NODE_NET_V4.prefixlen if family == 4 else NODE_NET_V6.prefixlen


def build(spec: LabSpec) -> Topology:
    """Every name and address of the lab described by ``spec`` (pure)."""
    names = LabNames(spec.name)
    families = (4, 6) if spec.ipv6 else (4,)
    nodes: list[LabNode] = []
    for i in range(1, spec.nodes + 1):
        name = f"node{i}"
        ips: list[IPAddress] = [_host(NODE_NET_V4, i)]
        cidrs: list[IPNetwork] = [_subnet(CLUSTER_CIDR_V4, NODE_MASK_V4, i)]
        if spec.ipv6:
            ips.append(_host(NODE_NET_V6, i))
            cidrs.append(_subnet(CLUSTER_CIDR_V6, NODE_MASK_V6, i))
        pods = tuple(f"pod{j}" for j in range(1, spec.pods_per_node + 1))
        nodes.append(LabNode(name, names.node(name), name, tuple(ips), tuple(cidrs), pods))
    ext: list[IPAddress] = [_host(NODE_NET_V4, EXTERNAL_HOST)]
    if spec.ipv6:
        ext.append(_host(NODE_NET_V6, EXTERNAL_HOST))
    return Topology(spec, names, tuple(nodes), tuple(ext), families)
