"""Pod subnet allocation: give every node without a subnet one per family, never moving another.

Stability is the whole point: a node's subnet is where its pods' addresses live, so adding or
removing nodes must never move anyone else's. Existing assignments are taken as they are and
marked used; new nodes get the lowest free subnets, in inventory order. Free space is found by
walking the cluster CIDR with the used ranges sorted (one pass, no pairwise comparison), skipping
anything that overlaps a used subnet, a service CIDR or a node's own address.
"""

from __future__ import annotations

import ipaddress
from bisect import bisect_right
from collections.abc import Iterator
from dataclasses import dataclass, field, replace

from nosdn.model import Cluster, IPNetwork, Node
from nosdn.problems import Problem


@dataclass(frozen=True, slots=True)
class Allocation:
    cluster: Cluster
    #: node name -> the subnets it was just given (only nodes that got something new)
    assigned: dict[str, tuple[IPNetwork, ...]] = field(default_factory=dict)
    problems: tuple[Problem, ...] = ()


def _merged(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    ranges.sort()
    out: list[tuple[int, int]] = []
    for start, end in ranges:
        if out and start <= out[-1][1] + 1:
            if end > out[-1][1]:
                out[-1] = (out[-1][0], end)
        else:
            out.append((start, end))
    return out


def _free_subnets(
    cidr: IPNetwork, mask: int, used: list[tuple[int, int]], starts: list[int]
) -> Iterator[int]:
    """Yield the first address of each free /mask subnet in ``cidr``, lowest first."""
    size = 1 << (cidr.max_prefixlen - mask)
    pos = int(cidr.network_address)
    last = int(cidr.broadcast_address)
    while pos + size - 1 <= last:
        end = pos + size - 1
        i = bisect_right(starts, end) - 1  # the last used range starting at or before `end`
        if i >= 0 and used[i][1] >= pos:
            nxt = used[i][1] + 1  # jump past it, aligned up to the subnet size
            pos = (nxt + size - 1) // size * size
            continue
        yield pos
        pos += size


def allocate(cluster: Cluster) -> Allocation:
    """Give each node that has an address of a family but no pod subnet of it one from the
    cluster CIDRs of that family. A full cluster CIDR is a problem naming how many did not fit."""
    new: dict[int, list[IPNetwork]] = {}
    problems: list[Problem] = []
    for family in (4, 6):
        cidrs = [c for c in cluster.cluster_cidrs if c.version == family]
        if not cidrs:
            continue
        net_cls = ipaddress.IPv4Network if family == 4 else ipaddress.IPv6Network
        wanting: list[int] = []
        for i, n in enumerate(cluster.nodes):
            have = n.pod_cidrs
            if len(have) == 1 and type(have[0]) is net_cls:  # the usual node: nothing to do
                continue
            if n.ip_for(family) is not None and not any(type(c) is net_cls for c in have):
                wanting.append(i)
        if not wanting:
            continue
        mask = cluster.mask_size(family)
        if any(mask < c.prefixlen or mask > c.max_prefixlen for c in cidrs):
            continue  # reported by the checks
        ranges = [
            (int(c.network_address), int(c.broadcast_address))
            for n in cluster.nodes
            for c in n.pod_cidrs
            if c.version == family
        ]
        ranges += [
            (int(c.network_address), int(c.broadcast_address))
            for c in cluster.service_cidrs
            if c.version == family
        ]
        ranges += [
            (int(ip), int(ip)) for n in cluster.nodes for ip in n.ips if ip.version == family
        ]
        used = _merged(ranges)
        starts = [s for s, _ in used]
        free = (s for c in cidrs for s in _free_subnets(c, mask, used, starts))
        cls = ipaddress.IPv4Network if family == 4 else ipaddress.IPv6Network
        left = 0
        for index in wanting:
            start = next(free, None)
            if start is None:
                left += 1
                continue
            new.setdefault(index, []).append(cls((start, mask)))
        if left:
            problems.append(
                Problem(
                    None,
                    "clusterCIDRs",
                    ", ".join(str(c) for c in cidrs),
                    f"is full: {left} node(s) did not get an IPv{family} /{mask} pod subnet",
                    "add a cluster CIDR, or raise nodeCIDRMaskSize"
                    + ("IPv6" if family == 6 else ""),
                )
            )
    if not new:
        return Allocation(cluster, {}, tuple(problems))
    nodes: list[Node] = []
    assigned: dict[str, tuple[IPNetwork, ...]] = {}
    for i, n in enumerate(cluster.nodes):
        extra = new.get(i)
        if extra:
            assigned[n.name] = tuple(extra)
            merged = tuple(sorted((*n.pod_cidrs, *extra), key=lambda c: c.version))
            nodes.append(replace(n, pod_cidrs=merged))
        else:
            nodes.append(n)
    return Allocation(replace(cluster, nodes=tuple(nodes)), assigned, tuple(problems))
