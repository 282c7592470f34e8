"""Fast, strict parsing of addresses and prefixes into `ipaddress` objects.

`ipaddress.ip_address` parses in pure Python; with 50,000 nodes that was a third of the time of
`nosdn check`. The C parser `inet_pton` is strict (no ``10.1`` shorthand, no leading zeros
accepted by accident) and four times faster; anything it refuses goes through `ipaddress`
itself, so error messages and edge cases stay exactly the standard library's.

The objects are then built without running their ``__init__`` (which re-parses and re-checks
what ``inet_pton`` already proved: half the cost of loading a 10,000-node inventory). That
relies on how CPython lays them out, so it is checked once at import against objects built
the normal way, attribute for attribute; on any difference (another Python), the normal
constructors are used.
"""

from __future__ import annotations

import ipaddress
import socket
from bisect import bisect_right
from collections.abc import Callable, Iterable
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from typing import Any, cast

from nosdn.echo import echo
from nosdn.model import IPAddress, IPNetwork

_A4 = ipaddress.IPv4Address
_A6 = ipaddress.IPv6Address
_N4 = ipaddress.IPv4Network
_N6 = ipaddress.IPv6Network
_pton = socket.inet_pton
_AF4 = socket.AF_INET
_AF6 = socket.AF_INET6


_new = object.__new__


def _plain_a4(value: int) -> IPv4Address:
    return _A4(value)


def _plain_a6(value: int) -> IPv6Address:
    return _A6(value)


def _plain_n4(value: int, plen: int) -> IPv4Network:
    return _N4((value, plen))


def _plain_n6(value: int, plen: int) -> IPv6Network:
    return _N6((value, plen))


def _quick_a4(value: int) -> IPv4Address:
    a: Any = _new(_A4)
    a._ip = value
    return cast(IPv4Address, a)


def _quick_a6(value: int) -> IPv6Address:
    a: Any = _new(_A6)
    a._ip = value
    a._scope_id = None
    return cast(IPv6Address, a)


def _quick_net(cls: type[Any], addr: Callable[[int], Any], bits: int) -> Callable[[int, int], Any]:
    masks = [cls._make_netmask(p)[0] for p in range(bits + 1)]
    hostmasks = [(1 << (bits - p)) - 1 for p in range(bits + 1)]
    plain = cls

    def make(value: int, plen: int) -> Any:
        if not 0 <= plen < bits - 1 or value & hostmasks[plen]:
            return plain((value, plen))  # /31, /32 (their ``hosts``), host bits set: stdlib
        n = _new(cls)
        n.network_address = addr(value)
        n.netmask = masks[plen]
        n._prefixlen = plen
        return n

    return make


def _same(a: object, b: object) -> bool:
    if type(a) is not type(b) or a != b or hash(a) != hash(b) or str(a) != str(b):
        return False
    slots = ("_ip", "_scope_id")
    if any(getattr(a, k, None) != getattr(b, k, None) for k in slots):
        return False
    return getattr(a, "__dict__", {}) == getattr(b, "__dict__", {})


def _checked() -> tuple[
    Callable[[int], IPv4Address],
    Callable[[int], IPv6Address],
    Callable[[int, int], IPv4Network],
    Callable[[int, int], IPv6Network],
]:
    """The quick constructors if they build exactly what the standard ones do, else those."""
    try:
        n4 = _quick_net(_N4, _quick_a4, 32)
        n6 = _quick_net(_N6, _quick_a6, 128)
        samples4 = [(0, 0), (0x0A000000, 8), (0xAC110100, 24), (0x64400040, 26), (8, 30)]
        samples6 = [(0, 0), (0xFD00 << 112, 64), (4, 126), (0xFD17 << 112 | 5 << 64, 64)]
        ok = all(_same(_quick_a4(v), _A4(v)) for v, _ in samples4)
        ok = ok and all(_same(_quick_a6(v), _A6(v)) for v, _ in samples6)
        ok = ok and all(_same(n4(v, p), _N4((v, p))) for v, p in samples4)
        ok = ok and all(_same(n6(v, p), _N6((v, p))) for v, p in samples6)
        if ok:
            return _quick_a4, _quick_a6, n4, n6
    except Exception:
        pass
    return _plain_a4, _plain_a6, _plain_n4, _plain_n6


make_a4, make_a6, make_n4, make_n6 = _checked()


def _refuse(text: str) -> None:
    """Raise for what the standard library would accept but is not a plain address: a zone
    id (it takes any text after ``%``: newlines, quotes, ``$( )``) or surrounding space."""
    if "%" in text:
        raise ValueError(f"{echo(text)} has a zone id (%...): write the plain address")
    if text != text.strip():
        raise ValueError(f"{echo(text)} has surrounding whitespace")


def parse_ip(text: str) -> IPAddress:
    """A plain address from its text; ValueError if it is not one (zone ids are refused)."""
    try:
        if ":" in text:
            if "%" in text:
                _refuse(text)
            return make_a6(int.from_bytes(_pton(_AF6, text)))
        return make_a4(int.from_bytes(_pton(_AF4, text)))
    except OSError:
        _refuse(text)
        return ipaddress.ip_address(text)


def parse_net(text: str) -> IPNetwork:
    """A network from ``ADDR/LEN``; ValueError if invalid, host bits are set or it is not
    plain (a zone id, surrounding whitespace)."""
    addr, sep, plen = text.partition("/")
    if sep and plen.isdigit() and plen.isascii() and (len(plen) == 1 or plen[0] != "0"):
        try:
            if ":" in addr:
                p6 = int(plen)
                if p6 <= 128:
                    return make_n6(int.from_bytes(_pton(_AF6, addr)), p6)
            else:
                p4 = int(plen)
                if p4 <= 32:
                    return make_n4(int.from_bytes(_pton(_AF4, addr)), p4)
        except OSError:
            pass
    _refuse(text)
    return ipaddress.ip_network(text)


#: Networks no node address may lie in, beyond those `nosdn.checks` refuses as next hops
#: (unspecified, loopback, multicast, link-local), with the reason.
_UNUSABLE_NODE: tuple[tuple[IPNetwork, str], ...] = (
    (_N4("255.255.255.255/32"), "is the limited broadcast address"),
    (_N4("0.0.0.0/8"), "is in 0.0.0.0/8 (this network: not an address)"),
    (_N4("240.0.0.0/4"), "is in 240.0.0.0/4 (reserved: hosts drop it)"),
    (_N6("::ffff:0:0/96"), "is an IPv4-mapped IPv6 address (write the IPv4 address itself)"),
)

#: Ranges a pod subnet must not overlap, with the reason (most specific first).
_SPECIAL: tuple[tuple[IPNetwork, str], ...] = (
    (_N4("255.255.255.255/32"), "the limited broadcast address 255.255.255.255"),
    (_N4("169.254.0.0/16"), "link-local 169.254.0.0/16 (also the cloud metadata address)"),
    (_N4("127.0.0.0/8"), "loopback 127.0.0.0/8"),
    (_N4("0.0.0.0/8"), "0.0.0.0/8 (this network)"),
    (_N4("224.0.0.0/4"), "multicast 224.0.0.0/4"),
    (_N4("240.0.0.0/4"), "reserved 240.0.0.0/4"),
    (_N6("::/128"), "the unspecified address ::"),
    (_N6("::1/128"), "loopback ::1"),
    (_N6("::ffff:0:0/96"), "IPv4-mapped ::ffff:0:0/96"),
    (_N6("fe80::/10"), "link-local fe80::/10"),
    (_N6("ff00::/8"), "multicast ff00::/8"),
)


def _spans(
    ranges: tuple[tuple[IPNetwork, str], ...],
) -> dict[int, tuple[tuple[int, int, str], ...]]:
    """``ranges`` as (first, last, words) per IP version: a pod subnet is checked against
    them as two integer comparisons each (`ipaddress`'s own overlap test runs in Python)."""
    return {
        v: tuple(
            (int(n.network_address), int(n.broadcast_address), why)
            for n, why in ranges
            if n.version == v
        )
        for v in (4, 6)
    }


def merged(intervals: Iterable[tuple[int, int]]) -> tuple[list[int], list[int]]:
    """The addresses of ``intervals`` (first, last) as sorted, disjoint (starts, ends): whether
    an address or a range meets any of them is then one bisection."""
    starts: list[int] = []
    ends: list[int] = []
    for lo, hi in sorted(intervals):
        if ends and lo <= ends[-1] + 1:
            ends[-1] = max(ends[-1], hi)
        else:
            starts.append(lo)
            ends.append(hi)
    return starts, ends


def _union(spans: tuple[tuple[int, int, str], ...]) -> tuple[list[int], list[int]]:
    """`merged` of the spans' ranges (the usual pod subnet meets none of them)."""
    return merged((lo, hi) for lo, hi, _why in spans)


_UNUSABLE_SPANS = _spans(_UNUSABLE_NODE)
_SPECIAL_SPANS = _spans(_SPECIAL)
_SPECIAL_UNION = {v: _union(spans) for v, spans in _SPECIAL_SPANS.items()}
_UNUSABLE_UNION = {v: _union(spans) for v, spans in _UNUSABLE_SPANS.items()}


def unusable_node_address(ip: IPAddress) -> str | None:
    """Why ``ip`` cannot be a node's address (the rest of the sentence after the address),
    or None. Covers what the next-hop check does not: broadcast, 0.0.0.0/8, 240.0.0.0/4 and
    IPv4-mapped IPv6, which the kernel would take as a gateway and then never reach."""
    value = int(ip)
    starts, ends = _UNUSABLE_UNION[ip.version]
    j = bisect_right(starts, value) - 1
    if j < 0 or ends[j] < value:
        return None
    for lo, hi, why in _UNUSABLE_SPANS[ip.version]:
        if lo <= value <= hi:
            return why
    return None


def special_purpose(net: IPNetwork) -> str | None:
    """The special-purpose range a pod subnet overlaps (multicast, link-local, loopback,
    broadcast, reserved, unspecified, IPv4-mapped), as words for a message, or None:
    pods there would be unreachable or reach what they must not (the cloud metadata)."""
    v = net.version
    lo = int(net.network_address)
    hi = lo | ((1 << ((32 if v == 4 else 128) - net.prefixlen)) - 1)
    starts, ends = _SPECIAL_UNION[v]
    j = bisect_right(starts, hi) - 1
    if j < 0 or ends[j] < lo:
        return None
    for s_lo, s_hi, what in _SPECIAL_SPANS[v]:
        if lo <= s_hi and s_lo <= hi:
            return f"overlaps {what}"
    return None


_ntop = socket.inet_ntop


def net_str(net: IPNetwork) -> str:
    """``str(net)``, but formatted by C (``str`` of an IPv6 network is formatted in Python)."""
    if net.version == 6:
        return f"{_ntop(_AF6, net.network_address.packed)}/{net.prefixlen}"
    return str(net)


def ip_str(ip: IPAddress) -> str:
    if isinstance(ip, ipaddress.IPv6Address) and not ip.ipv4_mapped:
        return _ntop(_AF6, ip.packed)
    return str(ip)
