"""`nosdn.addr` parses exactly as the standard library does (same objects, same errors), except
that it refuses what is not a plain address: zone ids and surrounding whitespace."""

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
        if "%" in text:
            assert isinstance(ours, tuple), text
            continue
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
        if "%" in text:
            assert isinstance(ours, tuple), text
            continue
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


@pytest.mark.parametrize(
    "text",
    ["fe80::1%eth0", "fe80::1%$(reboot)", "fe80::1%a\nb", "fe80::1%'", " 10.0.0.1", "10.0.0.1\n"],
)
def test_addresses_that_are_not_plain_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match=r"zone id|whitespace"):
        addr.parse_ip(text)


@pytest.mark.parametrize("text", ["fe80::%eth0/64", "fd00::%x/64", "10.0.0.0/8 ", "\t10.0.0.0/8"])
def test_networks_that_are_not_plain_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match=r"zone id|whitespace"):
        addr.parse_net(text)


def test_a_refused_value_is_echoed_cut() -> None:
    with pytest.raises(ValueError, match="zone id") as e:
        addr.parse_ip("fe80::1%" + "x" * 10_000)
    assert len(str(e.value)) < 200
    assert "(10008 chars)" in str(e.value)


@pytest.mark.parametrize(
    ("text", "word"),
    [
        ("255.255.255.255", "broadcast"),
        ("0.1.2.3", "0.0.0.0/8"),
        ("240.0.0.1", "240.0.0.0/4"),
        ("250.1.2.3", "240.0.0.0/4"),
        ("::ffff:10.0.0.1", "IPv4-mapped"),
    ],
)
def test_unusable_node_addresses_say_why(text: str, word: str) -> None:
    why = addr.unusable_node_address(addr.parse_ip(text))
    assert why is not None
    assert word in why


@pytest.mark.parametrize("text", ["10.0.0.1", "192.168.1.1", "fd00::1", "2001:db8::1", "1.0.0.0"])
def test_usual_node_addresses_are_usable(text: str) -> None:
    assert addr.unusable_node_address(addr.parse_ip(text)) is None


@pytest.mark.parametrize(
    ("text", "word"),
    [
        ("224.1.0.0/16", "multicast"),
        ("169.254.0.0/24", "metadata"),
        ("169.0.0.0/8", "169.254.0.0/16"),
        ("127.0.0.0/16", "loopback"),
        ("0.0.0.0/8", "0.0.0.0/8"),
        ("240.0.0.0/8", "240.0.0.0/4"),
        ("255.255.255.0/24", "broadcast"),
        ("fe80::/64", "link-local"),
        ("ff02::/16", "multicast"),
        ("::ffff:0:0/104", "IPv4-mapped"),
        ("::/120", "unspecified"),
    ],
)
def test_special_purpose_pod_subnets_say_which(text: str, word: str) -> None:
    why = addr.special_purpose(addr.parse_net(text))
    assert why is not None
    assert word in why, why


@pytest.mark.parametrize(
    "text", ["10.244.0.0/16", "172.17.1.0/24", "fd00:10::/48", "100.64.0.0/10"]
)
def test_usual_pod_subnets_are_not_special(text: str) -> None:
    assert addr.special_purpose(addr.parse_net(text)) is None
