"""The rendered artifacts on real kernels and real routing software (root, network namespaces).

- the ``script`` runs on two nodes and an external host joined by a bridge, all in namespaces made
  here: routes land with proto 157, pods (addresses on each node's ``lo``) ping across nodes and
  from the external host, a second run writes nothing (``ip monitor`` stays silent);
- next to foreign routes: a ``proto static`` route to a pod subnet is left alone and reported, a
  stale proto-157 route is removed (only in the table the script manages), a wrong one fixed;
- the kernel table after the script equals the one after ``nosdn apply`` (which uses nexthop
  objects), compared as (destination, gateways, protocol);
- BIRD 2 loads the rendered config and puts every route in its kernel table.

Nothing is attached to the machine's own namespace; every namespace is removed by the ``netns``
fixture. ``/etc/netns/NAME/iproute2`` (bind-mounted by ``ip netns exec``) controls whether
protocol 157 has a name, so both spellings ``ip route`` can print are exercised.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from ipaddress import ip_address, ip_network
from pathlib import Path

import pytest

from conftest import ip, requires_root
from nosdn.model import EXTERNAL, ROUTER, Cluster, Node, Target
from nosdn.plan import desired_routes
from nosdn.render import RenderOptions, render
from nosdn.render._base import node_of_ip
from nosdn.render.routers import bird_config

pytestmark = [pytest.mark.root, requires_root]

SHELLS = [s for s in ("dash", "busybox") if shutil.which(s)]
RouteKey = tuple[str, frozenset[str], str]
Netns = Callable[..., str]


def _cluster() -> Cluster:
    def node(i: int, v6: bool = True) -> Node:
        ips = (ip_address(f"10.10.0.{i}"),) + ((ip_address(f"fd00:10::{i}"),) if v6 else ())
        cidrs = (ip_network(f"172.17.{i}.0/24"),) + (
            (ip_network(f"fd00:17:0:{i}::/64"),) if v6 else ()
        )
        return Node(f"node{i}", ips, cidrs)

    return Cluster(
        (node(1), node(2), node(3, v6=False)),
        service_cidrs=(ip_network("10.96.0.0/12"), ip_network("fd00:96::/112")),
        service_via=("node1", "node2"),
        name="roottest",
    )


@pytest.fixture
def etc_netns() -> Iterator[Callable[[str, bool], None]]:
    """``setup(ns, named)``: give ``ip netns exec ns`` its own /etc/iproute2, in which protocol
    157 is named ``nosdn`` (named) or has no name. Removed after the test."""
    made: list[Path] = []

    def setup(ns: str, named: bool) -> None:
        d = Path("/etc/netns") / ns
        made.append(d)
        protos = d / "iproute2" / "rt_protos.d"
        protos.mkdir(parents=True)
        if named:
            (protos / "nosdn.conf").write_text("157\tnosdn\n")

    try:
        yield setup
    finally:
        for d in made:
            shutil.rmtree(d, ignore_errors=True)


def _host(netns: Netns, addrs: list[str], prefix: str = "nosdn-rt") -> str:
    """A namespace with ``eth0`` (one end of a veth pair whose other end is ``eth1`` in the same
    namespace, so the link has carrier) holding ``addrs``."""
    ns = netns(prefix)
    ip(ns, "link", "add", "eth0", "type", "veth", "peer", "name", "eth1")
    _up(ns, addrs)
    ip(ns, "link", "set", "eth1", "up")
    return ns


def _up(ns: str, addrs: list[str]) -> None:
    for a in addrs:
        if ":" in a:
            ip(ns, "addr", "add", f"{a}/64", "dev", "eth0", "nodad")
        else:
            ip(ns, "addr", "add", f"{a}/24", "dev", "eth0")
    ip(ns, "link", "set", "eth0", "up")


def _switch(netns: Netns, hosts: dict[str, list[str]]) -> dict[str, str]:
    """Hosts on one bridge that lives in its own namespace: {host: namespace}."""
    sw = netns("nosdn-sw")
    # no multicast snooping: an MLD report lost while a port came up would hide a node from
    # IPv6 neighbour discovery
    ip(sw, "link", "add", "br0", "type", "bridge", "mcast_snooping", "0")
    ip(sw, "link", "set", "br0", "up")
    out = {}
    for i, (name, addrs) in enumerate(hosts.items()):
        ns = netns(f"nosdn-{name}")
        ip(sw, "link", "add", f"p{i}", "type", "veth", "peer", "name", "eth0", "netns", ns)
        ip(sw, "link", "set", f"p{i}", "master", "br0", "up")
        _up(ns, addrs)
        out[name] = ns
    return out


def _run(
    ns: str, script: Path, *args: str, shell: str = "dash"
) -> subprocess.CompletedProcess[str]:
    cmd = [shell, "sh"] if shell == "busybox" else [shell]
    return subprocess.run(
        ["ip", "netns", "exec", ns, *cmd, str(script), *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def _table(ns: str, table: str = "main") -> set[RouteKey]:
    """Every route of ``table`` as (destination, gateways, protocol number)."""
    keys: set[RouteKey] = set()
    for fam in ("-4", "-6"):
        out = ip(ns, fam, "-o", "-N", "route", "show", "table", table, check=False)
        for line in out.splitlines():  # a table never written to does not exist: empty
            tok = line.split()
            if not tok:
                continue
            dst = tok[1] if tok[0] in {"unreachable", "blackhole", "prohibit", "local"} else tok[0]
            if "/" not in dst and dst != "default":
                dst += "/128" if ":" in dst else "/32"
            gws = frozenset(tok[i + 1] for i, t in enumerate(tok[:-1]) if t == "via")
            proto = tok[tok.index("proto") + 1] if "proto" in tok else "3"
            keys.add((dst, gws, proto))
    return keys


def _ours(ns: str) -> set[tuple[str, frozenset[str]]]:
    return {(d, g) for d, g, p in _table(ns) if p == "157"}


def _want(cluster: Cluster, target: Target) -> set[tuple[str, frozenset[str]]]:
    return {(str(r.dst), frozenset(str(v) for v in r.via)) for r in desired_routes(cluster, target)}


def _ping(ns: str, src: str, dst: str) -> bool:
    # -c 1 -w 5: keep trying for 5 s until one reply (the first may wait for IPv6 ND/DAD)
    cmd = ["ip", "netns", "exec", ns, "ping", "-c", "1", "-w", "5", "-i", "0.2", "-I", src, dst]
    return subprocess.run(cmd, capture_output=True, check=False, timeout=10).returncode == 0


def _silent_run(
    ns: str, script: Path, *args: str, shell: str = "dash"
) -> tuple[subprocess.CompletedProcess[str], str]:
    """Run the script while ``ip monitor route`` watches the namespace; return what it saw."""
    mon = subprocess.Popen(
        ["ip", "-n", ns, "monitor", "route"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    )
    try:
        time.sleep(0.3)  # let the monitor subscribe
        res = _run(ns, script, *args, shell=shell)
        time.sleep(0.3)
    finally:
        mon.terminate()
        seen, _ = mon.communicate(timeout=5)
    return res, seen.decode()


@pytest.mark.parametrize("shell", SHELLS)
def test_script_routes_pods_between_nodes_and_from_outside(
    netns: Netns, tmp_path: Path, shell: str
) -> None:
    cluster = _cluster()
    script = tmp_path / "nosdn-routes.sh"
    script.write_text(render(cluster, "script"))
    hosts = _switch(
        netns,
        {
            "node1": ["10.10.0.1", "fd00:10::1"],
            "node2": ["10.10.0.2", "fd00:10::2"],
            "ext": ["10.10.0.50", "fd00:10::50"],
        },
    )
    for i in (1, 2):  # a "pod" on each node: an address on its lo
        ip(hosts[f"node{i}"], "addr", "add", f"172.17.{i}.1/32", "dev", "lo")
        ip(hosts[f"node{i}"], "addr", "add", f"fd00:17:0:{i}::1/128", "dev", "lo")

    for name, args in (("node1", ()), ("node2", ()), ("ext", ("--external",))):
        res = _run(hosts[name], script, *args, shell=shell)
        assert res.returncode == 0, f"{name}: {res.stdout}{res.stderr}"
    assert _ours(hosts["node1"]) == _want(cluster, Target.for_node("node1"))
    assert _ours(hosts["node2"]) == _want(cluster, Target.for_node("node2"))
    assert _ours(hosts["ext"]) == _want(cluster, EXTERNAL)
    assert ("10.96.0.0/12", frozenset({"10.10.0.1", "10.10.0.2"})) in _ours(hosts["ext"])
    assert ("fd00:96::/112", frozenset({"fd00:10::1", "fd00:10::2"})) in _ours(hosts["ext"])
    assert not any(d.startswith("172.17.1.") for d, _ in _ours(hosts["node1"]))

    # the routes carry traffic: pod to pod across nodes (both ways need routes), outside to pod
    assert _ping(hosts["node1"], "172.17.1.1", "172.17.2.1")
    assert _ping(hosts["node2"], "fd00:17:0:2::1", "fd00:17:0:1::1")
    assert _ping(hosts["ext"], "10.10.0.50", "172.17.2.1")
    assert _ping(hosts["ext"], "fd00:10::50", "fd00:17:0:1::1")

    for name, args in (("node1", ()), ("ext", ("--external",))):
        before = _table(hosts[name])
        res, seen = _silent_run(hosts[name], script, *args, shell=shell)
        assert res.returncode == 0, res.stderr
        assert "0 added, 0 changed, 0 removed" in res.stdout
        assert seen == "", f"second run wrote: {seen}"
        assert _table(hosts[name]) == before


@pytest.mark.parametrize("named", [False, True], ids=["proto-157", "proto-nosdn"])
@pytest.mark.parametrize("shell", SHELLS)
def test_script_leaves_foreign_routes_and_removes_stale_ones(
    netns: Netns, etc_netns: Callable[[str, bool], None], tmp_path: Path, shell: str, named: bool
) -> None:
    cluster = _cluster()
    script = tmp_path / "nosdn-routes.sh"
    script.write_text(render(cluster, "script"))
    ns = _host(netns, ["10.10.0.1", "fd00:10::1"])
    etc_netns(ns, named)
    ip(ns, "route", "add", "172.17.2.0/24", "via", "10.10.0.9", "proto", "static")  # foreign
    ip(ns, "route", "add", "172.17.3.0/24", "via", "10.10.0.7", "proto", "157")  # ours, wrong
    ip(ns, "route", "add", "172.17.99.0/24", "via", "10.10.0.2", "proto", "157")  # ours, stale
    ip(ns, "route", "add", "172.17.98.0/24", "via", "10.10.0.2", "proto", "157", "table", "100")
    ip(ns, "route", "add", "192.0.2.0/24", "via", "10.10.0.2")  # proto boot, not wanted
    ip(ns, "-6", "route", "add", "fd00:17:0:2::/64", "via", "fd00:10::2", "proto", "157")
    other_table = _table(ns, "100")
    shown = subprocess.run(
        ["ip", "netns", "exec", ns, "ip", "route", "show", "172.17.3.0/24"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert ("proto nosdn" if named else "proto 157") in shown  # what the script has to parse

    res = _run(ns, script, shell=shell)
    assert res.returncode == 1, res.stdout + res.stderr
    assert "conflict: 172.17.2.0/24 (pods of node2) is already routed by proto static" in res.stderr
    assert '"172.17.2.0/24 via 10.10.0.9 dev eth0 proto static"' in res.stderr
    table = _table(ns)
    assert ("172.17.2.0/24", frozenset({"10.10.0.9"}), "4") in table  # untouched
    assert not any(d == "172.17.2.0/24" and p == "157" for d, _, p in table)
    assert ("172.17.3.0/24", frozenset({"10.10.0.3"}), "157") in table  # fixed
    assert not any(d == "172.17.99.0/24" for d, _, _ in table)  # stale, removed
    assert ("192.0.2.0/24", frozenset({"10.10.0.2"}), "3") in table  # not ours, not wanted
    assert ("fd00:17:0:2::/64", frozenset({"fd00:10::2"}), "157") in table  # kept
    assert _table(ns, "100") == other_table  # only the managed table is cleaned
    assert "0 added, 1 changed, 1 removed, 1 unchanged, 1 conflicts, 0 failed" in res.stdout

    before = _table(ns)
    again, seen = _silent_run(ns, script, shell=shell)
    assert again.returncode == 1  # the conflict is still there, and still reported
    assert "conflict: 172.17.2.0/24" in again.stderr
    assert "0 added, 0 changed, 0 removed, 2 unchanged, 1 conflicts" in again.stdout
    assert seen == ""
    assert _table(ns) == before


def test_script_skips_an_off_link_node_like_apply(netns: Netns, tmp_path: Path) -> None:
    """A node whose address is not on a connected network: the script reports it, installs the
    others, and exits 0 — what `nosdn apply` does for the same state (its route is skipped)."""
    base = _cluster()
    far = Node("far", (ip_address("192.168.99.4"),), (ip_network("172.17.4.0/24"),))
    cluster = Cluster((*base.nodes, far), name=base.name)
    script = tmp_path / "nosdn-routes.sh"
    script.write_text(render(cluster, "script"))
    ns = _host(netns, ["10.10.0.1", "fd00:10::1"])
    res = _run(ns, script)
    assert res.returncode == 0, res.stderr
    assert "off-link node far (192.168.99.4): no route to it; its routes are skipped" in res.stderr
    assert "3 added, 0 changed, 0 removed, 0 unchanged, 0 conflicts, 0 failed, 1 off-link" in (
        res.stdout
    )
    assert _ours(ns) == {
        ("172.17.2.0/24", frozenset({"10.10.0.2"})),
        ("172.17.3.0/24", frozenset({"10.10.0.3"})),
        ("fd00:17:0:2::/64", frozenset({"fd00:10::2"})),
    }


def test_script_changes_nothing_where_it_cannot_tell_the_host(netns: Netns, tmp_path: Path) -> None:
    script = tmp_path / "nosdn-routes.sh"
    script.write_text(render(_cluster(), "script"))
    stranger = _host(netns, ["10.10.0.77"])
    node = _host(netns, ["10.10.0.1"])
    for ns, args, message in (
        (stranger, (), "none of the nodes' addresses"),
        (node, ("--external",), "this host is node node1"),
        (node, ("--node", "node2"), "has the address of node node1"),
    ):
        before = _table(ns)
        res = _run(ns, script, *args)
        assert res.returncode == 2
        assert message in res.stderr
        assert _table(ns) == before


def test_script_deletion_guard_refuses_a_mass_removal(netns: Netns, tmp_path: Path) -> None:
    """The README's failure: the script of another cluster whose node has this host's address
    would remove every route nosdn installed here. Refused (exit 1, nothing changed, the routes
    named) unless --force; the share is the one `nosdn apply` uses."""
    ours = tmp_path / "ours.sh"
    ours.write_text(render(_cluster(), "script"))
    ns = _host(netns, ["10.10.0.1", "fd00:10::1"])
    assert _run(ns, ours).returncode == 0
    installed = _table(ns)
    assert len(_ours(ns)) == 3
    lone = Cluster((_cluster().nodes[0],), name="another")
    theirs = tmp_path / "theirs.sh"
    theirs.write_text(render(lone, "script"))
    res = _run(ns, theirs)
    assert res.returncode == 1, res.stdout + res.stderr
    assert "refusing to remove 3 of the 3 routes nosdn owns on this host" in res.stderr
    assert "- 172.17.2.0/24 via 10.10.0.2" in res.stderr
    assert _table(ns) == installed
    bad = _run(ns, theirs, "--max-delete-share", "2")
    assert bad.returncode == 2
    assert _table(ns) == installed
    forced = _run(ns, theirs, "--force")
    assert forced.returncode == 0, forced.stderr
    assert _ours(ns) == set()


def test_script_dry_run_writes_nothing(netns: Netns, tmp_path: Path) -> None:
    script = tmp_path / "nosdn-routes.sh"
    script.write_text(render(_cluster(), "script"))
    ns = _host(netns, ["10.10.0.1", "fd00:10::1"])
    before = _table(ns)
    res = _run(ns, script, "--dry-run")
    assert res.returncode == 0, res.stderr
    assert "ip -4 route add 172.17.2.0/24 proto 157 table main via 10.10.0.2" in res.stdout
    assert _table(ns) == before


# --- the same table as `nosdn apply` ------------------------------------------------------------

_HAVE_APPLY = importlib.util.find_spec("nosdn.cli._kernel_cmds") is not None


@pytest.mark.skipif(not _HAVE_APPLY, reason="nosdn apply (cli/_kernel_cmds.py) is not there yet")
@pytest.mark.parametrize(
    ("addrs", "args", "twist"),
    [
        (["10.10.0.1", "fd00:10::1"], (), None),
        (["10.10.0.3"], (), None),
        (["10.10.0.50", "fd00:10::50"], ("--external",), None),
        (["10.10.0.1", "fd00:10::1"], (), "offlink-peer"),
        (["10.10.0.1", "fd00:10::1"], (), "conflict"),
    ],
    ids=["node1-dual", "node3-v4", "external-ecmp", "node1-offlink-peer", "node1-conflict"],
)
def test_script_and_nosdn_apply_make_the_same_table(
    netns: Netns, tmp_path: Path, addrs: list[str], args: tuple[str, ...], twist: str | None
) -> None:
    """Same table and same exit status: an off-link peer is skipped by both (exit 0); a
    prefix someone else routes is left alone and reported by both (exit 1)."""
    far = twist == "offlink-peer"
    rc = 1 if twist == "conflict" else 0
    cluster = _cluster()
    if far:
        off = Node("far", (ip_address("192.168.99.4"),), (ip_network("172.17.4.0/24"),))
        cluster = dataclasses.replace(cluster, nodes=(*cluster.nodes, off))
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text(
        "clusterName: roottest\n"
        "serviceCIDRs: [10.96.0.0/12, fd00:96::/112]\n"
        "serviceVia: [node1, node2]\n"
        "nodes:\n"
        + "".join(
            f"  - name: {n.name}\n    ips: [{', '.join(map(str, n.ips))}]\n"
            f"    podCIDRs: [{', '.join(map(str, n.pod_cidrs))}]\n"
            for n in cluster.nodes
        )
    )
    script = tmp_path / "nosdn-routes.sh"
    script.write_text(render(cluster, "script"))
    by_script = _host(netns, addrs)
    by_apply = _host(netns, addrs)
    if twist == "conflict":
        for ns in (by_script, by_apply):
            ip(ns, "route", "add", "172.17.2.0/24", "via", "10.10.0.9", "proto", "static")

    res = _run(by_script, script, *args)
    assert res.returncode == rc, res.stdout + res.stderr
    applied = subprocess.run(
        [sys.executable, "-m", "nosdn", "apply", "-f", str(inventory), "--netns", by_apply, *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert applied.returncode == rc, applied.stdout + applied.stderr
    assert _table(by_script) == _table(by_apply)
    assert _ours(by_script)  # the comparison is about something
    assert ip(by_apply, "nexthop", "show")  # apply used nexthop objects, the script did not
    assert not ip(by_script, "nexthop", "show")


# --- BIRD 2 as the router ------------------------------------------------------------------------


@pytest.mark.skipif(not shutil.which("bird"), reason="bird2 is not installed")
def test_bird_loads_the_rendered_routes_into_its_kernel(netns: Netns, tmp_path: Path) -> None:
    cluster = _cluster()
    routes = desired_routes(cluster, EXTERNAL)  # pod subnets and the ECMP service routes
    ns = _host(netns, ["10.10.0.254", "fd00:10::fe"], prefix="nosdn-bird")
    conf = tmp_path / "bird.conf"
    names = node_of_ip(cluster)
    conf.write_text(bird_config(routes, cluster=cluster.name, names=names, standalone=True))
    # the fragment `nosdn render --format bird` prints is what the whole config is made of
    fragment = render(cluster, "bird", RenderOptions(target=EXTERNAL))
    assert fragment.split("protocol static", 1)[1] in conf.read_text()
    bird = subprocess.Popen(
        ["ip", "netns", "exec", ns, "bird", "-f", "-c", str(conf), "-s", str(tmp_path / "ctl")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        want = {(str(r.dst), frozenset(str(v) for v in r.via)) for r in routes}
        got: set[tuple[str, frozenset[str]]] = set()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and got != want:
            time.sleep(0.2)
            got = {(d, g) for d, g, p in _table(ns) if p == "12"}  # 12 = proto bird
            assert bird.poll() is None, bird.communicate()[0]
        assert got == want
    finally:
        bird.terminate()
        bird.communicate(timeout=10)
    assert _want(cluster, ROUTER) <= got
