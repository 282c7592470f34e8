"""The steady state, checked lean: is the table already exactly what is wanted?

Why: most runs of a one-shot ``nosdn apply`` (a timer, a configuration tool) find nothing to
do, yet the full read builds an object for every route and nexthop to find that out: ~70 MB at
50,000 routes. `steady` answers from the raw dump messages, keeping one small entry per wanted
route: every route of ours is a wanted route with its wanted gateway, every wanted route is
there once, no one else's route sits on a wanted prefix, and every nexthop of ours is used by
a route of ours. Any other answer, or anything it does not read plainly (ECMP, a nexthop
group, a route twice), is "not steady" (None) and the backend does the full read, which
reports and fixes whatever it is. Pure functions over bytes: the backend does the dumps.
"""

from __future__ import annotations

import socket
from collections.abc import Iterable, Sequence

from nosdn.backends.kernel import _netlink as nl
from nosdn.model import Route

#: Route types that share the unicast key space: a prefix routed by any of them is taken
#: (value: how ``ip route`` writes the type before the prefix).
RELEVANT_TYPES = {
    nl.RTN_UNICAST: "",
    nl.RTN_BLACKHOLE: "blackhole ",
    nl.RTN_UNREACHABLE: "unreachable ",
    nl.RTN_PROHIBIT: "prohibit ",
    nl.RTN_THROW: "throw ",
}
_PLEN = [bytes((n,)) for n in range(129)]


def never_routed(family: int, dst: bytes, plen: int) -> bool:
    """Whether a destination is link-local or multicast: the one predicate of what the kernel
    backend never routes. The writer refuses a route there, and the reader leaves other
    owners' routes there out (the kernel's and zeroconf's link-local routes, multicast). Both
    must use this same test: a route the writer installs where the reader does not look makes
    every later add fail with ``File exists`` while status calls it missing."""
    if not dst:
        return False
    if family == socket.AF_INET:
        return (dst[0] == 169 and dst[1] == 254 and plen >= 16) or (
            224 <= dst[0] < 240 and plen >= 4
        )
    return (dst[0] == 0xFE and dst[1] & 0xC0 == 0x80 and plen >= 10) or (
        dst[0] == 0xFF and plen >= 8
    )


def ignored(r: nl.RouteMsg, protocol: int) -> bool:
    """A route the reader leaves out: someone else's, to where nosdn never routes. A route
    of ours there is read (an older writer's), so it is seen, and removed as stale."""
    return r.protocol != protocol and never_routed(r.family, r.dst, r.dst_len)


def nexthop_index(
    nexthops: Iterable[bytes], protocol: int
) -> tuple[dict[int, bytes], set[int]] | None:
    """From a nexthop dump: the gateway of every plain nexthop by id, and the ids of ours;
    None if one of ours is a group or a blackhole (not read here)."""
    gateway_of: dict[int, bytes] = {}
    ours: set[int] = set()
    for p in nexthops:
        nh = nl.parse_nexthop(p)
        if nh.protocol == protocol:
            if nh.group or nh.blackhole:
                return None
            ours.add(nh.id)
        if nh.gateway and not nh.group and not nh.blackhole:
            gateway_of[nh.id] = nh.gateway
    return gateway_of, ours


def steady(
    desired: Sequence[Route],
    routes: Iterable[bytes],
    gateway_of: dict[int, bytes],
    unused: set[int],
    *,
    table: int,
    protocol: int,
) -> int | None:
    """How many routes of ours the table holds, if it is steady (see the module docstring);
    None if it is not, or may not be. ``routes``: the route messages of a dump (of our table,
    or of all tables); ``gateway_of`` and ``unused`` (the ids of our nexthops: emptied as
    routes use them) from `nexthop_index`."""
    index: dict[bytes, int] = {}
    for i, w in enumerate(desired):
        if len(w.via) != 1:
            return None
        key = w.dst.network_address.packed + _PLEN[w.dst.prefixlen]
        if index.setdefault(key, i) != i:
            return None  # wanted twice
    kept = bytearray(len(desired))
    owned = 0
    unicast = nl.RTN_UNICAST
    for p in routes:
        r = nl.parse_route(p)
        if r is None or r.table != table or r.type not in RELEVANT_TYPES or ignored(r, protocol):
            continue
        key = (r.dst or bytes(4 if r.family == socket.AF_INET else 16)) + _PLEN[r.dst_len]
        at = index.get(key)
        if r.protocol != protocol or r.type != unicast:
            if at is not None:
                return None  # someone else's route on a wanted prefix: a conflict
            continue
        if at is None or kept[at] or r.multipath:
            return None  # a stray route of ours, a prefix twice, ECMP
        gw = gateway_of.get(r.nh_id) if r.nh_id else r.gateway
        if gw is None or gw != desired[at].via[0].packed:
            return None  # a route to change
        kept[at] = 1
        owned += 1
        unused.discard(r.nh_id)
    if owned != len(desired) or unused:
        return None  # a wanted route missing, or a nexthop of ours to collect
    return owned
