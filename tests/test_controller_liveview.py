"""`LiveView` (the controller's view kept up to date one changed Node at a time) equals the full
`cluster_view` after every change of any sequence of changes, and `Verdicts` (the nodes'
conditions, judged again only for the nodes a pass names) equals `verdicts` after every pass.

The nodes come from small pools that collide (shared addresses, equal, nested and covering
subnets, addresses inside subnets, shared instances, values the checks refuse, nodes without a
subnet or an address), with creation times that tie, so the conflicts, their blame (which
depends on the last view's routed nodes) and the conditions of the skipped nodes are all met.
"""

from __future__ import annotations

from collections import Counter
from ipaddress import ip_address, ip_network
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from nosdn.backends.base import ApplyResult
from nosdn.backends.cloud.contract import CloudTable
from nosdn.backends.cloud.sync import sync
from nosdn.backends.fake import FakeBackend
from nosdn.controller.liveview import LiveView
from nosdn.controller.view import ClusterView, Verdicts, cluster_view, verdicts
from nosdn.model import Cluster, Diff, InstalledRoute, IPAddress, IPNetwork, Node
from nosdn.problems import Problem
from nosdn.sources.cache import Snapshot
from nosdn.sources.nodes import NodeInfo

CIDRS = (ip_network("10.244.0.0/16"), ip_network("fd00:1::/48"))
NAMES = [f"n{i}" for i in range(7)] + ["Bad_Name"]
IPS: list[IPAddress] = [
    ip_address(a)
    for a in ("10.0.0.1", "10.0.0.2", "10.0.0.3", "10.244.1.7", "127.0.0.1", "fd00::1")
]
NETS: list[IPNetwork] = [
    ip_network(n)
    for n in (
        "10.244.0.0/24",
        "10.244.1.0/24",
        "10.244.2.0/24",
        "10.244.3.0/24",
        "10.244.0.0/23",
        "10.244.0.128/25",
        "10.0.0.0/24",
        "fd00:1::/64",
    )
]


def info_st(name: str) -> st.SearchStrategy[NodeInfo]:
    node = st.builds(
        Node,
        st.just(name),
        st.lists(st.sampled_from(IPS), max_size=2, unique=True).map(tuple),
        st.lists(st.sampled_from(NETS), max_size=2, unique=True).map(tuple),
        st.sampled_from([None, None, "vm-1", "vm-2"]),
    )
    return st.builds(
        lambda n, created, problems: NodeInfo(
            name, n, problems, created, claims_subnet=bool(n.pod_cidrs)
        ),
        node,
        st.sampled_from(["", "2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z"]),
        st.sampled_from([(), ("node x: status.addresses[1]: not an address",)]),
    )


#: One step: a node set to a new object, removed (None), or left as it was ("same"), and
#: whether the pass is a resync.
steps = st.tuples(
    st.sampled_from(NAMES).flatmap(
        lambda name: st.tuples(st.just(name), st.none() | st.just("same") | info_st(name))
    ),
    st.booleans(),
)


def snapshot(gen: int, infos: dict[str, NodeInfo]) -> Snapshot:
    return Snapshot(gen, tuple(infos[n] for n in sorted(infos)), True, 1, True)


def full_view(snap: Snapshot, prev: ClusterView | None) -> ClusterView:
    routed = frozenset(prev.cluster.nodes) if prev is not None else frozenset()
    return cluster_view(snap, name="demo", cluster_cidrs=CIDRS, routed=routed)


@settings(max_examples=300, deadline=None)
@given(
    start=st.lists(st.sampled_from(NAMES).flatmap(info_st), max_size=6),
    changes=st.lists(steps, min_size=1, max_size=12),
)
def test_the_live_view_equals_the_full_view_after_every_change(
    start: list[NodeInfo], changes: list[tuple[tuple[str, NodeInfo | str | None], bool]]
) -> None:
    infos = {i.name: i for i in start}
    live = LiveView(name="demo", cluster_cidrs=CIDRS, full_share=1.0)
    gen = 1
    ref = full_view(snapshot(gen, infos), None)
    assert live.update(snapshot(gen, infos)) == ref
    for (name, value), resync in changes:
        if value is None:
            infos.pop(name, None)
        elif isinstance(value, NodeInfo):
            infos[name] = value
        gen += 1
        snap = snapshot(gen, infos)
        ref = full_view(snap, ref)
        got = live.update(snap, full=resync)
        assert got == ref
    assert live.drifts == 0
    assert live.live_views >= 1


def test_one_changed_node_is_not_a_full_rebuild_and_a_conflict_is_judged_as_in_full() -> None:
    def info(name: str, ip: str, net: str, created: str = "") -> NodeInfo:
        node = Node(name, (ip_address(ip),), (ip_network(net),), f"vm-{name}")
        return NodeInfo(name, node, (), created, True)

    infos = {f"n{i}": info(f"n{i}", f"10.0.0.{i + 1}", f"10.244.{i}.0/24") for i in range(50)}
    live = LiveView(name="demo", cluster_cidrs=CIDRS)
    v1 = live.update(snapshot(1, infos))
    assert (live.full_views, len(v1.cluster.nodes), v1.unusable) == (1, 50, {})
    # a newcomer takes n3's subnet: it is the one skipped, n3 keeps its routes
    infos["z"] = info("z", "10.0.1.1", "10.244.3.0/24", created="2026-06-01T00:00:00Z")
    v = live.update(snapshot(2, infos))
    assert live.full_views == 1
    assert live.live_views == 1
    assert set(v.unusable) == {"z"}
    assert "10.244.3.0/24" in v.unusable["z"].message
    assert v == full_view(snapshot(2, infos), v1)
    assert any(n.name == "n3" for n in v.cluster.nodes)
    del infos["z"]
    v = live.update(snapshot(3, infos), full=True)  # a resync: the full checks agree
    assert (live.drifts, v.unusable, len(v.cluster.nodes)) == (0, {}, 50)


def test_a_routed_node_keeps_its_subnet_against_an_older_newcomer_as_in_full() -> None:
    """Seniority's first rule (the last view routed it) through the live path: the newcomer
    created earlier is still the one skipped."""

    def info(name: str, ip: str, created: str) -> NodeInfo:
        node = Node(name, (ip_address(ip),), (ip_network("10.244.0.0/24"),))
        return NodeInfo(name, node, (), created, True)

    infos = {"n1": info("n1", "10.0.0.1", "2026-01-02T00:00:00Z")}
    live = LiveView(name="demo", cluster_cidrs=CIDRS)
    ref = full_view(snapshot(1, infos), None)
    assert live.update(snapshot(1, infos)) == ref
    infos["n2"] = info("n2", "10.0.0.2", "")  # older, but n1 is routed
    ref = full_view(snapshot(2, infos), ref)
    got = live.update(snapshot(2, infos))
    assert live.live_views == 1
    assert set(got.unusable) == set(ref.unusable) == {"n2"}
    assert got == ref


# --- the verdicts, pass after pass --------------------------------------------------------
class _Table:
    """A route table in memory (a `CloudTable`) that can hold foreign routes, refuse writes to
    chosen prefixes and be small."""

    name = "memory"
    quota_hint = "-"

    def __init__(self, table_id: str) -> None:
        self.table_id = table_id
        self.backend = FakeBackend()
        self.capacity: int | None = None

    @property
    def used(self) -> int:
        return len(self.backend.table)

    def routes(self) -> list[InstalledRoute]:
        return self.backend.routes()

    def apply(self, diff: Diff) -> ApplyResult:
        return self.backend.apply(diff)


class _Cloud:
    """A `CloudProvider` over `_Table`s; nodes named in ``ghosts`` have no instance."""

    name = "memory"

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.all = [_Table("t0"), _Table("t1")]
        self.count = 1
        self.ghosts: set[str] = set()

    def resolve(self, cluster: Cluster) -> tuple[dict[str, str], list[Problem]]:
        found = {n.name: f"vm-{n.name}" for n in cluster.nodes if n.name not in self.ghosts}
        lost = [
            Problem(n.name, "instanceId", "?", "is no VM", "fix it")
            for n in cluster.nodes
            if n.name in self.ghosts
        ]
        return found, lost

    def tables(self, cluster: Cluster, instances: dict[str, str]) -> list[CloudTable]:
        return list(self.all[: self.count])

    def check_targets(self, targets: dict[str, str]) -> tuple[list[Problem], list[str]]:
        return [], []

    def prepare_targets(self, targets: dict[str, str]) -> list[str]:
        return []


PODS = [ip_network(f"10.244.{i}.0/24") for i in range(6)]
_pass = st.fixed_dictionaries(
    {
        "nodes": st.dictionaries(st.integers(0, 5), st.integers(0, 1), max_size=6),
        "ghosts": st.sets(st.integers(0, 5), max_size=2),
        "foreign": st.sets(st.integers(0, 5), max_size=2),
        "fail": st.sets(st.integers(0, 5), max_size=2),
        "capacity": st.sampled_from([None, None, 2, 4]),
        "tables": st.sampled_from([1, 1, 2, 0]),
        "stale": st.booleans(),
    }
)


@settings(max_examples=200, deadline=None)
@given(passes=st.lists(_pass, min_size=1, max_size=8))
def test_verdicts_kept_from_pass_to_pass_equal_the_full_verdicts(
    passes: list[dict[str, Any]],
) -> None:
    cloud = _Cloud()
    kept = Verdicts()
    made: dict[tuple[int, int], Node] = {}  # one object per node state, as the cache keeps them

    def node(i: int, gen: int) -> Node:
        if (i, gen) not in made:
            made[i, gen] = Node(f"n{i}", (ip_address(f"10.0.{gen}.{i + 1}"),), (PODS[i],))
        return made[i, gen]

    for p in passes:
        nodes = tuple(node(i, gen) for i, gen in sorted(p["nodes"].items()))
        cluster = Cluster(nodes, cluster_cidrs=(CIDRS[0],), name="demo")
        cloud.ghosts = {f"n{i}" for i in p["ghosts"]}
        cloud.count = p["tables"]
        for t in cloud.all:
            t.capacity = p["capacity"]
            t.backend.fail = {PODS[i] for i in p["fail"]}
            t.backend.table = [r for r in t.backend.table if r.owned]
            for i in p["foreign"]:
                t.backend.table.append(InstalledRoute(PODS[i], (ip_address("10.9.9.9"),), False))
            if p["stale"]:  # an owned route nobody wants: its removal names no node
                t.backend.table.append(
                    InstalledRoute(ip_network("10.244.200.0/24"), (ip_address("10.0.0.9"),), True)
                )
        result = sync(cloud, cluster)
        assert kept(cluster, result) == verdicts(cluster, result)
