"""`nosdn plan/apply/status/flush` as whole commands, run inside a namespace (root).

The command runs under ``ip netns exec`` exactly as an operator would run it on a node: it finds
which node it is from the namespace's own addresses. Exit codes are part of the contract:
0 ok, 1 runtime failure (write errors, conflicts, drift for status), 2 bad input.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from ipaddress import ip_address, ip_network
from pathlib import Path

import pytest

from conftest import ip, requires_root

pytestmark = [pytest.mark.root, requires_root]

NOSDN = str(Path(sys.executable).with_name("nosdn"))

INVENTORY = """\
clusterCIDRs: [172.17.0.0/16, fd17::/48]
serviceCIDRs: [10.96.0.0/12]
serviceVia: [node2, node3]
nodes:
  - {name: node1, ips: [10.0.0.1, "fd00::1"], podCIDRs: [172.17.1.0/24, "fd17:0:0:1::/64"]}
  - {name: node2, ips: [10.0.0.2, "fd00::2"], podCIDRs: [172.17.2.0/24, "fd17:0:0:2::/64"]}
  - {name: node3, ips: [10.0.0.3, "fd00::3"], podCIDRs: [172.17.3.0/24, "fd17:0:0:3::/64"]}
"""


@pytest.fixture
def host(netns: Callable[..., str]) -> str:
    ns = netns("nosdn-kcli")
    ip(ns, "link", "add", "br0", "type", "bridge")
    ip(ns, "link", "set", "br0", "up")
    ip(ns, "addr", "add", "10.0.0.1/24", "dev", "br0")
    ip(ns, "addr", "add", "fd00::1/64", "dev", "br0", "nodad")
    return ns


@pytest.fixture
def nosdn(host: str, tmp_path: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    inv = tmp_path / "inventory.yaml"
    inv.write_text(INVENTORY)
    env = {**os.environ, "NOSDN_RT_PROTOS_D": str(tmp_path / "rt_protos.d")}

    def run(*args: str, file: Path = inv) -> subprocess.CompletedProcess[str]:
        argv = ["ip", "netns", "exec", host, NOSDN, *args]
        if args[0] != "flush":
            argv += ["-f", str(file)]
        return subprocess.run(argv, capture_output=True, text=True, env=env, check=False)

    return run


def test_apply_finds_its_node_installs_and_names_the_protocol(
    host: str, nosdn: Callable[..., subprocess.CompletedProcess[str]], tmp_path: Path
) -> None:
    plan = nosdn("plan", "-o", "json")
    assert plan.returncode == 0, plan.stderr
    report = json.loads(plan.stdout)
    assert report["target"] == "node/node1"
    assert len(report["add"]) == 4
    assert ip(host, "route", "show", "proto", "157") == ""  # plan writes nothing

    done = nosdn("apply")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "4 to add" in done.stdout
    assert (tmp_path / "rt_protos.d" / "nosdn.conf").read_text().splitlines()[-1] == "157\tnosdn"
    routes = ip(host, "route", "show") + ip(host, "-6", "route", "show")
    assert "172.17.2.0/24 nhid" in routes
    assert "fd17:0:0:3::/64 nhid" in routes

    again = nosdn("apply", "-o", "json")
    assert again.returncode == 0
    assert json.loads(again.stdout)["writes"] == 0

    status = nosdn("status", "-o", "json")
    assert status.returncode == 0
    assert {r["state"] for r in json.loads(status.stdout)["routes"]} == {"ok"}


def test_status_sees_drift_and_apply_repairs_it(
    host: str, nosdn: Callable[..., subprocess.CompletedProcess[str]]
) -> None:
    assert nosdn("apply").returncode == 0
    ip(host, "route", "del", "172.17.2.0/24")
    status = nosdn("status", "-o", "json")
    assert status.returncode == 1
    states = {r["dst"]: r["state"] for r in json.loads(status.stdout)["routes"]}
    assert states["172.17.2.0/24"] == "missing"
    assert states["172.17.3.0/24"] == "ok"
    assert nosdn("apply").returncode == 0
    assert "172.17.2.0/24 nhid" in ip(host, "route", "show")


def test_conflict_exits_1_shows_both_routes_and_touches_nothing(
    host: str, nosdn: Callable[..., subprocess.CompletedProcess[str]]
) -> None:
    ip(host, "route", "add", "172.17.3.0/24", "via", "10.0.0.9", "proto", "static")
    done = nosdn("apply")
    assert done.returncode == 1
    assert "conflict 172.17.3.0/24" in done.stdout
    assert "wanted: 172.17.3.0/24 via 10.0.0.3 (node3)" in done.stdout
    assert "found:  172.17.3.0/24 via 10.0.0.9 dev br0 proto static" in done.stdout
    assert "172.17.3.0/24 via 10.0.0.9 dev br0 proto static" in ip(host, "route", "show")
    assert "172.17.2.0/24 nhid" in ip(host, "route", "show")  # the rest was applied

    flushed = nosdn("flush")
    assert flushed.returncode == 0
    table = ip(host, "route", "show")
    assert "172.17.3.0/24 via 10.0.0.9 dev br0 proto static" in table
    assert "nhid" not in table
    assert ip(host, "nexthop", "show") == ""


def test_host_that_is_no_node_is_bad_input(
    host: str, nosdn: Callable[..., subprocess.CompletedProcess[str]]
) -> None:
    ip(host, "addr", "flush", "dev", "br0")
    ip(host, "addr", "add", "10.0.0.50/24", "dev", "br0")
    done = nosdn("apply")
    assert done.returncode == 2
    assert "10.0.0.50" in done.stderr
    assert "--external" in done.stderr
    assert ip(host, "route", "show", "proto", "157") == ""
    # as an external host it gets every pod subnet and the ECMP service route
    ext = nosdn("apply", "--external")
    assert ext.returncode == 0, ext.stdout + ext.stderr
    svc = ip(host, "route", "show", "10.96.0.0/12")
    assert svc.startswith("10.96.0.0/12 nhid")
    assert "nexthop via 10.0.0.2" in svc
    assert "nexthop via 10.0.0.3" in svc


def test_strict_refuses_offlink_and_writes_nothing(
    host: str, nosdn: Callable[..., subprocess.CompletedProcess[str]], tmp_path: Path
) -> None:
    inv = tmp_path / "offlink.yaml"
    inv.write_text(INVENTORY.replace("ips: [10.0.0.3,", "ips: [10.9.0.3,"))
    strict = nosdn("apply", "--strict", file=inv)
    assert strict.returncode == 1
    assert "node3 (10.9.0.3)" in strict.stderr
    assert ip(host, "route", "show", "proto", "157") == ""
    lenient = nosdn("apply", file=inv)
    assert lenient.returncode == 0
    assert "off-link node node3 (10.9.0.3)" in lenient.stdout
    assert "172.17.3.0" not in ip(host, "route", "show")


def test_usage_errors_exit_2(nosdn: Callable[..., subprocess.CompletedProcess[str]]) -> None:
    both = nosdn("plan", "--node", "node1", "--external")
    assert both.returncode == 2
    assert "exclude" in both.stderr
    unknown = nosdn("plan", "--node", "node9")
    assert unknown.returncode == 2
    assert "node9" in unknown.stderr


def _many_nodes(n: int) -> str:
    """node1 (10.0.0.1) and ``n - 1`` peers on 10.0.0.0/16, one pod subnet each."""
    lines = ["  - {name: node1, ips: [10.0.0.1], podCIDRs: [172.31.1.0/24]}"]
    for i in range(2, n + 1):
        lines.append(
            f"  - {{name: n{i}, ips: [10.0.{i // 256}.{i % 256}], "
            f"podCIDRs: [172.{16 + i // 256}.{i % 256}.0/24]}}"
        )
    return "clusterCIDRs: [172.16.0.0/12]\nnodes:\n" + "\n".join(lines) + "\n"


def test_many_failed_writes_are_a_total_and_a_likely_cause(
    netns: Callable[..., str], tmp_path: Path
) -> None:
    """The next hops' link has no carrier (its peer is down): the kernel refuses every
    nexthop. apply lists the first 20 failures, then one total with the likely cause."""
    ns = netns("nosdn-kfail")
    ip(ns, "link", "add", "e0", "type", "veth", "peer", "name", "e1")
    ip(ns, "link", "set", "e0", "up")  # e1 stays down: e0 has no carrier
    ip(ns, "addr", "add", "10.0.0.1/16", "dev", "e0")
    inv = tmp_path / "many.yaml"
    inv.write_text(_many_nodes(300))
    done = subprocess.run(
        ["ip", "netns", "exec", ns, NOSDN, "apply", "-f", str(inv)],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "NOSDN_RT_PROTOS_D": str(tmp_path / "rt_protos.d")},
    )
    assert done.returncode == 1
    lines = done.stdout.splitlines()
    assert sum(ln.startswith("x failed to add") for ln in lines) == 20
    assert "  ... and 279 more (-o json lists every one)" in lines
    total = lines[-1]
    assert total.startswith("x 299 write(s) failed (299 Carrier for nexthop device is down")
    assert "likely cause: the next hops' link went down" in total
    assert len(lines) < 30


def test_writes_raced_by_another_writer_say_so(host: str) -> None:
    """Another writer adds the same prefixes between apply's read and its writes: every add
    fails with File exists, and the summary names that cause."""
    from nosdn.backends.kernel import KernelBackend
    from nosdn.cli._kernel_cmds import failure_lines
    from nosdn.model import Route
    from nosdn.plan import diff as plan_diff

    wanted = [
        Route(ip_network(f"172.17.{i}.0/24"), (ip_address(f"10.0.0.{2 + i % 3}"),), f"n{i}")
        for i in range(100)
    ]
    with KernelBackend(netns=host) as b:
        b.adjacency(sorted({r.via[0] for r in wanted}))
        diff = plan_diff(wanted, b.entries())
        batch = "".join(f"route add {r.dst} via {r.via[0]} proto static\n" for r in wanted)
        subprocess.run(["ip", "-n", host, "-batch", "-"], input=batch, text=True, check=True)
        res = b.apply(diff)
    lines = failure_lines(res.errors)
    assert len(lines) == 22
    assert lines[-1].startswith("x 100 write(s) failed (100 File exists); likely cause: another")


@pytest.mark.parametrize(
    ("foreign", "kind"),
    [("blackhole 172.17.2.0/25", "blackhole"), ("172.17.2.128/25 via 10.0.0.9", "unicast")],
    ids=["blackhole", "static-via-another-host"],
)
def test_status_reports_a_more_specific_foreign_route_as_shadowing(
    host: str, nosdn: Callable[..., subprocess.CompletedProcess[str]], foreign: str, kind: str
) -> None:
    """Half of node2's pods go where someone else's /25 says, though nosdn's /24 is right:
    status says so (exit 1), names the route, its type and protocol, and what to do; apply
    leaves the foreign route alone."""
    assert nosdn("apply").returncode == 0
    ip(host, "route", "add", *foreign.split(), "proto", "static")
    status = nosdn("status", "-o", "json")
    assert status.returncode == 1
    rows = {r["dst"]: r for r in json.loads(status.stdout)["routes"]}
    row = rows["172.17.2.0/24"]
    assert row["state"] == "shadowed"
    prefix = foreign.split()[1 if kind == "blackhole" else 0]
    assert row["shadowedBy"] == [{"dst": prefix, "type": kind, "owner": "static"}]
    assert rows["172.17.3.0/24"]["state"] == "ok"
    text = nosdn("status")
    assert text.returncode == 1
    assert f"! conflict {prefix} shadows 172.17.2.0/24 via 10.0.0.2 (node2)" in text.stdout
    want_del = f"ip route del {'blackhole ' if kind == 'blackhole' else ''}{prefix} proto static"
    assert f"remove it only if it is wrong: {want_del}" in text.stdout
    assert nosdn("apply").returncode == 0
    assert prefix in ip(host, "route", "show", "proto", "static")


def test_node_of_another_host_is_refused(
    nosdn: Callable[..., subprocess.CompletedProcess[str]], host: str
) -> None:
    """`plan --node node2` on node1 would plan to remove the route to node2's pods: exit 2,
    naming the address that makes this host node1."""
    before = ip(host, "route", "show", "table", "all")
    for cmd in ("plan", "apply"):
        r = nosdn(cmd, "--node", "node2")
        assert r.returncode == 2, r.stdout + r.stderr
        assert "--node node2: this host has the address 10.0.0.1 of node node1" in r.stderr
    assert ip(host, "route", "show", "table", "all") == before
    assert nosdn("plan", "--node", "node1").returncode == 0


def test_apply_refuses_a_mass_removal_unless_forced(
    nosdn: Callable[..., subprocess.CompletedProcess[str]], host: str, tmp_path: Path
) -> None:
    """A host of another cluster with the same address: its inventory wants none of the routes
    installed here. apply refuses (exit 1, the plan printed, nothing written), --force goes."""
    assert nosdn("apply").returncode == 0
    installed = ip(host, "route", "show", "table", "all")
    other = tmp_path / "other.yaml"
    node1 = next(line for line in INVENTORY.splitlines() if "name: node1" in line)
    other.write_text(f"clusterCIDRs: [172.17.0.0/16, fd17::/48]\nnodes:\n{node1}\n")
    refused = nosdn("apply", file=other)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "would remove 4 of the 4 routes nosdn owns here at once" in refused.stderr
    assert "--force" in refused.stderr
    assert "- 172.17.2.0/24 nhid 1 via 10.0.0.2" in refused.stdout  # the plan, printed
    assert ip(host, "route", "show", "table", "all") == installed
    assert nosdn("apply", "--max-delete-share", "0", file=other).returncode == 2
    forced = nosdn("apply", "--force", file=other)
    assert forced.returncode == 0, forced.stdout + forced.stderr
    assert "proto" not in ip(host, "route", "show", "proto", "157")


def test_plan_exit_code_is_a_drift_check(
    nosdn: Callable[..., subprocess.CompletedProcess[str]],
) -> None:
    """plan --exit-code: 1 while apply has work to do, 0 once in sync; plain plan exits 0."""
    assert nosdn("plan").returncode == 0
    drift = nosdn("plan", "--exit-code")
    assert drift.returncode == 1, drift.stdout + drift.stderr
    assert "4 to add" in drift.stdout
    assert nosdn("apply").returncode == 0
    assert nosdn("plan", "--exit-code").returncode == 0
    assert nosdn("plan", "--exit-code", "--cloud", "aws").returncode == 2  # no meaning there
