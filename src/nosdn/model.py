"""The cluster model: what nosdn knows about a cluster, as frozen values with no I/O.

Everything else in nosdn is a function of these types. Sources (the inventory file, the
Kubernetes API) produce a `Cluster`; `nosdn.plan` turns it into `Route`s for a `Target`;
backends report what they find as `InstalledRoute`s and apply a `Diff`. Addresses and prefixes
are `ipaddress` objects, never strings, so two spellings of one address compare equal.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from typing import Literal, TypeAlias

IPAddress: TypeAlias = IPv4Address | IPv6Address
IPNetwork: TypeAlias = IPv4Network | IPv6Network
Family: TypeAlias = Literal[4, 6]

#: Route protocol number nosdn stamps on every kernel route and nexthop it writes
#: (``/etc/iproute2/rt_protos.d/nosdn.conf`` names it so ``ip route`` prints ``proto nosdn``).
DEFAULT_PROTOCOL = 157
PROTOCOL_NAME = "nosdn"


@dataclass(frozen=True, slots=True)
class Node:
    """One machine of the cluster: its name, its addresses (at most one per family) and the
    pod subnets that live on it."""

    name: str
    ips: tuple[IPAddress, ...]
    pod_cidrs: tuple[IPNetwork, ...] = ()
    #: Cloud instance behind the node (AWS ``i-...``, GCE instance name), if known.
    instance_id: str | None = None
    _ip4: IPAddress | None = field(init=False, repr=False, compare=False, default=None)
    _ip6: IPAddress | None = field(init=False, repr=False, compare=False, default=None)

    def __post_init__(self) -> None:
        # looked up for every route of every node: precomputed once (``.version`` is slow)
        for ip in self.ips:
            attr = "_ip4" if isinstance(ip, IPv4Address) else "_ip6"
            if getattr(self, attr) is None:
                object.__setattr__(self, attr, ip)

    def ip_for(self, family: int) -> IPAddress | None:
        """The node's address of one IP family (4 or 6), or None (the first, if several)."""
        return self._ip4 if family == 4 else self._ip6


#: Graceful restart time (seconds) a node asks its BGP peers for: routers keep its routes that
#: long through a restart of its BGP daemon (an agent restart or upgrade).
DEFAULT_GRACEFUL_RESTART = 120


@dataclass(frozen=True, slots=True)
class BgpPeer:
    """A router the nodes announce their pod subnets to (usually a top-of-rack router).

    A session carries the family of ``address`` only (an IPv4 peer gets IPv4 prefixes): a
    dual-stack cluster lists a router's IPv4 and IPv6 addresses as two peers, as Calico does.
    ``multihop`` is the TTL of an eBGP multihop session, 0 for a directly connected one;
    ``nodes`` the names of the nodes that peer with it (empty: every node); ``node_networks``
    the networks it listens on for dynamic neighbours (empty: the cluster's, `Bgp`).
    """

    address: IPAddress
    asn: int
    password_file: str | None = None
    multihop: int = 0
    bfd: bool = False
    nodes: tuple[str, ...] = ()
    node_networks: tuple[IPNetwork, ...] = ()

    def serves(self, node: str) -> bool:
        return not self.nodes or node in self.nodes


@dataclass(frozen=True, slots=True)
class Bgp:
    """How the nodes announce their pod subnets over BGP: the cluster's ASN (a node may
    override it, ``node_asns``), its peers, the graceful restart time, and the node networks
    the routers listen on for dynamic neighbours (a new node needs no router change)."""

    asn: int
    peers: tuple[BgpPeer, ...] = ()
    graceful_restart_time: int = DEFAULT_GRACEFUL_RESTART
    node_networks: tuple[IPNetwork, ...] = ()
    #: per-node ASN overrides, as (node name, ASN) in inventory order
    node_asns: tuple[tuple[str, int], ...] = ()

    def listen_of(self, peer: BgpPeer) -> tuple[IPNetwork, ...]:
        """The node networks ``peer`` listens on: its own, else the cluster's."""
        return peer.node_networks or self.node_networks

    def asn_of(self, node: str) -> int:
        for name, asn in self.node_asns:
            if name == node:
                return asn
        return self.asn


@dataclass(frozen=True, slots=True)
class Cluster:
    """A whole cluster as one value: its nodes plus the address plan they live in."""

    nodes: tuple[Node, ...]
    cluster_cidrs: tuple[IPNetwork, ...] = ()
    node_cidr_mask_size_v4: int = 24
    node_cidr_mask_size_v6: int = 64
    service_cidrs: tuple[IPNetwork, ...] = ()
    #: Names of the nodes that run kube-proxy and carry the service CIDRs (ECMP when several).
    service_via: tuple[str, ...] = ()
    #: Used to name and tag cloud routes; several clusters may share one VPC.
    name: str = "kubernetes"
    #: BGP settings (the inventory's ``bgp:`` section), or None when the cluster has none.
    bgp: Bgp | None = None

    def node(self, name: str) -> Node | None:
        for n in self.nodes:
            if n.name == name:
                return n
        return None

    def mask_size(self, family: int) -> int:
        return self.node_cidr_mask_size_v4 if family == 4 else self.node_cidr_mask_size_v6


@dataclass(frozen=True, slots=True)
class Target:
    """Whose routing table a plan is for.

    ``node``: one cluster node (gets every other node's pod subnets);
    ``external``: any other machine that should reach pods (adds the service CIDRs);
    ``router``: the network's router or cloud route table (every pod subnet).
    """

    kind: Literal["node", "external", "router"]
    node: str | None = None

    @staticmethod
    def for_node(name: str) -> Target:
        return Target("node", name)

    def __str__(self) -> str:
        return f"node/{self.node}" if self.kind == "node" else self.kind


EXTERNAL = Target("external")
ROUTER = Target("router")


def route_sort_key(dst: IPNetwork) -> tuple[int, int, int]:
    return (dst.version, int(dst.network_address), dst.prefixlen)


@dataclass(frozen=True, slots=True)
class Route:
    """A route nosdn wants: ``dst`` via one next hop, or several (ECMP), sorted.

    ``node`` is the node the pod subnet belongs to, or None for service routes.
    """

    dst: IPNetwork
    via: tuple[IPAddress, ...]
    node: str | None = None

    @property
    def family(self) -> int:
        return self.dst.version


class BackendRef:
    """Base of a backend's typed handle on a route it read (`InstalledRoute.handle`): only
    the backend that made it reads it."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class InstalledRoute:
    """A route a backend found (kernel table, cloud route table, ...).

    ``owned`` says whether nosdn wrote it (our protocol number, our tag, our name). ``owner``
    is a human label of who did (``nosdn``, ``static``, ``bird``, ``igw-0abc``); ``detail`` is
    the backend's own one-line rendering, shown when reporting a conflict; ``ref`` is an
    opaque handle a backend may need to change or delete it (route name, table id);
    ``handle`` is the same for a backend that types its own (the kernel's nexthop id and
    metric), opaque to everything else.
    """

    dst: IPNetwork
    via: tuple[IPAddress, ...]
    owned: bool
    owner: str = PROTOCOL_NAME
    detail: str = ""
    ref: str = field(default="", compare=False)
    #: the route's type where a backend has types: unicast, blackhole, unreachable, ...
    kind: str = field(default="unicast", compare=False)
    handle: BackendRef | None = field(default=None, compare=False)

    # the `plan.Found` surface: an InstalledRoute is its own light entry
    @property
    def key(self) -> RouteKey:
        return route_key(self.dst)

    @property
    def gateways(self) -> tuple[bytes, ...]:
        return tuple(sorted(g.packed for g in self.via))

    def installed(self) -> InstalledRoute:
        return self


#: A prefix as `plan.diff` keys it: the packed network address (4 or 16 bytes, which says
#: the family) and the prefix length. Equal exactly when the prefixes are equal, hashed in C.
RouteKey: TypeAlias = tuple[bytes, int]


def route_key(dst: IPNetwork) -> RouteKey:
    """The `RouteKey` of a prefix."""
    return (dst.network_address.packed, dst.prefixlen)


@dataclass(frozen=True, slots=True)
class Change:
    old: InstalledRoute
    new: Route


@dataclass(frozen=True, slots=True)
class Conflict:
    """A prefix nosdn wants that someone else already routes: reported, never overwritten."""

    wanted: Route
    found: InstalledRoute


@dataclass(frozen=True, slots=True)
class Shadow:
    """A route of someone else's more specific than a prefix nosdn wants: longest prefix wins,
    so it takes part of that prefix's addresses (half a node's pods for a /25 in a /24) while
    nosdn's own route looks right. Reported, never removed."""

    wanted: Route
    found: InstalledRoute


@dataclass(frozen=True, slots=True)
class Diff:
    """What a backend must do to make its routes equal the desired ones."""

    add: tuple[Route, ...] = ()
    change: tuple[Change, ...] = ()
    remove: tuple[InstalledRoute, ...] = ()
    keep: tuple[Route, ...] = ()
    conflicts: tuple[Conflict, ...] = ()
    #: how many routes of ours the table held when this was computed (the deletion guard's
    #: denominator; 0 where a diff is made by hand)
    owned: int = 0

    @property
    def writes(self) -> int:
        """How many writes applying this diff takes (0 means the backend is in sync)."""
        return len(self.add) + len(self.change) + len(self.remove)

    @property
    def in_sync(self) -> bool:
        return self.writes == 0
