"""`nosdn doctor` on a real node (root): each check sees the thing broken, names the fix, and
sees it mended — by running the very command it printed.

One dual-stack lab (two nodes, one pod each: real namespaces, real CNI plugins, routes from
`nosdn apply`) serves the module; every test breaks one thing inside node1's namespace, runs
``ip netns exec NODE python -m nosdn doctor -o json`` there, runs the printed fix in the same
namespace, and restores anything else it touched in a ``finally``. Nothing is attached to this
machine's own namespace.
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import requires_root
from nosdn.lab import Lab, LabSpec, down, up
from nosdn.lab import netns as ns

pytestmark = [pytest.mark.root, pytest.mark.slow, requires_root]

VENV_BIN = str(Path(sys.executable).parent)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    name = f"dr-{secrets.token_hex(3)}"
    root = tmp_path_factory.mktemp("labs")
    made = None
    try:
        made = up(LabSpec(name=name, nodes=2, ipv6=True, pods_per_node=1), root=root)
        yield made
    finally:
        down(name, root=root)
        assert not [n for n in ns.list_netns() if n.startswith(f"{name}.")]


def node_ns(lab: Lab, node: str = "node1") -> str:
    return lab.topo.node(node).netns


#: A PATH without this venv (sudo's secure_path): where a printed fix may be pasted.
BARE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#: How the doctor is run here, so how its fix commands start.
PROGRAM = shlex.join([sys.executable, "-m", "nosdn"])


def sh(
    lab: Lab, command: str, node: str = "node1", check: bool = True, path: str | None = None
) -> str:
    """Run a shell command inside the node, with this venv's `nosdn` first on PATH (or with
    exactly ``path``)."""
    path = path or f"{VENV_BIN}:{os.environ.get('PATH', '/usr/bin:/bin')}"
    env = {**os.environ, "PATH": path}
    proc = subprocess.run(
        ["ip", "netns", "exec", node_ns(lab, node), "sh", "-c", command],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    if check:
        assert proc.returncode == 0, f"{command}: {proc.stdout}{proc.stderr}"
    return proc.stdout


def doctor(
    lab: Lab,
    *args: str,
    node: str = "node1",
    inventory: Path | None = None,
    program: tuple[str, ...] = (sys.executable, "-m", "nosdn"),
) -> tuple[int, dict[str, dict[str, Any]]]:
    argv = [
        "ip", "netns", "exec", node_ns(lab, node), *program, "doctor",
        "-f", str(inventory or lab.paths.inventory),
        "--cni-conf", str(lab.paths.conflist(node)),
        "-o", "json", *args,
    ]  # fmt: skip
    env = {**os.environ, "PATH": BARE_PATH}
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False, env=env)
    assert proc.returncode in (0, 1), proc.stderr
    data = json.loads(proc.stdout)
    return proc.returncode, {c["check"]: c for c in data["checks"]}


def broken(lab: Lab, check: str, *args: str, **kw: Any) -> dict[str, Any]:
    rc, checks = doctor(lab, *args, **kw)
    assert checks[check]["status"] == "fail", checks[check]
    assert rc == 1
    assert checks[check]["fix"], checks[check]
    return checks[check]


def mended(lab: Lab, check: str, *args: str, **kw: Any) -> dict[str, Any]:
    _rc, checks = doctor(lab, *args, **kw)
    assert checks[check]["status"] == "ok", checks[check]
    return checks[check]


def break_fix_mend(lab: Lab, check: str, *args: str) -> dict[str, Any]:
    """Doctor fails ``check``; its fix, run in the node, makes it pass. Returns the failure."""
    seen = broken(lab, check, *args)
    sh(lab, seen["fix"])
    mended(lab, check, *args)
    return seen


def snapshot(lab: Lab) -> str:
    """What doctor must not change: links, addresses, routes, neighbours' set, nexthops,
    firewall, forwarding and rp_filter sysctls."""
    return sh(
        lab,
        "ip -o link; ip -o addr; ip route show table all; ip -6 route show table all; "
        "ip nexthop; nft list ruleset; sysctl -a 2>/dev/null | grep -E 'forwarding|rp_filter'",
    )


def test_healthy_node(lab: Lab) -> None:
    rc, checks = doctor(lab)
    assert rc == 0, checks
    assert {c: r["status"] for c, r in checks.items() if r["status"] not in ("ok", "skip")} == {}
    for check in ("forwarding.ipv4", "forwarding.ipv6", "routes", "cni.conflist", "nexthops"):
        assert checks[check]["status"] == "ok"
    assert "2 of 2 wanted routes" in checks["routes"]["saw"]


def test_doctor_changes_nothing(lab: Lab) -> None:
    sh(lab, "sysctl -qw net.ipv4.ip_forward=0; ip route del 10.244.2.0/24; ip link set cni0 down")
    try:
        before = snapshot(lab)
        rc, _ = doctor(lab, "--masquerade", "true")
        assert rc == 1
        assert snapshot(lab) == before
    finally:
        sh(lab, "sysctl -qw net.ipv4.ip_forward=1; ip link set cni0 up")
        sh(lab, "ip addr replace fd00:244:0:1::1/64 dev cni0")  # down took it
        sh(lab, f"nosdn apply -f {lab.paths.inventory} --node node1")
    assert doctor(lab)[0] == 0


@pytest.mark.parametrize(
    ("family", "key"), [(4, "net.ipv4.ip_forward"), (6, "net.ipv6.conf.all.forwarding")]
)
def test_forwarding(lab: Lab, family: int, key: str) -> None:
    sh(lab, f"sysctl -qw {key}=0")
    try:
        seen = break_fix_mend(lab, f"forwarding.ipv{family}")
        assert seen["fix"] == f"sysctl -w {key}=1"
    finally:
        sh(lab, f"sysctl -qw {key}=1")


def test_rp_filter_strict_with_an_asymmetric_route(lab: Lab) -> None:
    """node2's pods arrive on eth0 (where node2 is), but a more specific route to part of
    their subnet leaves by another interface: strict mode drops them, loose does not."""
    sh(lab, "sysctl -qw net.ipv4.conf.all.rp_filter=1")
    try:
        strict_ok = mended(lab, "rp_filter")  # strict, but every route back is symmetric
        assert "strict on" in strict_ok["saw"]
        sh(
            lab,
            "ip link add dr0 type veth peer name dr1 && ip link set dr0 up && ip link set dr1 up",
        )
        sh(lab, "ip route add 10.244.2.0/25 dev dr0")
        seen = break_fix_mend(lab, "rp_filter")
        assert seen["fix"] == "sysctl -w net.ipv4.conf.eth0.rp_filter=2"
        assert "node2's pods (10.244.2.0/24) arrive on eth0" in seen["details"][0]
    finally:
        sh(lab, "ip link del dr0; sysctl -qw net.ipv4.conf.all.rp_filter=0", check=False)
        sh(lab, "sysctl -qw net.ipv4.conf.eth0.rp_filter=0")


def test_forward_policy_drop_iptables(lab: Lab) -> None:
    """Docker's `iptables -P FORWARD DROP` (iptables-nft here), both families."""
    sh(lab, "iptables -P FORWARD DROP && ip6tables -P FORWARD DROP")
    try:
        seen4 = break_fix_mend(lab, "firewall.forward.ipv4")
        assert seen4["fix"] == (
            "iptables -I FORWARD -s 10.244.1.0/24 -j ACCEPT && "
            "iptables -I FORWARD -d 10.244.1.0/24 -j ACCEPT"
        )
        assert "policy drop" in seen4["saw"]
        break_fix_mend(lab, "firewall.forward.ipv6")
    finally:
        sh(lab, "iptables -F FORWARD; iptables -P FORWARD ACCEPT")
        sh(lab, "ip6tables -F FORWARD; ip6tables -P FORWARD ACCEPT")


def test_forward_drop_rule_native_nftables(lab: Lab) -> None:
    """An inet table whose forward chain accepts only established flows, then drops."""
    sh(
        lab,
        "nft 'add table inet fw; add chain inet fw gate { type filter hook forward priority 0; }; "
        "add rule inet fw gate ct state established accept; add rule inet fw gate drop'",
    )
    try:
        seen = break_fix_mend(lab, "firewall.forward.ipv4")
        assert seen["fix"].startswith("nft insert rule inet fw gate ip saddr 10.244.1.0/24 accept")
        assert "rule 'drop'" in seen["saw"]
    finally:
        sh(lab, "nft delete table inet fw", check=False)


def pod_pings(lab: Lab, src: str, dst: str) -> bool:
    """One ping, pod to pod (``node1/pod1`` -> ``node2/pod1``), over IPv4."""
    a, b = (next(p for p in lab.pods() if p.label == x) for x in (src, dst))
    proc = subprocess.run(
        ["ip", "netns", "exec", a.netns, "ping", "-c", "1", "-W", "2", str(b.ip_for(4))],
        capture_output=True,
        check=False,
        timeout=30,
    )
    return proc.returncode == 0


@pytest.mark.parametrize(
    ("check", "table", "nft"),
    [
        (
            "firewall.prerouting.ipv4",
            "inet early",
            "add chain inet early raw { type filter hook prerouting priority raw; }; "
            "add rule inet early raw ip saddr 10.244.2.0/24 drop",
        ),
        (
            "firewall.ingress.ipv4",
            "netdev early",
            "add chain netdev early eth0 { type filter hook ingress device eth0 priority 0; }; "
            "add rule netdev early eth0 ip saddr 10.244.0.0/16 drop",
        ),
    ],
    ids=["prerouting-raw", "netdev-ingress"],
)
def test_drops_before_the_forward_chain(lab: Lab, check: str, table: str, nft: str) -> None:
    """A drop of pod packets in prerouting or in a netdev ingress chain: the forward check
    alone says ok (the packets never get there); this check fails, and its fix lets them
    through (pods ping again)."""
    assert pod_pings(lab, "node2/pod1", "node1/pod1")
    sh(lab, f"nft 'add table {table}; {nft}'")
    try:
        assert not pod_pings(lab, "node2/pod1", "node1/pod1")
        _, checks = doctor(lab)
        assert checks["firewall.forward.ipv4"]["status"] == "ok"
        seen = break_fix_mend(lab, check)
        assert "drops pod packets before routing" in seen["saw"]
        assert seen["fix"].startswith(f"nft insert rule {table} ")
        assert pod_pings(lab, "node2/pod1", "node1/pod1")
    finally:
        sh(lab, f"nft delete table {table}", check=False)


def test_policy_rule_sending_pod_traffic_to_another_table(lab: Lab) -> None:
    """A rule that takes this node's pods' traffic to another table (whose default route
    is a blackhole) breaks pod-to-pod traffic while the routes in main are right; a rule
    selecting by fwmark is only a warning; a rule whose table has no route for pods is fine."""
    assert pod_pings(lab, "node1/pod1", "node2/pod1")
    sh(lab, "ip route add blackhole default table 100")
    sh(lab, "ip rule add fwmark 0x99 lookup 100 priority 101")
    sh(lab, "ip route add 192.0.2.0/24 via 10.10.0.2 table 101")
    sh(lab, "ip rule add lookup 101 priority 102")  # from all, but nothing for pods there
    try:
        uncertain = doctor(lab)[1]["rules.ipv4"]
        assert uncertain["status"] == "warn", uncertain
        assert "fwmark 0x99" in uncertain["saw"]
        sh(lab, "ip rule add from 10.244.1.0/24 lookup 100 priority 100")
        assert not pod_pings(lab, "node1/pod1", "node2/pod1")
        seen = broken(lab, "rules.ipv4")
        assert seen["fix"] == "ip rule del priority 100"
        assert (
            "10.244.1.1 -> 10.244.2.1: rule '100: from 10.244.1.0/24 lookup 100' sends it "
            in (seen["details"][0])
        )
        assert "blackhole 0.0.0.0/0 proto boot table 100" in seen["details"][0]
        _, checks = doctor(lab)
        assert checks["routes"]["status"] == "ok"  # nosdn's routes are right all along
        sh(lab, seen["fix"])
        assert pod_pings(lab, "node1/pod1", "node2/pod1")
        assert doctor(lab)[1]["rules.ipv4"]["status"] == "warn"  # the fwmark rule is left
    finally:
        sh(lab, "ip rule del priority 100; ip rule del priority 101; ip rule del priority 102",
           check=False)  # fmt: skip
        sh(lab, "ip route flush table 100; ip route flush table 101", check=False)
    assert doctor(lab)[1]["rules.ipv4"]["status"] == "ok"


def test_says_what_it_does_not_check(lab: Lab) -> None:
    _, checks = doctor(lab)
    line = checks["not-checked"]
    assert line["status"] == "skip"
    assert "tc filters" in line["saw"]
    assert "eBPF" in line["saw"]


def test_routes_missing_wrong_stale(lab: Lab) -> None:
    fix = f"{PROGRAM} apply -f {lab.paths.inventory} --node node1"
    sh(lab, "ip route del 10.244.2.0/24")
    seen = break_fix_mend(lab, "routes")
    assert seen["fix"] == fix
    assert seen["details"] == ["missing 10.244.2.0/24 via 10.10.0.2 (node2)"]

    sh(lab, "ip route replace 10.244.2.0/24 via 10.10.0.254 proto 157")
    seen = break_fix_mend(lab, "routes")
    assert seen["details"][0].startswith("wrong 10.244.2.0/24: wants via 10.10.0.2, has ")

    sh(lab, "ip route add 10.244.99.0/24 via 10.10.0.2 proto 157")
    seen = break_fix_mend(lab, "routes")
    assert seen["saw"].startswith("0 missing, 0 wrong, 1 stale")


def test_fix_commands_run_where_nosdn_is_not_on_path(lab: Lab) -> None:
    """The fix names nosdn as it was run (the venv's entry point by its path, or this Python
    with -m nosdn), so pasted into a shell whose PATH has no nosdn it still runs."""
    assert shutil.which("nosdn", path=BARE_PATH) is None
    entry = str(Path(VENV_BIN) / "nosdn")
    try:
        for program in ((sys.executable, "-m", "nosdn"), (entry,)):
            sh(lab, "ip route del 10.244.2.0/24")
            seen = broken(lab, "routes", program=program)
            assert seen["fix"] == (
                f"{shlex.join(program)} apply -f {lab.paths.inventory} --node node1"
            )
            sh(lab, seen["fix"], path=BARE_PATH)
            mended(lab, "routes", program=program)
    finally:
        sh(lab, f"nosdn apply -f {lab.paths.inventory} --node node1")


def test_conflict(lab: Lab) -> None:
    sh(lab, "ip route replace 10.244.2.0/24 via 10.10.0.254 proto static")
    try:
        seen = break_fix_mend(lab, "conflicts")
        assert seen["fix"].startswith(f"ip route del 10.244.2.0/24 proto static && {PROGRAM} apply")
        assert "found 10.244.2.0/24 via 10.10.0.254 dev eth0 proto static" in seen["details"][0]
    finally:
        sh(lab, "ip route del 10.244.2.0/24 proto static", check=False)
        sh(lab, f"nosdn apply -f {lab.paths.inventory} --node node1")


@pytest.mark.parametrize(
    ("foreign", "prefix", "kind"),
    [
        ("blackhole 10.244.2.0/25", "10.244.2.0/25", "blackhole"),
        ("10.244.2.128/25 via 10.10.0.254", "10.244.2.128/25", "unicast"),
        ("unreachable 10.244.1.0/26", "10.244.1.0/26", "unreachable"),  # this node's own pods
    ],
    ids=["blackhole-in-peer-subnet", "static-via-another-host", "unreachable-in-own-subnet"],
)
def test_more_specific_foreign_route_shadows_a_pod_subnet(
    lab: Lab, foreign: str, prefix: str, kind: str
) -> None:
    """nosdn's routes are all right, but someone else's more specific route takes part of a
    pod subnet: a conflict that shadows it, with the prefix, type, protocol and the command
    that removes it (only that route)."""
    sh(lab, f"ip route add {foreign} proto static")
    try:
        seen = break_fix_mend(lab, "conflicts")
        assert "shadow pod subnets" in seen["saw"]
        assert f"{kind} {prefix} proto static" in seen["saw"]
        assert (
            seen["fix"]
            == f"ip route del {'' if kind == 'unicast' else kind + ' '}{prefix} proto static"
        )
        assert seen["details"][0].startswith(f"{prefix} ({kind}, proto static) shadows 10.244.")
    finally:
        sh(lab, f"ip route del {foreign} proto static", check=False)
    _, checks = doctor(lab)
    assert checks["routes"]["status"] == "ok"


def test_offlink_node(lab: Lab, tmp_path: Path) -> None:
    """A third node on a network node1 is not on: reported; failing while nothing routes its
    pods, a warning once a default route (a router) does, ok once it is on-link."""
    inv = tmp_path / "inventory.yaml"
    inv.write_text(
        lab.paths.inventory.read_text()
        + "- name: node3\n  ips: [10.99.0.3]\n  podCIDRs: [10.244.3.0/24]\n"
    )
    try:
        seen = broken(lab, "offlink", inventory=inv)
        assert "node3" in seen["saw"]
        assert f"{PROGRAM} render -f" in seen["fix"]
        assert any("10.244.3.0/24 are unreachable" in d for d in seen["details"])
        sh(lab, "ip route add default via 10.10.0.2")
        _, checks = doctor(lab, inventory=inv)
        assert checks["offlink"]["status"] == "warn", checks["offlink"]
        assert "go 10.244.3.1 via 10.10.0.2 dev eth0" in checks["offlink"]["details"][0]
        sh(lab, "ip addr add 10.99.0.1/24 dev eth0")
        mended(lab, "offlink", inventory=inv)
    finally:
        sh(lab, "ip route del default; ip addr del 10.99.0.1/24 dev eth0", check=False)


def test_neighbour_failed(lab: Lab) -> None:
    switch = lab.topo.switch_ns
    sh(lab, "ip neigh flush dev eth0")
    ns.run(["ip", "-n", switch, "link", "set", "node2", "down"])
    try:
        sh(lab, "ping -c 1 -W 1 10.10.0.2", check=False)
        sh(lab, "sleep 2; ping -c 1 -W 1 10.10.0.2", check=False)  # INCOMPLETE -> FAILED
        seen = broken(lab, "neighbours")
        assert seen["fix"] == "ping -c 1 -W 1 10.10.0.2"
        assert seen["details"][0].startswith("10.10.0.2 (node2) on eth0: ")
        ns.run(["ip", "-n", switch, "link", "set", "node2", "up"])
        sh(lab, seen["fix"])
        mended(lab, "neighbours")
        # node2 lost carrier meanwhile, and the kernel flushes nexthop objects (and every
        # route using them) of a device whose carrier goes: its doctor sees that too.
        seen2 = broken(lab, "routes", node="node2")
        assert seen2["details"][0].startswith("missing 10.244.1.0/24 via 10.10.0.1 (node1)")
        sh(lab, seen2["fix"], node="node2")
        mended(lab, "routes", node="node2")
    finally:
        ns.run(["ip", "-n", switch, "link", "set", "node2", "up"])
        sh(lab, f"nosdn apply -f {lab.paths.inventory} --node node2", node="node2")


def test_mtu_mismatch(lab: Lab) -> None:
    conflist = lab.paths.conflist("node1")
    original = conflist.read_text()
    sh(lab, "ip link set eth0 mtu 1400")
    try:
        seen = break_fix_mend(lab, "mtu")
        assert "pods use MTU 1500 but eth0 carries 1400" in seen["saw"]
        assert "--mtu 1400 >" in seen["fix"]
        assert '"mtu": 1400' in conflist.read_text()
    finally:
        sh(lab, "ip link set eth0 mtu 1500")
        conflist.write_text(original)
    mended(lab, "mtu")


def test_conflist_missing_then_wrong_subnets(lab: Lab) -> None:
    conflist = lab.paths.conflist("node1")
    original = conflist.read_text()
    try:
        conflist.unlink()
        seen = break_fix_mend(lab, "cni.conflist")
        assert seen["saw"].startswith(f"no conflist at {conflist}")
        assert conflist.read_text() == original  # the fix renders the very same file
        conflist.write_text(lab.paths.conflist("node2").read_text())
        seen = break_fix_mend(lab, "cni.conflist")
        assert "hands out 10.244.2.0/24, fd00:244:0:2::/64" in seen["saw"]
        assert conflist.read_text() == original
    finally:
        conflist.write_text(original)


def test_pod_bridge_down(lab: Lab) -> None:
    """Down takes the bridge's IPv6 gateway address with it (IPv4's stays): the fix brings the
    link up and puts the gateway back, and pods are reachable again from the other node."""
    sh(lab, "ip link set cni0 down")
    try:
        seen = break_fix_mend(lab, "cni.bridge")
        assert seen["fix"] == ("ip link set cni0 up && ip addr replace fd00:244:0:1::1/64 dev cni0")
    finally:
        sh(lab, "ip link set cni0 up")
    pod = lab.pods()[0]
    assert pod.label == "node1/pod1"
    for ip in pod.ips:
        sh(lab, f"ping -c 1 -W 2 {ip}", node="node2")


def test_masquerade(lab: Lab) -> None:
    # expected but absent
    seen = break_fix_mend(lab, "masquerade.ipv4", "--masquerade", "true")
    assert seen["fix"].startswith("nft 'add table inet nosdn; ")
    try:
        # a rule that masquerades everything from the pods hides them from other nodes too
        sh(lab, "nft 'delete table inet nosdn; add table inet nosdn; add chain inet nosdn "
                "postrouting { type nat hook postrouting priority srcnat; }; add rule inet nosdn "
                "postrouting ip saddr 10.244.1.0/24 masquerade'")  # fmt: skip
        seen = break_fix_mend(lab, "masquerade.ipv4")  # auto: a nosdn table exists
        assert "traffic between pods" in seen["saw"]
        # the agent's own table (named sets) is recognised
        from ipaddress import ip_network

        from nosdn.agent.egress import render

        script = render(
            [ip_network("10.244.1.0/24"), ip_network("fd00:244:0:1::/64")],
            [ip_network("10.244.0.0/16"), ip_network("fd00:244::/56")],
        )
        sh(lab, f"nft -f - <<'EOF'\n{script}EOF")
        mended(lab, "masquerade.ipv4")
        mended(lab, "masquerade.ipv6")
    finally:
        sh(lab, "nft delete table inet nosdn", check=False)
    _, checks = doctor(lab)
    assert checks["masquerade.ipv4"]["status"] == "skip"  # auto, and no nosdn table


def test_nexthops_supported_here(lab: Lab) -> None:
    assert "nexthop objects" in mended(lab, "nexthops")["saw"]


def test_external_host_skips_node_checks(lab: Lab) -> None:
    argv = [
        "ip", "netns", "exec", lab.topo.external_ns, sys.executable, "-m", "nosdn", "doctor",
        "-f", str(lab.paths.inventory), "--external", "-o", "json",
    ]  # fmt: skip
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    checks = {c["check"]: c for c in json.loads(proc.stdout)["checks"]}
    assert checks["forwarding.ipv4"]["status"] == "skip"
    assert checks["cni.bridge"]["status"] == "skip"
    assert checks["routes"]["status"] == "ok"
    assert "4 of 4 wanted routes" in checks["routes"]["saw"]
