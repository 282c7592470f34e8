"""Lookup sharing (`_lookup_sharing`) decided from recorded kernel dumps (no root).

The dumps were recorded from scratch namespaces by ``record_lookup_sharing_dumps.py`` (its
scenarios say what each holds); the root tests in ``test_kernel_lookup_sharing_root.py``
check the same decisions against the kernel's own answers.
"""

from __future__ import annotations

import json
from ipaddress import ip_address
from pathlib import Path

import pytest

from nosdn.backends.kernel._lookup_sharing import default_rules, shared_lookups

DUMPS = json.loads((Path(__file__).with_name("kernel_dumps") / "lookup_sharing.json").read_text())


def dump(scenario: str, what: str) -> list[bytes]:
    return [bytes.fromhex(h) for h in DUMPS[scenario][what]]


def leaders(scenario: str, *addresses: str) -> dict[str, str | None]:
    """Each address -> the address whose lookup it takes, or None (looked up itself)."""
    v = "4" if ip_address(addresses[0]).version == 4 else "6"
    gws = [ip_address(a).packed for a in addresses]
    got = shared_lookups(gws, dump(scenario, f"main{v}"), dump(scenario, f"local{v}"))
    return {
        a: None if g is None else str(ip_address(g)) for a, g in zip(addresses, got, strict=True)
    }


@pytest.mark.parametrize("scenario", ["host", "more_specific", "not_plain"])
def test_the_default_rules_are_recognised(scenario: str) -> None:
    assert default_rules(dump(scenario, "rules4"))
    assert default_rules(dump(scenario, "rules6"))


def test_an_extra_rule_turns_sharing_off_for_its_family() -> None:
    assert not default_rules(dump("extra_rule", "rules4"))
    assert default_rules(dump("extra_rule", "rules6"))


def test_missing_default_rules_are_not_the_defaults() -> None:
    rules = dump("host", "rules4")
    assert not default_rules([])
    assert not default_rules(rules[1:])  # no "lookup local"


def test_addresses_on_one_connected_network_share_one_lookup() -> None:
    got = leaders(
        "host",
        "10.0.0.10",
        "10.0.0.11",
        "10.0.200.5",
        "192.168.50.7",
        "192.168.50.8",
        "172.31.0.5",  # under no connected route
    )
    assert got == {
        "10.0.0.10": None,
        "10.0.0.11": "10.0.0.10",
        "10.0.200.5": "10.0.0.10",
        "192.168.50.7": None,
        "192.168.50.8": "192.168.50.7",
        "172.31.0.5": None,
    }
    six = leaders("host", "fd00::2", "fd00::3", "fd00::ffff")
    assert six == {"fd00::2": None, "fd00::3": "fd00::2", "fd00::ffff": "fd00::2"}


def test_addresses_under_a_local_table_route_are_looked_up_alone() -> None:
    """An address of this host (10.0.9.9/32 on another device) and the /16's broadcast
    address have local-table routes: the kernel answers them differently."""
    got = leaders("host", "10.0.0.10", "10.0.9.9", "10.0.255.255", "10.0.0.1", "10.0.0.12")
    assert got == {
        "10.0.0.10": None,
        "10.0.9.9": None,
        "10.0.255.255": None,
        "10.0.0.1": None,
        "10.0.0.12": "10.0.0.10",
    }
    assert leaders("host", "fd00::1", "fd00::2", "fd00::3")["fd00::1"] is None


def test_addresses_under_a_more_specific_route_are_looked_up_alone() -> None:
    got = leaders(
        "more_specific",
        "10.0.4.10",
        "10.0.4.11",
        "10.0.5.10",  # under 10.0.5.0/24 via 10.0.0.254
        "10.0.7.7",  # a blackhole /32
        "10.0.3.5",  # a tos route: still a more specific route of main
    )
    assert got == {
        "10.0.4.10": None,
        "10.0.4.11": "10.0.4.10",
        "10.0.5.10": None,
        "10.0.7.7": None,
        "10.0.3.5": None,
    }
    six = leaders("more_specific", "fd00::2", "fd00::81", "fd00::3")
    assert six == {"fd00::2": None, "fd00::81": None, "fd00::3": "fd00::2"}


def test_multipath_gateway_and_nexthop_routes_are_never_shared() -> None:
    """Routes that are not plain connected ones (multipath without gateways, a gateway route,
    a route through a nexthop object) give no representative: each address on its own."""
    got = leaders(
        "not_plain",
        "10.2.0.5",
        "10.2.0.6",
        "10.3.1.5",
        "10.3.1.6",
        "10.4.0.5",
        "10.4.0.6",
        "10.0.0.10",
        "10.0.0.11",
    )
    assert got == {
        "10.2.0.5": None,
        "10.2.0.6": None,
        "10.3.1.5": None,
        "10.3.1.6": None,
        "10.4.0.5": None,
        "10.4.0.6": None,
        "10.0.0.10": None,
        "10.0.0.11": "10.0.0.10",
    }


def test_a_single_gateway_is_never_shared() -> None:
    assert leaders("host", "10.0.0.10") == {"10.0.0.10": None}
