"""BGP, rendered (issue 14, the static half): the inventory's ``bgp:`` section is checked before
anything, the node's BIRD config announces exactly its own prefixes, the router's side parses
in the real daemons (``bird -p``, FRR's ``bgpd -C``), hostile values are refused, and the MD5
password never reaches a message.

The proof that the filters hold on the wire is tests/test_bgp_root.py (BIRD in namespaces).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import replace
from ipaddress import IPv6Address, ip_address, ip_network
from pathlib import Path

import pytest

from nosdn.model import Bgp, BgpPeer, Cluster, Node, Target
from nosdn.render import RenderError, RenderOptions, read_passwords, render
from nosdn.render.bgp import render_bird_bgp
from nosdn.sources.inventory import load_cluster

GOLDEN = Path(__file__).parent / "golden" / "render"
INV = GOLDEN / "bgp.yaml"
RACK_A = (ip_address("10.10.0.254"), ip_address("fd00:10::fe"))
RACK_B = (ip_address("10.20.0.254"),)
KEY = "n0sdn-md5.key"  # what bgp.password holds
BGPD = Path("/usr/lib/frr/bgpd")


def nosdn(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parent.parent / "src"))
    return subprocess.run(
        [sys.executable, "-m", "nosdn", *args], capture_output=True, text=True, check=False, env=env
    )


def _cluster() -> Cluster:
    return load_cluster(INV, warn=False)


def _render(cluster: Cluster, fmt: str, options: RenderOptions) -> str:
    return render(cluster, fmt, read_passwords(cluster, fmt, options))


def _node(name: str) -> RenderOptions:
    return RenderOptions(target=Target.for_node(name))


# --- the inventory --------------------------------------------------------------------------


def test_the_section_becomes_the_model() -> None:
    bgp = _cluster().bgp
    assert bgp is not None
    assert (bgp.asn, bgp.graceful_restart_time) == (64512, 300)
    assert bgp.node_networks == (ip_network("10.10.0.0/24"), ip_network("fd00:10::/64"))
    assert bgp.asn_of("node3.rack-b.example.com") == 64513
    assert bgp.asn_of("node1") == 64512
    a, _, b = bgp.peers
    assert a == BgpPeer(
        ip_address("10.10.0.254"), 65000, str(GOLDEN / "bgp.password"), 0, True, ("node1", "node2")
    )  # the password file is relative to the inventory
    assert (b.multihop, b.bfd, bgp.listen_of(b)) == (4, False, (ip_network("10.20.0.0/24"),))
    assert bgp.listen_of(a) == bgp.node_networks


BASE = """\
clusterCIDRs: [172.17.0.0/16]
serviceCIDRs: [10.96.0.0/12]
bgp:
  asn: {asn}
  nodeNetworks: [{nets}]
  peers:
    - {{address: {peer}, asn: 65000{extra}}}
nodes:
  - {{name: node1, ip: 10.10.0.1, podCIDR: 172.17.1.0/24{node_extra}}}
  - {{name: node2, ip: 10.10.0.2, podCIDR: 172.17.2.0/24}}
"""
GOOD = {
    "asn": "64512",
    "nets": "10.10.0.0/24",
    "peer": "10.10.0.254",
    "extra": "",
    "node_extra": "",
}

BAD = [
    ({"asn": "0"}, "bgp.asn 0: is not an AS number (a whole number from 1 to 4294967295)"),
    ({"asn": "4294967296"}, "bgp.asn 4294967296: is not an AS number"),
    ({"asn": "23456"}, "bgp.asn 23456: is AS_TRANS"),
    ({"asn": '"64512"'}, "bgp.asn 64512: is not an AS number"),
    ({"peer": "10.10.0.1"}, "bgp.peers[0].address 10.10.0.1: is node node1's own address"),
    ({"peer": "172.17.1.9"}, "bgp.peers[0].address 172.17.1.9: lies inside clusterCIDRs"),
    ({"peer": "10.96.0.1"}, "bgp.peers[0].address 10.96.0.1: lies inside serviceCIDRs"),
    ({"peer": '"10.10.0.254%eth0"'}, "bgp.peers[0].address 10.10.0.254%eth0: is not a plain IP"),
    ({"peer": "127.0.0.1"}, "bgp.peers[0].address 127.0.0.1: cannot be a BGP peer"),
    ({"peer": "fd00::fe"}, "none of its nodes has an IPv6 address to peer from"),
    ({"extra": ", asn: 70000000000"}, None),  # YAML duplicate key: refused by the parser
    ({"extra": ", multihop: 1"}, "bgp.peers[0].multihop 1: is neither true/false nor a TTL"),
    ({"extra": ", multihop: 300"}, "bgp.peers[0].multihop 300"),
    ({"extra": ", bfd: yes"}, "bgp.peers[0].bfd yes: is not true or false"),
    ({"extra": ", nodes: [node9]"}, "bgp.peers[0].nodes node9: names no node of the inventory"),
    ({"extra": ", colour: red"}, "bgp.peers[0].colour red: is not a known field"),
    ({"extra": ', passwordFile: "a\\nb"'}, "bgp.peers[0].passwordFile 'a\\nb': is not a file"),
    ({"nets": "172.17.0.0/20"}, "bgp.nodeNetworks 172.17.0.0/20: overlaps clusterCIDRs"),
    ({"nets": "0.0.0.0/0"}, "bgp.nodeNetworks 0.0.0.0/0: is too short a prefix"),
    ({"nets": "10.10.0.0/24, fd00:10::/64"}, "bgp.nodeNetworks fd00:10::/64: is IPv6 but there "
     "is no IPv6 clusterCIDRs"),
    ({"node_extra": ", asn: -5"}, "node node1: asn -5: is not an AS number"),
]  # fmt: skip


@pytest.mark.parametrize(("change", "message"), BAD, ids=[str(c) for c, _ in BAD])
def test_a_bad_value_is_refused_naming_field_and_value(
    tmp_path: Path, change: dict[str, str], message: str | None
) -> None:
    f = tmp_path / "inv.yaml"
    f.write_text(BASE.format(**{**GOOD, **change}))
    r = nosdn("check", "-f", str(f))
    assert r.returncode == 2, r.stdout + r.stderr
    if message is not None:
        assert message in r.stderr, r.stderr
    # and nothing renders from it
    assert nosdn("render", "-f", str(f), "--format", "frr", "--bgp").returncode == 2


def test_the_good_base_passes(tmp_path: Path) -> None:
    f = tmp_path / "inv.yaml"
    f.write_text(BASE.format(**GOOD))
    r = nosdn("check", "-f", str(f))
    assert r.returncode == 0, r.stderr


def test_a_node_asn_without_a_bgp_section_is_refused(tmp_path: Path) -> None:
    f = tmp_path / "inv.yaml"
    f.write_text("nodes:\n  - {name: n1, ip: 10.0.0.1, podCIDR: 172.17.1.0/24, asn: 64512}\n")
    r = nosdn("check", "-f", str(f))
    assert r.returncode == 2
    assert "node n1: asn 64512: is set but the inventory has no bgp: section" in r.stderr


# --- the node's side --------------------------------------------------------------------------


def _announced(text: str) -> set[str]:
    """Every prefix the config can export: its static routes and what its filters accept."""
    routes = set(re.findall(r"^\s+route (\S+) blackhole;", text, re.M))
    sets = re.findall(r"net ~ \[ ([^\]]*) \]", text)
    accepted = {p.strip() for s in sets for p in s.split(",")}
    assert routes == accepted, (routes, accepted)
    return routes


def test_a_node_announces_exactly_its_own_prefixes() -> None:
    cluster = _cluster()
    expected = {
        "node1": {"172.17.1.0/24", "fd00:17:0:1::/64", "10.96.0.0/12"},  # serviceVia
        "node2": {"172.17.2.0/24", "fd00:17:0:2::/64"},
        "node3.rack-b.example.com": {"172.17.3.0/24"},
    }
    for name, own in expected.items():
        text = _render(cluster, "bird-node", _node(name))
        assert _announced(text) == own
        assert "0.0.0.0/0" not in text
        assert "::/0" not in text
        assert text.count("import none;") == text.count("protocol bgp ")
        assert "protocol kernel" not in text  # BIRD never touches the node's routes


def test_a_node_peers_only_with_its_routers_in_their_family() -> None:
    text = _render(_cluster(), "bird-node", _node("node3.rack-b.example.com"))
    assert re.findall(r"neighbor (\S+) as (\d+);", text) == [("10.20.0.254", "65001")]
    assert "local 10.20.0.3 as 64513;" in text  # the node's own ASN and address
    assert "multihop 4;" in text
    assert "password" not in text
    assert "bfd" not in text
    text = _render(_cluster(), "bird-node", _node("node1"))
    assert re.findall(r"neighbor (\S+) as", text) == ["10.10.0.254", "fd00:10::fe"]
    v6 = text.split("protocol bgp nosdn_peer_fd00_10__fe", 1)[1]
    assert "local fd00:10::1 as 64512;" in v6
    assert "export filter nosdn_export_v6;" in v6
    assert "graceful restart time 300;" in v6
    assert "bfd on;" in v6
    assert f'password "{KEY}";' in v6


@pytest.mark.skipif(not shutil.which("bird"), reason="bird2 is not installed")
def test_bird_parses_every_rendered_config(tmp_path: Path) -> None:
    cluster = _cluster()
    texts = {n.name: _render(cluster, "bird-node", _node(n.name)) for n in cluster.nodes}
    for label, peers in (("a", RACK_A), ("b", RACK_B)):
        options = read_passwords(cluster, "bird", RenderOptions(bgp=True, peers=peers))
        texts[f"router-{label}"] = render(cluster, "bird", options)
        texts[f"router-{label}-standalone"] = render_bird_bgp(cluster, options, standalone=True)
    for label, text in texts.items():
        f = tmp_path / "b.conf"
        f.write_text(text)
        res = subprocess.run(
            ["bird", "-p", "-c", str(f)], capture_output=True, text=True, check=False
        )
        assert res.returncode == 0, f"{label}: {res.stderr}\n{text}"
    f.write_text(texts["node1"].replace("export filter", "export fitler", 1))
    assert (
        subprocess.run(["bird", "-p", "-c", str(f)], capture_output=True, check=False).returncode
        != 0
    )


# --- the router's side -------------------------------------------------------------------------


def _bgpd_complaints(text: str) -> list[str]:
    """What FRR's bgpd says when it loads ``text`` (``-C``: check and exit); as user frr, so
    from a copy in a directory of its own. ``vtysh -C`` checks syntax only; bgpd also says
    "% Configure the peer-group first" and the like."""
    with tempfile.TemporaryDirectory(prefix="nosdn-frr-") as d:
        os.chmod(d, 0o755)
        copy = Path(d) / "frr.conf"
        copy.write_text(text)
        copy.chmod(0o644)
        proc = subprocess.Popen(
            [str(BGPD), "-C", "-f", str(copy)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        out, _ = proc.communicate(timeout=60)
    shutil.rmtree(f"/var/tmp/frr/bgpd.{proc.pid}", ignore_errors=True)  # its crash-log dir
    return [ln for ln in out.decode().splitlines() if ln.strip()]


@pytest.mark.skipif(not shutil.which("vtysh"), reason="frr is not installed")
@pytest.mark.parametrize("peers", [RACK_A, RACK_B, RACK_A[:1]], ids=["a", "b", "a-v4"])
def test_frr_loads_the_router_config(tmp_path: Path, peers: tuple[IPv6Address, ...]) -> None:
    text = _render(_cluster(), "frr", RenderOptions(bgp=True, peers=peers))
    f = tmp_path / "frr.conf"
    f.write_text(text)
    res = subprocess.run(["vtysh", "-C", "-f", str(f)], capture_output=True, text=True, check=False)
    assert res.returncode == 0, res.stdout + res.stderr
    if BGPD.exists() and os.geteuid() == 0:
        assert _bgpd_complaints(text) == []
        # and bgpd does complain about a broken one, so the check above means something
        broken = text.replace(" neighbor NOSDN-Prod_EU_1-NODES peer-group\n", "")
        assert broken != text
        assert any("peer-group" in ln for ln in _bgpd_complaints(broken))


def test_the_router_accepts_only_pod_subnets_at_the_node_mask() -> None:
    text = _render(_cluster(), "frr", RenderOptions(bgp=True, peers=RACK_A))
    lists = re.findall(r"^(ip|ipv6) prefix-list (\S+) seq \d+ (.*)$", text, re.M)
    assert lists == [
        ("ip", "NOSDN-Prod_EU_1-V4", "permit 172.17.0.0/16 ge 24 le 24"),
        ("ip", "NOSDN-Prod_EU_1-node1-V4", "permit 172.17.1.0/24"),
        ("ip", "NOSDN-Prod_EU_1-node1-V4", "permit 10.96.0.0/12"),
        ("ip", "NOSDN-Prod_EU_1-node2-V4", "permit 172.17.2.0/24"),
        ("ipv6", "NOSDN-Prod_EU_1-V6", "permit fd00:17::/56 ge 64 le 64"),
        ("ipv6", "NOSDN-Prod_EU_1-node1-V6", "permit fd00:17:0:1::/64"),
        ("ipv6", "NOSDN-Prod_EU_1-node2-V6", "permit fd00:17:0:2::/64"),
    ]
    # node3 peers with the other router: not a neighbour here; the listen ranges are rack a's
    assert "10.20.0.3" not in text
    assert "10.20.0.0/24" not in text
    assert re.findall(r"bgp listen range (\S+)", text) == ["10.10.0.0/24", "fd00:10::/64"]
    for fmt in ("bird", "cisco", "junos"):
        other = _render(_cluster(), fmt, RenderOptions(bgp=True, peers=RACK_B))
        assert "10.20.0.3" in other
        assert "10.10.0.1" not in other
        assert "172.17.1.0/24" not in other


def test_different_routers_need_peer() -> None:
    with pytest.raises(RenderError, match=r"differ in asn .* --peer ADDRESS"):
        render(_cluster(), "frr", RenderOptions(bgp=True))
    with pytest.raises(RenderError, match=r"not one of bgp\.peers"):
        render(_cluster(), "frr", RenderOptions(bgp=True, peers=(ip_address("10.9.9.9"),)))


def test_cli_refuses_what_bgp_cannot_take(tmp_path: Path) -> None:
    inv = str(INV)
    r = nosdn("render", "-f", inv, "--format", "script", "--bgp")
    assert r.returncode == 2
    assert "--bgp is for the router formats" in r.stderr
    r = nosdn("render", "-f", inv, "--format", "frr", "--peer", "10.10.0.254")
    assert r.returncode == 2
    assert "--peer goes with --bgp" in r.stderr
    r = nosdn("render", "-f", inv, "--format", "frr", "--bgp", "--node", "node1")
    assert r.returncode == 2
    assert "neither --node nor --external" in r.stderr
    r = nosdn("render", "-f", inv, "--format", "bird-node")
    assert r.returncode == 2
    assert "give --node NAME" in r.stderr
    plain = tmp_path / "plain.yaml"
    plain.write_text("nodes:\n  - {name: n1, ip: 10.0.0.1, podCIDR: 172.17.1.0/24}\n")
    r = nosdn("render", "-f", str(plain), "--format", "bird", "--bgp")
    assert r.returncode == 2
    assert "needs the inventory's bgp: section" in r.stderr


# --- the password ----------------------------------------------------------------------------


def _with_key(tmp_path: Path, key: bytes) -> Path:
    (tmp_path / "bgp.password").write_bytes(key)
    inv = tmp_path / "bgp.yaml"
    inv.write_text(INV.read_text())
    return inv


def test_the_password_file_is_read_and_the_output_is_0600(tmp_path: Path) -> None:
    inv = _with_key(tmp_path, b"s3cret-Key\n")
    out = tmp_path / "out"
    r = nosdn("render", "-f", str(inv), "--format", "bird-node-systemd", "--node", "node1",
              "--out", str(out))  # fmt: skip
    assert r.returncode == 0, r.stderr
    conf = out / "etc/nosdn/bird-node.conf"
    assert 'password "s3cret-Key";' in conf.read_text()
    assert conf.stat().st_mode & 0o777 == 0o600
    assert "s3cret-Key" not in r.stderr
    r = nosdn("render", "-f", str(inv), "--format", "frr", "--bgp", "--peer", "10.20.0.254",
              "--out", str(out))  # fmt: skip
    assert r.returncode == 0
    assert (out / "nosdn-frr-bgp.conf").stat().st_mode & 0o777 == 0o644


@pytest.mark.parametrize(
    "key",
    [b'ab"\n}\nprotocol static evil { ipv4; route 0.0.0.0/0 blackhole; }\n', b"two words",
     b"x\x00y", b"line\nvty", b"", b"\xff\xfe", b"k" * 81, b"semi;colon", b"bang!"],
)  # fmt: skip
def test_a_bad_password_is_refused_without_showing_it(tmp_path: Path, key: bytes) -> None:
    inv = _with_key(tmp_path, key)
    for args in (["--format", "bird-node", "--node", "node1"],
                 ["--format", "frr", "--bgp", "--peer", "10.10.0.254"]):  # fmt: skip
        r = nosdn("render", "-f", str(inv), *args)
        assert r.returncode == 2, r.stdout
        assert "bgp peer 10.10.0.254 passwordFile" in r.stderr
        assert "not shown" in r.stderr
        assert r.stdout == ""
        for part in (b"evil", b"words", b"vty", b"colon", b"bang", b"kkkk"):
            if part in key:
                assert part.decode() not in r.stderr


def test_a_missing_password_file_names_the_peer_and_file(tmp_path: Path) -> None:
    inv = tmp_path / "bgp.yaml"
    inv.write_text(INV.read_text())
    r = nosdn("render", "-f", str(inv), "--format", "bird-node", "--node", "node2")
    assert r.returncode == 2
    assert f"bgp peer 10.10.0.254 passwordFile {tmp_path}/bgp.password: cannot read it" in r.stderr


def test_cisco_refuses_a_password_longer_than_ios_takes(tmp_path: Path) -> None:
    inv = _with_key(tmp_path, b"a" * 26)
    r = nosdn("render", "-f", str(inv), "--format", "cisco", "--bgp", "--peer", "10.10.0.254")
    assert r.returncode == 2
    assert "at most 25" in r.stderr
    assert "a" * 26 not in r.stderr


# --- hostile values, past every input check -----------------------------------------------------

PAYLOAD = "x\n}\nprotocol static evil { ipv4; route 0.0.0.0/0 blackhole; }\nline vty\n"


def _hostile(field: str) -> Cluster:
    n1 = Node("node1", (ip_address("10.10.0.1"),), (ip_network("172.17.1.0/24"),))
    n2 = Node("node2", (ip_address("10.10.0.2"),), (ip_network("172.17.2.0/24"),))
    peer = BgpPeer(ip_address("10.10.0.254"), 65000)
    bgp = Bgp(64512, (peer,), node_networks=(ip_network("10.10.0.0/24"),))
    cluster = Cluster((n1, n2), cluster_cidrs=(ip_network("172.17.0.0/16"),), bgp=bgp)
    if field == "cluster name":
        return replace(cluster, name=PAYLOAD)
    if field == "node name":
        return replace(cluster, nodes=(n1, replace(n2, name="node2\n" + PAYLOAD)))
    if field == "node address":
        zone = IPv6Address("fd00:10::2%x\n}\nline vty")
        return replace(cluster, nodes=(n1, replace(n2, ips=(*n2.ips, zone))))
    if field == "peer address":
        zone = "x\n}\nline vty\nprotocol static evil { ipv4; route 0.0.0.0 blackhole; }"
        bad = BgpPeer(IPv6Address("fd00::fe%" + zone), 65000)  # type: ignore[arg-type]
        return replace(cluster, bgp=replace(bgp, peers=(bad,)))
    if field == "peer nodes":
        return replace(cluster, bgp=replace(bgp, peers=(replace(peer, nodes=(PAYLOAD,)),)))
    if field == "node asn":
        return replace(cluster, bgp=replace(bgp, node_asns=(("node1", "1; evil"),)))  # type: ignore[arg-type]
    if field == "peer asn":
        return replace(cluster, bgp=replace(bgp, peers=(replace(peer, asn=2**32),)))
    if field == "multihop":
        return replace(cluster, bgp=replace(bgp, peers=(replace(peer, multihop="4; evil"),)))  # type: ignore[arg-type]
    if field == "graceful restart":
        return replace(cluster, bgp=replace(bgp, graceful_restart_time=10**6))
    raise AssertionError(field)


HOSTILE = ["cluster name", "node name", "node address", "peer address", "peer nodes",
           "node asn", "peer asn", "multihop", "graceful restart"]  # fmt: skip


@pytest.mark.parametrize("field", HOSTILE)
@pytest.mark.parametrize(
    ("fmt", "options"),
    [("bird-node", _node("node1")), *((f, RenderOptions(bgp=True)) for f in
                                      ("frr", "bird", "cisco", "junos"))],
    ids=["bird-node", "frr", "bird", "cisco", "junos"],
)  # fmt: skip
def test_hostile_values_are_refused_or_harmless(
    tmp_path: Path, field: str, fmt: str, options: RenderOptions
) -> None:
    cluster = _hostile(field)
    if field != "cluster name":
        with pytest.raises(RenderError, match="refusing") as e:
            render(cluster, fmt, options)
        assert "\n" not in str(e.value)
        return
    text = render(cluster, fmt, options)
    assert "evil" not in "".join(ln for ln in text.splitlines() if not ln.startswith(("#", "!")))
    assert not any(ln.startswith(("line", "protocol static evil")) for ln in text.splitlines())
    if fmt.startswith("bird") and shutil.which("bird"):
        f = tmp_path / "b.conf"
        f.write_text(text)
        res = subprocess.run(
            ["bird", "-p", "-c", str(f)], capture_output=True, text=True, check=False
        )
        assert res.returncode == 0, res.stderr
    if fmt == "frr" and shutil.which("vtysh"):
        f = tmp_path / "frr.conf"
        f.write_text(text)
        res = subprocess.run(
            ["vtysh", "-C", "-f", str(f)], capture_output=True, text=True, check=False
        )
        assert res.returncode == 0, res.stdout + res.stderr


def test_names_that_derive_one_symbol_get_distinct_ones() -> None:
    nodes = tuple(
        Node(n, (ip_address(f"10.10.0.{i + 1}"),), (ip_network(f"172.17.{i + 1}.0/24"),))
        for i, n in enumerate(("a-b", "a_b", "a.b"))
    )
    bgp = Bgp(64512, (BgpPeer(ip_address("10.10.0.254"), 65000),))
    cluster = Cluster(nodes, cluster_cidrs=(ip_network("172.17.0.0/16"),), bgp=bgp)
    text = render(cluster, "bird", RenderOptions(bgp=True))
    protos = re.findall(r"^protocol bgp (\S+)", text, re.M)
    filters = re.findall(r"^filter (\S+)", text, re.M)
    assert len(set(protos)) == 3
    assert len(set(filters)) == 4
