"""`nosdn.addr` parses exactly as the standard library does: same objects, same errors."""

from __future__ import annotations

import ipaddress
import random
from itertools import islice

import pytest

from nosdn import addr


def _outcome(fn: object, text: str) -> object:
    try:
        return fn(text)  # type: ignore[operator]
    except ValueError as e:
        return ("ValueError", str(e))


def _texts(rng: random.Random) -> list[str]:
    out = []
    for _ in range(3000):
        plen = rng.choice([0, 1, 8, 16, 24, 26, 30, 31, 32, 33, rng.randrange(0, 40)])
        v4 = ipaddress.IPv4Address(rng.getrandbits(32))
        net = ipaddress.IPv4Network((int(v4) & ~((1 << (32 - min(plen, 32))) - 1), min(plen, 32)))
        out += [f"{net.network_address}/{plen}", f"{v4}/{plen}", str(v4)]
        plen6 = rng.choice([0, 48, 64, 120, 126, 127, 128, 129, rng.randrange(0, 140)])
        v6 = ipaddress.IPv6Address(rng.getrandbits(128))
        bits = min(plen6, 128)
        n6 = ipaddress.IPv6Network((int(v6) >> (128 - bits) << (128 - bits) if bits else 0, bits))
        out += [f"{n6.network_address}/{plen6}", f"{v6}/{plen6}", str(v6)]
    return [
        *out,
        "10.0.0.0/08",
        "10.0.0.0/+8",
        "10.1/16",
        "010.0.0.0/8",
        "fe80::1%eth0",
        "fe80::/64",
        "::ffff:10.0.0.0/120",
        "1.2.3.4/",
        "/24",
        "",
        "10.0.0.0/٣",
    ]


def test_networks_are_the_standard_librarys() -> None:
    for text in _texts(random.Random(7)):
        if "/" not in text:
            continue
        ours = _outcome(addr.parse_net, text)
        std = _outcome(ipaddress.ip_network, text)
        assert ours == std, text
        if isinstance(std, ipaddress.IPv4Network | ipaddress.IPv6Network):
            assert type(ours) is type(std), text
            assert hash(ours) == hash(std), text
            assert str(ours) == str(std), text
            assert ours.broadcast_address == std.broadcast_address, text  # type: ignore[union-attr]
            assert ours.num_addresses == std.num_addresses, text  # type: ignore[union-attr]
            assert list(islice(ours.hosts(), 3)) == list(islice(std.hosts(), 3)), text  # type: ignore[union-attr]
            shared = {k: v for k, v in vars(std).items() if k != "hosts"}
            assert {k: v for k, v in vars(ours).items() if k != "hosts"} == shared, text


def test_addresses_are_the_standard_librarys() -> None:
    for text in _texts(random.Random(11)):
        if "/" in text:
            continue
        ours = _outcome(addr.parse_ip, text)
        std = _outcome(ipaddress.ip_address, text)
        assert ours == std, text
        if isinstance(std, ipaddress.IPv4Address | ipaddress.IPv6Address):
            assert type(ours) is type(std), text
            assert hash(ours) == hash(std), text
            assert str(ours) == str(std), text
            assert ours.packed == std.packed, text  # type: ignore[union-attr]


def test_the_quick_constructors_are_in_use_here() -> None:
    """On this CPython the check at import passes (else the speed figures would not hold)."""
    assert addr.make_n4 is not addr._plain_n4
    assert addr.make_a6 is not addr._plain_a6


@pytest.mark.parametrize("text", ["10.0.0.1/24", "fd00::1/64"])
def test_host_bits_error_is_the_standard_one(text: str) -> None:
    with pytest.raises(ValueError, match="has host bits set"):
        addr.parse_net(text)
