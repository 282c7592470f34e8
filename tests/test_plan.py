"""Route planning and diff: the pure heart that every backend and renderer shares."""

from __future__ import annotations

import ipaddress
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from nosdn.model import (
    EXTERNAL,
    ROUTER,
    Change,
    Conflict,
    Diff,
    InstalledRoute,
    Route,
    Target,
    route_sort_key,
)
from nosdn.plan import _sort_key, apply_diff, desired_routes, diff
from nosdn.sources.inventory import load_cluster

EXAMPLES = Path(__file__).parent.parent / "examples"


def test_node_gets_every_other_subnet_never_its_own() -> None:
    c = load_cluster(EXAMPLES / "two-nodes.yaml")
    routes = desired_routes(c, Target.for_node("node1"))
    assert [(str(r.dst), [str(v) for v in r.via], r.node) for r in routes] == [
        ("172.17.2.0/24", ["10.10.0.2"], "node2")
    ]


def test_dual_stack_families_routed_via_same_family() -> None:
    c = load_cluster(EXAMPLES / "dual-stack.yaml", warn=False)
    for r in desired_routes(c, Target.for_node("node2")):
        assert r.node != "node2"
        assert all(v.version == r.dst.version for v in r.via)
    assert len(desired_routes(c, Target.for_node("node2"))) == 4


def test_external_gets_ecmp_service_route_and_router_does_not() -> None:
    c = load_cluster(EXAMPLES / "dual-stack.yaml", warn=False)
    ext = {str(r.dst): r for r in desired_routes(c, EXTERNAL)}
    svc = ext["10.96.0.0/12"]
    assert svc.node is None
    assert [str(v) for v in svc.via] == ["192.168.50.11", "192.168.50.12"]
    assert "10.96.0.0/12" not in {str(r.dst) for r in desired_routes(c, ROUTER)}
    assert len(desired_routes(c, ROUTER)) == 6


net4 = st.integers(min_value=0, max_value=63).map(
    lambda i: ipaddress.ip_network(f"172.17.{i}.0/24")
)
gw = st.integers(min_value=1, max_value=5).map(lambda i: ipaddress.ip_address(f"10.0.0.{i}"))
desired_st = st.dictionaries(net4, gw, max_size=20).map(
    lambda d: [Route(k, (v,), "n") for k, v in d.items()]
)
actual_st = st.lists(st.tuples(net4, gw, st.booleans()), max_size=20).map(
    lambda xs: [
        InstalledRoute(n, (g,), owned, "nosdn" if owned else "static") for n, g, owned in xs
    ]
)


@settings(max_examples=300, deadline=None)
@given(desired=desired_st, actual=actual_st)
def test_applying_the_diff_gives_desired_and_spares_foreign(
    desired: list[Route], actual: list[InstalledRoute]
) -> None:
    d = diff(desired, actual)
    after = apply_diff(actual, d)
    owned = {(r.dst, r.via) for r in after if r.owned}
    foreign_dsts = {r.dst for r in actual if not r.owned}
    want = {(r.dst, r.via) for r in desired if r.dst not in foreign_dsts}
    # every wanted route without a foreign claimant is ours afterwards, and nothing else we own,
    # except wanted routes that someone else also routes (conflict: ours is left as it was)
    assert want <= owned
    assert {dst for dst, _ in owned} <= {r.dst for r in desired}
    # foreign routes are all still there, untouched
    assert [r for r in after if not r.owned] == [r for r in actual if not r.owned]
    # every conflict is a wanted prefix held by someone else
    assert {c.wanted.dst for c in d.conflicts} == {r.dst for r in desired} & foreign_dsts
    # a second diff against the result is a no-op
    assert diff(desired, after).writes == 0


def test_diff_kinds() -> None:
    n = ipaddress.ip_network
    a = ipaddress.ip_address
    desired = [
        Route(n("172.17.1.0/24"), (a("10.0.0.1"),), "n1"),
        Route(n("172.17.2.0/24"), (a("10.0.0.2"),), "n2"),
        Route(n("172.17.3.0/24"), (a("10.0.0.3"),), "n3"),
        Route(n("172.17.4.0/24"), (a("10.0.0.4"),), "n4"),
    ]
    actual = [
        InstalledRoute(n("172.17.1.0/24"), (a("10.0.0.1"),), True),
        InstalledRoute(n("172.17.2.0/24"), (a("10.0.0.9"),), True),
        InstalledRoute(n("172.17.4.0/24"), (a("10.0.0.4"),), False, "static"),
        InstalledRoute(n("172.17.9.0/24"), (a("10.0.0.9"),), True),
        InstalledRoute(n("192.168.0.0/24"), (a("10.0.0.9"),), False, "static"),
    ]
    d = diff(desired, actual)
    assert [str(r.dst) for r in d.keep] == ["172.17.1.0/24"]
    assert [str(c.new.dst) for c in d.change] == ["172.17.2.0/24"]
    assert [str(r.dst) for r in d.add] == ["172.17.3.0/24"]
    assert [str(r.dst) for r in d.remove] == ["172.17.9.0/24"]
    assert [(str(c.wanted.dst), c.found.owner) for c in d.conflicts] == [
        ("172.17.4.0/24", "static")
    ]
    assert d.writes == 3


def _reference_diff(desired: list[Route], actual: list[InstalledRoute]) -> Diff:
    """The diff as first written (keyed by the ipaddress objects themselves): the fast one
    must give exactly the same result, order included."""
    owned: dict[object, list[InstalledRoute]] = {}
    foreign: dict[object, InstalledRoute] = {}
    for r in actual:
        if r.owned:
            owned.setdefault(r.dst, []).append(r)
        else:
            foreign.setdefault(r.dst, r)
    add: list[Route] = []
    change: list[Change] = []
    keep: list[Route] = []
    conflicts: list[Conflict] = []
    remove: list[InstalledRoute] = []
    wanted: set[object] = set()
    for want in desired:
        wanted.add(want.dst)
        theirs = foreign.get(want.dst)
        if theirs is not None:
            conflicts.append(Conflict(want, theirs))
        ours = owned.get(want.dst)
        if not ours:
            if theirs is None:
                add.append(want)
            continue
        match = next((o for o in ours if tuple(sorted(o.via)) == want.via), None)
        if match is not None:
            keep.append(want)
            remove.extend(o for o in ours if o is not match)
        else:
            change.append(Change(ours[0], want))
            remove.extend(ours[1:])
    for dst, ours in owned.items():
        if dst not in wanted:
            remove.extend(ours)
    owned_n = sum(len(v) for v in owned.values())
    return Diff(tuple(add), tuple(change), tuple(remove), tuple(keep), tuple(conflicts), owned_n)


# both families, with prefixes equal as (integer, length) but not as prefixes (0.0.0.0/0 and
# ::/0, 0.0.0.0/8 and ::/8), ECMP next hops in any order, the same prefix wanted twice
any_net = st.sampled_from(
    [
        ipaddress.ip_network(x)
        for x in (
            "0.0.0.0/0",
            "::/0",
            "10.0.0.0/8",
            "0.0.0.0/8",
            "::/8",
            "10.0.0.0/16",
            "172.17.1.0/24",
            "172.17.2.0/24",
            "fd00::/64",
        )
    ]
)
any_via = st.lists(gw, min_size=1, max_size=3, unique=True).map(tuple)


@settings(max_examples=500, deadline=None)
@given(
    desired=st.lists(
        st.tuples(any_net, any_via, st.booleans()).map(
            lambda t: Route(t[0], tuple(sorted(t[1])) if t[2] else t[1], "n")
        ),
        max_size=8,
    ),
    actual=st.lists(
        st.tuples(any_net, any_via, st.booleans()).map(
            lambda t: InstalledRoute(t[0], t[1], t[2], "nosdn" if t[2] else "static")
        ),
        max_size=10,
    ),
)
def test_diff_equals_the_reference_diff(desired: list[Route], actual: list[InstalledRoute]) -> None:
    got = diff(desired, actual)
    want = _reference_diff(desired, actual)
    assert got == want
    assert got.owned == sum(1 for r in actual if r.owned)
    # the very same objects, not just equal ones (apply_diff and backends use identity)
    assert all(a is b for a, b in zip(got.remove, want.remove, strict=True))
    assert all(a.old is b.old for a, b in zip(got.change, want.change, strict=True))


@settings(max_examples=200, deadline=None)
@given(st.lists(any_net, max_size=12))
def test_desired_routes_sort_like_route_sort_key(nets: list[ipaddress.IPv4Network]) -> None:
    """desired_routes sorts by one packed int; the order must be route_sort_key's."""
    routes = [Route(n, (ipaddress.ip_address("10.0.0.9"),), f"n{i}") for i, n in enumerate(nets)]
    assert sorted(routes, key=_sort_key) == sorted(routes, key=lambda r: route_sort_key(r.dst))


def test_shadows_are_others_routes_strictly_inside_a_wanted_prefix() -> None:
    from nosdn.plan import shadows

    net, addr = ipaddress.ip_network, ipaddress.ip_address
    gw = (addr("10.0.0.2"),)
    wanted = [
        Route(net("10.244.0.0/16"), gw, "big"),
        Route(net("10.244.1.0/24"), gw, "n1"),
        Route(net("fd00:244::/64"), (addr("fd00::2"),), "n1"),
    ]

    def theirs(dst: str, kind: str = "unicast", owned: bool = False) -> InstalledRoute:
        return InstalledRoute(net(dst), (), owned, "static", f"{dst} proto static", kind=kind)

    found = shadows(
        wanted,
        [
            theirs("10.244.1.0/25", "blackhole"),  # inside both: the most specific wins
            theirs("10.244.7.0/24"),  # inside the /16 only
            theirs("10.244.1.0/24"),  # the same prefix: a conflict, not a shadow
            theirs("10.0.0.0/8"),  # less specific: the wanted routes win
            theirs("10.244.1.128/25", owned=True),  # ours: a stale route for the diff
            theirs("fd00:244::/80"),
            theirs("10.9.0.0/24"),
        ],
    )
    assert [(str(s.found.dst), str(s.wanted.dst)) for s in found] == [
        ("10.244.7.0/24", "10.244.0.0/16"),
        ("10.244.1.0/25", "10.244.1.0/24"),
        ("fd00:244::/80", "fd00:244::/64"),
    ]
    assert found[1].found.kind == "blackhole"
