"""`nosdn uninstall --node-local` and `nosdn manifests --uninstall`.

The cleanup runs inside a namespace holding our routes and nexthops (protocol 157), foreign
ones (other protocols), our nftables table beside others, and our conflist beside others: ours
are gone afterwards, every foreign one is still there, byte for byte. While an agent answers on
its address the cleanup refuses and changes nothing. The cleanup's objects validate against the
Kubernetes schema as the agent's do.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from conftest import ip, requires_root
from nosdn.agent.uninstall_manifests import uninstall_manifests
from test_manifests import K8S_VERSION, by_kind

NOSDN = str(Path(sys.executable).with_name("nosdn"))
OURS = "157"

FOREIGN_NFT = """\
table inet other {
\tchain input {
\t\ttype filter hook input priority filter; policy accept;
\t}
}
table ip nat {
\tchain postrouting {
\t\ttype nat hook postrouting priority srcnat; policy accept;
\t}
}
"""
OUR_NFT = """\
table inet nosdn {
\tchain postrouting {
\t\ttype nat hook postrouting priority srcnat; policy accept;
\t\tip saddr 10.244.1.0/24 ip daddr != 10.244.0.0/16 masquerade
\t}
}
"""


def sh(ns: str, *argv: str, check: bool = True, **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ip", "netns", "exec", ns, *argv], capture_output=True, text=True, check=check, **kw
    )


def routes(ns: str) -> set[tuple[str, str]]:
    out: set[tuple[str, str]] = set()
    for fam in ("-4", "-6"):
        text = sh(ns, "ip", "-N", "-j", fam, "route", "show", "table", "all").stdout
        for r in json.loads(text or "[]"):
            if r.get("type", "unicast") == "unicast" and r.get("protocol") not in ("kernel",):
                out.add((r["dst"], str(r.get("protocol"))))
    return out


def nexthops(ns: str) -> set[tuple[int, str]]:
    text = sh(ns, "ip", "-N", "-j", "nexthop", "show").stdout
    return {(n["id"], str(n.get("protocol"))) for n in json.loads(text or "[]")}


def nft_tables(ns: str) -> set[str]:
    lines = sh(ns, "nft", "list", "tables").stdout.splitlines()
    return {line.removeprefix("table ").strip() for line in lines if line.strip()}


@pytest.fixture
def node(netns: Callable[..., str], tmp_path: Path) -> tuple[str, Path]:
    """A node after an agent ran on it, with a neighbour's state beside nosdn's."""
    ns = netns("nosdn-unin")
    ip(ns, "link", "add", "eth0", "type", "bridge")
    ip(ns, "link", "set", "eth0", "up")
    ip(ns, "addr", "add", "10.0.0.1/24", "dev", "eth0")
    ip(ns, "addr", "add", "fd00::1/64", "dev", "eth0", "nodad")
    # ours: nexthop objects and the routes over them (as the agent writes them), and a plain
    # route, in both families
    ip(ns, "nexthop", "add", "id", "1001", "via", "10.0.0.2", "dev", "eth0", "proto", OURS)
    ip(ns, "route", "add", "10.244.2.0/24", "nhid", "1001", "proto", OURS)
    ip(ns, "route", "add", "10.244.3.0/24", "via", "10.0.0.3", "proto", OURS)
    ip(ns, "route", "add", "fd17:0:0:2::/64", "via", "fd00::2", "proto", OURS)
    # foreign: other protocols, and a foreign nexthop with its route
    ip(ns, "route", "add", "10.99.0.0/24", "via", "10.0.0.4", "proto", "static")
    ip(ns, "route", "add", "10.98.0.0/24", "via", "10.0.0.5", "proto", "boot")
    ip(ns, "route", "add", "fd99::/64", "via", "fd00::9", "proto", "static")
    ip(ns, "nexthop", "add", "id", "2001", "via", "10.0.0.6", "dev", "eth0", "proto", "42")
    ip(ns, "route", "add", "10.97.0.0/24", "nhid", "2001", "proto", "42")
    sh(ns, "nft", "-f", "-", input=FOREIGN_NFT + OUR_NFT)
    conf = tmp_path / "net.d"
    conf.mkdir()
    (conf / "10-nosdn.conflist").write_text(
        json.dumps({"cniVersion": "1.0.0", "name": "nosdn", "plugins": [{"type": "bridge"}]})
    )
    (conf / "20-other.conflist").write_text('{"cniVersion": "1.0.0", "name": "other"}\n')
    (conf / "99-loopback.conf").write_text('{"name": "lo", "type": "loopback"}\n')
    return ns, conf


def uninstall(ns: str, *args: str) -> subprocess.CompletedProcess[str]:
    return sh(ns, NOSDN, "uninstall", "--node-local", *args, check=False)


@pytest.mark.root
@requires_root
def test_removes_ours_and_nothing_else(node: tuple[str, Path]) -> None:
    ns, conf = node
    before_routes = routes(ns)
    before_nexthops = nexthops(ns)
    assert {i for i, _ in before_nexthops} == {1001, 2001}
    assert {d for d, p in before_routes if p == OURS} >= {"10.244.2.0/24", "fd17:0:0:2::/64"}
    others = {conf / "20-other.conflist": "", conf / "99-loopback.conf": ""}
    others = {p: p.read_text() for p in others}
    foreign_nft_before = sh(ns, "nft", "list", "table", "inet", "other").stdout

    proc = uninstall(ns, f"--cni-conf={conf / '10-nosdn.conflist'}")
    assert proc.returncode == 0, proc.stderr
    assert "routes and nexthops removed: 4" in proc.stdout  # 3 routes + 1 nexthop

    after = routes(ns)
    assert not {r for r in after if r[1] == OURS}
    assert after == {r for r in before_routes if r[1] != OURS}
    assert {"10.99.0.0/24", "10.98.0.0/24", "fd99::/64", "10.97.0.0/24"} <= {d for d, _ in after}
    assert nexthops(ns) == {n for n in before_nexthops if n[0] == 2001}
    assert nft_tables(ns) == {"inet other", "ip nat"}
    assert sh(ns, "nft", "list", "table", "inet", "other").stdout == foreign_nft_before
    assert sorted(p.name for p in conf.iterdir()) == ["20-other.conflist", "99-loopback.conf"]
    assert {p: p.read_text() for p in others} == others

    again = uninstall(ns, f"--cni-conf={conf / '10-nosdn.conflist'}")  # idempotent
    assert again.returncode == 0, again.stderr
    assert "routes and nexthops removed: 0" in again.stdout
    assert "absent" in again.stdout
    assert routes(ns) == after


@pytest.mark.root
@requires_root
def test_a_foreign_file_at_our_path_is_kept(node: tuple[str, Path]) -> None:
    ns, conf = node
    ours = conf / "10-nosdn.conflist"
    ours.write_text('{"cniVersion": "1.0.0", "name": "calico", "plugins": []}\n')
    proc = uninstall(ns, f"--cni-conf={ours}")
    assert proc.returncode == 0, proc.stderr
    assert "kept" in proc.stdout
    assert ours.read_text().startswith('{"cniVersion": "1.0.0", "name": "calico"')


@pytest.mark.root
@requires_root
def test_refuses_while_the_agent_answers_and_changes_nothing(node: tuple[str, Path]) -> None:
    ns, conf = node
    before = (routes(ns), nexthops(ns), nft_tables(ns), sorted(conf.iterdir()))
    server = subprocess.Popen(
        ["ip", "netns", "exec", ns, sys.executable, "-m", "http.server", "19712",
         "--bind", "127.0.0.1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        for _ in range(100):
            probe = sh(ns, sys.executable, "-c",
                       "import socket; socket.create_connection(('127.0.0.1', 19712), 1)",
                       check=False)  # fmt: skip
            if probe.returncode == 0:
                break
            time.sleep(0.05)
        proc = uninstall(ns, f"--cni-conf={conf / '10-nosdn.conflist'}",
                         "--agent-address=127.0.0.1:19712")  # fmt: skip
    finally:
        server.terminate()
        server.wait(timeout=10)
    assert proc.returncode == 1
    assert "agent still answers on 127.0.0.1:19712" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert (routes(ns), nexthops(ns), nft_tables(ns), sorted(conf.iterdir())) == before


def test_without_node_local_it_says_how_and_exits_2() -> None:
    proc = subprocess.run([NOSDN, "uninstall"], capture_output=True, text=True, check=False)
    assert proc.returncode == 2
    assert "nosdn manifests --uninstall" in proc.stderr


# --- the cleanup's objects ---------------------------------------------------------------------
def test_cleanup_objects_are_valid_kubernetes_and_grant_nothing() -> None:
    docs = uninstall_manifests(image="example/nosdn:1", namespace="net")
    for doc in docs:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    assert [d["kind"] for d in docs] == ["ServiceAccount", "DaemonSet"]
    objs = by_kind(docs)
    assert objs["ServiceAccount"]["automountServiceAccountToken"] is False
    pod = objs["DaemonSet"]["spec"]["template"]["spec"]
    assert pod["hostNetwork"] is True
    assert pod["tolerations"] == [{"operator": "Exists"}]
    (init,) = pod["initContainers"]
    assert init["args"][:2] == ["uninstall", "--node-local"]
    assert "--cni-conf=/etc/cni/net.d/10-nosdn.conflist" in init["args"]
    assert init["securityContext"]["capabilities"] == {"add": ["NET_ADMIN"], "drop": ["ALL"]}
    (wait,) = pod["containers"]
    assert wait["args"] == ["uninstall", "--wait"]
    assert wait["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert wait["securityContext"]["runAsNonRoot"] is True
    assert all(o["metadata"]["namespace"] == "net" for o in docs)


def test_cli_prints_the_cleanup_and_refuses_it_with_the_controller() -> None:
    argv = [sys.executable, "-m", "nosdn", "manifests", "--uninstall", "--image", "x/y:z"]
    proc = subprocess.run(argv, capture_output=True, text=True, check=True)
    assert list(yaml.safe_load_all(proc.stdout)) == uninstall_manifests(image="x/y:z")
    bad = subprocess.run([*argv, "--controller", "--cloud", "aws"],
                         capture_output=True, text=True, check=False)  # fmt: skip
    assert bad.returncode == 2
    assert "--uninstall" in bad.stderr


@pytest.mark.root
@requires_root
def test_netns_runs_the_whole_cleanup_there(node: tuple[str, Path]) -> None:
    """``--netns NS`` from outside: routes and the nftables table of NS go (ip netns exec)."""
    ns, conf = node
    proc = subprocess.run(
        [
            NOSDN,
            "uninstall",
            "--node-local",
            "--netns",
            ns,
            f"--cni-conf={conf / '10-nosdn.conflist'}",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert not {r for r in routes(ns) if r[1] == OURS}
    assert nft_tables(ns) == {"inet other", "ip nat"}
