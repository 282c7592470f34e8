"""Checks: everything the kernel (or a cloud) would wrongly accept, refused before any write.

The kernel happily installs a pod subnet that covers a node's own network, a gateway equal to
the host's own address, and overlapping subnets; the result is a cluster that half works. Each
check here returns `Problem`s naming the node, the field and the value. All checks run and all
problems are reported at once.

Who is to blame matters as much as what is wrong. An agent or a controller drops the nodes a
problem names and keeps routing the rest, so a problem must name the node to fix, never its
victims: one Node whose subnet is the whole cluster CIDR must not make every other node's
route disappear. Hence two stages:

1. what is wrong with a node on its own (its name, its addresses, its subnets against the
   cluster's ranges and the node mask): that node is to blame;
2. conflicts between nodes (one address, overlapping subnets, an address inside another's
   subnet, one cloud instance), judged only among nodes that passed stage 1, by seniority: the
   junior party of a conflict is blamed and the senior keeps its routes. A party already
   refused in stage 1 is the one blamed. Equal seniority (a tie: nobody can tell who came
   first) blames every party.

Seniority is the caller's to say (`Seniority`): an inventory's order, or for a live cluster
"routed before, then created earlier". Every check is sort-based (sweeps over sorted ranges,
bisection), so 50,000 nodes check in well under a second.
"""

from __future__ import annotations

import re
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Container, Iterable, Mapping, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address

from nosdn.addr import special_purpose, unusable_node_address
from nosdn.model import Cluster, IPAddress, IPNetwork, Node
from nosdn.problems import Problem

#: Shortest prefix accepted for any pod, cluster or service CIDR, per family.
MIN_PREFIX = {4: 8, 6: 32}
#: Longest node pod subnet that still leaves room for a gateway and pods.
MAX_NODE_PREFIX = {4: 30, 6: 126}

#: A node's seniority in conflicts with other nodes: smaller is senior; equal keys are a tie.
Seniority = Callable[[Node], tuple[int, str]]

_LABEL = r"[a-z0-9](?:[-a-z0-9]*[a-z0-9])?"
#: A Kubernetes node name (RFC 1123 subdomain), matched whole: `fullmatch`, never ``$``, which
#: lets a trailing newline through.
_DNS1123 = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")

_POD = "podCIDRs"
#: Set on an IPv6 address's integer where both families share one dict (an ``ipaddress``
#: address hashes in Python, through ``hex``).
_V6_KEY = 1 << 128
_IPS = "ips"


def _span(net: IPNetwork) -> tuple[int, int]:
    # not net.broadcast_address: a cached_property whose first use costs more than this
    start = int(net.network_address)
    return start, start + (1 << (net.max_prefixlen - net.prefixlen)) - 1


# --- stage 1: each node on its own, and the cluster's own ranges -------------------------------
def _check_names(cluster: Cluster) -> Iterable[Problem]:
    seen: set[str] = set()
    for n in cluster.nodes:
        if n.name in seen:
            yield Problem(
                n.name,
                "name",
                n.name,
                "is used by more than one node",
                "give every node a unique name",
            )
        seen.add(n.name)
        yield from _name_problems(n)


def _name_problems(n: Node) -> Iterable[Problem]:
    if len(n.name) > 253 or not _DNS1123.fullmatch(n.name):
        yield Problem(
            n.name,
            "name",
            repr(n.name),
            "is not a valid Kubernetes node name",
            "use lowercase letters, digits, '-' and '.'",
        )


def _no_next_hop(ip: IPAddress) -> bool:
    """Unspecified, loopback, multicast or link-local: the ranges ``ipaddress`` uses
    (0.0.0.0, 127/8, 224/4, 169.254/16; ::, ::1, ff00::/8, fe80::/10), tested on the integer
    (its properties are Python code, four per address)."""
    v = int(ip)
    if isinstance(ip, IPv4Address):
        return v == 0 or v >> 24 == 127 or v >> 28 == 14 or v >> 16 == 0xA9FE
    return v <= 1 or v >> 120 == 0xFF or v >> 118 == 0x3FA


def _address_problems(n: Node) -> Iterable[Problem]:
    """One node's addresses on their own (stage 1)."""
    ips = n.ips
    if not ips:
        yield Problem(
            n.name,
            _IPS,
            "[]",
            "the node has no address",
            "add ip: with the node's address on the cluster network",
        )
    if len(ips) > 1:
        families = [ip.version for ip in ips]
        for fam in (4, 6):
            if families.count(fam) > 1:
                vals = ", ".join(str(ip) for ip in ips if ip.version == fam)
                yield Problem(
                    n.name,
                    _IPS,
                    vals,
                    f"has more than one IPv{fam} address",
                    "keep one address per family (the one the other nodes reach)",
                )
    for ip in ips:
        if _no_next_hop(ip):
            yield Problem(
                n.name,
                _IPS,
                str(ip),
                "cannot be a next hop for other nodes",
                "use the node's address on the cluster network",
            )
        elif (why := unusable_node_address(ip)) is not None:
            yield Problem(
                n.name, _IPS, str(ip), why, "use the node's address on the cluster network"
            )


def _short(net: IPNetwork, node: str | None, field: str) -> Problem | None:
    if net.prefixlen < MIN_PREFIX[net.version]:
        return _short_problem(net, node, field)
    return None


def _short_problem(net: IPNetwork, node: str | None, field: str) -> Problem:
    return Problem(
        node,
        field,
        str(net),
        f"is too short a prefix (shorter than /{MIN_PREFIX[net.version]})",
        "use a prefix sized for the cluster, e.g. /16 for IPv4",
    )


def _inside(lo: int, hi: int, spans: list[tuple[int, int]]) -> bool:
    """Whether [lo, hi] lies in one of ``spans`` (a loop: a generator per subnet is its own
    cost, once per node)."""
    for clo, chi in spans:  # noqa: SIM110
        if clo <= lo and hi <= chi:
            return True
    return False


def _check_cluster_ranges(cluster: Cluster) -> Iterable[Problem]:
    for field, nets in (
        ("clusterCIDRs", cluster.cluster_cidrs),
        ("serviceCIDRs", cluster.service_cidrs),
    ):
        for c in nets:
            if (p := _short(c, None, field)) is not None:
                yield p
            elif (special := special_purpose(c)) is not None:
                yield Problem(None, field, str(c), special, "use private unicast space")
    for fam, key in ((4, "nodeCIDRMaskSize"), (6, "nodeCIDRMaskSizeIPv6")):
        mask = cluster.mask_size(fam)
        for c in cluster.cluster_cidrs:
            if c.version == fam and not c.prefixlen <= mask <= MAX_NODE_PREFIX[fam]:
                yield Problem(
                    None,
                    key,
                    str(mask),
                    f"does not fit cluster CIDR {c}",
                    f"use a size between {c.prefixlen} and {MAX_NODE_PREFIX[fam]}",
                )
    for field, nets in (
        ("clusterCIDRs", cluster.cluster_cidrs),
        ("serviceCIDRs", cluster.service_cidrs),
    ):
        items = sorted(((*_span(c), c) for c in nets), key=lambda t: (t[2].version, t[0], -t[1]))
        widest: tuple[int, int, IPNetwork] | None = None
        for item in items:  # each range that starts inside the widest one so far overlaps it
            if widest is not None and widest[2].version == item[2].version and item[0] <= widest[1]:
                yield Problem(
                    None,
                    field,
                    str(item[2]),
                    f"overlaps another {field} {widest[2]}",
                    "make the ranges disjoint",
                )
                if item[1] <= widest[1]:
                    continue
            widest = item
    for svc in cluster.service_cidrs:
        for c in cluster.cluster_cidrs:
            if c.version == svc.version and c.overlaps(svc):
                yield Problem(
                    None,
                    "serviceCIDRs",
                    str(svc),
                    f"overlaps clusterCIDRs {c}",
                    "pods and services need disjoint ranges",
                )


@dataclass(frozen=True, slots=True)
class Ranges:
    """The cluster-wide ranges one node's subnets are checked against (stage 1), read once."""

    cluster: Cluster
    inside: dict[int, list[tuple[int, int]]]
    services: list[tuple[int, int, IPNetwork]]

    @classmethod
    def of(cls, cluster: Cluster) -> Ranges:
        inside: dict[int, list[tuple[int, int]]] = {4: [], 6: []}
        for c in cluster.cluster_cidrs:
            inside[c.version].append(_span(c))
        return cls(cluster, inside, [(*_span(s), s) for s in cluster.service_cidrs])


def _subnet_problems(n: Node, ranges: Ranges) -> Iterable[Problem]:
    """One node's pod subnets against its own addresses and the cluster's ranges and mask."""
    cluster, inside, services = ranges.cluster, ranges.inside, ranges.services
    cidrs = n.pod_cidrs
    for c in cidrs:
        plen = c.prefixlen
        fam = c.version
        if plen < MIN_PREFIX[fam]:
            yield _short_problem(c, n.name, _POD)
        elif plen > MAX_NODE_PREFIX[fam]:
            yield Problem(
                n.name,
                _POD,
                str(c),
                "leaves no room for pods",
                f"use /{MAX_NODE_PREFIX[fam]} or shorter",
            )
        elif plen < (mask := cluster.mask_size(fam)) <= MAX_NODE_PREFIX[fam]:
            key = "nodeCIDRMaskSize" if fam == 4 else "nodeCIDRMaskSizeIPv6"
            yield Problem(
                n.name,
                _POD,
                str(c),
                f"is wider than the cluster's node subnets (/{mask}, {key})",
                f"give the node one /{mask}; if the cluster's node mask really is "
                f"/{plen}, set {key} (the agent's --node-cidr-mask-size) to match",
            )
        if (special := special_purpose(c)) is not None:
            yield Problem(
                n.name,
                _POD,
                str(c),
                special,
                "pick a pod subnet in private unicast space (RFC 1918, or fd00::/8)",
            )
        lo = int(c.network_address)
        hi = lo + (1 << (c.max_prefixlen - plen)) - 1
        if cluster.cluster_cidrs and not _inside(lo, hi, inside[fam]):
            same = [cc for cc in cluster.cluster_cidrs if cc.version == fam]
            where = ", ".join(str(cc) for cc in same) or f"(no IPv{fam} cluster CIDR)"
            yield Problem(
                n.name,
                _POD,
                str(c),
                f"is outside clusterCIDRs {where}",
                "pick a subnet inside the cluster CIDRs, or add a cluster CIDR",
            )
        for s_lo, s_hi, svc in services:
            if lo <= s_hi and s_lo <= hi and svc.version == fam:
                yield Problem(
                    n.name,
                    _POD,
                    str(c),
                    f"overlaps serviceCIDRs {svc}",
                    "pods and services need disjoint ranges",
                )
        for ip in n.ips:
            if lo <= int(ip) <= hi and ip.version == fam:
                yield Problem(
                    n.name,
                    _POD,
                    str(c),
                    f"contains the node's own address {ip}",
                    "pod subnets must not cover node addresses; pick another subnet",
                )
    if len(cidrs) == 1 and n.ip_for(cidrs[0].version) is not None:
        return  # one subnet, with an address of its family: nothing below applies
    fams = [c.version for c in cidrs]
    for fam in (4, 6):
        if fams.count(fam) > 1:
            yield Problem(
                n.name,
                _POD,
                ", ".join(str(c) for c in n.pod_cidrs if c.version == fam),
                f"has more than one IPv{fam} subnet",
                "Kubernetes gives a node one pod subnet per family",
            )
        if fam in fams and n.ip_for(fam) is None:
            yield Problem(
                n.name,
                _POD,
                ", ".join(str(c) for c in n.pod_cidrs if c.version == fam),
                f"is IPv{fam} but the node has no IPv{fam} address to route it via",
                f"add the node's IPv{fam} address to ips, or drop the subnet",
            )


def _check_service_via(cluster: Cluster) -> Iterable[Problem]:
    names = {n.name for n in cluster.nodes}
    for name in cluster.service_via:
        if name not in names:
            yield Problem(
                None,
                "serviceVia",
                name,
                "names no node of the inventory",
                "list nodes that run kube-proxy, by name",
            )
    if cluster.service_via and not cluster.service_cidrs:
        yield Problem(
            None,
            "serviceVia",
            ", ".join(cluster.service_via),
            "is set but there is no serviceCIDRs to route",
            "add serviceCIDRs",
        )
    via_names = set(cluster.service_via)
    vias = [n for n in cluster.nodes if n.name in via_names] if via_names else []
    if cluster.service_via and vias:
        for svc in cluster.service_cidrs:
            if not any(n.ip_for(svc.version) for n in vias):
                yield Problem(
                    None,
                    "serviceCIDRs",
                    str(svc),
                    f"has no serviceVia node with an IPv{svc.version} address",
                    "add such a node to serviceVia",
                )


class _Addresses:
    """Every node address of the cluster, sorted, for "which addresses lie in this range"."""

    def __init__(self, nodes: Sequence[Node]) -> None:
        found: dict[int, list[tuple[int, str, IPAddress]]] = {4: [], 6: []}
        for n in nodes:
            for ip in n.ips:
                found[4 if isinstance(ip, IPv4Address) else 6].append((int(ip), n.name, ip))
        self._entries = {fam: sorted(e) for fam, e in found.items()}
        self._keys = {fam: [e[0] for e in es] for fam, es in self._entries.items()}

    def any_within(self, net: IPNetwork) -> bool:
        start = int(net.network_address)
        keys = self._keys[net.version]
        i = bisect_left(keys, start)
        return i < len(keys) and keys[i] <= start + (1 << (net.max_prefixlen - net.prefixlen)) - 1

    def within(self, net: IPNetwork) -> list[tuple[str, IPAddress]]:
        lo, hi = _span(net)
        keys = self._keys[net.version]
        i, j = bisect_left(keys, lo), bisect_right(keys, hi)
        return [(name, ip) for _, name, ip in self._entries[net.version][i:j]]


def _holds_node(field: str, c: IPNetwork, owner: str, ip: IPAddress) -> Problem:
    return Problem(
        None,
        field,
        str(c),
        f"contains node {owner}'s address {ip}",
        "node addresses must lie outside the pod and service ranges",
    )


def _check_ranges_hold_no_node(cluster: Cluster, addresses: _Addresses) -> Iterable[Problem]:
    for field, nets in (
        ("clusterCIDRs", cluster.cluster_cidrs),
        ("serviceCIDRs", cluster.service_cidrs),
    ):
        for c in nets:
            for owner, ip in addresses.within(c):
                yield _holds_node(field, c, owner, ip)


def ranges_holding(n: Node, cluster: Cluster) -> Iterable[Problem]:
    """`_check_ranges_hold_no_node` for one node: the cluster's ranges holding its addresses."""
    for field, nets in (
        ("clusterCIDRs", cluster.cluster_cidrs),
        ("serviceCIDRs", cluster.service_cidrs),
    ):
        for c in nets:
            for ip in n.ips:
                if ip.version == c.version and ip in c:
                    yield _holds_node(field, c, n.name, ip)


def _check_bgp(cluster: Cluster) -> Iterable[Problem]:
    """The ``bgp:`` section against the nodes and the cluster's ranges: a peer is a router,
    never a node, a pod or a service address; the node networks the routers listen on hold
    no pod or service range (a listen range is who may connect, so it must be narrow)."""
    bgp = cluster.bgp
    if bgp is None:
        return
    node_of = {ip: n.name for n in cluster.nodes for ip in n.ips}
    names = {n.name for n in cluster.nodes}
    ranges = [
        *(("clusterCIDRs", c) for c in cluster.cluster_cidrs),
        *(("serviceCIDRs", c) for c in cluster.service_cidrs),
        *(("podCIDRs of node " + n.name, c) for n in cluster.nodes for c in n.pod_cidrs),
    ]
    seen: set[IPAddress] = set()
    for i, peer in enumerate(bgp.peers):
        field, ip = f"bgp.peers[{i}].address", peer.address
        if ip in seen:
            yield Problem(None, field, str(ip), "is listed twice", "list each router once")
        seen.add(ip)
        if _no_next_hop(ip):
            yield Problem(
                None,
                field,
                str(ip),
                "cannot be a BGP peer (loopback, link-local, multicast or unspecified)",
                "give the router's address on the node network",
            )
        if (owner := node_of.get(ip)) is not None:
            yield Problem(
                None,
                field,
                str(ip),
                f"is node {owner}'s own address",
                "a peer is a router the nodes announce to: give the router's address",
            )
        for what, c in ranges:
            if c.version == ip.version and ip in c:
                yield Problem(
                    None,
                    field,
                    str(ip),
                    f"lies inside {what} {c}",
                    "give the router's address on the node network, outside pods and services",
                )
                break
        unknown = [name for name in peer.nodes if name not in names]
        for name in unknown:
            yield Problem(
                None,
                f"bgp.peers[{i}].nodes",
                name,
                "names no node of the inventory",
                "list the nodes that peer with this router by name (omit nodes: for all)",
            )
        if (
            not any(n.ip_for(ip.version) is not None for n in cluster.nodes if peer.serves(n.name))
            and cluster.nodes
        ):
            yield Problem(
                None,
                field,
                str(ip),
                f"is IPv{ip.version} but none of its nodes has an IPv{ip.version} address to "
                "peer from",
                f"give the nodes IPv{ip.version} addresses, or the router's other address",
            )
    listens = [("bgp.nodeNetworks", c) for c in bgp.node_networks]
    listens += [
        (f"bgp.peers[{i}].nodeNetworks", c)
        for i, peer in enumerate(bgp.peers)
        for c in peer.node_networks
    ]
    for field, c in listens:
        if (p := _short(c, None, field)) is not None:
            yield p
        for what, r in ranges:
            if r.version == c.version and r.overlaps(c):
                yield Problem(
                    None,
                    field,
                    str(c),
                    f"overlaps {what} {r}",
                    "give the networks the nodes' own addresses are on (who may connect)",
                )
                break
        if not any(cc.version == c.version for cc in cluster.cluster_cidrs):
            yield Problem(
                None,
                field,
                str(c),
                f"is IPv{c.version} but there is no IPv{c.version} clusterCIDRs: a router "
                "cannot tell which prefixes a new node may announce",
                f"add the IPv{c.version} cluster CIDR to clusterCIDRs",
            )


# --- stage 2: conflicts between nodes, blamed by seniority -------------------------------------
@dataclass(frozen=True, slots=True)
class NodeConflict:
    """Two nodes that cannot both be routed, and what each would be told if blamed."""

    a: str
    b: str
    said_to_a: Problem
    said_to_b: Problem


# Each kind of conflict is said by one function of the pair, whichever search found the pair
# (the sweeps below over a whole cluster, or `nosdn.livechecks` for one changed node).
_OWN_IP = "every node needs its own address"
_OWN_NET = "give every node its own subnet (remove podCIDRs to allocate one)"
_INSTANCE = "instanceId"
_OWN_INSTANCE = (
    "every node is its own instance: delete the Node object left over from the instance's "
    "earlier life, or fix instanceId"
)


def same_address(a: str, b: str, ip: IPAddress) -> NodeConflict:
    return NodeConflict(
        a,
        b,
        Problem(a, _IPS, str(ip), f"is also node {b}'s address", _OWN_IP, b),
        Problem(b, _IPS, str(ip), f"is also node {a}'s address", _OWN_IP, a),
    )


def overlapping_subnets(a: str, a_net: IPNetwork, b: str, b_net: IPNetwork) -> NodeConflict:
    return NodeConflict(
        a,
        b,
        Problem(a, _POD, str(a_net), f"overlaps node {b}'s podCIDRs {b_net}", _OWN_NET, b),
        Problem(b, _POD, str(b_net), f"overlaps node {a}'s podCIDRs {a_net}", _OWN_NET, a),
    )


def address_in_subnet(holder: str, net: IPNetwork, owner: str, ip: IPAddress) -> NodeConflict:
    return NodeConflict(
        holder,
        owner,
        Problem(
            holder,
            _POD,
            str(net),
            f"contains node {owner}'s address {ip}",
            "pod subnets must not cover node addresses; pick another subnet",
            owner,
        ),
        Problem(
            owner,
            _IPS,
            str(ip),
            f"is inside node {holder}'s podCIDRs {net}",
            "a node's address must lie outside every pod subnet",
            holder,
        ),
    )


def same_instance(a: str, b: str, instance: str) -> NodeConflict:
    """The cloud can route a subnet to only one node per instance, and a controller that marked
    both unavailable would taint the healthy one."""
    return NodeConflict(
        a,
        b,
        Problem(a, _INSTANCE, instance, f"is also node {b}'s instance", _OWN_INSTANCE, b),
        Problem(b, _INSTANCE, instance, f"is also node {a}'s instance", _OWN_INSTANCE, a),
    )


def _address_conflicts(nodes: Sequence[Node]) -> Iterable[NodeConflict]:
    """Every pair of nodes sharing an address (not only each with the first holder: with the
    first refused on its own, the others would otherwise all be routed to one address)."""
    holders: dict[int, list[str]] = {}  # by the address as an int, IPv6 above 2**128
    for n in nodes:
        for ip in n.ips:
            key = int(ip) if isinstance(ip, IPv4Address) else int(ip) | _V6_KEY
            earlier = holders.setdefault(key, [])
            for other in earlier:
                if other != n.name:
                    yield same_address(other, n.name, ip)
            earlier.append(n.name)


def _subnet_conflicts(nodes: Sequence[Node]) -> Iterable[NodeConflict]:
    """Every pair of overlapping pod subnets: a sweep over subnets sorted by start, keeping the
    ranges still open (in a sound cluster none is, so this is one pass over a sorted list)."""
    spans: list[tuple[int, int, int, int]] = []  # (version, start, -end, index): sorted in C
    subnets: list[tuple[IPNetwork, str]] = []
    for n in nodes:
        for c in n.pod_cidrs:
            lo = int(c.network_address)
            spans.append(
                (c.version, lo, 1 - lo - (1 << (c.max_prefixlen - c.prefixlen)), len(subnets))
            )
            subnets.append((c, n.name))
    spans.sort()
    open_: list[tuple[int, int]] = []  # (end, index) of the ranges still open
    version = 0
    for v, lo, neg_hi, i in spans:
        if v != version:
            open_, version = [], v
        if open_:
            open_ = [o for o in open_ if o[0] >= lo]
            net, name = subnets[i]
            for _end, j in open_:
                onet, oname = subnets[j]
                if oname != name:  # a node's own two subnets of a family: stage 1 says so
                    yield overlapping_subnets(oname, onet, name, net)
        open_.append((-neg_hi, i))


def _instance_conflicts(nodes: Sequence[Node]) -> Iterable[NodeConflict]:
    """Every pair of nodes that name one cloud instance."""
    holders: dict[str, list[str]] = {}
    for n in nodes:
        if not n.instance_id:
            continue
        earlier = holders.setdefault(n.instance_id, [])
        for other in earlier:
            if other != n.name:
                yield same_instance(other, n.name, n.instance_id)
        earlier.append(n.name)


def _address_in_subnet_conflicts(
    nodes: Sequence[Node], addresses: _Addresses
) -> Iterable[NodeConflict]:
    for n in nodes:
        for c in n.pod_cidrs:
            if addresses.any_within(c):  # the usual subnet holds none: nothing built
                for owner, ip in addresses.within(c):
                    if owner != n.name:  # its own address: stage 1
                        yield address_in_subnet(n.name, c, owner, ip)


def blame(
    conflicts: Iterable[NodeConflict], refused: Container[str], rank: Mapping[str, tuple[int, str]]
) -> list[Problem]:
    """The problems to report for ``conflicts``: each names the party to skip.

    Parties are judged in order of seniority, a tie group at a time. A node refused on its own
    (stage 1) stays refused and is the one blamed in its conflicts; a node in conflict with one
    already accepted is blamed; nodes of one tie group in conflict with each other are all
    blamed. A node blamed never causes another to be blamed."""
    against: dict[str, list[tuple[str, Problem]]] = {}
    for c in conflicts:
        against.setdefault(c.a, []).append((c.b, c.said_to_a))
        against.setdefault(c.b, []).append((c.a, c.said_to_b))
    out: list[Problem] = []
    accepted: set[str] = set()
    blamed: set[str] = set()
    for name, pairs in against.items():
        if name in refused:  # refused anyway: every conflict with a node still routed is its own
            mine = (rank[name], name)  # of two refused nodes, said once, to the junior
            out.extend(p for o, p in pairs if o not in refused or (rank[o], o) < mine)
            blamed.add(name)
    order = sorted((n for n in against if n not in refused), key=rank.__getitem__)
    i = 0
    while i < len(order):
        j = i
        while j < len(order) and rank[order[j]] == rank[order[i]]:
            j += 1
        group = order[i:j]
        members = set(group)
        for name in group:
            said = [p for other, p in against[name] if other in accepted]
            if not said:
                said = [p for other, p in against[name] if other in members and other != name]
            if said:
                out.extend(said)
                blamed.add(name)
        accepted.update(n for n in group if n not in blamed)
        i = j
    return out


def _inventory_order(cluster: Cluster) -> dict[str, tuple[int, str]]:
    rank: dict[str, tuple[int, str]] = {}
    for i, n in enumerate(cluster.nodes):
        rank.setdefault(n.name, (i, ""))
    return rank


def node_problems(n: Node, ranges: Ranges) -> list[Problem]:
    """Stage 1 for one node: what is wrong with it on its own (name, addresses, subnets)."""
    return [*_name_problems(n), *_address_problems(n), *_subnet_problems(n, ranges)]


def cluster_problems(cluster: Cluster) -> list[Problem]:
    """What is wrong with the cluster's own ranges, its serviceVia and its bgp section."""
    return [*_check_cluster_ranges(cluster), *_check_service_via(cluster), *_check_bgp(cluster)]


def check_cluster(cluster: Cluster, *, seniority: Seniority | None = None) -> list[Problem]:
    """Run every check; return all problems (empty: the cluster is sound).

    Every problem with a node names the node to skip (see the module docstring);
    ``seniority`` decides conflicts between nodes, by default the order of ``cluster.nodes``
    (an inventory's: the later of two conflicting nodes is blamed)."""
    nodes = cluster.nodes
    ranges = Ranges.of(cluster)
    own: list[Problem] = [*_check_names(cluster)]
    for n in nodes:
        own.extend(_address_problems(n))
    for n in nodes:
        own.extend(_subnet_problems(n, ranges))
    problems = cluster_problems(cluster)
    addresses = _Addresses(nodes)
    problems.extend(_check_ranges_hold_no_node(cluster, addresses))
    conflicts = [
        *_address_conflicts(nodes),
        *_subnet_conflicts(nodes),
        *_address_in_subnet_conflicts(nodes, addresses),
        *_instance_conflicts(nodes),
    ]
    if conflicts:
        refused = {p.node for p in own if p.node is not None}
        if seniority is None:
            rank = _inventory_order(cluster)
        else:
            rank = {n.name: seniority(n) for n in nodes}
        own.extend(blame(conflicts, refused, rank))
    return own + problems
