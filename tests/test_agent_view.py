"""The agent's view, kept one changed Node at a time, is the view a whole rebuild gives.

`Reference` below is the agent's view as it was built before `nosdn.agent.view` existed (every
node, `check_cluster`, `seniority` over what the last view routed): the definition of right.
Random sequences of watch events, relists and resyncs go through a `NodeCache`; after each one
the incremental view must be the reference's, and the table of the agent that applies only the
changes must be the table of one that rebuilds on every pass. The pools collide on purpose:
duplicate and nested subnets, shared addresses, addresses inside subnets, values the field
checks refuse, creation times that tie, and this node's own object coming and going.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from ipaddress import ip_network
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from agent_env import node_object
from nosdn.agent.config import AgentConfig
from nosdn.agent.loop import Agent
from nosdn.agent.view import Views
from nosdn.backends.fake import FakeBackend
from nosdn.checks import check_cluster
from nosdn.model import Cluster, InstalledRoute, Node
from nosdn.sources import cache as cache_module
from nosdn.sources.cache import NodeCache, Snapshot
from nosdn.sources.nodes import seniority

ME = "n0"
NAMES = [f"n{i}" for i in range(6)]
IPS = ["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.244.1.7", "fd00::1", "not-an-ip"]
CIDRS = [
    "10.244.0.0/24",
    "10.244.1.0/24",
    "10.244.2.0/24",
    "10.244.0.0/23",
    "10.244.0.0/16",
    "10.1.0.0/24",  # outside the cluster CIDR
    "fd00:1::/64",
    "10.244.3.0/33",  # not a subnet
]
CREATED = [None, "2024-01-01T00:00:00Z", "2024-01-01T00:00:00Z", "2025-06-01T00:00:00Z"]
CLUSTER_CIDRS = (ip_network("10.244.0.0/16"), ip_network("fd00:1::/48"))


def config() -> AgentConfig:
    return AgentConfig(
        node_name=ME,
        cluster_cidrs=CLUSTER_CIDRS,
        ip_forward=False,
        metrics_address=None,
        mtu=1500,
        events=False,
        set_condition=False,
        max_delete_share=1.0,
    )


objects = st.builds(
    lambda name, ips, cidrs, created: node_object(name, ips, cidrs, created=created),
    st.sampled_from(NAMES),
    st.lists(st.sampled_from(IPS), max_size=2, unique=True),
    st.lists(st.sampled_from(CIDRS), max_size=2, unique=True),
    st.sampled_from(CREATED),
)

#: One step: a watch event, a relist (the objects listed, by name), or a resync.
steps = st.one_of(
    st.tuples(st.just("MODIFIED"), objects),
    st.tuples(st.just("DELETED"), st.sampled_from(NAMES)),
    st.tuples(st.just("relist"), st.lists(objects, max_size=6)),
    st.tuples(st.just("resync"), st.none()),
)


@dataclass
class Reference:
    """The old whole-cluster build (kept here only as the definition of right)."""

    routed: frozenset[Node] | None = None
    last: tuple[int, dict[str, Any]] | None = None

    def view(
        self, snap: Snapshot, found: Callable[[Cluster], frozenset[Node]], *, full: bool
    ) -> dict[str, Any]:
        """Built once per cache generation, and again on a resync (as the agent does)."""
        if self.last is None or self.last[0] != snap.generation or full:
            self.last = snap.generation, self.build(snap, found)
        return self.last[1]

    def build(self, snap: Snapshot, found: Callable[[Cluster], frozenset[Node]]) -> dict[str, Any]:
        problems: list[str] = []
        nodes: list[Node] = []
        me = None
        without = peers = 0
        for info in snap.nodes:
            problems.extend(info.problems)
            if info.claims_subnet and info.name != ME:
                peers += 1
            if info.name == ME:
                me = info.node
                nodes.append(info.node)
            elif not info.node.pod_cidrs:
                without += 1
            elif info.node.ips:
                nodes.append(info.node)
        cluster = Cluster(tuple(nodes), cluster_cidrs=CLUSTER_CIDRS)
        if self.routed is None:
            self.routed = found(cluster)
        rank = seniority(snap.nodes, routed=self.routed, me=ME)
        skipped = []
        for p in check_cluster(cluster, seniority=rank):
            problems.append(str(p))
            if p.node is not None and p.node != ME:
                skipped.append(p)
        bad = {p.node for p in skipped}
        kept = tuple(n for n in cluster.nodes if n.name not in bad)
        self.routed = frozenset(kept)
        return {
            "nodes": kept,
            "me": me,
            "without": without,
            "peers": peers,
            "problems": sorted(problems),
            "skipped": sorted(str(p) for p in skipped),
        }


def seen(v: Any) -> dict[str, Any]:
    return {
        "nodes": v.cluster.nodes,
        "me": v.me,
        "without": v.without_subnet,
        "peers": v.peers,
        "problems": sorted(v.problems),
        "skipped": sorted(str(p) for p in v.skipped),
    }


def table(backend: FakeBackend) -> list[tuple[str, str]]:
    return sorted((str(r.dst), str(r.via)) for r in backend.table)


def agent(cache: NodeCache, backend: FakeBackend) -> Agent:
    return Agent(config(), cache, backend, request_relist=lambda: None)


def step(cache: NodeCache, kind: str, arg: Any) -> None:
    if kind == "DELETED":
        cache.apply("DELETED", node_object(arg, []))
    elif kind == "MODIFIED":
        cache.apply("MODIFIED", arg)
    elif kind == "relist":
        cache.replace({o["metadata"]["name"]: o for o in arg}.values())


def left_routed(cache: NodeCache) -> list[InstalledRoute]:
    """What a last run left in the table: routes to some of the first list's nodes."""
    snap = cache.snapshot()
    return [
        InstalledRoute(c, (i.node.ip_for(c.version),), True)
        for i in snap.nodes[::2]
        if i.node.ips and i.name != ME
        for c in i.node.pod_cidrs
        if any(ip.version == c.version for ip in i.node.ips)
    ]


@settings(max_examples=250, deadline=None)
@given(first=st.lists(objects, max_size=6), run=st.lists(steps, max_size=25))
def test_the_incremental_view_and_table_equal_a_full_recompute_after_every_event(
    first: Sequence[dict[str, Any]], run: Sequence[tuple[str, Any]]
) -> None:
    cache = NodeCache(self_name=ME)
    cache.replace({o["metadata"]["name"]: o for o in first}.values())
    cache.set_connected(True)
    inc_backend = FakeBackend(left_routed(cache))
    full_backend = FakeBackend(left_routed(cache))
    inc, full = agent(cache, inc_backend), agent(cache, full_backend)
    ref = Reference()
    found = inc._found_routed
    for kind, arg in [("resync", None), *run]:
        step(cache, kind, arg)
        snap = cache.snapshot()
        resync = kind == "resync"
        want = ref.view(snap, found, full=resync)
        inc.run_pass({"node"}, full=resync)
        full.run_pass({"resync"}, full=True)
        assert seen(inc.view(snap)) == want, (kind, arg)
        assert table(inc_backend) == table(full_backend), (kind, arg)


def test_a_node_skipped_last_time_gains_no_standing_while_unchanged() -> None:
    """n2, older than n1, takes the subnet n1 is routed with, and is skipped: n1 was there
    first. On later passes n2, unchanged, must not count as routed (it never was): were it
    given that standing, its age would win and n1's route would move to it."""
    cache = NodeCache(self_name=ME)
    old, new = "2024-01-01T00:00:00Z", "2025-01-01T00:00:00Z"
    n1 = node_object("n1", ["10.0.0.1"], ["10.244.1.0/24"], created=new)
    n2 = node_object("n2", ["10.0.0.2"], ["10.244.1.0/24"], created=old)
    me = node_object(ME, ["10.0.0.9"], ["10.244.9.0/24"], created=old)
    cache.replace([me, n1])
    cache.set_connected(True)
    a = agent(cache, FakeBackend())
    a.run_pass({"list"})
    cache.apply("MODIFIED", n2)  # older, but n1 is routed: n2 is skipped
    a.run_pass({"node"})
    assert {p.node for p in a.view(cache.snapshot()).skipped} == {"n2"}
    cache.apply("MODIFIED", node_object("n3", ["10.0.0.3"], ["10.244.3.0/24"]))
    a.run_pass({"node"})  # an unrelated change: n2 stays skipped, n1 routed
    assert {p.node for p in a.view(cache.snapshot()).skipped} == {"n2"}
    a.run_pass({"resync"}, full=True)
    assert {p.node for p in a.view(cache.snapshot()).skipped} == {"n2"}


def test_the_cache_names_the_changes_between_two_generations() -> None:
    cache = NodeCache(self_name=ME)
    cache.replace([node_object("a", ["10.0.0.1"]), node_object("b", ["10.0.0.2"])])
    g1 = cache.generation
    cache.apply("MODIFIED", node_object("a", ["10.0.0.3"]))
    cache.apply("MODIFIED", node_object("a", ["10.0.0.3"]))  # no change: no generation
    g2 = cache.generation
    cache.apply("DELETED", node_object("b", []))
    cache.replace([node_object("a", ["10.0.0.3"]), node_object("c", ["10.0.0.4"])])
    g3 = cache.generation
    assert g2 == g1 + 1
    assert cache.changes_since(g1, g2) == {"a"}
    assert cache.changes_since(g2, g3) == {"b", "c"}
    assert cache.changes_since(g1, g3) == {"a", "b", "c"}
    assert cache.changes_since(g3, g3) == set()
    assert cache.changes_since(0, g1) == {"a", "b"}


def test_a_reader_behind_the_log_is_told_to_rebuild(monkeypatch: Any) -> None:
    monkeypatch.setattr(cache_module, "_LOG_SIZE", 4)
    cache = NodeCache(self_name=ME)
    cache.replace([node_object(ME, ["10.0.0.9"], ["10.244.9.0/24"])])
    views = Views(config())
    snap = cache.snapshot()
    views.build(snap, None, lambda c: frozenset())
    start = cache.generation
    for i in range(6):
        cache.apply("MODIFIED", node_object(f"x{i}", [f"10.0.1.{i + 1}"], [f"10.244.{i}.0/24"]))
    assert cache.changes_since(start, cache.generation) is None
    assert cache.changes_since(cache.generation - 2, cache.generation) == {"x4", "x5"}
    a = agent(cache, FakeBackend())
    a.run_pass({"list"})
    a._views.generation = start  # as if its last view were that old
    cache.apply("MODIFIED", node_object("x9", ["10.0.1.99"], ["10.244.99.0/24"]))
    a.run_pass({"node"})
    assert len(a.view(cache.snapshot()).cluster.nodes) == 8


OLD, MID, NEW = "2024-01-01T00:00:00Z", "2024-06-01T00:00:00Z", "2025-01-01T00:00:00Z"


def started(*objs: dict[str, Any]) -> tuple[Agent, NodeCache, FakeBackend]:
    cache = NodeCache(self_name=ME)
    cache.replace([node_object(ME, ["10.0.0.9"], ["10.244.9.0/24"], created=OLD), *objs])
    cache.set_connected(True)
    backend = FakeBackend()
    a = agent(cache, backend)
    a.run_pass({"list"})
    return a, cache, backend


def test_a_routed_node_moving_onto_anothers_subnet_is_the_newcomer_there() -> None:
    """n1 is older than n2, but when n1 moves onto n2's subnet it is n1 that is new there:
    n2 keeps its route (the old whole build's rule: routed *as it is now*)."""
    a, cache, backend = started(
        node_object("n1", ["10.0.0.1"], ["10.244.1.0/24"], created=OLD),
        node_object("n2", ["10.0.0.2"], ["10.244.2.0/24"], created=NEW),
    )
    cache.apply("MODIFIED", node_object("n1", ["10.0.0.1"], ["10.244.2.0/24"], created=OLD))
    a.run_pass({"node"})
    assert table(backend) == [("10.244.2.0/24", "(IPv4Address('10.0.0.2'),)")]
    assert {p.node for p in a.view(cache.snapshot()).skipped} == {"n1"}


def test_a_node_cleared_by_anothers_change_is_routed_and_keeps_its_standing() -> None:
    """n2 is skipped while the older n1 holds its address; n1 leaves, so n2 is routed though
    n2 itself did not change. An older newcomer on n2's subnet must then be the one skipped."""
    a, cache, backend = started(
        node_object("n1", ["10.0.0.1"], ["10.244.1.0/24"], created=OLD),
        node_object("n2", ["10.0.0.1"], ["10.244.2.0/24"], created=NEW),
    )
    assert {p.node for p in a.view(cache.snapshot()).skipped} == {"n2"}
    cache.apply("DELETED", node_object("n1", []))
    a.run_pass({"node"})
    assert table(backend) == [("10.244.2.0/24", "(IPv4Address('10.0.0.1'),)")]
    cache.apply("MODIFIED", node_object("n3", ["10.0.0.3"], ["10.244.2.0/24"], created=MID))
    a.run_pass({"node"})
    assert table(backend) == [("10.244.2.0/24", "(IPv4Address('10.0.0.1'),)")]
    assert {p.node for p in a.view(cache.snapshot()).skipped} == {"n3"}
