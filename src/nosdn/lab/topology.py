"""The shape of a lab, computed before anything is made: names, addresses and pod subnets.

A lab is a pure function of a few values (name, node count, IPv6 or not, pods per node, how
many L2 segments and which router joins them), so
``lab check`` and ``lab down`` can recompute everything from the state file and even from the
lab's name alone after a crash. Every namespace name starts with ``<lab>.`` and follows one of a
few fixed patterns (`LabNames.owns`), which is how ``lab down`` finds what is its own without
ever touching a namespace someone else made.

A lab whose nodes changed (``nosdn lab node add|remove|readdress``) records that in its spec
too: which node numbers exist (``members``) and which node moved to another host number
(``hosts``); a node's number still names it, its namespace, switch port and pod subnet, so
nothing else moves when one node comes, goes or changes address.

With ``api`` the lab is a live cluster: an API server (``real``: kube-apiserver on kine;
``emulator``: kmock) in namespace ``<lab>.api``, on the switch at 10.10.0.250, and
``nosdn agent`` in every node instead of ``nosdn apply``.

Addresses live in private ranges that exist only inside the lab (the switch namespace is not
connected to anything else), so several labs can reuse them side by side.

With ``segments`` > 1 the nodes are split, in order, over that many L2 segments (segment k is
10.10.(k-1).0/24 and fd00:10:0:(k-1)::/64, each its own switch namespace), and a router
namespace (``<lab>.rt``, address .253 / ::fd on every segment) joins them. Host numbers stay the
node numbers (node3 on segment 2 is 10.10.1.3), so an address still says which node it is.
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
MAX_SEGMENTS = 8
ROUTERS = ("bird", "frr")

NODE_NET_V4 = IPv4Network("10.10.0.0/24")
NODE_NET_V6 = IPv6Network("fd00:10::/64")
CLUSTER_CIDR_V4 = IPv4Network("10.244.0.0/16")
CLUSTER_CIDR_V6 = IPv6Network("fd00:244::/56")
NODE_MASK_V4 = 24
NODE_MASK_V6 = 64
#: Host number of the external host on the node network (nodes are 1..MAX_NODES).
EXTERNAL_HOST = 254
#: Host number of the router on every segment.
ROUTER_HOST = 253
#: Host number of the API server (``--agents``) on segment 1.
API_HOST = 250
#: The host numbers a node may have: below the API server, router and external host.
MAX_HOST = 249
APIS = ("real", "emulator")
#: ``--bgp``: the nodes' AS and the router's (eBGP: the router's AS differs from the nodes').
NODE_ASN = 64512
ROUTER_ASN = 65000

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
    ``<lab>.ext``; with segments ``<lab>.sw2``... and the router ``<lab>.rt``). Interfaces need
    no prefix: each lives in a namespace of its own lab."""

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

    @property
    def router(self) -> str:
        return f"{self.lab}.rt"

    @property
    def api(self) -> str:
        return f"{self.lab}.api"

    def segment_switch(self, segment: int) -> str:
        """Segment 1's switch keeps the single-segment lab's name."""
        return self.switch if segment == 1 else f"{self.lab}.sw{segment}"

    def node(self, node: str) -> str:
        return f"{self.lab}.{node}"

    def pod(self, node: str, pod: str) -> str:
        return f"{self.lab}.{node}.{pod}"

    def owns(self, netns: str) -> bool:
        """True for exactly the namespace names this lab makes."""
        if not netns.startswith(self.prefix):
            return False
        rest = netns[len(self.prefix) :]
        return (
            rest in {"sw", "ext", "rt", "api"}
            or re.fullmatch(r"sw[2-9]|node\d+(\.pod\d+)?", rest) is not None
        )


@dataclass(frozen=True, slots=True)
class LabNode:
    name: str  # node1 ...
    netns: str
    port: str  # its veth's name on the switch
    ips: tuple[IPAddress, ...]
    pod_cidrs: tuple[IPNetwork, ...]
    pods: tuple[str, ...]  # pod1 ...
    segment: int = 1


@dataclass(frozen=True, slots=True)
class Segment:
    """One L2 segment: its switch namespace and networks, and the router's addresses on it
    (the segment's default gateway; none in a single-segment lab)."""

    index: int
    switch_ns: str
    nets: tuple[IPv4Network | IPv6Network, ...]
    gateways: tuple[IPAddress, ...] = ()

    def prefixlen(self, family: int) -> int:
        return next(n.prefixlen for n in self.nets if n.version == family)


@dataclass(frozen=True, slots=True)
class LabRouter:
    """The router namespace and the routing daemon in it (bird or frr)."""

    daemon: str
    netns: str
    #: (interface in the router namespace, its port name on the switch, segment, addresses)
    ports: tuple[tuple[str, str, int, tuple[IPAddress, ...]], ...]

    @property
    def ips(self) -> tuple[IPAddress, ...]:
        return tuple(ip for *_, ips in self.ports for ip in ips)

    @property
    def router_id(self) -> str:
        return str(next(ip for ip in self.ips if ip.version == 4))


@dataclass(frozen=True, slots=True)
class LabSpec:
    """What the user asked for; everything else is derived from it."""

    name: str = DEFAULT_NAME
    nodes: int = 3
    ipv6: bool = False
    pods_per_node: int = 2
    segments: int = 1
    router: str | None = None
    #: the API server of a live cluster ("real" or "emulator"); None: routes by `nosdn apply`
    api: str | None = None
    #: the node numbers that exist, once a node was added or removed (empty: 1..nodes)
    members: tuple[int, ...] = ()
    #: (node number, host number) for the nodes whose address moved
    hosts: tuple[tuple[int, int], ...] = ()
    #: the agents announce their pod subnets to the router over BGP (``--bgp``)
    bgp: bool = False

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
        if not 1 <= self.segments <= MAX_SEGMENTS:
            raise LabInputError(
                f"--segments {self.segments}: use 1 to {MAX_SEGMENTS} L2 segments — e.g. 2"
            )
        if self.segments > self.nodes:
            raise LabInputError(
                f"--segments {self.segments} with --nodes {self.nodes}: every segment needs a "
                f"node — use at least --nodes {self.segments}"
            )
        if self.router is not None and self.router not in ROUTERS:
            raise LabInputError(
                f"--router-daemon {self.router}: choose one of {', '.join(ROUTERS)} "
                "(BIRD 2 from Debian's bird2, or FRR)"
            )
        if self.segments > 1 and self.router is None:
            raise LabInputError(
                f"--segments {self.segments}: nodes on different segments are off-link for "
                "host routes and need a router between them — add --router-daemon bird"
            )
        if self.segments == 1 and self.router is not None:
            raise LabInputError(
                f"--router-daemon {self.router} joins L2 segments: use it with --segments 2 "
                "(or more)"
            )
        if self.api is not None and self.api not in APIS:
            raise LabInputError(
                f"--api {self.api}: choose real (kube-apiserver on kine) or emulator (kmock)"
            )
        if self.bgp and (self.router is None or self.api is None):
            raise LabInputError(
                "--bgp: the agents announce their pod subnets to the lab's router — use it "
                "with --agents --segments 2 (or more) --router-daemon bird|frr"
            )
        if self.api is not None and self.segments > 1 and not self.bgp:
            raise LabInputError(
                "--agents over several segments needs --bgp (the agents announce their pod "
                "subnets to the router): add --bgp, or drop --segments/--router-daemon"
            )
        self._check_members()

    def _check_members(self) -> None:
        numbers = self.node_numbers
        if not numbers or len(set(numbers)) != len(numbers):
            raise LabInputError(f"node numbers {list(numbers)}: need distinct ones, at least one")
        if not all(1 <= i <= MAX_NODES for i in numbers):
            raise LabInputError(f"node numbers {list(numbers)}: each must be 1..{MAX_NODES}")
        owner: dict[int, int] = {}
        for i in numbers:
            h = self.host_of(i)
            if not 1 <= h <= MAX_HOST:
                raise LabInputError(f"node{i}: host number {h} is not 1..{MAX_HOST}")
            if h in owner:
                raise LabInputError(f"node{owner[h]} and node{i} would share host number {h}")
            owner[h] = i

    @property
    def node_numbers(self) -> tuple[int, ...]:
        return self.members or tuple(range(1, self.nodes + 1))

    def host_of(self, number: int) -> int:
        """The host number of node ``number`` on its segment (its own number unless moved)."""
        return dict(self.hosts).get(number, number)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "nodes": self.nodes,
            "ipv6": self.ipv6,
            "pods_per_node": self.pods_per_node,
            "segments": self.segments,
            "router": self.router,
            "api": self.api,
            "members": list(self.members),
            "hosts": [list(h) for h in self.hosts],
            "bgp": self.bgp,
        }

    @staticmethod
    def from_dict(data: dict[str, Any]) -> LabSpec:
        router = data.get("router")
        api = data.get("api")
        return LabSpec(
            name=str(data["name"]),
            nodes=int(data["nodes"]),
            ipv6=bool(data["ipv6"]),
            pods_per_node=int(data["pods_per_node"]),
            segments=int(data.get("segments", 1)),
            router=str(router) if router is not None else None,
            api=str(api) if api is not None else None,
            members=tuple(int(i) for i in data.get("members", ())),
            hosts=tuple((int(i), int(h)) for i, h in data.get("hosts", ())),
            bgp=bool(data.get("bgp", False)),
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
    segments: tuple[Segment, ...] = ()
    router: LabRouter | None = None
    #: the API server's address on the node network (a live cluster's; None without)
    api_ip: IPAddress | None = None

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def switch_ns(self) -> str:
        return self.names.switch

    @property
    def external_ns(self) -> str:
        return self.names.external

    def segment(self, index: int) -> Segment:
        return self.segments[index - 1]

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

    def inventory(self, *, nodes: bool = True) -> dict[str, Any]:
        """The inventory file of the lab's cluster, as `nosdn.sources.inventory` reads it; without
        ``nodes``, the router's side of ``--bgp`` (what the router may know of a live
        cluster: its CIDRs and node networks, no node and no pod subnet)."""
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
            for n in (cluster.nodes if nodes else ())
        ]
        if self.spec.bgp and self.router is not None:
            # the router listens on every segment for dynamic neighbours: a node added later
            # needs no change to its config
            data["bgp"] = {
                "asn": NODE_ASN,
                "nodeNetworks": [str(n) for seg in self.segments for n in seg.nets],
                "peers": [
                    {"address": str(gw), "asn": ROUTER_ASN}
                    for seg in self.segments
                    for gw in seg.gateways
                ],
            }
        return data

    def bgp_peers(self, node: LabNode) -> tuple[IPAddress, ...]:
        """The router's addresses on ``node``'s segment: the node's BGP peers (``--bgp``)."""
        return self.segment(node.segment).gateways


def node_prefixlen(family: int) -> int:
    return NODE_NET_V4.prefixlen if family == 4 else NODE_NET_V6.prefixlen


def segment_nets(index: int) -> tuple[IPv4Network, IPv6Network]:
    """Segment k's networks: 10.10.(k-1).0/24 and fd00:10:0:(k-1)::/64."""
    v4 = IPv4Network((int(NODE_NET_V4.network_address) + ((index - 1) << 8), 24))
    v6 = IPv6Network((int(NODE_NET_V6.network_address) + ((index - 1) << 64), 64))
    return v4, v6


def segment_of(spec: LabSpec, number: int) -> int:
    """Which segment node ``number`` (1-based) is on: the nodes split in order, evenly."""
    return min(spec.segments, 1 + (number - 1) * spec.segments // spec.nodes)


def build(spec: LabSpec) -> Topology:
    """Every name and address of the lab described by ``spec`` (pure)."""
    names = LabNames(spec.name)
    families = (4, 6) if spec.ipv6 else (4,)
    segments: list[Segment] = []
    ports: list[tuple[str, str, int, tuple[IPAddress, ...]]] = []
    for k in range(1, spec.segments + 1):
        v4, v6 = segment_nets(k)
        nets: tuple[IPv4Network | IPv6Network, ...] = (v4, v6) if spec.ipv6 else (v4,)
        gateways: tuple[IPAddress, ...] = ()
        if spec.router is not None:
            gateways = tuple(_host(n, ROUTER_HOST) for n in nets)
            ports.append((f"eth{k}", "rt", k, gateways))
        segments.append(Segment(k, names.segment_switch(k), nets, gateways))
    nodes: list[LabNode] = []
    for i in sorted(spec.node_numbers):
        name = f"node{i}"
        seg = segments[segment_of(spec, i) - 1]
        host = spec.host_of(i)
        ips: list[IPAddress] = [_host(seg.nets[0], host)]
        cidrs: list[IPNetwork] = [_subnet(CLUSTER_CIDR_V4, NODE_MASK_V4, i)]
        if spec.ipv6:
            ips.append(_host(seg.nets[1], host))
            cidrs.append(_subnet(CLUSTER_CIDR_V6, NODE_MASK_V6, i))
        pods = tuple(f"pod{j}" for j in range(1, spec.pods_per_node + 1))
        nodes.append(
            LabNode(name, names.node(name), name, tuple(ips), tuple(cidrs), pods, seg.index)
        )
    ext: list[IPAddress] = [_host(NODE_NET_V4, EXTERNAL_HOST)]
    if spec.ipv6:
        ext.append(_host(NODE_NET_V6, EXTERNAL_HOST))
    router = LabRouter(spec.router, names.router, tuple(ports)) if spec.router else None
    api = _host(NODE_NET_V4, API_HOST) if spec.api else None
    return Topology(spec, names, tuple(nodes), tuple(ext), families, tuple(segments), router, api)
