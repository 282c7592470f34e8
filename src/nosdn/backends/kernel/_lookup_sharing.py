"""Lookup sharing: which next hops one kernel route lookup answers for.

Why: the adjacency check asks the kernel ``ip route get`` for every peer's address, and with
many peers those lookups were a large part of a whole ``nosdn apply`` (bench/README.md),
although nearly every peer sits on one connected network and gets the same answer.

When the policy rules are the kernel's defaults (``lookup local``, ``lookup main``, ``lookup
default``: nothing else, no selectors), the kernel answers a lookup from the longest prefix
matching the address, in the local table first, then in main. So two addresses whose longest
match in main is the same plain connected route, and that no local-table route covers, get
the same answer. Here "plain connected" means: unicast, tos 0, no gateway, no
multipath, no nexthop object, and the only route of its prefix in main. For each such route
one address (the representative) is looked up; the others follow it, but only if its answer
is "on-link" (the caller checks). An address under a more specific route of main (of any
type, ours included) or under any local-table route, and every address when the rules are
not the defaults, is looked up on its own, as before. Sharing is always a subset of what a
lookup each would say; it never guesses.

What this does not see: per-destination exceptions the kernel caches (PMTU, redirects). A
redirect never names a gateway for an address on a connected network, and PMTU does not
change the next hop, so neither changes an on-link verdict.

Pure functions over raw netlink payloads (no I/O): the backend does the dumps.
"""

from __future__ import annotations

import socket
import struct
from bisect import bisect_right
from collections.abc import Iterable, Sequence

from nosdn.addr import merged
from nosdn.backends.kernel import _netlink as nl

RTM_F_CLONED = nl.RTM_F_CLONED
FR_ACT_TO_TBL = 1
FRA_PRIORITY = 6
FRA_SUPPRESS_IFGROUP = 13
FRA_SUPPRESS_PREFIXLEN = 14
FRA_TABLE = 15
FRA_PROTOCOL = 21
#: (priority, table) of the kernel's own rules; IPv6 has no ``lookup default`` rule.
_DEFAULT_RULES = {(0, 255), (32766, 254), (32767, 253)}
_NEEDED_RULES = {(0, 255), (32766, 254)}
_FIB_RULE_HDR = struct.Struct("=BBBBBBBBI")
_RTA = struct.Struct("=HH")
_U32 = struct.Struct("=I")
#: The attribute head the kernel writes before a route's destination (second attribute,
#: after RTA_TABLE): length 8 (IPv4) or 20 (IPv6), type RTA_DST.
_DST_HEAD = {4: struct.pack("=HH", 8, nl.RTA_DST), 16: struct.pack("=HH", 20, nl.RTA_DST)}


def default_rules(payloads: Iterable[bytes]) -> bool:
    """Whether a rule dump holds the kernel's default rules and nothing else."""
    seen: set[tuple[int, int]] = set()
    for p in payloads:
        _fam, dst_len, src_len, tos, table, _r1, _r2, action, flags = _FIB_RULE_HDR.unpack_from(p)
        if dst_len or src_len or tos or flags or action != FR_ACT_TO_TBL:
            return False
        prio = 0
        a = _FIB_RULE_HDR.size
        while a + 4 <= len(p):
            alen, atype = _RTA.unpack_from(p, a)
            if alen < 4:
                break
            atype &= 0x3FFF
            if atype == FRA_TABLE:
                table = _U32.unpack_from(p, a + 4)[0]
            elif atype == FRA_PRIORITY:
                prio = _U32.unpack_from(p, a + 4)[0]
            elif atype in (FRA_SUPPRESS_PREFIXLEN, FRA_SUPPRESS_IFGROUP):
                if _U32.unpack_from(p, a + 4)[0] != 0xFFFFFFFF:  # -1: not set
                    return False
            elif atype != FRA_PROTOCOL:  # any selector (iif, fwmark, l3mdev, ...) or goto
                return False
            a += (alen + 3) & ~3
        if (prio, table) not in _DEFAULT_RULES or (prio, table) in seen:
            return False
        seen.add((prio, table))
    return seen >= _NEEDED_RULES


def _prefix(p: bytes, width: int) -> tuple[int, int] | None:
    """(network as int, prefix length) of a route message; None for a cached clone."""
    plen = p[1]
    if plen and p[20:24] == _DST_HEAD[width]:  # the usual layout: RTA_TABLE, then RTA_DST
        return int.from_bytes(p[24 : 24 + width]), plen
    r = nl.parse_route(p)
    if r is None:
        return None
    return (int.from_bytes(r.dst) if r.dst else 0), r.dst_len


def _plain_connected(p: bytes) -> bool:
    if p[7] != nl.RTN_UNICAST or p[3] or not p[1]:
        return False
    if p[0] == socket.AF_INET and p[6] != nl.RT_SCOPE_LINK:
        # an IPv4 route through a gateway or a nexthop is scope global: not decoded (a big
        # table is mostly those). A device route someone made scope global is left out too:
        # its addresses are then looked up one by one, which is never wrong. (IPv6 routes
        # are all scope global.)
        return False
    r = nl.parse_route(p)
    return r is not None and r.gateway is None and not r.multipath and not r.nh_id


def shared_lookups(
    gateways: Sequence[bytes], main: Sequence[bytes], local: Sequence[bytes]
) -> list[bytes | None]:
    """For each gateway (all of one family, no repeats): the representative whose lookup it
    may take (see the module docstring), or None if it must be looked up itself (it may be a
    representative). ``main`` and ``local`` are the route messages of the main and local
    tables (a dump not filtered by table is fine: other tables' messages are skipped). The
    rules must have been checked (`default_rules`)."""
    out: list[bytes | None] = [None] * len(gateways)
    if len(gateways) < 2:
        return out
    width = len(gateways[0])
    bits = width * 8
    # first the candidates (plain connected routes, each the only route of its prefix), then
    # the routes of main more specific than a candidate they are in: two passes, so that the
    # routes of a big table (ours, mostly) are looked at without keeping anything of them
    tables = [p for p in main if p[4] == 254 and not p[8] & RTM_F_CLONED]  # header table
    found = [k for p in tables if _plain_connected(p) and (k := _prefix(p, width)) is not None]
    if not found:
        return out
    shortest = min(c[1] for c in found)
    counts = dict.fromkeys(found, 0)
    intervals: list[tuple[int, int]] = []
    for p in tables:
        if p[1] < shortest:
            continue
        k = _prefix(p, width)
        if k is None:
            continue
        if k in counts:
            counts[k] += 1
            continue
        net, plen = k
        for cnet, cplen in found:
            if plen > cplen and net >> (bits - cplen) == cnet >> (bits - cplen):
                intervals.append((net, net + (1 << (bits - plen)) - 1))
                break
    candidates = [c for c in found if counts[c] == 1]
    if not candidates:
        return out
    # what must be looked up on its own: an address under a route of main more specific
    # than a candidate it is in (above), or under any route of the local table (one merged
    # list of intervals; a candidate inside another is thereby looked up address by address)
    for p in local:
        if p[4] != 255 or p[8] & RTM_F_CLONED:
            continue
        k = _prefix(p, width)
        if k is not None:
            intervals.append((k[0], k[0] + (1 << (bits - k[1])) - 1))
    starts, ends = merged(intervals)
    lengths = sorted({c[1] for c in candidates}, reverse=True)
    by_len = {n: {c[0] >> (bits - n): c for c in candidates if c[1] == n} for n in lengths}
    shifts = [(bits - n, by_len[n]) for n in lengths]
    leaders: dict[tuple[int, int], bytes] = {}
    for i, g in enumerate(gateways):
        v = int.from_bytes(g)
        for shift, nets in shifts:
            c = nets.get(v >> shift)
            if c is not None:
                break
        else:
            continue
        if starts:
            j = bisect_right(starts, v) - 1
            if j >= 0 and v <= ends[j]:
                continue
        leader = leaders.get(c)
        if leader is None:
            leaders[c] = g
        else:
            out[i] = leader
    return out
