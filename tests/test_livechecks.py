"""`LiveChecks` says what `check_cluster` says, after every change of any sequence of changes.

The universe is small on purpose: a few names, addresses and subnets drawn from pools that
collide (duplicate addresses, equal, nested and covering subnets, addresses inside subnets,
shared instances, values the stage-1 checks refuse), with random seniority including ties, so
every kind of conflict and every branch of the blame is met often.
"""

from __future__ import annotations

from ipaddress import ip_address, ip_network

from hypothesis import given, settings
from hypothesis import strategies as st

from nosdn.checks import check_cluster
from nosdn.livechecks import LiveChecks
from nosdn.model import Cluster, IPAddress, IPNetwork, Node

NAMES = [f"n{i}" for i in range(6)] + ["Bad_Name"]
IPS: list[IPAddress] = [
    ip_address(a)
    for a in (
        "10.0.0.1",
        "10.0.0.2",
        "10.0.0.3",
        "10.244.1.7",  # inside a pod subnet of the pool
        "10.244.0.200",
        "127.0.0.1",  # no next hop
        "fd00::1",
        "fd00::2",
        "fd00:1::5",  # inside the IPv6 pod subnet
    )
]
NETS: list[IPNetwork] = [
    ip_network(n)
    for n in (
        "10.244.0.0/24",
        "10.244.1.0/24",
        "10.244.2.0/24",
        "10.244.0.0/23",  # covers two node subnets
        "10.244.0.0/16",  # the whole cluster CIDR
        "10.244.0.128/25",  # inside one
        "10.0.0.0/24",  # holds node addresses, outside the cluster CIDR
        "0.0.0.0/0",
        "fd00:1::/64",
        "fd00:1::/56",
    )
]
INSTANCES = [None, None, "i-1", "i-2"]


def nodes_st(name: str) -> st.SearchStrategy[Node]:
    return st.builds(
        Node,
        st.just(name),
        st.lists(st.sampled_from(IPS), max_size=2).map(tuple),
        st.lists(st.sampled_from(NETS), max_size=2).map(tuple),
        st.sampled_from(INSTANCES),
    )


#: One change: a node set to a value, or removed (None).
changes = st.sampled_from(NAMES).flatmap(
    lambda name: st.tuples(st.just(name), st.none() | nodes_st(name))
)

CLUSTERS = [
    Cluster((), cluster_cidrs=(ip_network("10.244.0.0/16"), ip_network("fd00:1::/48"))),
    Cluster(
        (),
        cluster_cidrs=(ip_network("10.244.0.0/16"),),
        service_cidrs=(ip_network("10.0.0.0/24"),),
        node_cidr_mask_size_v4=23,
    ),
    Cluster(()),
]


@settings(max_examples=300, deadline=None)
@given(
    base=st.sampled_from(CLUSTERS),
    start=st.lists(changes, max_size=6),
    steps=st.lists(changes, min_size=1, max_size=12),
    ranks=st.dictionaries(st.sampled_from(NAMES), st.integers(0, 2)),
)
def test_live_checks_equal_the_full_checks_after_every_change(
    base: Cluster,
    start: list[tuple[str, Node | None]],
    steps: list[tuple[str, Node | None]],
    ranks: dict[str, int],
) -> None:
    def rank(name: str) -> tuple[int, str]:
        return ranks.get(name, 1), ""

    current: dict[str, Node] = {}
    for name, node in start:
        if node is None:
            current.pop(name, None)
        else:
            current[name] = node
    live = LiveChecks(Cluster(tuple(current.values()), base.cluster_cidrs,
                              base.node_cidr_mask_size_v4, base.node_cidr_mask_size_v6,
                              base.service_cidrs))  # fmt: skip
    for name, node in [("", None), *steps]:
        if name:
            live.set(name, node)
            if node is None:
                current.pop(name, None)
            else:
                current[name] = node
        full = Cluster(
            tuple(current.values()),
            base.cluster_cidrs,
            base.node_cidr_mask_size_v4,
            base.node_cidr_mask_size_v6,
            base.service_cidrs,
        )
        want = set(check_cluster(full, seniority=lambda n: rank(n.name)))
        assert set(live.problems(rank)) == want
        assert {p.node for p in live.problems(rank)} == {p.node for p in want}


def test_a_clean_cluster_has_no_problems_and_a_cover_is_blamed_alone() -> None:
    """The take-over of issue 11, through the live path: a newcomer whose subnet covers two
    established nodes is the one blamed, and removing it leaves nothing to report."""
    a = Node("a", (ip_address("10.0.0.1"),), (ip_network("10.244.0.0/24"),))
    b = Node("b", (ip_address("10.0.0.2"),), (ip_network("10.244.1.0/24"),))
    live = LiveChecks(Cluster((a, b), cluster_cidrs=(ip_network("10.244.0.0/16"),)))
    assert live.problems(lambda n: (0, n)) == []
    cover = Node("z", (ip_address("10.0.0.9"),), (ip_network("10.244.0.0/23"),))
    live.set("z", cover)
    blamed = {p.node for p in live.problems(lambda n: (1 if n == "z" else 0, ""))}
    assert blamed == {"z"}
    live.set("z", None)
    assert live.problems(lambda n: (0, n)) == []


def test_live_checks_refuse_a_cluster_with_service_via() -> None:
    import pytest

    with pytest.raises(ValueError, match="nodes only"):
        LiveChecks(Cluster((), service_via=("a",)))
