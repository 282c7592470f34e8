"""One-shot reads of the kernel table (as ``nosdn apply`` does: one backend, one read, one
write): a table exactly as wanted builds no route object and makes no write, and whatever
twist the table has, the diff of its entries is the diff of every route read and one apply
mends it (root, in namespaces)."""

from __future__ import annotations

from collections.abc import Callable
from ipaddress import ip_address

import pytest

from conftest import ip, requires_root
from nosdn.backends.kernel import KernelBackend, _read
from nosdn.model import Cluster, Node, Target
from nosdn.plan import desired_routes, diff
from nosdn.reconcile import reconcile_once

pytestmark = [pytest.mark.root, requires_root]

N1 = Target.for_node("n1")


def cluster(n: int = 6) -> Cluster:
    from ipaddress import ip_network

    return Cluster(
        tuple(
            Node(
                f"n{i}",
                (ip_address(f"10.0.0.{i}"), ip_address(f"fd00::{i}")),
                (ip_network(f"172.17.{i}.0/24"), ip_network(f"fd17:0:0:{i}::/64")),
            )
            for i in range(1, n + 1)
        )
    )


def host(netns: Callable[..., str]) -> str:
    ns = netns("nosdn-st")
    ip(ns, "link", "add", "br0", "type", "bridge")
    ip(ns, "link", "set", "br0", "up")
    ip(ns, "addr", "add", "10.0.0.1/24", "dev", "br0")
    ip(ns, "addr", "add", "fd00::1/64", "dev", "br0", "nodad")
    with KernelBackend(netns=ns) as b:
        assert reconcile_once(cluster(), N1, b, adjacency=b.adjacency).ok
    return ns


def test_a_steady_table_builds_no_route(
    netns: Callable[..., str], monkeypatch: pytest.MonkeyPatch
) -> None:
    ns = host(netns)
    desired = desired_routes(cluster(), N1)

    def never(*args: object) -> None:
        raise AssertionError("a route object built for a route that is kept")

    with KernelBackend(netns=ns) as b:
        monkeypatch.setattr(_read, "describe", never)
        got = diff(desired, b.entries())
        monkeypatch.undo()
        assert got.keep == tuple(desired)
        assert got.writes == 0
        assert got.owned == len(desired) == 10
        assert b.apply(got).writes == 0


TWISTS = {
    "a nexthop moved": ["nexthop", "replace", "id", "2", "via", "10.0.0.9", "dev", "br0"],
    "a stray route of ours": ["route", "add", "172.17.99.0/24", "via", "10.0.0.2", "proto", "157"],
    "someone else on a wanted prefix": [
        "route", "add", "172.17.3.0/24", "via", "10.0.0.3", "metric", "7", "proto", "static",
    ],
    "a route of ours twice": [
        "route", "add", "172.17.4.0/24", "via", "10.0.0.4", "metric", "9", "proto", "157",
    ],
    "a wanted route gone": ["route", "del", "172.17.5.0/24", "proto", "157"],
    "an unused nexthop of ours": [
        "nexthop", "add", "id", "777", "via", "10.0.0.7", "dev", "br0", "proto", "157",
    ],
    "a plain gateway route of ours": ["route", "replace", "172.17.6.0/24", "via", "10.0.0.6",
                                      "proto", "157"],
}  # fmt: skip


@pytest.mark.parametrize("twist", list(TWISTS))
def test_any_twist_gives_the_full_diff(netns: Callable[..., str], twist: str) -> None:
    ns = host(netns)
    args = TWISTS[twist]
    if args[0] == "nexthop":
        nh2 = next(ln.split()[1] for ln in ip(ns, "nexthop").splitlines() if "10.0.0.2 " in ln)
        args = [a if a != "2" else nh2 for a in args]
    ip(ns, *args)
    desired = desired_routes(cluster(), N1)
    with KernelBackend(netns=ns) as full:
        found = full.routes()
    with KernelBackend(netns=ns) as b:  # reads once, then writes: as `nosdn apply` does
        got = diff(desired, b.entries())
        assert got == diff(desired, found)
        assert got.owned == sum(1 for r in found if r.owned)
        res = b.apply(got)
        assert not res.errors
    assert "id 777 " not in ip(ns, "nexthop")  # an unused nexthop of ours is collected
    with KernelBackend(netns=ns) as b:  # and the next one-shot run finds the table steady
        again = diff(desired, b.entries())
        expected_writes = 1 if twist == "someone else on a wanted prefix" else 0
        assert again.writes == 0
        assert len(again.conflicts) == expected_writes
