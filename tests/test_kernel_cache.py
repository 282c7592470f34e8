"""The agent's kernel cache keeps its view of the table from the kernel's echoes of its own
writes (root, real kernel in throw-away namespaces).

The view must be exactly what a fresh read would find, after any sequence of writes and of
foreign changes (which the agent's monitor reports, and the agent answers with `invalidate`):
a wrong view makes the agent write wrong routes. And an apply that changes one route must not
dump the table again.
"""

from __future__ import annotations

import random
import subprocess
from collections import Counter
from collections.abc import Callable, Iterable
from ipaddress import IPv4Address, IPv6Address, ip_address, ip_network
from typing import Any

import pytest

from conftest import ip, requires_root
from nosdn.backends.kernel import KernelBackend
from nosdn.backends.kernel import _netlink as nl
from nosdn.backends.kernel._read import Entry
from nosdn.backends.kernel.backend import TableRead
from nosdn.backends.kernel.cache import KernelCache
from nosdn.model import IPAddress, Route, RouteKey
from nosdn.plan import diff

pytestmark = [pytest.mark.root, requires_root]


@pytest.fixture
def host(netns: Callable[..., str]) -> str:
    """A namespace whose ``br0`` carries 10.0.0.1/16 and fd00::1/64: every gateway the tests
    use is on-link."""
    ns = netns("nosdn-kc")
    ip(ns, "link", "add", "br0", "type", "bridge")
    ip(ns, "link", "set", "br0", "up")
    ip(ns, "addr", "add", "10.0.0.1/16", "dev", "br0")
    ip(ns, "addr", "add", "fd00::1/64", "dev", "br0", "nodad")
    return ns


def compat_mode(ns: str, value: str) -> None:
    subprocess.run(
        ["ip", "netns", "exec", ns, "sysctl", "-qw", f"net.ipv4.nexthop_compat_mode={value}"],
        check=True,
    )


def seen(entries: Iterable[Entry]) -> Counter[tuple[Any, ...]]:
    """What the diff and the rest of the agent can tell of entries, as a multiset."""
    return Counter((e.key, e.gateways, e.owned, e.installed()) for e in entries)


def nexthops_of(read: TableRead) -> dict[int, tuple[Any, ...]]:
    return {
        i: (nh.gateway, tuple(nh.group), nh.protocol, nh.oif, nh.blackhole)
        for i, nh in read.nexthops.items()
    }


def fresh_read(ns: str) -> tuple[list[Entry], TableRead]:
    with KernelBackend(netns=ns) as b:
        found = b.entries()
        assert b.last_read is not None
        return found, b.last_read


def assert_view_is_fresh(cache: KernelCache, ns: str, probe: list[RouteKey]) -> None:
    mine = cache.entries()
    read = cache._read
    assert read is not None
    found, fresh = fresh_read(ns)
    assert seen(mine) == seen(found)
    assert nexthops_of(read) == nexthops_of(fresh)
    assert all(n > 0 for n in read.table_refs.values())
    assert read.table_refs == fresh.table_refs
    wanted = set(probe)
    on = cache.entries_on(probe)
    assert seen(on) == seen(e for e in found if e.key in wanted)
    assert on == [e for e in cache.entries() if e.key in wanted]  # in the order of entries()


def key_of(dst: str) -> RouteKey:
    net = ip_network(dst)
    return (net.network_address.packed, net.prefixlen)


@pytest.mark.parametrize(
    ("compat", "nexthops"), [("0", True), ("1", True), ("1", False)], ids=["0", "1", "plain"]
)
@pytest.mark.parametrize("seed", [1, 2])
def test_view_kept_from_echoes_matches_a_fresh_read(
    host: str, compat: str, nexthops: bool, seed: int
) -> None:
    """Random changes (adds, gateway changes, removes, a node's address change, ECMP sets)
    over a few hundred prefixes, with foreign routes written in between (then `invalidate`,
    as the agent does on its monitor's report): after every apply the view is a fresh read,
    with nexthop objects (either nexthop_compat_mode) or plain gateway routes."""
    compat_mode(host, compat)
    rnd = random.Random(seed)
    v4 = [f"172.20.{i}.0/24" for i in range(200)]
    v6 = [f"fd20:0:0:{i:x}::/64" for i in range(60)]
    prefixes = v4 + v6
    gw4 = [IPv4Address(f"10.0.0.{i}") for i in range(2, 26)]
    gw6 = [IPv6Address(f"fd00::{i:x}") for i in range(2, 14)]
    spare4 = [IPv4Address(f"10.0.1.{i}") for i in range(2, 250)]
    spare6 = [IPv6Address(f"fd00::1:{i:x}") for i in range(2, 250)]
    desired: dict[str, tuple[IPAddress, ...]] = {}
    foreign: set[str] = set()

    def pick(dst: str) -> tuple[IPAddress, ...]:
        pool: list[IPAddress] = list(gw6 if ":" in dst else gw4)
        if rnd.random() < 0.05:
            return tuple(sorted(rnd.sample(pool, 2), key=lambda a: a.packed))
        return (rnd.choice(pool),)

    for dst in rnd.sample(prefixes, 150):
        desired[dst] = pick(dst)
    folded = 0
    with KernelBackend(netns=host, use_nexthops=nexthops) as table:
        cache = KernelCache(table)
        for step in range(80):
            roll = rnd.random()
            if step and roll < 0.2:  # someone else's route, or one of theirs gone
                if foreign and rnd.random() < 0.4:
                    dst = foreign.pop()
                    ip(host, "route", "del", dst, "proto", "static")
                else:
                    dst = rnd.choice(prefixes)
                    if dst not in foreign:
                        via = str((gw6 if ":" in dst else gw4)[0])
                        metric = rnd.choice(["", "7"])
                        args = ["metric", metric] if metric else []
                        cmd = ["ip", "-n", host, "route", "add", dst, "via", via, *args]
                        run = subprocess.run(
                            [*cmd, "proto", "static"], check=False, capture_output=True
                        )
                        if run.returncode == 0:  # (else one of ours has that metric)
                            foreign.add(dst)
                cache.invalidate(lookups=False)
            elif roll < 0.3 and desired:  # a node changes address: its routes move with it
                old = rnd.choice(list(desired.values()))[0]
                new: IPAddress = spare6.pop() if old.version == 6 else spare4.pop()
                for dst, via in desired.items():
                    if via == (old,):
                        desired[dst] = (new,)
            else:
                for dst in rnd.sample(prefixes, rnd.randint(1, 12)):
                    if dst in desired and rnd.random() < 0.4:
                        del desired[dst]
                    else:
                        desired[dst] = pick(dst)
            want = sorted(
                (Route(ip_network(d), v) for d, v in desired.items()),
                key=lambda r: (r.dst.version, r.dst),
            )
            d = diff(want, cache.entries())
            result = cache.apply(d)
            assert not result.errors, result
            folded += cache._read is not None
            probe = [key_of(p) for p in rnd.sample(prefixes, 20)] + [key_of("10.9.0.0/16")]
            assert_view_is_fresh(cache, host, probe)
            assert diff(want, cache.entries()).writes == 0 or foreign
    print(f"folded {folded}")
    assert folded > 40  # most applies kept the view from the echoes


def counting(monkeypatch: pytest.MonkeyPatch, table: KernelBackend) -> list[int]:
    """Count the route dumps of ``table``'s socket."""
    calls = [0]
    real = table.nl.route_payloads

    def route_payloads(*args: Any, **kw: Any) -> list[bytes]:
        calls[0] += 1
        return real(*args, **kw)

    monkeypatch.setattr(table.nl, "route_payloads", route_payloads)
    return calls


def bulk(n: int, gws: int = 200) -> list[Route]:
    return [
        Route(ip_network(f"172.{16 + i // 65536}.{i // 256 % 256}.{i % 256}/32"), (gw(i % gws),))
        for i in range(n)
    ]


def gw(i: int) -> IPv4Address:
    return IPv4Address(f"10.0.{1 + i // 250}.{2 + i % 250}")


def test_one_route_change_dumps_nothing(host: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """At 2,000 routes, an apply that changes one route's gateway (and one that removes a
    route, collecting its nexthop) reads no table back; the next `entries` and `entries_on`
    are served from the view, and it is what a fresh read finds."""
    want = bulk(2000)
    with KernelBackend(netns=host) as table:
        cache = KernelCache(table)
        assert cache.apply(diff(want, cache.entries())).writes > 2000
        cache.entries()
        dumps = counting(monkeypatch, table)
        one = want[7].dst
        want[7] = Route(one, (ip_address("10.0.9.9"),))  # a gateway no other route uses
        d = diff(want, cache.entries())
        assert d.writes == 1
        assert cache.apply(d).writes >= 1
        assert cache.entries_on([key_of(str(one))])[0].gateways == (ip_address("10.0.9.9").packed,)
        del want[7]  # the one route on its nexthop: the nexthop is collected
        assert cache.apply(diff(want, cache.entries())).writes == 2
        assert diff(want, cache.entries()).writes == 0
        assert cache.entries_on([key_of(str(want[8].dst)), key_of(str(one))]) == [
            e for e in cache.entries() if e.key == key_of(str(want[8].dst))
        ]
        assert dumps[0] == 0
        assert_view_is_fresh(cache, host, [key_of(str(r.dst)) for r in want[:50]])


def test_nexthop_replace_moves_the_view(host: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A node's address change is one nexthop replace: the entries on it move in the view
    (whether the kernel echoes their routes or not), with no read."""
    for compat in ("0", "1"):
        compat_mode(host, compat)
        want = bulk(300, gws=30)
        with KernelBackend(netns=host) as table:
            cache = KernelCache(table)
            cache.apply(diff(want, cache.entries()))
            dumps = counting(monkeypatch, table)
            moved = [
                Route(r.dst, (ip_address(f"10.0.9.{compat}"),)) if r.via == (gw(3),) else r
                for r in want
            ]
            d = diff(moved, cache.entries())
            assert d.writes == 10
            assert cache.apply(d).writes == 1  # the nexthop, not its routes
            assert diff(moved, cache.entries()).writes == 0
            assert dumps[0] == 0
            assert_view_is_fresh(cache, host, [key_of(str(r.dst)) for r in want[:40]])
            table.flush()


def test_lost_replies_drop_the_view(host: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """When the kernel dropped replies (ENOBUFS) the echoes may be incomplete: the view is
    dropped, and the next `entries` reads the table."""
    want = bulk(50)
    with KernelBackend(netns=host) as table:
        cache = KernelCache(table)
        cache.apply(diff(want, cache.entries()))
        cache.entries()
        real = table.nl.write

        def lossy(requests: Any, **kw: Any) -> nl.BatchResult:
            result = real(requests, **kw)
            result.lost = True
            return result

        monkeypatch.setattr(table.nl, "write", lossy)
        want[3] = Route(want[3].dst, (ip_address("10.0.9.9"),))
        cache.apply(diff(want, cache.entries()))
        monkeypatch.setattr(table.nl, "write", real)
        dumps = counting(monkeypatch, table)
        assert diff(want, cache.entries()).writes == 0
        assert dumps[0] == 2  # both families read again
        assert_view_is_fresh(cache, host, [key_of(str(want[3].dst))])


def test_a_write_without_echo_drops_the_view(host: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A write that succeeded without an echo (the kernel found it done) leaves the view
    unsure: it is dropped rather than trusted."""
    want = bulk(20)
    with KernelBackend(netns=host) as table:
        cache = KernelCache(table)
        cache.apply(diff(want, cache.entries()))
        real = table.nl.write

        def mute(requests: Any, **kw: Any) -> nl.BatchResult:
            result = real(requests, **kw)
            result.echoes = result.echoes[1:]
            result.echoed -= 1
            return result

        monkeypatch.setattr(table.nl, "write", mute)
        want[3] = Route(want[3].dst, (ip_address("10.0.9.9"),))
        cache.apply(diff(want, cache.entries()))
        assert cache._read is None
        monkeypatch.setattr(table.nl, "write", real)
        assert_view_is_fresh(cache, host, [key_of(str(want[3].dst))])


def test_routes_of_one_identity_are_never_folded(host: str) -> None:
    """Two routes of one prefix and metric (another TOS): the view by identity cannot tell
    them apart, so `entries_on` lists both from the read, and an apply reads again."""
    ip(host, "route", "add", "172.20.1.0/24", "tos", "0x10", "via", "10.0.0.2", "proto", "static")
    ip(host, "route", "add", "172.20.1.0/24", "via", "10.0.0.3", "proto", "static")
    want = bulk(10)
    with KernelBackend(netns=host) as table:
        cache = KernelCache(table)
        assert len(cache.entries_on([key_of("172.20.1.0/24")])) == 2
        cache.apply(diff(want, cache.entries()))
        assert cache._read is None
        assert_view_is_fresh(cache, host, [key_of("172.20.1.0/24"), key_of(str(want[0].dst))])
        assert len(cache.entries_on([key_of("172.20.1.0/24")])) == 2


def test_a_failed_write_drops_the_view(host: str) -> None:
    """A write that fails says the table was not as the view had it (a route someone added
    behind the cache's back, unreported yet): the view is dropped, and the next read finds
    the route as a conflict."""
    want = bulk(20)
    with KernelBackend(netns=host) as table:
        cache = KernelCache(table)
        cache.apply(diff(want, cache.entries()))
        ip(host, "route", "add", "172.20.1.0/24", "via", "10.0.0.3", "proto", "static")
        want.append(Route(ip_network("172.20.1.0/24"), (ip_address("10.0.0.2"),)))
        result = cache.apply(diff(want, cache.entries()))
        assert result.errors
        assert cache._read is None
        assert_view_is_fresh(cache, host, [key_of("172.20.1.0/24")])
        assert [str(k.wanted.dst) for k in diff(want, cache.entries()).conflicts] == [
            "172.20.1.0/24"
        ]


def test_write_collects_echoes_only_when_asked(host: str) -> None:
    """``echo=True``: each request's echo, in order, in dump format, and the request buffer
    as it was; without it nothing is collected."""
    with nl.Netlink(host) as sock:
        (br0,) = [i for i, name in sock.links().items() if name == "br0"]
        gw = ip_address("10.0.0.2").packed
        reqs = nl.Requests(
            [
                (nl.RTM_NEWNEXTHOP, 0x600, nl.nexthop_msg(7, protocol=157, gateway=gw, oif=br0)),
                (
                    nl.RTM_NEWROUTE,
                    0x600,
                    nl.route_msg(bytes([172, 20, 0, 0]), 16, table=254, protocol=157, nh_id=7),
                ),
            ]
        )
        result = sock.write(reqs, echo=True)
        # the flags are as they were (no NLM_F_ECHO left in the buffer)
        assert [r[:2] for r in reqs] == [(nl.RTM_NEWNEXTHOP, 0x600), (nl.RTM_NEWROUTE, 0x600)]
        assert (result.errors, result.lost) == ({}, False)
        assert result.echoed == 2
        assert [t for t, _ in result.echoes] == [nl.RTM_NEWNEXTHOP, nl.RTM_NEWROUTE]
        assert nl.parse_nexthop(result.echoes[0][1]).gateway == gw
        assert result.echoes[1][1] in sock.route_payloads(nl.AF_INET, 254)
        delete = [
            (nl.RTM_DELROUTE, 0, nl.route_msg(bytes([172, 20, 0, 0]), 16, table=254, protocol=157))
        ]
        quiet = sock.write(delete)
        assert (quiet.echoes, quiet.echoed, quiet.errors) == ([], 0, {})
