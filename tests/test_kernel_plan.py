"""Planning netlink requests from a diff (pure: no root, no kernel).

The kernel tests show the outcome; these pin the decisions: when a nexthop is replaced in place,
when it must not be, and how every failed request is traced back to its route and node.
"""

from __future__ import annotations

import errno
from collections import Counter
from ipaddress import ip_address, ip_network

import pytest

from nosdn.backends.kernel import _netlink as nl
from nosdn.backends.kernel._nexthops import NexthopTable
from nosdn.backends.kernel._plan import plan_nexthops, plan_plain
from nosdn.backends.kernel._steps import (
    NO_REF,
    DeleteRoute,
    KernelRef,
    NewGroup,
    NewNexthop,
    PutRoute,
    kernel_ref,
)
from nosdn.model import Change, Diff, InstalledRoute, Route

ON_LINK = nl.Lookup(0, nl.RTN_UNICAST, 3)


def lookups(*gws: str) -> dict[bytes, nl.Lookup]:
    return {ip_address(g).packed: ON_LINK for g in gws}


def nexthop(i: int, gw: str, protocol: int = 157) -> nl.NexthopMsg:
    return nl.NexthopMsg(i, 2, protocol, ip_address(gw).packed, 3)


def nh_table(*nhs: nl.NexthopMsg) -> NexthopTable:
    return NexthopTable(157, {nh.id: nh for nh in nhs})


def installed(dst: str, gw: str, nhid: int) -> InstalledRoute:
    return InstalledRoute(ip_network(dst), (ip_address(gw),), True, handle=KernelRef(nhid, 0))


def route(dst: str, *gws: str, node: str = "n2") -> Route:
    return Route(ip_network(dst), tuple(ip_address(g) for g in gws), node)


def kinds(plan_reqs: list[nl.Request]) -> list[tuple[int, int]]:
    return [(t, f) for t, f, _ in plan_reqs]


NEW = nl.NLM_F_CREATE | nl.NLM_F_EXCL
REPLACE = nl.NLM_F_CREATE | nl.NLM_F_REPLACE


def test_address_change_replaces_the_nexthop_and_leaves_the_routes() -> None:
    old_a = installed("172.17.2.0/24", "10.0.0.2", 7)
    old_b = installed("172.18.2.0/24", "10.0.0.2", 7)
    diff = Diff(
        change=(
            Change(old_a, route("172.17.2.0/24", "10.0.0.22")),
            Change(old_b, route("172.18.2.0/24", "10.0.0.22")),
        )
    )
    plan = plan_nexthops(
        diff,
        lookups("10.0.0.22"),
        nh_table(nexthop(7, "10.0.0.2")),
        lambda _ids: Counter({7: 2}),
        table=254,
        protocol=157,
    )
    assert kinds(plan.reqs) == [(nl.RTM_NEWNEXTHOP, REPLACE)]
    assert ip_address("10.0.0.22").packed in plan.reqs[0][2]


def test_no_replace_when_another_route_still_uses_the_nexthop() -> None:
    """A route in another table (or someone else's) uses nexthop 7: replacing it would move
    that route too. A new nexthop is made and only our route is repointed."""
    old = installed("172.17.2.0/24", "10.0.0.2", 7)
    diff = Diff(change=(Change(old, route("172.17.2.0/24", "10.0.0.22")),))
    plan = plan_nexthops(
        diff,
        lookups("10.0.0.22"),
        nh_table(nexthop(7, "10.0.0.2")),
        lambda _ids: Counter({7: 2}),
        table=254,
        protocol=157,
    )
    assert kinds(plan.reqs) == [(nl.RTM_NEWNEXTHOP, NEW), (nl.RTM_NEWROUTE, REPLACE)]
    assert list(plan.moves) == [(1, 7, 8)]


def test_foreign_nexthops_are_never_reused_or_replaced() -> None:
    old = installed("172.17.2.0/24", "10.0.0.2", 7)
    diff = Diff(change=(Change(old, route("172.17.2.0/24", "10.0.0.22")),))
    plan = plan_nexthops(
        diff,
        lookups("10.0.0.22", "10.0.0.3"),
        nh_table(nexthop(7, "10.0.0.2", protocol=4), nexthop(9, "10.0.0.22", protocol=4)),
        lambda _ids: Counter({7: 1}),
        table=254,
        protocol=157,
    )
    assert kinds(plan.reqs) == [(nl.RTM_NEWNEXTHOP, NEW), (nl.RTM_NEWROUTE, REPLACE)]
    assert plan.created == {10: 0}  # a fresh id above every existing one, ours or not


def test_ecmp_route_gets_one_group_and_reuses_member_nexthops() -> None:
    diff = Diff(
        add=(
            route("10.96.0.0/12", "10.0.0.2", "10.0.0.3", node=None),
            route("172.17.2.0/24", "10.0.0.2"),
        )
    )
    plan = plan_nexthops(
        diff,
        lookups("10.0.0.2", "10.0.0.3"),
        nh_table(),
        lambda _ids: {},
        table=254,
        protocol=157,
    )
    assert kinds(plan.reqs) == [
        (nl.RTM_NEWNEXTHOP, NEW),  # 10.0.0.2
        (nl.RTM_NEWNEXTHOP, NEW),  # 10.0.0.3
        (nl.RTM_NEWNEXTHOP, NEW),  # group 1/2
        (nl.RTM_NEWROUTE, NEW),
        (nl.RTM_NEWROUTE, NEW),  # the pod route shares nexthop 1
    ]
    assert plan.groups == {3: (1, 2)}
    assert list(plan.moves) == [(3, 0, 3), (4, 0, 1)]


def test_every_failure_is_traced_to_its_route_and_node() -> None:
    diff = Diff(
        add=(
            route("172.17.2.0/24", "10.0.0.2", node="n2"),
            route("172.18.2.0/24", "10.0.0.2", node="n2"),
            route("172.17.3.0/24", "10.0.0.3", node="n3"),
            route("172.17.4.0/24", "10.9.0.4", node="n4"),  # no route to its next hop
        ),
        remove=(
            installed("172.17.8.0/24", "10.0.0.8", 4),
            installed("172.17.9.0/24", "10.0.0.9", 5),
        ),
    )
    lk = lookups("10.0.0.2", "10.0.0.3")
    lk[ip_address("10.9.0.4").packed] = nl.Lookup(errno.ENETUNREACH)
    plan = plan_nexthops(diff, lk, nh_table(), lambda _ids: {}, table=254, protocol=157)
    # requests: nh(10.0.0.2), nh(10.0.0.3), route x3, del x2
    assert [e.node for e in plan.errors] == ["n4"]
    assert "no route to next hop 10.9.0.4" in plan.errors[0].message
    errors, failed = plan.explain(
        {
            0: (errno.EINVAL, "Nexthop has invalid gateway"),  # n2's nexthop
            2: (errno.ENOENT, "Nexthop id does not exist"),  # its route: not reported twice
            4: (errno.EEXIST, "File exists"),  # n3's route
            5: (errno.ESRCH, "No such process"),  # already gone: not a failure
            6: (errno.EPERM, "Operation not permitted"),
        }
    )
    assert [(str(e.dst), e.node, e.action) for e in errors] == [
        ("172.17.2.0/24", "n2", "add"),
        ("172.18.2.0/24", "n2", "add"),
        ("172.17.3.0/24", "n3", "add"),
        ("172.17.9.0/24", None, "remove"),
    ]
    assert errors[0].message == "nexthop 1 via 10.0.0.2: Nexthop has invalid gateway"
    assert failed == {0, 2, 4, 6}


def test_plain_mode_writes_gateway_routes_with_the_old_metric() -> None:
    old = InstalledRoute(
        ip_network("fd17:0:0:2::/64"),
        (ip_address("fd00::9"),),
        True,
        handle=KernelRef(0, 1024),
    )
    diff = Diff(change=(Change(old, route("fd17:0:0:2::/64", "fd00::2")),))
    plan = plan_plain(diff, lookups("fd00::2"), table=254, protocol=157)
    ((t, flags, payload),) = plan.reqs
    assert (t, flags) == (nl.RTM_NEWROUTE, REPLACE)
    assert ip_address("fd00::2").packed in payload
    assert nl.rta_u32(nl.RTA_PRIORITY, 1024) in payload  # replaces our route, not another


def test_kernel_ref_is_the_handle_or_none() -> None:
    route = installed("172.17.2.0/24", "10.0.0.2", 12)
    assert kernel_ref(route) == KernelRef(12, 0)
    other = InstalledRoute(ip_network("172.17.2.0/24"), (), False, ref="a-cloud-route")
    assert kernel_ref(other) is NO_REF


def test_reserved_protocol_numbers_are_refused() -> None:
    # claiming 4 (static) or 12 (bird) would make nosdn delete their routes as stale
    from nosdn.backends.kernel import KernelBackend

    for number, owner in ((4, "static"), (12, "bird"), (2, "kernel")):
        with pytest.raises(ValueError, match=owner):
            KernelBackend(protocol=number)


def test_new_route_reuses_our_lowest_nexthop_for_its_gateway() -> None:
    """Our nexthops are found by the gateways the diff wants; among several of ours for one
    gateway the lowest id is taken, never someone else's."""
    diff = Diff(add=(route("172.17.2.0/24", "10.0.0.2"),))
    nexthops = nh_table(
        nexthop(3, "10.0.0.2", protocol=4),
        nexthop(9, "10.0.0.2"),
        nexthop(4, "10.0.0.2"),
        nexthop(5, "10.0.0.5"),
    )
    plan = plan_nexthops(
        diff, lookups("10.0.0.2"), nexthops, lambda _ids: {}, table=254, protocol=157
    )
    assert kinds(plan.reqs) == [(nl.RTM_NEWROUTE, NEW)]
    assert list(plan.moves) == [(0, 0, 4)]


def test_bulk_requests_are_the_message_builders_bytes() -> None:
    """The bulk case is packed inline in plan_nexthops: byte for byte what the message
    builders make (IPv4 inline, IPv6 through the builders), in both tables ranges."""
    diff = Diff(add=(route("172.17.2.0/24", "10.0.0.2"), route("fd17::/64", "fd00::2")))
    six = {**lookups("10.0.0.2"), ip_address("fd00::2").packed: ON_LINK}
    for table in (254, 1000):
        plan = plan_nexthops(diff, six, nh_table(), lambda _ids: {}, table=table, protocol=157)
        assert [p for _, _, p in plan.reqs] == [
            nl.nexthop_msg(1, protocol=157, gateway=ip_address("10.0.0.2").packed, oif=3),
            nl.nexthop_msg(2, protocol=157, gateway=ip_address("fd00::2").packed, oif=3),
            nl.route_msg(ip_address("172.17.2.0").packed, 24, table=table, protocol=157, nh_id=1),
            nl.route_msg(ip_address("fd17::").packed, 64, table=table, protocol=157, nh_id=2),
        ]


def test_steps_name_the_routes_they_serve() -> None:
    """Each step names its route(s); a failed creation is traced to every route whose put
    needs it (here through the group too), each with the nexthop's own words."""
    gone = installed("172.17.9.0/24", "10.0.0.9", 5)
    diff = Diff(
        add=(
            route("10.96.0.0/12", "10.0.0.2", "10.0.0.3", node=None),
            route("172.17.2.0/24", "10.0.0.2"),
        ),
        remove=(gone,),
    )
    plan = plan_nexthops(
        diff, lookups("10.0.0.2", "10.0.0.3"), nh_table(), lambda _ids: {}, table=254, protocol=157
    )
    gw2, gw3 = ip_address("10.0.0.2").packed, ip_address("10.0.0.3").packed
    assert plan.steps == [
        NewNexthop(1, gw2, 3, 0),
        NewNexthop(2, gw3, 3, 0),
        NewGroup(3, (1, 2), 0),
        PutRoute(0, ip_network("10.96.0.0/12"), None, 3),
        PutRoute(1, ip_network("172.17.2.0/24"), None, 1),
        DeleteRoute(0, gone.dst, KernelRef(5, 0)),
    ]
    assert len(plan.reqs) == len(plan.steps)
    errors, failed = plan.explain({0: (errno.EINVAL, "Nexthop has invalid gateway")})
    assert [(str(e.dst), e.node, e.action) for e in errors] == [
        ("10.96.0.0/12", None, "add"),
        ("172.17.2.0/24", "n2", "add"),
    ]
    assert {e.message for e in errors} == {"nexthop 1 via 10.0.0.2: Nexthop has invalid gateway"}
    assert failed == {0}
    group_failed, _ = plan.explain({2: (errno.EINVAL, "bad group")})
    assert [(str(e.dst), e.message) for e in group_failed] == [
        ("10.96.0.0/12", "nexthop group 3: bad group")
    ]
