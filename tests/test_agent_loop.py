"""The agent's loop and its parts, without root: the fake backend stands in for the kernel, the
cache is fed by hand. What is checked here is the agent's judgement (when to write, when to
refuse, what to report); `test_agent_kernel` checks the same agent against a real kernel.
"""

from __future__ import annotations

import gc
import json
import logging
import struct
import threading
import time
from collections.abc import Mapping
from ipaddress import ip_network
from pathlib import Path
from typing import Any

import pytest

from agent_env import node_object
from nosdn.agent.allocator import Allocator
from nosdn.agent.config import AgentConfig
from nosdn.agent.egress import render
from nosdn.agent.loop import Agent, Nudger
from nosdn.agent.monitor import classify, invalidates_lookups
from nosdn.backends.fake import FakeBackend
from nosdn.daemon.condition import ConditionSetter, Wish
from nosdn.daemon.config import ConfigError
from nosdn.daemon.events import EventRecorder
from nosdn.daemon.logs import JsonFormatter
from nosdn.model import InstalledRoute
from nosdn.sources.cache import NodeCache


def owned(*ids: int) -> list[InstalledRoute]:
    return [InstalledRoute(ip_network(f"10.244.{i}.0/24"), (_ip(i),), True) for i in ids]


def _ip(i: int) -> Any:
    from ipaddress import ip_address

    return ip_address(f"10.10.0.{i}")


def nodes(*ids: int) -> list[dict[str, Any]]:
    return [node_object(f"node{i}", [f"10.10.0.{i}"], [f"10.244.{i}.0/24"]) for i in ids]


class Wishes:
    def __init__(self) -> None:
        self.wishes: list[Wish] = []

    def want(self, w: Wish) -> None:
        self.wishes.append(w)


def make(
    table: list[InstalledRoute] | None = None, tmp: Path | None = None, **cfg: Any
) -> tuple[Agent, NodeCache, FakeBackend, list[str]]:
    cache = NodeCache(self_name="node1")
    backend = FakeBackend(table or [])
    relists: list[str] = []
    config = AgentConfig(
        node_name="node1",
        cni_conf=(tmp / "10-nosdn.conflist") if tmp else None,
        ip_forward=False,
        metrics_address=None,
        mtu=1450,
        **cfg,
    )
    agent = Agent(config, cache, backend, request_relist=lambda: relists.append("relist"))
    cache.set_connected(True)  # as the reflector says after its first list
    return agent, cache, backend, relists


def dsts(backend: FakeBackend) -> set[str]:
    return {str(r.dst) for r in backend.table if r.owned}


def test_nothing_is_written_before_the_first_list() -> None:
    agent, cache, backend, _ = make(owned(7, 8, 9), deletion_hold=0)
    agent.run_pass({"netlink-route"})
    assert backend.total_writes == 0
    cache.replace(nodes(1, 2))
    agent.run_pass({"list"})
    # 3 of 3 routes stale: held until a second list confirms (the guard works at start too;
    # with no hold time, the next list is the confirmation)
    assert dsts(backend) == {"10.244.2.0/24", "10.244.7.0/24", "10.244.8.0/24", "10.244.9.0/24"}
    cache.replace(nodes(1, 2))
    agent.run_pass({"list"})
    assert dsts(backend) == {"10.244.2.0/24"}


def test_routes_stay_when_this_node_is_missing_or_has_no_address() -> None:
    agent, cache, backend, _ = make(owned(2, 3))
    cache.replace(nodes(2, 3, 4))  # no node1
    agent.run_pass({"list"})
    assert backend.total_writes == 0
    assert "node1 is not in the API" in agent.status.skipped_reason
    wishes = Wishes()
    agent.condition = wishes  # type: ignore[assignment]
    cache.replace([node_object("node1", [], ["10.244.1.0/24"]), *nodes(2, 3, 4)])
    agent.run_pass({"list"})
    assert backend.total_writes == 0
    assert (wishes.wishes[-1].status, wishes.wishes[-1].reason) == ("True", "NosdnNoNodeAddress")
    assert agent.readyz()[0] is False


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_mass_deletion_is_held_then_confirmed_by_a_list_after_the_hold() -> None:
    agent, cache, backend, relists = make(owned(2, 3, 4, 5), deletion_hold=300)
    agent.guard.clock = clock = Clock()
    cache.replace(nodes(1, 2, 3, 4, 5))
    agent.run_pass({"list"})
    assert backend.total_writes == 0
    cache.replace(nodes(1))  # 4 of 4 routes would go
    agent.run_pass({"node"})
    assert dsts(backend) == {"10.244.2.0/24", "10.244.3.0/24", "10.244.4.0/24", "10.244.5.0/24"}
    assert agent.guard.state.held == 4
    assert agent.metrics.deletions_held._value.get() == 4  # type: ignore[attr-defined]
    assert agent.metrics.deletions_held_until._value.get() > time.time() + 290  # type: ignore[attr-defined]
    cache.replace(nodes(1))  # the same API a moment later is no confirmation
    agent.run_pass({"list"})
    assert len(dsts(backend)) == 4
    assert relists == []
    clock.now += 301  # after the hold: a fresh list is asked for, once
    agent.run_pass({"resync"}, full=True)
    agent.run_pass({"resync"}, full=True)
    assert relists == ["relist"]
    assert len(dsts(backend)) == 4
    cache.replace(nodes(1))  # and it still says so
    agent.run_pass({"list"})
    assert dsts(backend) == set()
    assert agent.guard.state.held == 0
    assert agent.metrics.deletions_held._value.get() == 0  # type: ignore[attr-defined]
    assert agent.metrics.deletions_refused._value.get() == 16  # type: ignore[attr-defined]


def test_held_removals_are_released_by_the_annotation_on_this_node() -> None:
    agent, cache, backend, relists = make(owned(2, 3, 4, 5))
    agent.guard.clock = Clock()
    me = nodes(1)[0]
    me["metadata"]["annotations"] = {"nosdn.io/release-deletions": "old"}
    cache.replace([me, *nodes(2, 3, 4, 5)])
    agent.run_pass({"list"})
    cache.replace([me])
    agent.run_pass({"node"})
    assert agent.guard.state.held == 4
    assert "nosdn.io/release-deletions" in agent.guard.how_to_release
    cache.replace([me])  # a token set before the hold releases nothing
    agent.run_pass({"list"})
    assert len(dsts(backend)) == 4
    me = json.loads(json.dumps(me))
    me["metadata"]["annotations"]["nosdn.io/release-deletions"] = "1767000000"
    cache.apply("MODIFIED", me)
    agent.run_pass({"resync"}, full=True)
    assert dsts(backend) == set()
    assert relists == []


def test_the_nodes_coming_back_end_the_hold() -> None:
    agent, cache, backend, _ = make(owned(2, 3, 4, 5))
    agent.guard.clock = Clock()
    cache.replace(nodes(1, 2, 3, 4, 5))
    agent.run_pass({"list"})
    cache.replace(nodes(1))
    agent.run_pass({"node"})
    assert agent.guard.state.held == 4
    cache.replace(nodes(1, 2, 3, 4))
    agent.run_pass({"list"})
    assert dsts(backend) == {"10.244.2.0/24", "10.244.3.0/24", "10.244.4.0/24"}
    assert agent.guard.state.held == 0


def test_small_shrinks_and_additions_go_through_at_once() -> None:
    agent, cache, backend, relists = make(owned(2, 3, 4, 5))
    cache.replace([*nodes(1, 2, 3, 4), *nodes(6)])  # 1 of 4 removed, 1 added
    agent.run_pass({"list"})
    assert dsts(backend) == {"10.244.2.0/24", "10.244.3.0/24", "10.244.4.0/24", "10.244.6.0/24"}
    assert relists == []


def test_shrink_refusal_still_applies_adds_and_changes() -> None:
    agent, cache, backend, _ = make(owned(2, 3, 4, 5))
    moved = node_object("node2", ["10.10.0.22"], ["10.244.2.0/24"])
    cache.replace([*nodes(1), moved, *nodes(9)])
    agent.run_pass({"list"})
    via = {str(r.dst): str(r.via[0]) for r in backend.table}
    assert via["10.244.2.0/24"] == "10.10.0.22"
    assert "10.244.9.0/24" in via
    assert {"10.244.3.0/24", "10.244.4.0/24", "10.244.5.0/24"} <= set(via)  # held


def test_invalid_nodes_are_skipped_not_fatal() -> None:
    agent, cache, backend, _ = make()
    overlap = node_object("node3", ["10.10.0.3"], ["10.244.2.0/23"])
    cache.replace([*nodes(1, 2, 4), overlap])
    agent.run_pass({"list"})
    assert "10.244.4.0/24" in dsts(backend)
    assert agent.metrics.node_problems._value.get() >= 1  # type: ignore[attr-defined]
    assert len(dsts(backend)) == 2


def test_conflicts_are_reported_as_events_once() -> None:
    foreign = InstalledRoute(
        ip_network("10.244.2.0/24"),
        (_ip(9),),
        False,
        "static",
        "10.244.2.0/24 via 10.10.0.9 proto static",
    )
    agent, cache, backend, _ = make([foreign])
    posted: list[Mapping[str, Any]] = []

    class Api:
        def create_event(self, ns: str, event: Mapping[str, Any]) -> None:
            posted.append(event)

    rec = EventRecorder(Api(), "node1")
    agent.events = rec
    cache.replace(nodes(1, 2))
    agent.run_pass({"list"})
    agent.run_pass({"resync"}, full=True)
    assert backend.table == [foreign]  # never touched
    assert agent.metrics.route_conflicts._value.get() == 1  # type: ignore[attr-defined]
    queued = [rec._queue.get_nowait() for _ in range(rec._queue.qsize())]
    assert [e["reason"] for e in queued] == ["RouteConflict"]
    assert queued[0]["involvedObject"] == {"apiVersion": "v1", "kind": "Node", "name": "node1"}
    assert "owned by static" in queued[0]["message"]


def test_condition_follows_what_the_pass_could_do() -> None:
    agent, cache, backend, _ = make()
    wishes = Wishes()
    agent.condition = wishes  # type: ignore[assignment]
    backend.fail = {ip_network("10.244.2.0/24")}
    cache.replace([node_object("node1", ["10.10.0.1"]), *nodes(2)])
    agent.run_pass({"list"})
    assert wishes.wishes[-1].reason == "NosdnNoPodCIDR"
    cache.replace(nodes(1, 2))
    assert agent.run_pass({"list"}) is False  # asks for a retry
    assert (wishes.wishes[-1].status, wishes.wishes[-1].reason) == ("True", "NosdnRouteErrors")
    backend.fail = set()
    assert agent.run_pass({"retry"}) is True
    assert (wishes.wishes[-1].status, wishes.wishes[-1].reason) == ("False", "NosdnIsUp")


def test_cni_conflist_is_written_only_when_it_changes(tmp_path: Path) -> None:
    agent, cache, _, _ = make(tmp=tmp_path)
    cache.replace(nodes(1, 2))
    agent.run_pass({"list"})
    path = tmp_path / "10-nosdn.conflist"
    conf = json.loads(path.read_text())
    assert conf["plugins"][0]["mtu"] == 1450
    assert conf["plugins"][0]["ipam"]["ranges"] == [[{"subnet": "10.244.1.0/24"}]]
    inode = path.stat().st_ino
    agent.run_pass({"resync"}, full=True)
    assert path.stat().st_ino == inode
    path.write_text("{}")
    agent.run_pass({"resync"}, full=True)
    assert json.loads(path.read_text()) == conf
    assert agent.metrics.cni_writes._value.get() == 2  # type: ignore[attr-defined]
    assert [p.name for p in tmp_path.iterdir()] == ["10-nosdn.conflist"]  # no temp files left


def test_nudges_coalesce() -> None:
    n = Nudger()
    for why in ("node", "node", "netlink-route"):
        n.nudge(why)
    assert n.wait(1) == {"node", "netlink-route"}
    assert n.wait(0) == set()


def _msg(mtype: int, body: bytes) -> bytes:
    return struct.pack("=IHHII", 16 + len(body), mtype, 0, 0, 0) + body


def test_netlink_classification() -> None:
    route = lambda proto, table=254: struct.pack("=BBBBBBBBI", 2, 24, 0, 0, table, proto, 0, 1, 0)  # noqa: E731
    assert classify(_msg(25, route(157)), 157, 254) == "netlink-route"
    assert classify(_msg(24, route(4)), 157, 254) is None  # someone's static route
    assert classify(_msg(24, route(157, 100)), 157, 254) is None  # another table
    assert classify(_msg(24, route(2)), 157, 254) == "netlink-connected"
    assert (
        classify(_msg(105, struct.pack("=BBBBI", 2, 0, 157, 0, 0)), 157, 254) == "netlink-nexthop"
    )
    assert classify(_msg(16, b"\0" * 16), 157, 254) == "netlink-link"
    both = _msg(16, b"\0" * 16) + _msg(25, route(157))
    assert classify(both, 157, 254) == "netlink-route"


def _route_to(dst: str, proto: int, mtype: int = 24, table: int = 254) -> bytes:
    net = ip_network(dst)
    raw = net.network_address.packed
    fam = 2 if net.version == 4 else 10
    rtm = struct.pack("=BBBBBBBBI", fam, net.prefixlen, 0, 0, table, proto, 0, 1, 0)
    return _msg(mtype, rtm + struct.pack("=HH", 4 + len(raw), 1) + raw)


def test_netlink_nudges_for_any_protocols_change_to_a_wanted_prefix() -> None:
    agent, cache, _backend, _ = make()
    cache.replace(nodes(1, 2))
    assert agent.wants_prefix(4, 24, 0) is False  # before any pass: nothing wanted
    agent.run_pass({"list"})
    wanted = agent.wants_prefix
    taken = _route_to("10.244.2.0/24", 4)  # ip route replace 10.244.2.0/24 ... proto static
    assert classify(taken, 157, 254, wanted) == "netlink-foreign"
    assert classify(_route_to("10.244.2.0/24", 4, 25), 157, 254, wanted) == "netlink-foreign"
    assert classify(_route_to("10.244.2.0/24", 186, 25), 157, 254, wanted) == "netlink-foreign"
    assert classify(taken, 157, 254) is None  # no one asked: as before
    assert classify(_route_to("10.244.3.0/24", 4), 157, 254, wanted) is None  # not wanted
    assert classify(_route_to("10.244.2.0/25", 4), 157, 254, wanted) is None  # another prefix
    assert classify(_route_to("10.244.2.0/24", 157), 157, 254, wanted) is None  # our own echo
    assert classify(_route_to("10.244.2.0/24", 4, table=100), 157, 254, wanted) is None
    assert classify(_route_to("fd10::/64", 4), 157, 254, wanted) is None
    cache.replace([*nodes(1, 3), node_object("node2", ["fd00::2"], ["fd10::/64"])])
    agent.run_pass({"list"})  # the wanted prefixes follow the passes
    assert classify(_route_to("10.244.3.0/24", 4), 157, 254, wanted) == "netlink-foreign"
    assert classify(_route_to("10.244.2.0/24", 4), 157, 254, wanted) is None


def test_netlink_events_that_invalidate_lookups() -> None:
    route = lambda proto, table=254: struct.pack("=BBBBBBBBI", 2, 24, 0, 0, table, proto, 0, 1, 0)  # noqa: E731
    nh = lambda proto: struct.pack("=BBBBI", 2, 0, proto, 0, 0)  # noqa: E731
    # the echo of our own writes changes no lookup
    assert not invalidates_lookups(_msg(24, route(157)), 157, 254)
    assert not invalidates_lookups(_msg(25, route(157)), 157, 254)
    assert not invalidates_lookups(_msg(104, nh(157)), 157, 254)
    # anything else may
    assert invalidates_lookups(_msg(24, route(4)), 157, 254)  # someone's static route
    assert invalidates_lookups(_msg(24, route(157, 100)), 157, 254)  # another table
    assert invalidates_lookups(_msg(24, route(2)), 157, 254)  # a connected network
    assert invalidates_lookups(_msg(104, nh(4)), 157, 254)
    assert invalidates_lookups(_msg(16, b"\0" * 16), 157, 254)  # link
    assert invalidates_lookups(_msg(20, b"\0" * 8), 157, 254)  # address
    assert invalidates_lookups(_msg(24, route(157)) + _msg(21, b"\0" * 8), 157, 254)


def test_egress_rules() -> None:
    text = render([ip_network("10.244.1.0/24")], [ip_network("10.244.0.0/16")])
    assert text.startswith("table inet nosdn\ndelete table inet nosdn\n")
    assert "ip saddr @pods4 ip daddr != @cluster4 masquerade" in text
    assert "ip6" not in text
    dual = render([ip_network("10.244.1.0/24"), ip_network("fd00::/64")], [])
    assert "ip6 saddr @pods6 ip6 daddr != @cluster6 masquerade" in dual
    assert "elements = {  }" not in dual


class StatusApi:
    def __init__(self) -> None:
        self.patches: list[Mapping[str, Any]] = []

    def patch_node_status(self, name: str, patch: Mapping[str, Any]) -> None:
        self.patches.append(patch)


def test_condition_is_patched_only_when_status_or_reason_differ() -> None:
    api = StatusApi()
    live: dict[str, Any] = {
        "status": {
            "conditions": [{"type": "NetworkUnavailable", "status": "False", "reason": "NosdnIsUp"}]
        }
    }
    setter = ConditionSetter(api, "node1", lambda: live)
    setter._wish = Wish(False, "NosdnIsUp", "new message")
    assert setter._needed() is None
    setter._wish = Wish(True, "NosdnRouteErrors", "x")
    w = setter._needed()
    assert w is not None
    assert w.status == "True"


def test_allocator_gives_stable_lowest_free_subnets_once() -> None:
    cfg = AgentConfig(
        node_name="node1",
        cluster_cidrs=(ip_network("10.244.0.0/16"),),
        allocate=True,
        metrics_address=None,
    )
    cache = NodeCache()
    bad = node_object("bad", ["10.10.0.9"], ["nonsense"])
    cache.replace(
        [*nodes(1), node_object("new1", ["10.10.0.5"]), node_object("new2", ["10.10.0.6"]), bad]
    )

    class Api:
        def __init__(self) -> None:
            self.patches: dict[str, Any] = {}

        def patch_node(self, name: str, patch: Mapping[str, Any]) -> None:
            self.patches[name] = patch

    api = Api()
    alloc = Allocator(cfg, api, cache)
    got = alloc.once()
    assert {k: [str(c) for c in v] for k, v in got.items()} == {
        "new1": ["10.244.0.0/24"],
        "new2": ["10.244.2.0/24"],
    }
    assert api.patches["new1"] == {
        "spec": {"podCIDR": "10.244.0.0/24", "podCIDRs": ["10.244.0.0/24"]}
    }
    assert "bad" not in api.patches
    assert alloc.once() == {}  # pending until the watch shows them: nothing given twice


def test_the_allocator_asks_for_leadership_before_every_write() -> None:
    cfg = AgentConfig(
        node_name="node1",
        allocate=True,
        cluster_cidrs=(ip_network("10.244.0.0/16"),),
        metrics_address=None,
    )
    cache = NodeCache()
    cache.replace([node_object(f"new{i}", [f"10.10.0.{i}"]) for i in range(1, 6)])
    patched: list[str] = []

    class Api:
        def patch_node(self, name: str, patch: Mapping[str, Any]) -> None:
            patched.append(name)

    # the Lease is lost (or not renewed in time) after the second write
    answers = iter([True, True, False, True, True])
    alloc = Allocator(cfg, Api(), cache, may_write=lambda: next(answers))
    assert list(alloc.once()) == ["new1", "new2"]
    assert patched == ["new1", "new2"]


def test_config_refuses_bad_values_with_the_option_named() -> None:
    with pytest.raises(ConfigError, match="--allocate-node-cidrs needs --cluster-cidr"):
        AgentConfig(node_name="n", allocate=True)
    with pytest.raises(ConfigError, match="--node is empty"):
        AgentConfig(node_name="")
    with pytest.raises(ConfigError, match="--max-delete-share 0"):
        AgentConfig(node_name="n", max_delete_share=0)
    with pytest.raises(ConfigError, match="--metrics-address"):
        AgentConfig(node_name="n", metrics_address="nope")


def test_json_logs_carry_extra_fields() -> None:
    rec = logging.makeLogRecord(
        {
            "msg": "routes: %d added",
            "args": (3,),
            "levelname": "INFO",
            "name": "nosdn.agent",
            "add": 3,
        }
    )
    out = json.loads(JsonFormatter().format(rec))
    assert out["msg"] == "routes: 3 added"
    assert out["add"] == 3
    assert out["level"] == "info"


def test_not_ready_until_the_collector_is_frozen_after_the_first_pass() -> None:
    """The full collection after the first pass (~0.1 s at 5,000 nodes) would stall the first
    change that arrives: the agent says it is ready only once it is over."""
    agent, cache, _backend, _ = make(owned())
    cache.replace(nodes(1, 2))
    thresholds = gc.get_threshold()
    gc.unfreeze()
    assert gc.get_freeze_count() == 0
    thread = threading.Thread(target=agent.run, kwargs={"freeze_gc": True}, daemon=True)
    try:
        thread.start()
        agent.nudge("list")
        deadline = time.monotonic() + 10
        while not agent.readyz()[0] and time.monotonic() < deadline:
            time.sleep(0.0005)
        # the first moment it says ready, the collection is over (without the wait for it,
        # ready came right after the pass, while the collection was still to run)
        assert gc.get_freeze_count() > 0
        assert agent.status.passes >= 1
        assert agent.readyz() == (True, "ok")
    finally:
        agent.stop()
        thread.join(timeout=5)
        gc.unfreeze()
        gc.set_threshold(*thresholds)


def test_readyz_says_why_while_settling() -> None:
    agent, cache, _backend, _ = make(owned())
    cache.replace(nodes(1, 2))
    agent.run_pass({"list"})
    assert agent.readyz()[0] is True
    agent.status.settled = False
    assert agent.readyz() == (False, "settling after the first pass")


def test_not_ready_while_the_api_is_disconnected() -> None:
    """A dead watch (or any outage) is no state to call ready: the routes are the last known
    ones and changes go unseen until a list succeeds."""
    agent, cache, _backend, _ = make(owned())
    cache.replace(nodes(1, 2))
    agent.run_pass({"list"})
    assert agent.readyz() == (True, "ok")
    cache.set_connected(False)
    agent.run_pass({"disconnected"})
    ok, why = agent.readyz()
    assert (ok, why.startswith("not connected to the Kubernetes API")) == (False, True)
    agent.refresh_event_metrics()  # what a scrape reads
    assert agent.metrics.api_connected._value.get() == 0  # type: ignore[attr-defined]
    cache.set_connected(True)
    assert agent.readyz() == (True, "ok")


OLD = "2026-01-01T00:00:00Z"
NEW = "2026-06-01T00:00:00Z"


def aged(*ids: int, created: str = OLD) -> list[dict[str, Any]]:
    return [
        node_object(f"node{i}", [f"10.10.0.{i}"], [f"10.244.{i}.0/24"], created=created)
        for i in ids
    ]


@pytest.mark.parametrize(
    "newcomer",
    [
        node_object("a-cover", ["10.10.0.99"], ["10.244.0.0/16"], created=NEW),
        node_object("a-cover", ["10.10.0.99"], ["10.244.2.0/23"], created=NEW),
        node_object("a-cover", ["10.10.0.99"], ["0.0.0.0/0"], created=NEW),
        node_object("a-dup", ["10.10.0.99"], ["10.244.3.0/24"], created=NEW),
        node_object("a-dup", ["10.10.0.3"], ["10.244.9.0/24"], created=NEW),
        node_object("a-dup", ["10.244.3.7"], ["10.244.9.0/24"], created=NEW),
    ],
    ids=["cluster-cidr", "a-/23", "default", "dup-subnet", "dup-address", "address-in-subnet"],
)
def test_one_bad_node_never_moves_an_established_nodes_route(newcomer: dict[str, Any]) -> None:
    agent, cache, backend, _ = make(cluster_cidrs=(ip_network("10.244.0.0/16"),))
    cache.replace(aged(1, 2, 3, 4))
    agent.run_pass({"list"})
    before = sorted((str(r.dst), str(r.via)) for r in backend.table)
    assert len(before) == 3
    for arrival in ("watch", "restart"):
        if arrival == "restart":  # a fresh agent: nothing routed yet, the creation times decide
            agent, cache, _, _ = make(backend.table, cluster_cidrs=(ip_network("10.244.0.0/16"),))
            backend = agent.backend.inner  # type: ignore[attr-defined]
        cache.replace([*aged(1, 2, 3, 4), newcomer])
        agent.run_pass({"node"})
        assert sorted((str(r.dst), str(r.via)) for r in backend.table) == before, arrival
        skipped = agent.view(cache.snapshot()).skipped
        assert {p.node for p in skipped} == {newcomer["metadata"]["name"]}, arrival


def test_no_route_ever_goes_to_this_nodes_own_subnet() -> None:
    agent, cache, backend, _ = make()
    # created before node1, with a copy of node1's subnet: still not routed from node1
    thief = node_object("node0", ["10.10.0.50"], ["10.244.1.0/24"], created="2020-01-01T00:00:00Z")
    cache.replace([*aged(1, 2), thief])
    agent.run_pass({"list"})
    assert dsts(backend) == {"10.244.2.0/24"}


def test_nodes_of_unknown_age_in_a_conflict_are_both_skipped() -> None:
    agent, cache, backend, _ = make()
    cache.replace([*nodes(1, 2, 3), node_object("node4", ["10.10.0.4"], ["10.244.3.0/24"])])
    agent.run_pass({"list"})
    assert dsts(backend) == {"10.244.2.0/24"}
    assert {p.node for p in agent.view(cache.snapshot()).skipped} == {"node3", "node4"}


def test_the_party_of_a_conflict_posts_one_event_on_the_node_skipped() -> None:
    posted: list[Mapping[str, Any]] = []

    class Api:
        def create_event(self, ns: str, event: Mapping[str, Any]) -> None:
            posted.append(event)

    agent, cache, _, _ = make()
    rec = EventRecorder(Api(), "node1")
    agent.events = rec
    # node9 copies node1's subnet (node1 is this node) and node2's address
    bad = node_object("node9", ["10.10.0.2"], ["10.244.1.0/24"], created=NEW)
    cache.replace([*aged(1, 2), bad])
    agent.run_pass({"list"})
    queued = [rec._queue.get_nowait() for _ in range(rec._queue.qsize())]
    about = [(e["reason"], e["involvedObject"]["name"]) for e in queued]
    # one Event, for the conflict with this node; node2's agent reports the address
    assert about == [("NodeSkipped", "node9")]
    assert "node node1 keeps its routes" in queued[0]["message"]


def dual(i: int) -> dict[str, Any]:
    return node_object(
        f"node{i}", [f"10.10.0.{i}", f"fd00::{i}"], [f"10.244.{i}.0/24", f"fd10:0:0:{i}::/64"]
    )


def test_not_ready_and_network_unavailable_when_every_peer_is_refused() -> None:
    """Dual-stack Nodes, and only an IPv4 --cluster-cidr: every peer is refused (its IPv6
    subnet is outside). The pass succeeds with 0 routes, which is no network: not ready, and
    NetworkUnavailable=True saying why."""
    agent, cache, backend, _ = make(cluster_cidrs=(ip_network("10.244.0.0/16"),))
    wishes = Wishes()
    agent.condition = wishes  # type: ignore[assignment]
    cache.replace([dual(1), dual(2), dual(3)])
    assert agent.run_pass({"list"}) is True
    assert dsts(backend) == set()
    ok, why = agent.readyz()
    assert ok is False
    assert why.startswith("no route to any of the 2 other node(s) with pod subnets, e.g. node")
    assert "outside clusterCIDRs" in why
    w = wishes.wishes[-1]
    assert (w.status, w.reason, w.message) == ("True", "NosdnNoRoutablePeer", why)
    m = agent.metrics
    assert (m.peers._value.get(), m.peers_routed._value.get()) == (2, 0)  # type: ignore[attr-defined]
    # one peer that can be routed is a network (the others stay refused and reported)
    cache.replace([dual(1), dual(2), dual(3), *nodes(4)])
    agent.run_pass({"list"})
    assert dsts(backend) == {"10.244.4.0/24"}
    assert agent.readyz() == (True, "ok")
    assert (wishes.wishes[-1].status, wishes.wishes[-1].reason) == ("False", "NosdnIsUp")
    assert (m.peers._value.get(), m.peers_routed._value.get()) == (3, 1)  # type: ignore[attr-defined]


@pytest.mark.parametrize("why", ["no address", "bad subnet", "conflict", "off-link"])
def test_not_ready_when_no_peer_can_be_routed(why: str) -> None:
    table: list[InstalledRoute] = []
    peers = nodes(2)
    if why == "no address":
        peers = [node_object("node2", [], ["10.244.2.0/24"])]
    elif why == "bad subnet":
        peers = [node_object("node2", ["10.10.0.2"], ["10.244.2.1/24"])]
    elif why == "conflict":
        table = [InstalledRoute(ip_network("10.244.2.0/24"), (_ip(9),), False, "static")]
    agent, cache, _backend, _ = make(table)
    if why == "off-link":

        class Far:
            on_link, reason, via = False, "not on a connected network", None

        agent.adjacency = lambda gws: {gw: Far() for gw in gws}
    cache.replace([*nodes(1), *peers])
    agent.run_pass({"list"})
    ok, reason = agent.readyz()
    assert ok is False, reason
    assert reason.startswith("no route to any of the 1 other node(s)")


def test_a_single_node_cluster_is_ready_with_no_routes() -> None:
    agent, cache, backend, _ = make()
    wishes = Wishes()
    agent.condition = wishes  # type: ignore[assignment]
    cache.replace([*nodes(1), node_object("node2", ["10.10.0.2"])])  # node2: no subnet yet
    agent.run_pass({"list"})
    assert dsts(backend) == set()
    assert agent.readyz() == (True, "ok")
    assert (wishes.wishes[-1].status, wishes.wishes[-1].reason) == ("False", "NosdnIsUp")
