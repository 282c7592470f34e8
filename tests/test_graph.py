"""`nosdn graph`: the picture's content (pure), its dot and Mermaid text, and SVG/PNG drawn by
Graphviz (skipped where Graphviz is not installed)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from ipaddress import ip_address, ip_network
from pathlib import Path
from xml.etree import ElementTree

import pytest

from nosdn.model import Cluster, Node
from nosdn.render.graph import picture, render_dot, to_dot, to_mermaid

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
needs_dot = pytest.mark.skipif(shutil.which("dot") is None, reason="graphviz is not installed")

RACKS = [
    Node(f"node{i}", (ip_address(f"10.10.{(i - 1) // 2}.{i}"),), (ip_network(f"10.244.{i}.0/24"),))
    for i in range(1, 5)
]
CLUSTER = Cluster(
    nodes=(*RACKS, Node("far", (ip_address("192.168.9.9"),), (ip_network("10.244.9.0/24"),))),
    cluster_cidrs=(ip_network("10.244.0.0/16"),),
    service_cidrs=(ip_network("10.96.0.0/12"),),
    service_via=("node1", "node3"),
    name="two-racks",
)
SEGMENTS = [ip_network("10.10.0.0/24"), ip_network("10.10.1.0/24")]
ROUTER = [ip_address("10.10.0.253"), ip_address("10.10.1.253")]


def nosdn(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "nosdn", *args], capture_output=True, check=False)


def test_picture_groups_nodes_and_routes_by_segment() -> None:
    pic = picture(CLUSTER, SEGMENTS, ROUTER)
    assert [[n.name for n in s.nodes] for s in pic.segments] == [
        ["node1", "node2"],
        ["node3", "node4"],
    ]
    assert [str(r.dst) for r in pic.segments[1].host_routes] == ["10.244.3.0/24", "10.244.4.0/24"]
    assert pic.segments[0].gateway == (ip_address("10.10.0.253"),)
    assert pic.router is not None
    assert pic.router.segments == (1, 2)
    assert len(pic.router.routes) == 5  # every pod subnet, the far node's too
    assert [n.name for n in pic.elsewhere] == ["far"]
    assert pic.notes == (
        "1 router route(s) via an address on none of the router's segments: it cannot reach them",
        "far: on none of the segments, off-link for every host route",
    )
    far = {n.name: n for n in CLUSTER.nodes}["far"]
    assert pic.unreachable == frozenset(far.pod_cidrs)  # marked in the router's table
    assert "unreachable from the router" in to_dot(pic)
    assert [str(r.dst) for r in pic.services] == ["10.96.0.0/12"]
    # without a router the segments cannot reach each other, and the picture says so
    assert "no router joins every segment" in picture(CLUSTER, SEGMENTS).notes[0]
    # without segments: one segment, every node on it, no notes
    one = picture(CLUSTER)
    assert len(one.segments[0].nodes) == 5
    assert one.notes == ()


def test_dot_text() -> None:
    dot = to_dot(picture(CLUSTER, SEGMENTS, ROUTER))
    assert dot.startswith("digraph nosdn_two_racks {")
    assert 'subgraph cluster_1 {\n    label="L2 segment 10.10.0.0/24";' in dot
    assert "switch1 -> n_node1;" in dot
    assert "switch2 -> n_node4;" in dot
    assert "10.244.3.0/24 → 10.10.1.3 (node3)" in dot
    assert "default → 10.10.1.253 (router: the rest)" in dot
    assert 'router -> switch1 [color="#8e24aa" penwidth=2];' in dot
    assert "router -> switch2" in dot
    assert "subgraph cluster_elsewhere" in dot
    assert "10.96.0.0/12 → 10.10.0.1, 10.10.1.3 (services)" in dot


def test_mermaid_text() -> None:
    text = to_mermaid(picture(CLUSTER, SEGMENTS, ROUTER))
    lines = text.splitlines()
    assert lines[0] == "flowchart TB"
    assert '  subgraph seg2["L2 segment 10.10.1.0/24"]' in lines
    assert '    n_node3["<b>node3</b><br/>10.10.1.3<br/>pods 10.244.3.0/24"]' in lines
    assert "    switch2 --- n_node3" in lines
    assert "  router === switch1" in lines
    assert any(
        line.startswith('  router{{"<b>router</b> 10.10.0.253 / 10.10.1.253<br/>') for line in lines
    )
    assert text.count("subgraph") == text.count("\n  end") == 3


@needs_dot
def test_svg_is_xml_with_every_node() -> None:
    svg = render_dot(to_dot(picture(CLUSTER, SEGMENTS, ROUTER)), "svg")
    root = ElementTree.fromstring(svg)
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    texts = {t.text for t in root.iter("{http://www.w3.org/2000/svg}text")}
    assert {"node1", "node2", "node3", "node4", "far"} <= texts
    assert "10.244.4.0/24 → 10.10.1.4 (node4)" in texts


@needs_dot
def test_cli_svg_png_and_errors(tmp_path: Path) -> None:
    inv = str(EXAMPLES / "two-nodes.yaml")
    r = nosdn("graph", "-f", inv)
    assert r.returncode == 0, r.stderr
    assert ElementTree.fromstring(r.stdout).tag.endswith("svg")
    png = tmp_path / "g.png"
    r = nosdn("graph", "-f", inv, "--format", "png", "--out", str(png))
    assert r.returncode == 0, r.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    r = nosdn("graph", "-f", inv, "--format", "dot")
    assert r.stdout.startswith(b"digraph ")
    bad = nosdn("graph", "-f", inv, "--segment", "10.10.0.1/33")
    assert bad.returncode == 2
    assert b"--segment" in bad.stderr
    bad = nosdn("graph", "-f", inv, "--format", "jpeg")
    assert bad.returncode == 2
    assert b"'svg', 'png', 'dot', 'mermaid'" in bad.stderr


def test_a_hundred_nodes_stay_an_overview(tmp_path: Path) -> None:
    """100 nodes on one segment: one summary box in inventory order and a handful of edges,
    not a comb of 100; a node whose subnet is only in memory is marked, also past the cut."""
    lines = ["clusterCIDRs: [10.244.0.0/16]", "nodes:"]
    for i in range(1, 101):
        pod = f", podCIDR: 10.244.{i}.0/24" if i != 77 else ""
        lines.append(f"  - {{name: w{i:03d}, ip: 10.20.{i // 250}.{i % 250 + 1}{pod}}}")
    inv = tmp_path / "big.yaml"
    inv.write_text("\n".join(lines) + "\n")
    r = nosdn("graph", "-f", str(inv), "--format", "dot")
    assert r.returncode == 0, r.stderr
    dot = r.stdout.decode()
    assert dot.count("->") <= 4, dot.count("->")
    names = re.findall(r"w\d{3}", dot.split("100 nodes")[1])
    assert names[:20] == [f"w{i:03d}" for i in range(1, 21)]  # node order kept
    assert "and 77 more" in dot
    assert "subnet only in memory (allocate --write): w077" in dot
    assert "allocated in memory only" in dot
    mermaid = nosdn("graph", "-f", str(inv), "--format", "mermaid").stdout.decode()
    assert mermaid.count("---") <= 3
    assert "w077" in mermaid
