"""The two-segment lab with a real router (root): BIRD 2 (and FRR, where installed) in a
namespace runs the config `nosdn render` prints, nodes keep host routes to same-segment peers
only, and every pod still reaches every pod.

Each test makes its own lab with a unique name (state under tmp_path) and removes it in
teardown, routing daemon included; nothing is attached to this machine's own namespace.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import lab_namespaces, requires_root, this_machines_network
from nosdn.lab import LabSpec, apply_routes, check, down, open_lab, up
from nosdn.lab import netns as ns
from nosdn.lab.router import FRR_ROOT, wanted_routes

pytestmark = [pytest.mark.root, pytest.mark.slow, requires_root]
#: Labs made here are named LAB_PREFIX-xxxxxx (the `lab_name` fixture).
LAB_PREFIX = "r"


def nosdn(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nosdn", *args], capture_output=True, text=True, check=False
    )


def routes(netns: str, *args: str) -> set[tuple[str, str]]:
    """(destination, gateway) of the gateway routes in ``netns``, both families."""
    found = set()
    for fam in ("-4", "-6"):
        out = ns.run(["ip", "-n", netns, "-j", fam, "route", "show", *args]).stdout
        for r in json.loads(out or "[]"):
            if "gateway" in r:
                found.add((r["dst"], r["gateway"]))
    return found


def daemon_pids(router_ns: str) -> list[int]:
    return ns.pids(router_ns)


@pytest.mark.skipif(not shutil.which("bird"), reason="bird2 is not installed")
def test_two_segments_with_bird(lab_name: str) -> None:
    host_before = this_machines_network()
    r = nosdn(
        "lab", "up", "--name", lab_name, "--nodes", "4", "--ipv6", "--pods-per-node", "1",
        "--segments", "2", "--router-daemon", "bird",
    )  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    lab = open_lab(lab_name)
    topo = lab.topo
    assert [n.segment for n in topo.nodes] == [1, 1, 2, 2]
    assert topo.router is not None
    assert len(lab_namespaces(lab_name)) == 2 + 1 + 1 + 4 + 4  # switches, ext, router, nodes, pods

    # The router runs exactly what `nosdn render --format bird` prints, and its kernel table
    # holds every pod subnet via its node (proto bird).
    rendered = nosdn("render", "-f", str(lab.paths.inventory), "--format", "bird")
    assert rendered.returncode == 0, rendered.stderr
    assert (lab.paths.router_dir / "nosdn-bird.conf").read_text() == rendered.stdout
    assert 'include "' in (lab.paths.router_dir / "bird.conf").read_text()
    bird_routes = routes(topo.router.netns, "proto", "bird")
    assert bird_routes == {(d, g) for d, gws in wanted_routes(topo) for g in gws}
    assert ("10.244.3.0/24", "10.10.1.3") in bird_routes
    assert ("fd00:244:0:1::/64", "fd00:10::1") in bird_routes

    # Host routes cover same-segment peers only; the other segment's nodes were reported
    # off-link by `nosdn apply` and are reached through the default route to the router.
    assert routes(topo.node("node1").netns, "proto", "157") == {
        ("10.244.2.0/24", "10.10.0.2"),
        ("fd00:244:0:2::/64", "fd00:10::2"),
    }
    assert routes(topo.node("node3").netns, "proto", "157") == {
        ("10.244.4.0/24", "10.10.1.4"),
        ("fd00:244:0:4::/64", "fd00:10:0:1::4"),
    }
    assert "? off-link node node3 (10.10.1.3)" in r.stdout
    default = ns.run(["ip", "-n", topo.node("node3").netns, "route", "show", "default"]).stdout
    assert "via 10.10.1.253" in default

    result = check(lab)
    # per family: 4 pods x 3 other pods + 4 nodes x 4 pods + external x 4 pods
    assert len(result.results) == 2 * (12 + 16 + 4)
    assert result.failed == []
    assert this_machines_network() == host_before

    # A route removed from the router (by hand) breaks exactly the cross-segment paths to
    # node4's pods; `lab apply` re-renders and reconfigures BIRD, which restores it.
    ns.run(["ip", "-n", topo.router.netns, "route", "del", "10.244.4.0/24"])
    broken = check(lab)
    far = {"node1/pod1", "node2/pod1", "node1", "node2", "external"}  # segment 1
    assert {(f.probe.src.label, f.probe.dst.label, f.probe.family) for f in broken.failed} == (
        {(src, "node4/pod1", 4) for src in far}  # no way there
        | {("node4/pod1", dst, 4) for dst in ("node1/pod1", "node2/pod1")}  # no way back
    )
    # ...and the matrix drawn by `lab check --out` shows it (Graphviz, where installed)
    if shutil.which("dot"):
        png = Path(lab.paths.root.parent / "matrix.png")
        drawn = nosdn("lab", "check", "--name", lab_name, "--out", str(png))
        assert drawn.returncode == 1
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        from nosdn.lab.matrix import matrix_dot

        dot = matrix_dot(broken)
        assert "IPv4: ping from row to column — 7 of 32 failed" in dot
        assert "IPv6: ping from row to column — all 32 answered" in dot
    r = nosdn("lab", "apply", "--name", lab_name)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "birdc" in r.stdout
    assert check(open_lab(lab_name)).ok

    # down stops BIRD (its pid file names a process in the router namespace) and removes all
    bird_pid = int((lab.paths.router_dir / "bird.pid").read_text())
    assert bird_pid in daemon_pids(topo.router.netns)
    report = down(lab_name)
    assert bird_pid in report.killed
    assert not Path(f"/proc/{bird_pid}").exists()
    assert lab_namespaces(lab_name) == []


@pytest.mark.skipif(not shutil.which("bird"), reason="bird2 is not installed")
def test_router_lab_down_after_a_crash(lab_name: str) -> None:
    """No state directory left: down still finds the router namespace and its BIRD."""
    lab = up(LabSpec(name=lab_name, nodes=2, pods_per_node=1, segments=2, router="bird"))
    assert lab.topo.router is not None
    pids = daemon_pids(lab.topo.router.netns)
    assert pids
    shutil.rmtree(lab.paths.root)
    report = down(lab_name)
    assert set(pids) <= set(report.killed)
    assert lab_namespaces(lab_name) == []


@pytest.mark.skipif(
    not Path("/usr/lib/frr/zebra").exists() or not Path("/usr/lib/frr/staticd").exists(),
    reason="frr is not installed",
)
def test_two_segments_with_frr(lab_name: str) -> None:
    lab = up(LabSpec(name=lab_name, nodes=3, pods_per_node=1, segments=2, router="frr"))
    assert lab.topo.router is not None
    frr_dir = FRR_ROOT / lab_name
    rendered = nosdn("render", "-f", str(lab.paths.inventory), "--format", "frr")
    assert (frr_dir / "nosdn-frr.conf").read_text() == rendered.stdout
    assert routes(lab.topo.router.netns) == {
        ("10.244.1.0/24", "10.10.0.1"),
        ("10.244.2.0/24", "10.10.0.2"),
        ("10.244.3.0/24", "10.10.1.3"),
    }
    result = check(lab)
    assert result.failed == []
    assert len(result.results) == 3 * 2 + 3 * 3 + 3
    runs = apply_routes(lab)  # restarts staticd with a fresh rendering
    assert all(r.returncode == 0 for r in runs)
    assert check(lab).ok
    down(lab_name)
    assert not frr_dir.exists()
