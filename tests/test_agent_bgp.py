"""The agent's BGP mode without root: the BIRD config it wants (the node's own prefixes only,
peers from flags or the Node annotation, hostile annotation values refused with node, field,
value and fix), the flags' checks, and ``birdc show protocols all`` parsed from output recorded
from BIRD 2.0.12 (tests/golden/birdc/), each down state with the fix it names.

On the wire (BIRD supervised, a real router learning the prefix) is tests/test_agent_bgp_root.py.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from ipaddress import ip_address, ip_network
from pathlib import Path

import pytest

from nosdn.agent.bgp import (
    ASN_ANNOTATION,
    PEERS_ANNOTATION,
    BgpConfigError,
    BgpOptions,
    bird_config,
    node_overrides,
    parse_routers,
)
from nosdn.backends.birdc import Session, parse_protocols
from nosdn.model import Node
from nosdn.render import RenderError

BIRDC = Path(__file__).parent / "golden" / "birdc"
OPTS = BgpOptions(asn=64512, routers=((ip_address("10.10.0.254"), 65000),))
ME = Node("node1", (ip_address("10.10.0.1"),), (ip_network("10.244.1.0/24"),))


def annotated(notes: dict[str, str]) -> dict[str, object]:
    return {"metadata": {"name": "node1", "annotations": notes}}


def test_config_announces_exactly_the_nodes_own_subnet() -> None:
    text = bird_config(ME, OPTS.asn, OPTS.peers, OPTS)
    assert "route 10.244.1.0/24 blackhole;" in text
    assert text.count(" blackhole;") == 1  # nothing else: no default, no other node's subnet
    assert "neighbor 10.10.0.254 as 65000;" in text
    assert "local 10.10.0.1 as 64512;" in text
    assert "graceful restart on;" in text
    assert "import none;" in text
    if shutil.which("bird"):
        with tempfile.NamedTemporaryFile("w", suffix=".conf") as f:
            f.write(text)
            f.flush()
            r = subprocess.run(
                ["bird", "-p", "-c", f.name], capture_output=True, text=True, check=False
            )
            assert r.returncode == 0, r.stderr


def test_bfd_multihop_and_graceful_restart_time_reach_every_session() -> None:
    opts = BgpOptions(
        asn=64512,
        routers=(*OPTS.routers, (ip_address("10.10.0.253"), 65000)),
        bfd=True,
        multihop=3,
        graceful_restart_time=300,
    )
    text = bird_config(ME, opts.asn, opts.peers, opts)
    assert "protocol bfd nosdn_bfd {" in text
    assert text.count("    bfd on;") == 2
    assert text.count("    multihop 3;") == 2
    assert "direct;" not in text
    assert text.count("graceful restart time 300;") == 2
    assert "bfd" not in bird_config(ME, OPTS.asn, OPTS.peers, OPTS)


def test_service_cidrs_only_from_a_service_via_node() -> None:
    opts = BgpOptions(
        asn=64512,
        routers=OPTS.routers,
        service_cidrs=(ip_network("10.96.0.0/12"),),
        service_via=("node2",),
    )
    assert "10.96.0.0/12" not in bird_config(ME, 64512, opts.peers, opts)
    opts = BgpOptions(
        asn=64512,
        routers=OPTS.routers,
        service_cidrs=(ip_network("10.96.0.0/12"),),
        service_via=("node1",),
    )
    assert "route 10.96.0.0/12 blackhole;" in bird_config(ME, 64512, opts.peers, opts)


def test_annotation_overrides_peers_and_asn_for_a_rack() -> None:
    obj = annotated(
        {PEERS_ANNOTATION: "10.20.0.254:65001, [fd00:20::fe]:65001", ASN_ANNOTATION: "64600"}
    )
    asn, peers = node_overrides("node1", obj, OPTS)
    assert asn == 64600
    assert [(str(p.address), p.asn) for p in peers] == [
        ("10.20.0.254", 65001),
        ("fd00:20::fe", 65001),
    ]
    text = bird_config(ME, asn, peers, OPTS)
    assert "neighbor 10.20.0.254 as 65001;" in text
    assert "10.10.0.254" not in text
    assert "local 10.10.0.1 as 64600;" in text


@pytest.mark.parametrize(
    ("notes", "named"),
    [
        ({PEERS_ANNOTATION: "10.20.0.254"}, "10.20.0.254"),
        ({PEERS_ANNOTATION: "10.20.0.254:65001;reboot"}, "65001;reboot"),
        ({PEERS_ANNOTATION: "evil\n}:65000"}, "evil"),
        ({PEERS_ANNOTATION: "fe80::1%eth0:65000"}, "fe80::1%eth0"),
        ({PEERS_ANNOTATION: "10.20.0.254:23456"}, "23456"),
        ({PEERS_ANNOTATION: ","}, PEERS_ANNOTATION),
        ({ASN_ANNOTATION: "0"}, ASN_ANNOTATION),
        ({ASN_ANNOTATION: "64512; }"}, ASN_ANNOTATION),
    ],
)
def test_a_bad_annotation_is_refused_naming_node_field_and_value(
    notes: dict[str, str], named: str
) -> None:
    with pytest.raises(BgpConfigError) as e:
        node_overrides("node1", annotated(notes), OPTS)
    msg = str(e.value)
    assert "node1" in msg
    assert named in msg


def test_a_hostile_node_value_never_reaches_the_config() -> None:
    bad = Node("node1\n}", ME.ips, ME.pod_cidrs)
    with pytest.raises(RenderError):
        bird_config(bad, 64512, OPTS.peers, OPTS)


@pytest.mark.parametrize(
    ("kw", "named"),
    [
        ({"asn": 0}, "--bgp-asn"),
        ({"asn": 23456}, "--bgp-asn"),
        ({"routers": ()}, "--bgp-peer"),
        ({"graceful_restart_time": 0}, "--bgp-graceful-restart-time"),
        ({"multihop": 1}, "--bgp-multihop"),
        ({"routers": ((ip_address("10.0.0.1"), 4294967296),)}, "--bgp-peer 10.0.0.1"),
    ],
)
def test_options_are_checked(kw: dict[str, object], named: str) -> None:
    args: dict[str, object] = {"asn": 64512, "routers": OPTS.routers, **kw}
    with pytest.raises(BgpConfigError, match=named):
        BgpOptions(**args)  # type: ignore[arg-type]


def test_parse_routers_takes_ipv6_in_brackets() -> None:
    assert parse_routers("[fd00::fe]:65000,10.0.0.1:1", "x") == (
        (ip_address("fd00::fe"), 65000),
        (ip_address("10.0.0.1"), 1),
    )


def test_agent_flags_refused_before_anything_starts() -> None:
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parent.parent / "src"))

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "nosdn", "agent", "--node", "n1", *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            check=False,
        )

    r = run("--bgp")
    assert r.returncode == 2
    assert "--bgp-peer ADDRESS:ASN" in r.stderr
    r = run("--bgp", "--bgp-peer", "10.0.0.1")
    assert r.returncode == 2
    assert "10.0.0.1" in r.stderr
    r = run("--bgp-peer", "10.0.0.1:65000")
    assert r.returncode == 2
    assert "--bgp-peer goes with --bgp" in r.stderr
    r = run("--bgp", "--bgp-peer", "10.0.0.1:65000", "--bgp-password-file", "/nonexistent/k")
    assert r.returncode == 2
    assert "/nonexistent/k" in r.stderr


# --- birdc output ------------------------------------------------------------------------------
def test_parse_show_protocols_all() -> None:
    ss = {s.name: s for s in parse_protocols((BIRDC / "show-protocols-all.txt").read_text())}
    assert set(ss) == {"peer_a", "peer_b", "peer_c"}  # BGP only: device and static left out
    a = ss["peer_a"]
    assert a.established
    assert a.neighbor == "10.99.0.254"
    assert a.neighbor_as == 65000
    assert a.local_as == 64512
    assert a.exported == 1
    assert a.since == "11:19:47.198"
    assert a.fix() == ""
    c = ss["peer_c"]
    assert not c.established
    assert c.bgp_state == "Active"
    assert c.last_error == "Socket: No route to host"
    assert "unreachable" in c.fix()
    assert "10.99.0.77" in c.fix()
    assert not ss["peer_b"].established
    assert ss["peer_b"].exported == 0


def test_parse_idle_with_last_error() -> None:
    (s,) = parse_protocols((BIRDC / "show-protocols-idle.txt").read_text())
    assert s.bgp_state == "Idle"
    assert s.last_error == "Received: Other configuration change"


@pytest.mark.parametrize(
    ("error", "state", "fix"),
    [
        ("Received: Bad peer AS", "Idle", "--bgp-asn"),
        ("Error: Bad peer AS", "Idle", "ASN"),
        ("", "Active", "MD5 mismatch"),
        ("Error: Hold timer expired", "Idle", "MD5 mismatch"),
        ("Socket: Connection refused", "Active", "refuses TCP 179"),
    ],
)
def test_fix_of_each_down_state(error: str, state: str, fix: str) -> None:
    s = Session("p", "start", "now", state, "10.0.0.254", 65000, 64512, error)
    assert fix in s.fix()
