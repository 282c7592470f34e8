"""The kernel backend against a real kernel, inside throw-away network namespaces (root).

Each test builds a "host" namespace: a bridge ``br0`` carrying 10.0.0.1/24 and fd00::1/64, the
addresses of node n1. The peers' addresses are on that network (so they are L2-adjacent) unless
a test says otherwise. The backend opens its netlink socket inside the namespace (``netns=``),
so the machine's own routing table is never written; an autouse fixture checks that.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from ipaddress import ip_address, ip_network

import pytest

from conftest import ip, requires_root
from nosdn.backends.kernel import KernelBackend
from nosdn.backends.kernel import _netlink as nl
from nosdn.backends.kernel import cache as kernel_cache
from nosdn.backends.kernel.cache import KernelCache
from nosdn.model import EXTERNAL, Cluster, Node, Target
from nosdn.plan import desired_routes, diff
from nosdn.reconcile import OffLinkError, PassResult, nodes_with_addresses, reconcile_once

pytestmark = [pytest.mark.root, requires_root]

N1 = Target.for_node("n1")


def node(i: int, *, v4: str | None = None, v6: bool = True, extra: int = 0) -> Node:
    ips = [ip_address(v4 or f"10.0.0.{i}")]
    cidrs = [ip_network(f"172.17.{i}.0/24")]
    if v6:
        ips.append(ip_address(f"fd00::{i}"))
        cidrs.append(ip_network(f"fd17:0:0:{i}::/64"))
    if extra:
        cidrs.append(ip_network(f"172.18.{i}.0/24"))
    return Node(f"n{i}", tuple(ips), tuple(cidrs))


def cluster(*nodes: Node, service_via: tuple[str, ...] = ()) -> Cluster:
    return Cluster(
        tuple(nodes),
        service_cidrs=(ip_network("10.96.0.0/12"), ip_network("fd96::/108")),
        service_via=service_via,
    )


def routes_of(ns: str, *args: str) -> list[str]:
    """``ip route show ARGS`` of both families, first lines only (a prefix argument selects
    its own family)."""
    families = ["-4", "-6"]
    for a in args:
        try:
            families = [f"-{ip_network(a, strict=False).version}"]
        except ValueError:
            continue
    lines = [ln for f in families for ln in ip(ns, f, "route", "show", *args).splitlines()]
    return [_numeric(ln) for ln in lines if ln.strip() and not ln.startswith(("\t", " "))]


def ours(ns: str) -> list[str]:
    return [ln for ln in routes_of(ns) if " proto 157" in ln]


def _numeric(line: str) -> str:
    """iproute2 names protocol 157 once nosdn.conf is installed in rt_protos.d: compare the
    number either way."""
    return line.strip().replace(" proto nosdn", " proto 157")


def nexthops_of(ns: str) -> list[str]:
    return [_numeric(ln) for ln in ip(ns, "nexthop", "show").splitlines() if ln.strip()]


@pytest.fixture(autouse=True)
def _default_namespace_untouched() -> Iterator[None]:
    def ours() -> str:
        r = subprocess.run(
            ["ip", "route", "show", "proto", "157"], capture_output=True, text=True, check=False
        )
        n = subprocess.run(
            ["ip", "nexthop", "show", "protocol", "157"],
            capture_output=True,
            text=True,
            check=False,
        )
        return r.stdout + n.stdout

    before = ours()
    yield
    assert ours() == before, "a nosdn route or nexthop appeared in the default namespace"


@pytest.fixture
def host(netns: Callable[..., str]) -> str:
    ns = netns("nosdn-kb")
    ip(ns, "link", "add", "br0", "type", "bridge")
    ip(ns, "link", "set", "br0", "up")
    ip(ns, "addr", "add", "10.0.0.1/24", "dev", "br0")
    ip(ns, "addr", "add", "fd00::1/64", "dev", "br0", "nodad")
    return ns


def run(ns: str, c: Cluster, target: Target = N1, **kw: object) -> PassResult:
    with KernelBackend(netns=ns, **kw) as b:  # type: ignore[arg-type]
        return reconcile_once(c, target, b, adjacency=b.adjacency)


def test_install_both_families_then_second_apply_writes_nothing(host: str) -> None:
    c = cluster(node(1), node(2), node(3))
    first = run(host, c)
    assert first.ok, first.errors
    assert first.diff.writes == 4
    table = ours(host)
    assert "172.17.2.0/24 nhid 1 via 10.0.0.2 dev br0 proto 157" in table[0] or any(
        ln.startswith("172.17.2.0/24 nhid") and "via 10.0.0.2" in ln for ln in table
    )
    assert any(ln.startswith("fd17:0:0:3::/64 nhid") and "via fd00::3" in ln for ln in table)
    assert not any("172.17.1.0" in ln or "fd17:0:0:1::" in ln for ln in table), "own subnet"
    assert len(nexthops_of(host)) == 4  # one per peer and family

    second = run(host, c)
    assert second.diff.writes == 0
    assert second.writes == 0
    assert len(second.diff.keep) == 4


def test_static_route_is_a_conflict_and_survives_apply_and_flush(host: str) -> None:
    ip(host, "route", "add", "172.17.2.0/24", "via", "10.0.0.9", "proto", "static")
    c = cluster(node(1), node(2), node(3))
    res = run(host, c)
    assert [str(x.wanted.dst) for x in res.conflicts] == ["172.17.2.0/24"]
    assert res.conflicts[0].found.owner == "static"
    assert "via 10.0.0.9" in res.conflicts[0].found.detail
    assert not res.ok
    static = "172.17.2.0/24 via 10.0.0.9 dev br0 proto static"
    assert static in routes_of(host)
    with KernelBackend(netns=host) as b:
        flushed = b.flush()
    assert flushed.ok
    assert static in routes_of(host)
    assert ours(host) == []
    assert nexthops_of(host) == []


def test_stale_route_removed_and_its_nexthop_collected(host: str) -> None:
    run(host, cluster(node(1), node(2), node(3)))
    res = run(host, cluster(node(1), node(2)))
    assert res.ok
    assert {str(r.dst) for r in res.diff.remove} == {"172.17.3.0/24", "fd17:0:0:3::/64"}
    table = " ".join(routes_of(host))
    assert "172.17.3.0" not in table
    assert "fd17:0:0:3::" not in table
    assert "172.17.2.0/24" in table
    assert not any("10.0.0.3" in nh or "fd00::3" in nh for nh in nexthops_of(host))
    assert len(nexthops_of(host)) == 2


def test_wrong_next_hop_corrected(host: str) -> None:
    ip(host, "route", "add", "172.17.2.0/24", "via", "10.0.0.9", "proto", "157")
    res = run(host, cluster(node(1, v6=False), node(2, v6=False)))
    assert res.ok, res.errors
    assert [str(ch.new.dst) for ch in res.diff.change] == ["172.17.2.0/24"]
    (line,) = routes_of(host, "172.17.2.0/24")
    assert "via 10.0.0.2" in line
    assert "nhid" in line
    assert "proto 157" in line


def test_route_deleted_by_hand_is_restored(host: str) -> None:
    c = cluster(node(1), node(2))
    run(host, c)
    ip(host, "route", "del", "172.17.2.0/24")
    ip(host, "-6", "route", "del", "fd17:0:0:2::/64")
    res = run(host, c)
    assert res.writes == 2  # two routes; their nexthops were still there
    assert {str(r.dst) for r in res.diff.add} == {"172.17.2.0/24", "fd17:0:0:2::/64"}
    assert len(ours(host)) == 2


def test_address_change_is_one_nexthop_replace(host: str) -> None:
    before = cluster(node(1, v6=False), node(2, v6=False, extra=1), node(3, v6=False))
    run(host, before)
    (old_nh,) = [nh for nh in nexthops_of(host) if "via 10.0.0.2 " in nh]
    monitor = subprocess.Popen(
        ["ip", "-n", host, "monitor", "nexthop", "route"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        time.sleep(0.3)  # let it subscribe
        after = cluster(
            node(1, v6=False), node(2, v4="10.0.0.22", v6=False, extra=1), node(3, v6=False)
        )
        res = run(host, after)
        time.sleep(0.3)
    finally:
        monitor.terminate()
        events = [_numeric(e) for e in monitor.communicate(timeout=5)[0].splitlines()]
    assert res.ok, res.errors
    assert len(res.diff.change) == 2  # the diff sees two routes move ...
    assert res.writes == 1  # ... and the backend makes one write
    nh_events = [e for e in events if e.startswith(("id ", "Deleted id"))]
    assert nh_events == [old_nh.replace("10.0.0.2 ", "10.0.0.22 ")], events
    # the rest are the kernel's own notifications of the two routes following their nexthop
    route_events = [e for e in events if e not in nh_events and not e.startswith(("\t", " "))]
    assert not any(e.startswith("Deleted") for e in route_events), events
    nhid = old_nh.split()[1]
    assert all(f"nhid {nhid} via 10.0.0.22" in e for e in route_events), events
    assert sorted(ln for ln in routes_of(host) if "10.0.0.22" in ln) == [
        f"172.17.2.0/24 nhid {nhid} via 10.0.0.22 dev br0 proto 157",
        f"172.18.2.0/24 nhid {nhid} via 10.0.0.22 dev br0 proto 157",
    ]


def test_offlink_node_reported_and_skipped(host: str) -> None:
    ip(host, "route", "add", "default", "via", "10.0.0.254")
    c = cluster(node(1, v6=False), node(2, v6=False), node(5, v4="10.9.0.5", v6=False))
    res = run(host, c)
    assert [(o.node, str(o.gateway)) for o in res.offlink] == [("n5", "10.9.0.5")]
    assert str(res.offlink[0].kernel_via) == "10.0.0.254"
    assert "10.0.0.254" in res.offlink[0].reason
    assert [str(r.dst) for r in res.skipped] == ["172.17.5.0/24"]
    table = " ".join(routes_of(host))
    assert "172.17.5.0" not in table
    assert "172.17.2.0/24" in table

    with KernelBackend(netns=host) as b, pytest.raises(OffLinkError) as exc:
        reconcile_once(c, N1, b, adjacency=b.adjacency, strict=True)
    assert "n5 (10.9.0.5)" in str(exc.value)


def test_strict_offlink_writes_nothing(host: str) -> None:
    c = cluster(node(1, v6=False), node(2, v6=False), node(5, v4="10.9.0.5", v6=False))
    with KernelBackend(netns=host) as b, pytest.raises(OffLinkError):
        reconcile_once(c, N1, b, adjacency=b.adjacency, strict=True)
    assert ours(host) == []


def test_external_ecmp_service_route_is_a_nexthop_group(host: str) -> None:
    ip(host, "addr", "flush", "dev", "br0")
    ip(host, "addr", "add", "10.0.0.100/24", "dev", "br0")
    ip(host, "addr", "add", "fd00::100/64", "dev", "br0", "nodad")
    c = cluster(node(1), node(2), node(3), service_via=("n1", "n2"))
    res = run(host, c, EXTERNAL)
    assert res.ok, res.errors
    (svc,) = [ln for ln in routes_of(host) if ln.startswith("10.96.0.0/12")]
    gid = svc.split()[2]
    group = ip(host, "nexthop", "show", "id", gid)
    members = group.split()[3]  # "id G group A/B proto 157"
    assert len(members.split("/")) == 2
    (svc6,) = [ln for ln in routes_of(host) if ln.startswith("fd96::/108")]
    assert "nhid" in svc6
    assert len(ours(host)) == 8  # 3 nodes x 2 families + 2 services

    # the service moves to n2+n3: a new group, the old one collected, pod routes untouched
    c2 = cluster(node(1), node(2), node(3), service_via=("n2", "n3"))
    res2 = run(host, c2, EXTERNAL)
    assert res2.ok
    assert len(res2.diff.change) == 2
    assert ip(host, "nexthop", "show", "id", gid, check=False) == ""
    assert run(host, c2, EXTERNAL).writes == 0


def test_fallback_plain_gateway_routes(host: str) -> None:
    c = cluster(node(1), node(2), node(3), service_via=("n2", "n3"))
    with KernelBackend(netns=host, use_nexthops=False) as b:
        res = reconcile_once(c, N1, b, adjacency=b.adjacency)
        assert res.ok
        assert res.writes == 4
        assert reconcile_once(c, N1, b, adjacency=b.adjacency).writes == 0
        moved = cluster(node(1), node(2, v4="10.0.0.22"), node(3))
        res = reconcile_once(moved, N1, b, adjacency=b.adjacency)
        assert res.ok
        assert res.writes == 1
    assert nexthops_of(host) == []
    table = ours(host)
    assert "172.17.2.0/24 via 10.0.0.22 dev br0 proto 157" in table
    assert any(ln.startswith("fd17:0:0:3::/64 via fd00::3 dev br0 proto 157") for ln in table)
    with KernelBackend(netns=host, use_nexthops=False) as b:
        # an external host with an ECMP service route (multipath, both families)
        res = reconcile_once(c, EXTERNAL, b, adjacency=b.adjacency)
        assert not res.errors
        assert reconcile_once(c, EXTERNAL, b, adjacency=b.adjacency).writes == 0
    multipath = ip(host, "route", "show", "10.96.0.0/12")
    assert "nexthop via 10.0.0.2" in multipath
    assert "nexthop via 10.0.0.3" in multipath


def test_nexthop_used_by_someone_elses_route_is_not_collected(host: str) -> None:
    run(host, cluster(node(1, v6=False), node(2, v6=False), node(3, v6=False)))
    (nh3,) = [nh.split()[1] for nh in nexthops_of(host) if "via 10.0.0.3 " in nh]
    ip(host, "route", "add", "192.168.7.0/24", "nhid", nh3, "table", "100", "proto", "static")
    res = run(host, cluster(node(1, v6=False), node(2, v6=False)))
    assert res.ok
    assert "172.17.3.0" not in " ".join(routes_of(host))
    assert ip(host, "route", "show", "table", "100").startswith("192.168.7.0/24 nhid " + nh3)


def test_finds_its_own_node_from_its_addresses(host: str) -> None:
    c = cluster(node(1), node(2))
    with KernelBackend(netns=host) as b:
        addrs = b.local_addresses()
    assert ip_address("10.0.0.1") in addrs
    assert ip_address("fd00::1") in addrs
    assert nodes_with_addresses(c, addrs) == ["n1"]


def test_other_table_and_protocol_number(host: str) -> None:
    c = cluster(node(1, v6=False), node(2, v6=False))
    res = run(host, c, table=1000, protocol=200)
    assert res.ok
    assert res.writes == 2
    assert [_numeric(x) for x in ip(host, "route", "show", "table", "1000").splitlines()] == [
        "172.17.2.0/24 nhid 1 via 10.0.0.2 dev br0 proto 200"
    ]
    assert "172.17.2.0" not in " ".join(routes_of(host))  # main table untouched
    # a backend with another protocol number sees those routes as someone else's
    d = diff(desired_routes(c, N1), KernelBackend(netns=host, table=1000).routes())
    assert len(d.conflicts) == 1
    assert d.conflicts[0].found.owner == "200"


@pytest.mark.parametrize("compat", ["0", "1"])
def test_one_backend_reads_what_changed_behind_an_unchanged_route(host: str, compat: str) -> None:
    """The agent's cache keeps what was built from each route message; a nexthop replaced
    under a route (with nexthop_compat_mode=0 the route message stays byte for byte the
    same), or a member of a route's group, must still show in the next read."""
    subprocess.run(
        ["ip", "netns", "exec", host, "sysctl", "-qw", f"net.ipv4.nexthop_compat_mode={compat}"],
        check=True,
    )
    c = cluster(node(1, v6=False), node(2, v6=False), node(3, v6=False), service_via=("n2", "n3"))
    with KernelBackend(netns=host) as table:
        b = KernelCache(table)
        assert reconcile_once(c, EXTERNAL, b, adjacency=b.adjacency).ok
        first = {str(r.dst): r for r in b.routes()}
        again = {str(r.dst): r for r in b.routes()}
        assert again == first
        assert again["172.17.3.0/24"] is first["172.17.3.0/24"]  # not decoded again
        (nh2,) = [nh.split()[1] for nh in nexthops_of(host) if "via 10.0.0.2 " in nh]
        # someone moves n2's nexthop, with our protocol (the agent's monitor takes that for an
        # echo of its own writes): the cache reuses its last read until invalidated...
        ip(host, "nexthop", "replace", "id", nh2, "via", "10.0.0.9", "dev", "br0", "proto", "157")
        stale = {str(r.dst): r for r in b.routes()}
        assert stale["172.17.2.0/24"] is first["172.17.2.0/24"]
        b.invalidate()  # ...as the periodic resync does
        after = {str(r.dst): r for r in b.routes()}
        assert after["172.17.2.0/24"].via == (ip_address("10.0.0.9"),)
        assert after["10.96.0.0/12"].via == (ip_address("10.0.0.3"), ip_address("10.0.0.9"))
        assert after["172.17.3.0/24"] is first["172.17.3.0/24"]
        res = reconcile_once(c, EXTERNAL, b, adjacency=b.adjacency)
        assert res.ok
        assert {str(ch.new.dst) for ch in res.diff.change} == {"172.17.2.0/24", "10.96.0.0/12"}
        assert reconcile_once(c, EXTERNAL, b, adjacency=b.adjacency).writes == 0


@pytest.mark.parametrize("compat", ["0", "1"])
def test_common_route_layouts_decode_like_any_route(host: str, compat: str) -> None:
    """The layouts read by the thousand are decoded in one unpack; what comes out must equal
    the attribute walk, for our nexthop routes, plain gateway routes and everything else."""
    subprocess.run(
        ["ip", "netns", "exec", host, "sysctl", "-qw", f"net.ipv4.nexthop_compat_mode={compat}"],
        check=True,
    )
    run(host, cluster(node(1), node(2), node(3)))
    with KernelBackend(netns=host, use_nexthops=False, table=100) as b:
        assert reconcile_once(cluster(node(1), node(4)), N1, b, adjacency=b.adjacency).ok
    ip(host, "route", "add", "192.168.9.0/24", "via", "10.0.0.9", "proto", "static")
    ip(host, "route", "add", "192.168.8.0/24", "via", "10.0.0.9", "metric", "7")
    ip(host, "route", "add", "blackhole", "192.168.7.0/24")
    with nl.Netlink(host) as n:
        payloads = [p for fam in (2, 10) for p in n.route_payloads(fam, None)]
    common = [(p, nl._parse_common(p)) for p in payloads]
    assert sum(1 for _, r in common if r is not None) == 4  # 2 via nexthops, 2 plain
    for p, r in common:
        if r is not None:
            assert r == nl._parse_any(p)
    # nexthops: IPv4 ones in one unpack, the others walked
    with nl.Netlink(host) as n:
        nexthops = n.nexthop_payloads()
    assert len(nexthops) == 4
    assert [nl.parse_nexthop(p) for p in nexthops] == [nl._parse_any_nexthop(p) for p in nexthops]
    assert sum(len(p) == nl._NH_V4.size for p in nexthops) == 2


def test_lookup_answers_decode_every_field(host: str) -> None:
    """The usual answer (an on-link IPv4 address) is decoded in one unpack: every field must
    be what the attribute walk gives, and other answers must still be walked."""
    ip(host, "route", "add", "10.9.0.0/16", "via", "10.0.0.254")
    with nl.Netlink(host) as n:
        br0 = next(i for i, name in n.links().items() if name == "br0")
        on, off, local, v6 = n.lookup(
            [ip_address(a).packed for a in ("10.0.0.2", "10.9.0.5", "10.0.0.1", "fd00::2")]
        )
    mine = ip_address("10.0.0.1").packed
    assert on == nl.Lookup(0, nl.RTN_UNICAST, br0, None, mine)
    assert off == nl.Lookup(0, nl.RTN_UNICAST, br0, ip_address("10.0.0.254").packed, mine)
    assert (local.type, local.gateway) == (nl.RTN_LOCAL, None)
    assert (v6.type, v6.oif, v6.gateway) == (nl.RTN_UNICAST, br0, None)


@pytest.mark.parametrize("compat", ["0", "1"])
def test_the_diff_of_entries_is_the_diff_of_the_routes_read(host: str, compat: str) -> None:
    """The entries the diff reads (key, gateways, ownership; the route built only when not
    kept) must diff exactly like the routes read, whatever the table holds (kept, changed,
    stale, doubled and foreign routes, ECMP groups) and whatever is wanted (changes, ECMP, a
    prefix twice), read plainly or through the agent's cache."""
    subprocess.run(
        ["ip", "netns", "exec", host, "sysctl", "-qw", f"net.ipv4.nexthop_compat_mode={compat}"],
        check=True,
    )
    c = cluster(*(node(i) for i in range(1, 7)), service_via=("n2", "n3"))
    run(host, c, EXTERNAL)
    # a second route of ours to n4's prefix (another metric), a foreign one to n5's
    ip(host, "route", "add", "172.17.4.0/24", "via", "10.0.0.4", "metric", "9", "proto", "157")
    ip(host, "route", "add", "172.17.5.0/24", "via", "10.0.0.5", "metric", "9", "proto", "4")
    moved = cluster(
        node(1), node(2, v4="10.0.0.22"), node(3), node(4), node(5), service_via=("n3", "n4")
    )
    with KernelBackend(netns=host) as b:
        cached = KernelCache(b)
        want = desired_routes(moved, EXTERNAL)
        want += [want[0], next(w for w in want if str(w.dst) == "172.17.3.0/24")]  # twice
        for desired in (want, desired_routes(c, EXTERNAL), []):
            found = b.routes()
            got = diff(desired, b.entries())
            assert got == diff(desired, found) == diff(desired, cached.entries())
            assert got.owned == sum(1 for r in found if r.owned) > 0
        assert len(got.remove) == got.owned  # nothing wanted: all ours goes
        got = diff(desired_routes(moved, EXTERNAL), b.entries())
        assert {str(ch.new.dst) for ch in got.change} >= {"172.17.2.0/24", "10.96.0.0/12"}
        removed = [str(r.dst) for r in got.remove]
        assert removed == ["172.17.4.0/24", "172.17.6.0/24", "fd17:0:0:6::/64"]  # 4: the extra
        assert [str(k.wanted.dst) for k in got.conflicts] == ["172.17.5.0/24"]


def test_the_diff_of_a_table_without_our_routes(host: str) -> None:
    """The first apply's shortcut (nothing of ours in the table) must still be the diff of
    every route read: foreign routes to wanted prefixes are conflicts, the rest adds."""
    ip(host, "route", "add", "172.17.5.0/24", "via", "10.0.0.5", "proto", "static")
    ip(host, "route", "add", "172.17.6.0/25", "via", "10.0.0.6", "proto", "static")
    ip(host, "-6", "route", "add", "fd17:0:0:3::/64", "via", "fd00::3", "proto", "static")
    c = cluster(*(node(i) for i in range(1, 7)), service_via=("n2", "n3"))
    with KernelBackend(netns=host) as b:
        want = desired_routes(c, EXTERNAL)
        want += [next(w for w in want if str(w.dst) == "172.17.5.0/24")]  # wanted twice
        got = diff(want, b.entries())
        assert got == diff(want, b.routes())
        assert got.owned == 0
        assert [str(k.wanted.dst) for k in got.conflicts] == [
            "172.17.5.0/24",
            "fd17:0:0:3::/64",
            "172.17.5.0/24",
        ]
        assert len(got.add) == len(want) - 3


def test_cached_lookups_stand_until_invalidated(host: str) -> None:
    """The agent's cache keeps next-hop lookups; its monitor reports link, address and route
    changes, and the pass they wake invalidates. Until then a lookup's answer stands; after
    it, it is asked again. The plain backend asks every time."""
    gw = ip_address("10.0.0.2")

    def renumber(old: str, new: str) -> None:
        ip(host, "addr", "del", old, "dev", "br0")
        ip(host, "addr", "add", new, "dev", "br0")

    with KernelBackend(netns=host) as table, KernelBackend(netns=host) as fresh:
        b = KernelCache(table)
        assert b.adjacency([gw])[gw].on_link
        renumber("10.0.0.1/24", "10.0.0.1/31")
        assert b.adjacency([gw])[gw].on_link  # not asked again
        assert not fresh.adjacency([gw])[gw].on_link  # uncached: asked every time
        b.invalidate(lookups=False)
        assert b.adjacency([gw])[gw].on_link  # our table changed: lookups still stand
        b.invalidate()
        assert not b.adjacency([gw])[gw].on_link
        renumber("10.0.0.1/31", "10.0.0.1/24")
        assert fresh.adjacency([gw])[gw].on_link


@pytest.mark.parametrize("warm_after", [1, 10**9])
def test_cache_counts_other_tables_until_invalidated(
    host: str, warm_after: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A node's address change replaces its nexthop in place only when no other route uses
    it. The agent's cache counts other tables' routes once (or right after a bulk write,
    with the table read back), and again after it is invalidated."""
    monkeypatch.setattr(kernel_cache, "_WARM_AFTER", warm_after)
    c = cluster(node(1, v6=False), node(2, v6=False), node(3, v6=False))
    n3_moved = cluster(node(1, v6=False), node(2, v6=False), node(3, v4="10.0.0.33", v6=False))
    moved = cluster(
        node(1, v6=False), node(2, v4="10.0.0.22", v6=False), node(3, v4="10.0.0.33", v6=False)
    )
    with KernelBackend(netns=host) as table:
        b = KernelCache(table)
        assert reconcile_once(c, N1, b, adjacency=b.adjacency).ok
        (nh2,) = [nh.split()[1] for nh in nexthops_of(host) if "via 10.0.0.2 " in nh]
        # n3 moves: its nexthop is replaced in place, after counting every table's routes
        assert reconcile_once(n3_moved, N1, b, adjacency=b.adjacency).writes == 1
        ip(host, "route", "add", "192.168.7.0/24", "nhid", nh2, "table", "100", "proto", "static")
        b.invalidate()  # what the pass the monitor's report wakes does
        res = reconcile_once(moved, N1, b, adjacency=b.adjacency)
        assert res.ok
    # n2's nexthop was not replaced in place (table 100 uses it): a new one carries n2's route
    assert ip(host, "route", "show", "table", "100").startswith(f"192.168.7.0/24 nhid {nh2} ")
    assert "via 10.0.0.2 " in " ".join(ln for ln in nexthops_of(host) if f"id {nh2} " in ln)
    assert any(ln.startswith("172.17.2.0/24") and "via 10.0.0.22" in ln for ln in ours(host))


def test_one_backend_many_passes_sees_a_node_go_off_link(host: str) -> None:
    """A long-running user (the agent) keeps one backend: each pass must look next hops up
    again, or a node that left the link would keep its (now wrong) route."""
    c = cluster(node(1, v6=False), node(2, v6=False), node(3, v6=False))
    with KernelBackend(netns=host) as b:
        first = reconcile_once(c, N1, b, adjacency=b.adjacency)
        assert first.ok
        assert first.offlink == []
        # the host renumbers to 10.0.0.1/31: n2 and n3 are no longer on its network
        ip(host, "addr", "del", "10.0.0.1/24", "dev", "br0")
        ip(host, "addr", "add", "10.0.0.1/31", "dev", "br0")
        second = reconcile_once(c, N1, b, adjacency=b.adjacency)
    assert sorted(o.node or "" for o in second.offlink) == ["n2", "n3"]
    assert {str(r.dst) for r in second.diff.remove} == {"172.17.2.0/24", "172.17.3.0/24"}
    assert ours(host) == []
    assert nexthops_of(host) == []


def test_cache_reads_again_once_invalidated(host: str) -> None:
    """The agent's cache reuses its last read until invalidated (a pass woken by the monitor's
    report of a change that is not our own echo) or a write of its own."""
    c = cluster(node(1), node(2), node(3))
    desired = desired_routes(c, N1)
    with KernelBackend(netns=host) as table:
        b = KernelCache(table)
        assert reconcile_once(c, N1, b, adjacency=b.adjacency).ok
        assert diff(desired, b.entries()).writes == 0  # read again after its own writes
        ip(host, "route", "del", "172.17.2.0/24", "proto", "157")
        assert diff(desired, b.entries()).writes == 0  # not told: the last read stands
        b.invalidate(lookups=False)
        again = diff(desired, b.entries())
        assert [str(r.dst) for r in again.add] == ["172.17.2.0/24"]
        assert b.apply(again).writes == 1
        assert diff(desired, b.entries()).writes == 0


def test_reader_and_writer_agree_on_link_local_and_multicast(host: str) -> None:
    """The writer never installs a route the reader would not see as its own: a link-local or
    multicast destination is refused (nothing written), and a route of ours already there
    (an older writer's) is read, so it is removed as stale instead of failing every later add
    with ``File exists``. Other owners' routes there (zeroconf, multicast) stay unread."""
    from nosdn.model import Diff, Route

    gw = (ip_address("10.0.0.2"),)
    wanted = tuple(
        Route(ip_network(d), gw, "n2") for d in ("224.1.0.0/16", "169.254.7.0/24", "172.17.2.0/24")
    )
    with KernelBackend(netns=host) as b:
        res = b.apply(Diff(add=wanted))
    assert sorted(str(e.dst) for e in res.errors) == ["169.254.7.0/24", "224.1.0.0/16"]
    assert all("never routes" in e.message for e in res.errors)
    assert [ln.split()[0] for ln in ours(host)] == ["172.17.2.0/24"]

    ip(host, "route", "add", "224.2.0.0/16", "via", "10.0.0.2", "proto", "157")
    ip(host, "route", "add", "169.254.0.0/16", "dev", "br0", "proto", "static")
    c = cluster(node(1, v6=False), node(2, v6=False))
    with KernelBackend(netns=host) as b:
        seen = {str(r.dst): r.owned for r in b.routes()}
    assert seen.get("224.2.0.0/16") is True
    assert "169.254.0.0/16" not in seen
    res2 = run(host, c)
    assert res2.ok, res2.errors
    assert [str(r.dst) for r in res2.diff.remove] == ["224.2.0.0/16"]
    assert [ln.split()[0] for ln in ours(host)] == ["172.17.2.0/24"]
    assert "169.254.0.0/16 dev br0 proto static" in " ".join(routes_of(host))
