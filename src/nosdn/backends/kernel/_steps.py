"""What one apply asks of the kernel, as typed steps, and their netlink encoding (one place).

A plan (`._plan`) is a list of steps in dependency order: nexthop replaces, nexthop creations
(a gateway, or a group for an ECMP set), route puts, route deletions. Every step names the
routes it serves (indexes into the plan's wanted routes or its removes): a put or delete its
route, a replace every route on the nexthop, a creation the route it was made for (the puts
naming its id are the others), so a failed request is traced to its routes and nodes from
the steps. `encode` turns the steps into `_netlink.Requests`, request ``i`` for step ``i``;
nothing else packs a write of the plan.

`KernelRef` is how a route of ours read from the table is found again (its nexthop id and
metric), carried in `InstalledRoute.handle`.

The steps are plain ``__slots__`` dataclasses, not frozen ones: a frozen dataclass is several
times as costly to make, and a large apply makes two steps per route (bench/README.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address
from socket import AF_INET, AF_INET6
from typing import TypeAlias

from nosdn.backends.kernel import _netlink as nl
from nosdn.model import BackendRef, InstalledRoute, IPAddress, IPNetwork

NEW = nl.NLM_F_CREATE | nl.NLM_F_EXCL
REPLACE = nl.NLM_F_CREATE | nl.NLM_F_REPLACE


@dataclass(frozen=True, slots=True)
class KernelRef(BackendRef):
    """A route of ours as the kernel keys it beyond its prefix: the nexthop object it points
    at (0: none, a plain gateway route) and its metric (a delete or replace must name it)."""

    nhid: int = 0
    metric: int = 0


NO_REF = KernelRef()


def _addr(b: bytes) -> IPAddress:
    return IPv4Address(b) if len(b) == 4 else IPv6Address(b)


def kernel_ref(route: InstalledRoute) -> KernelRef:
    """The `KernelRef` of a route the kernel backend read (`NO_REF` for any other)."""
    h = route.handle
    return h if isinstance(h, KernelRef) else NO_REF


@dataclass(slots=True)
class ReplaceNexthop:
    """Point nexthop ``id`` at a new gateway in place (a node changed address): the
    ``routes`` (indexes of wanted routes) that use it move with it, unwritten."""

    id: int
    gateway: bytes
    oif: int
    routes: list[int]

    @property
    def label(self) -> str:
        return f"nexthop {self.id} via {_addr(self.gateway)}"


@dataclass(slots=True)
class NewNexthop:
    """Create nexthop ``id`` via ``gateway`` on interface ``oif`` (exclusive) for the wanted
    route ``made_for``; the puts of other routes may name it too (`PutRoute.nexthop`)."""

    id: int
    gateway: bytes
    oif: int
    made_for: int

    @property
    def label(self) -> str:
        return f"nexthop {self.id} via {_addr(self.gateway)}"


@dataclass(slots=True)
class NewGroup:
    """Create nexthop group ``id`` of ``members`` (equal weights; exclusive) for the wanted
    route ``made_for``."""

    id: int
    members: tuple[int, ...]
    made_for: int

    @property
    def label(self) -> str:
        return f"nexthop group {self.id}"


@dataclass(slots=True)
class PutRoute:
    """Add wanted route ``route``, or replace the route of ours on its prefix (``replaces``:
    that route's reference), through nexthop ``nexthop``, or (plain mode, ``nexthop`` 0)
    through ``gateways``: (address, ifindex) each."""

    route: int
    dst: IPNetwork
    replaces: KernelRef | None
    nexthop: int
    gateways: tuple[tuple[bytes, int], ...] = ()


@dataclass(slots=True)
class DeleteRoute:
    """Delete ``removes[remove]``, a route of ours, matched on prefix, table, protocol and
    the metric of its reference ``ref``."""

    remove: int
    dst: IPNetwork
    ref: KernelRef


Step: TypeAlias = ReplaceNexthop | NewNexthop | NewGroup | PutRoute | DeleteRoute
NexthopStep: TypeAlias = ReplaceNexthop | NewNexthop | NewGroup


def encode(steps: Sequence[Step], *, table: int, protocol: int) -> nl.Requests:
    """The netlink request of every step, in order. The bulk cases (an IPv4 nexthop; a route
    to a nexthop in a main-range table without metric) are packed header and all in one call
    each, straight into the request buffer: a large apply encodes two of them per route."""
    reqs = nl.Requests()
    add_msg = reqs.append_message
    append = reqs.append
    pack_nh4 = nl.NEXTHOP_MSG[4].pack
    nh4_len = nl.NEXTHOP_MSG[4].size
    pack_route = {n: (st.pack, st.size) for n, st in nl.ROUTE_NH_MSG.items()}
    af = {4: AF_INET, 16: AF_INET6}
    short_table = table < 256
    request = nl.NLM_F_REQUEST
    unicast = nl.RTN_UNICAST
    rtm_newroute = nl.RTM_NEWROUTE
    rtm_newnh = nl.RTM_NEWNEXTHOP
    route_msg = nl.route_msg
    for s in steps:
        if isinstance(s, PutRoute):
            dst = s.dst
            raw = dst.network_address.packed
            old = s.replaces
            if old is None:
                flags, metric = NEW, 0
            else:
                flags, metric = REPLACE, old.metric
            if s.nexthop and short_table and not metric:
                n = len(raw)
                pack, size = pack_route[n]
                add_msg(pack(
                    size, rtm_newroute, request | flags, 0, 0,
                    af[n], dst.prefixlen, 0, 0, table, protocol, 0, unicast, 0,
                    4 + n, nl.RTA_DST, raw, 8, nl.RTA_NH_ID, s.nexthop,
                ))  # fmt: skip
            else:
                msg = route_msg(
                    raw,
                    dst.prefixlen,
                    table=table,
                    protocol=protocol,
                    priority=metric,
                    nh_id=s.nexthop,
                    gateways=s.gateways,
                )
                append((rtm_newroute, flags, msg))
        elif isinstance(s, NewNexthop | ReplaceNexthop):
            gw = s.gateway
            flags = NEW if isinstance(s, NewNexthop) else REPLACE
            if len(gw) == 4:
                add_msg(pack_nh4(
                    nh4_len, rtm_newnh, request | flags, 0, 0,
                    AF_INET, 0, protocol, 0, 0,
                    8, nl.NHA_ID, s.id, 8, nl.NHA_GATEWAY, gw, 8, nl.NHA_OIF, s.oif,
                ))  # fmt: skip
            else:
                append(
                    (
                        rtm_newnh,
                        flags,
                        nl.nexthop_msg(s.id, protocol=protocol, gateway=gw, oif=s.oif),
                    )
                )
        elif isinstance(s, NewGroup):
            msg = nl.nexthop_group_msg(s.id, protocol=protocol, members=s.members)
            append((rtm_newnh, NEW, msg))
        else:
            dst = s.dst
            msg = route_msg(
                dst.network_address.packed,
                dst.prefixlen,
                table=table,
                protocol=protocol,
                priority=s.ref.metric,
            )
            append((nl.RTM_DELROUTE, 0, msg))
    return reqs
