"""Shared route lookups (`_lookup_sharing`): one lookup per connected network must give, for every
next hop, exactly the verdict a lookup of its own gives (root, in namespaces).

Each test compares the backend's adjacency verdicts (sharing on: many next hops) with the
kernel's answer to a lookup per next hop, made on the same namespace, and counts how many
lookups the backend really sent.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from ipaddress import IPv4Address, IPv6Address, ip_address

import pytest

from conftest import ip, requires_root
from nosdn.backends.kernel import KernelBackend, _lookup_sharing
from nosdn.backends.kernel import _netlink as nl

pytestmark = [pytest.mark.root, requires_root]

Addr = IPv4Address | IPv6Address


def host(netns: Callable[..., str]) -> str:
    ns = netns("nosdn-adj")
    ip(ns, "link", "add", "br0", "type", "bridge")
    ip(ns, "link", "set", "br0", "up")
    ip(ns, "addr", "add", "10.0.0.1/16", "dev", "br0")
    ip(ns, "addr", "add", "fd00::1/64", "dev", "br0", "nodad")
    ip(ns, "link", "add", "d1", "type", "veth", "peer", "name", "d1p")
    ip(ns, "link", "set", "d1", "up")
    ip(ns, "link", "set", "d1p", "up")
    ip(ns, "addr", "add", "10.0.9.9/32", "dev", "d1")  # an address of this host inside 10.0/16
    ip(ns, "addr", "add", "192.168.50.1/24", "dev", "d1")
    return ns


def peers4() -> list[Addr]:
    return [ip_address(f"10.0.{i // 50}.{10 + i % 50}") for i in range(600)] + [
        ip_address("10.0.9.9"),  # this host
        ip_address("10.0.255.255"),  # the connected network's broadcast address
        ip_address("192.168.50.7"),  # a second connected network
        ip_address("192.168.50.8"),
        ip_address("172.31.0.5"),  # nowhere
    ]


def peers6() -> list[Addr]:
    return [ip_address(f"fd00::{i:x}") for i in range(2, 300)] + [ip_address("fd00::1")]


def one_by_one(ns: str, gws: Sequence[Addr]) -> dict[Addr, tuple[bool, str | None]]:
    """The verdict from a lookup of each next hop on its own (sharing off)."""
    with KernelBackend(netns=ns) as b:
        b._shared_lookups = lambda gws: [None] * len(gws)  # type: ignore[method-assign]
        return {g: (v.on_link, v.reason) for g, v in b.adjacency(gws).items()}


def shared(ns: str, gws: Sequence[Addr]) -> tuple[dict[Addr, tuple[bool, str | None]], int]:
    """The verdicts with sharing on, and how many lookups the kernel was sent."""
    with KernelBackend(netns=ns) as b:
        sent = 0
        real = b.nl.lookup

        def counting(dsts: Sequence[bytes]) -> list[nl.Lookup]:
            nonlocal sent
            sent += len(dsts)
            return real(dsts)

        b.nl.lookup = counting  # type: ignore[method-assign]
        verdicts = {g: (v.on_link, v.reason) for g, v in b.adjacency(gws).items()}
        return verdicts, sent


def test_one_lookup_per_connected_network_same_verdicts(netns: Callable[..., str]) -> None:
    ns = host(netns)
    gws = peers4() + peers6()
    got, sent = shared(ns, gws)
    assert got == one_by_one(ns, gws)
    assert got[ip_address("10.0.0.10")] == (True, None)
    assert got[ip_address("10.0.9.9")] == (False, "it is an address of this host")
    assert not got[ip_address("10.0.255.255")][0]  # broadcast: never a next hop
    assert not got[ip_address("172.31.0.5")][0]
    # 10.0/16, 192.168.50/24 and fd00::/64 one lookup each, plus the ones under local-table
    # routes (10.0.9.9, 10.0.255.255, fd00::1) and the one under no connected route
    assert sent <= 3 + 3 + 1 + 2


def test_more_specific_routes_are_looked_up_one_by_one(netns: Callable[..., str]) -> None:
    ns = host(netns)
    ip(ns, "route", "add", "10.0.5.0/24", "via", "10.0.0.254", "proto", "static")
    ip(ns, "route", "add", "blackhole", "10.0.7.7/32")
    ip(ns, "route", "add", "10.0.3.0/24", "dev", "br0", "tos", "0x10")  # tos: not for lookups
    ip(ns, "-6", "route", "add", "fd00::80/121", "via", "fd00::fe")
    gws = peers4() + peers6() + [ip_address("10.0.7.7")]
    got, sent = shared(ns, gws)
    assert got == one_by_one(ns, gws)
    detour = got[ip_address("10.0.5.10")]
    assert detour[0] is False
    assert "via 10.0.0.254" in str(detour[1])
    assert not got[ip_address("10.0.7.7")][0]  # the kernel answers a blackhole with EINVAL
    assert not got[ip_address("fd00::81")][0]
    assert got[ip_address("10.0.4.10")] == (True, None)
    assert sent < len(gws) // 2  # still shared where it is safe


def test_policy_rules_turn_sharing_off(netns: Callable[..., str]) -> None:
    """A rule that sends part of the connected network elsewhere: the kernel's answer is no
    longer the main table's, so nothing may be shared (a wrong share says on-link here)."""
    ns = host(netns)
    ip(ns, "route", "add", "10.0.2.0/24", "via", "10.0.0.254", "table", "100")
    ip(ns, "rule", "add", "to", "10.0.2.0/24", "lookup", "100", "priority", "100")
    gws = peers4()
    got, sent = shared(ns, gws)
    assert got == one_by_one(ns, gws)
    assert not got[ip_address("10.0.2.10")][0]
    assert sent >= len(gws)  # every IPv4 next hop asked on its own


def test_default_rules_are_recognised(netns: Callable[..., str]) -> None:
    ns = host(netns)
    with nl.Netlink(ns) as link:
        assert _lookup_sharing.default_rules(link.rule_payloads(nl.socket.AF_INET))
        assert _lookup_sharing.default_rules(link.rule_payloads(nl.socket.AF_INET6))
    ip(ns, "rule", "add", "fwmark", "7", "lookup", "main", "priority", "200")
    with nl.Netlink(ns) as link:
        assert not _lookup_sharing.default_rules(link.rule_payloads(nl.socket.AF_INET))
        assert _lookup_sharing.default_rules(link.rule_payloads(nl.socket.AF_INET6))
