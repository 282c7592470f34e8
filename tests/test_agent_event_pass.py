"""The agent's event pass (one Node changed: its routes alone planned, diffed and written) leaves
the table and the figures a full recompute gives, after every event.

`nosdn.agent.standing` is the record the event pass folds into; the full pass is the definition
of right. Random Node events go through two agents sharing one `NodeCache`: one runs the pass a
watch event wakes (``{"node"}``), the other a full pass every time. The tables start with
routes a last run left and routes of other owners on wanted prefixes (conflicts), some next
hops are off-link, and some prefixes fail to write, so every branch of the fold is driven.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from ipaddress import ip_address, ip_network
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent_env import node_object, wait_until
from conftest import ip, on_link_namespace, requires_root
from nosdn.agent.config import AgentConfig
from nosdn.agent.loop import Agent
from nosdn.agent.monitor import NetlinkMonitor
from nosdn.backends.fake import FakeBackend
from nosdn.backends.kernel import KernelBackend
from nosdn.backends.kernel.cache import KernelCache
from nosdn.model import Diff, InstalledRoute, IPAddress, Route, RouteKey, Target
from nosdn.plan import desired_routes
from nosdn.plan import diff as plan_diff
from nosdn.reconcile import PassResult
from nosdn.sources.cache import NodeCache

ME = "n0"
NAMES = [f"n{i}" for i in range(1, 8)]
IPS = ["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.9.9", "fd00::1", "fd00::2"]
CIDRS = [
    "10.244.1.0/24",
    "10.244.2.0/24",
    "10.244.3.0/24",
    "10.244.4.0/24",
    "10.244.5.0/24",
    "10.244.0.0/23",
    "fd00:1:0:1::/64",
    "fd00:1:0:2::/64",
]
CREATED = ["2024-01-01T00:00:00Z", "2024-06-01T00:00:00Z", "2025-01-01T00:00:00Z"]
#: next hops the adjacency check calls off-link
OFF_LINK = {ip_address("10.0.9.9")}
#: a prefix someone else routes (a conflict when a node wants it)
FOREIGN = InstalledRoute(ip_network("10.244.5.0/24"), (ip_address("10.0.0.250"),), False, "static")


@dataclass(frozen=True)
class Verdict:
    on_link: bool
    reason: str | None = None
    via: IPAddress | None = None


def adjacency(gws: Sequence[IPAddress]) -> dict[IPAddress, Verdict]:
    return {g: Verdict(g not in OFF_LINK, None if g not in OFF_LINK else "off-link") for g in gws}


class CountingBackend(FakeBackend):
    """The fake table, counting whole reads and the prefixes read by key."""

    def __init__(self, *a: Any, **kw: Any) -> None:
        super().__init__(*a, **kw)
        self.whole_reads = 0
        self.keys_read: list[int] = []

    def routes(self) -> list[InstalledRoute]:
        self.whole_reads += 1
        return super().routes()

    def entries_on(self, keys: Collection[RouteKey]) -> list[InstalledRoute]:
        self.keys_read.append(len(keys))
        return super().entries_on(keys)


def config(share: float = 1.0) -> AgentConfig:
    return AgentConfig(
        node_name=ME,
        cluster_cidrs=(ip_network("10.244.0.0/16"), ip_network("fd00:1::/48")),
        ip_forward=False,
        metrics_address=None,
        mtu=1500,
        events=False,
        set_condition=False,
        max_delete_share=share,
    )


def make_agent(cache: NodeCache, backend: FakeBackend, share: float = 1.0) -> Agent:
    return Agent(config(share), cache, backend, request_relist=lambda: None, adjacency=adjacency)


def synced(objects: Sequence[dict[str, Any]]) -> NodeCache:
    """A cache holding ``objects`` as its first list, connected."""
    cache = NodeCache(self_name=ME)
    cache.replace(objects)
    cache.set_connected(True)
    return cache


def table(backend: FakeBackend) -> list[tuple[str, str, bool]]:
    return sorted((str(r.dst), str(r.via), r.owned) for r in backend.table)


def figures(a: Agent) -> dict[str, Any]:
    """Everything the agent reports from a pass (metrics, readiness, the condition)."""
    r = a.status.last_pass
    assert r is not None
    lost = {c.wanted.dst for c in r.conflicts} | {e.dst for e in r.errors if e.action != "remove"}
    routed = {x.node for x in r.desired if x.node != ME and x.dst not in lost}
    assert a.status.peers_routed == len(routed)  # the count the record keeps, by definition
    return {
        "desired": sorted((str(x.dst), str(x.via), x.node) for x in r.desired),
        "conflicts": sorted(str(c.wanted.dst) for c in r.conflicts),
        "offlink": [(o.node, str(o.gateway), o.reason) for o in r.offlink],
        "skipped": sorted(str(x.dst) for x in r.skipped),
        "errors": sorted((str(e.dst), e.action) for e in r.errors),
        "owned": r.diff.owned,
        "peers": (a.status.peers, a.status.peers_routed, a.status.no_peer_reason),
        "ok": a.status.last_ok,
    }


objects = st.builds(
    lambda name, ips, cidrs, created: node_object(name, ips, cidrs, created=created),
    st.sampled_from(NAMES),
    st.lists(st.sampled_from(IPS), min_size=1, max_size=2, unique=True),
    st.lists(st.sampled_from(CIDRS), max_size=2, unique=True),
    st.sampled_from(CREATED),
)
steps = st.one_of(
    st.tuples(st.just("MODIFIED"), objects),
    st.tuples(st.just("MODIFIED"), objects),
    st.tuples(st.just("DELETED"), st.sampled_from(NAMES)),
    st.tuples(st.just("fail"), st.sampled_from([None, *CIDRS[:3]])),
)


@settings(max_examples=300, deadline=None)
@given(first=st.lists(objects, max_size=7), run=st.lists(steps, min_size=1, max_size=30))
def test_after_every_node_event_the_table_and_figures_are_a_full_recomputes(
    first: Sequence[dict[str, Any]], run: Sequence[tuple[str, Any]]
) -> None:
    me = node_object(ME, ["10.0.0.100", "fd00::100"], ["10.244.100.0/24"], created=CREATED[0])
    cache = synced([me, *{o["metadata"]["name"]: o for o in first}.values()])
    left = [
        FOREIGN,
        InstalledRoute(ip_network("10.244.1.0/24"), (ip_address("10.0.0.1"),), True),
        InstalledRoute(ip_network("10.244.77.0/24"), (ip_address("10.0.0.7"),), True),
    ]
    event_backend, full_backend = CountingBackend(left), FakeBackend(left)
    event, full = make_agent(cache, event_backend), make_agent(cache, full_backend)
    event.run_pass({"list"})
    full.run_pass({"list"})
    for kind, arg in run:
        if kind == "fail":
            event_backend.fail = full_backend.fail = {ip_network(arg)} if arg else set()
        elif kind == "DELETED":
            cache.apply("DELETED", node_object(arg, []))
        else:
            cache.apply("MODIFIED", arg)
        event.run_pass({"node"})
        full.run_pass({"resync"}, full=True)
        assert table(event_backend) == table(full_backend), (kind, arg)
        assert figures(event) == figures(full), (kind, arg)
    # the whole table is read once before the first view, then by full passes only
    assert event_backend.whole_reads == 2 + len(run) - event.status.event_passes


def test_an_event_pass_reads_and_plans_only_the_changed_nodes_prefixes() -> None:
    nodes = [node_object(ME, ["10.0.0.100"], ["10.244.100.0/24"])]
    nodes += [node_object(f"n{i}", [f"10.0.1.{i}"], [f"10.244.{i}.0/24"]) for i in range(1, 60)]
    cache = synced(nodes)
    backend = CountingBackend()
    a = make_agent(cache, backend)
    a.run_pass({"list"})
    assert backend.whole_reads == 2
    assert len(backend.table) == 59
    cache.apply("MODIFIED", node_object("n7", ["10.0.1.207"], ["10.244.7.0/24"]))
    a.run_pass({"node"})
    cache.apply("MODIFIED", node_object("n8", ["10.0.1.8"], ["10.244.208.0/24"]))  # new subnet
    a.run_pass({"node"})
    cache.apply("DELETED", node_object("n9", []))
    a.run_pass({"node"})
    assert a.status.event_passes == 3
    assert backend.whole_reads == 2  # nothing after the first pass read the whole table
    assert backend.keys_read == [1, 2, 1]  # the prefix changed; old and new; the one gone
    routes = {str(r.dst): str(r.via[0]) for r in backend.table}
    assert routes["10.244.7.0/24"] == "10.0.1.207"
    assert "10.244.8.0/24" not in routes
    assert routes["10.244.208.0/24"] == "10.0.1.8"
    assert "10.244.9.0/24" not in routes
    assert len(routes) == 58
    last = a.status.last_pass
    assert last is not None
    assert len(last.desired) == 58


def test_a_burst_of_deletions_through_event_passes_is_held_like_one_full_pass() -> None:
    """The deletion guard judges removals against every route of ours in the table, not
    against the few prefixes an event pass reads: ten nodes deleted one event at a time
    out of sixteen are held once they pass half."""
    nodes = [node_object(ME, ["10.0.0.100"], ["10.244.100.0/24"])]
    nodes += [node_object(f"n{i}", [f"10.0.1.{i}"], [f"10.244.{i}.0/24"]) for i in range(1, 17)]
    cache = synced(nodes)
    backend = FakeBackend()
    a = make_agent(cache, backend, share=0.5)
    a.run_pass({"list"})
    for i in range(1, 11):
        cache.apply("DELETED", node_object(f"n{i}", []))
        a.run_pass({"node"})
    assert a.guard.state.held > 0
    assert len(backend.table) == 16 - 8  # eight went (half of sixteen), the rest held
    assert a.status.event_passes >= 8


def test_this_nodes_own_change_and_a_failed_write_take_a_full_pass() -> None:
    cache = synced(
        [
            node_object(ME, ["10.0.0.100"], ["10.244.100.0/24"]),
            node_object("n1", ["10.0.1.1"], ["10.244.1.0/24"]),
            node_object("n2", ["10.0.1.2"], ["10.244.2.0/24"]),
        ]
    )
    backend = FakeBackend(fail=[ip_network("10.244.2.0/24")])
    a = make_agent(cache, backend)
    a.run_pass({"list"})
    assert not a.status.last_ok
    cache.apply("MODIFIED", node_object("n1", ["10.0.1.11"], ["10.244.1.0/24"]))
    backend.fail = set()
    a.run_pass({"node"})  # the failed write is retried: a full pass
    assert a.status.event_passes == 0
    assert a.status.last_ok
    assert len(backend.table) == 2
    cache.apply("MODIFIED", node_object(ME, ["10.0.0.101"], ["10.244.100.0/24"]))
    a.run_pass({"node"})
    assert a.status.event_passes == 0
    cache.apply("MODIFIED", node_object("n2", ["10.0.1.12"], ["10.244.2.0/24"]))
    a.run_pass({"node"})
    assert a.status.event_passes == 1
    last: PassResult | None = a.status.last_pass
    assert last is not None
    assert last.writes == 1


@pytest.mark.root
@requires_root
def test_event_passes_on_a_real_kernel_table_leave_what_a_full_pass_wants(
    netns: Callable[..., str],
) -> None:
    """Random address, subnet, join and leave events through the agent's own wiring
    (`KernelCache` around `KernelBackend`, the kernel's adjacency): after each event pass the
    kernel holds, as ours, exactly the routes a full recompute wants, and a full pass then finds
    nothing to write."""
    ns = on_link_namespace(netns, "nosdn-event")
    rng = random.Random(18)
    live = {f"n{i}": (f"10.10.1.{i}", f"10.244.{i}.0/24") for i in range(1, 41)}
    cache = synced(
        [node_object(ME, ["10.10.0.1"], ["10.244.200.0/24"])]
        + [node_object(n, [a], [c]) for n, (a, c) in live.items()]
    )
    table = KernelBackend(netns=ns)
    kernel = KernelCache(table)
    a = Agent(
        config(),
        cache,
        kernel,
        request_relist=lambda: None,
        adjacency=kernel.adjacency,
        invalidate=lambda lookups: kernel.invalidate(lookups=lookups),
    )
    try:
        assert a.run_pass({"list"}, full=True)
        for step in range(80):
            name = f"n{rng.randrange(1, 60)}"
            roll = rng.random()
            if roll < 0.2 and name in live:
                del live[name]
                cache.apply("DELETED", node_object(name, []))
            else:
                i = rng.randrange(1, 250)
                old = live.get(name, (f"10.10.2.{i}", f"10.244.{100 + i % 99}.0/24"))
                live[name] = (
                    (f"10.10.3.{i}", old[1]) if roll < 0.7 else (old[0], f"10.245.{i}.0/24")
                )
                cache.apply("MODIFIED", node_object(name, [live[name][0]], [live[name][1]]))
            assert a.run_pass({"node"}), step
            fresh = KernelBackend(netns=ns)
            try:
                got = sorted((str(r.dst), str(r.via)) for r in fresh.routes() if r.owned)
            finally:
                fresh.close()
            v = a.view(cache.snapshot())
            want = desired_routes(v.cluster, Target.for_node(ME))
            assert got == sorted((str(r.dst), str(r.via)) for r in want), step
        assert a.status.event_passes > 40
        assert a.run_pass({"resync"}, full=True)
        last = a.status.last_pass
        assert last is not None
        assert last.writes == 0
    finally:
        table.close()


@pytest.mark.root
@requires_root
def test_the_monitor_takes_our_own_removals_for_ours_and_anyone_elses_for_a_repair(
    netns: Callable[..., str],
) -> None:
    """A node leaving makes the agent remove its route and nexthop: the kernel's notifications
    of those writes carry our writing socket's port id and nudge nothing (else every node
    leaving would cost a full pass); the same route deleted by ``ip route del`` still does."""
    ns = on_link_namespace(netns, "nosdn-mon")
    table = KernelBackend(netns=ns)
    reasons: list[str] = []
    mon = NetlinkMonitor(reasons.append, protocol=157, table=254, netns=ns, writer=table.nl.pid)
    mon.start()
    try:
        route = Route(ip_network("10.244.1.0/24"), (ip_address("10.10.0.2"),), "n1")
        assert not table.apply(Diff(add=(route,))).errors
        gone = plan_diff([], table.entries())
        assert len(gone.remove) == 1
        assert not table.apply(gone).errors  # the route, then its nexthop (unused now)
        assert not [r for r in table.routes() if r.owned]
        time.sleep(0.5)
        assert reasons == []
        assert not table.apply(Diff(add=(route,))).errors
        ip(ns, "route", "del", "10.244.1.0/24")
        wait_until(lambda: "netlink-route" in reasons, 5, 0.02, "a nudge for ip route del")
    finally:
        mon.stop()
        table.close()


def test_a_pass_that_raises_leaves_the_next_one_full() -> None:
    """The record is taken for the pass: an event pass that fails half-way (here a backend
    that raises) must not leave a record the table no longer matches, nor lose the nodes its
    view had touched."""
    cache = synced(
        [
            node_object(ME, ["10.0.0.100"], ["10.244.100.0/24"]),
            node_object("n1", ["10.0.1.1"], ["10.244.1.0/24"]),
            node_object("n2", ["10.0.1.2"], ["10.244.2.0/24"]),
        ]
    )

    class Breaks(FakeBackend):
        broken = False

        def apply(self, diff: Diff) -> Any:
            if self.broken:
                raise RuntimeError("a bug below the pass")
            return super().apply(diff)

    backend = Breaks()
    a = make_agent(cache, backend)
    a.run_pass({"list"})
    cache.apply("MODIFIED", node_object("n1", ["10.0.1.11"], ["10.244.1.0/24"]))
    backend.broken = True
    with pytest.raises(RuntimeError):
        a.run_pass({"node"})
    backend.broken = False
    cache.apply("MODIFIED", node_object("n2", ["10.0.1.12"], ["10.244.2.0/24"]))
    a.run_pass({"node"})  # n2's event, but n1's change is not in the table yet: a full pass
    assert a.status.event_passes == 0
    assert table(backend) == [
        ("10.244.1.0/24", "(IPv4Address('10.0.1.11'),)", True),
        ("10.244.2.0/24", "(IPv4Address('10.0.1.12'),)", True),
    ]
