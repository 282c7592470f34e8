"""The cloud route controller's judgement, without any API: a cloud made of fake route tables
(`nosdn.backends.fake.FakeBackend` behind the `CloudProvider` protocol), the node cache fed by
hand. What is checked: when the controller may touch the cloud at all (first list, leadership,
API connection), what it refuses (mass deletions, a lost Lease mid-pass), what it reports, and
which condition each node gets. `test_controller_cloud` runs the same controller against kmock,
moto_server and the GCE fake.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from ipaddress import ip_network
from typing import Any

import pytest

from agent_env import node_object
from nosdn.backends.base import ApplyResult
from nosdn.backends.cloud.contract import CloudError, CloudTable
from nosdn.backends.cloud.factory import Cloud, CloudOptions
from nosdn.backends.fake import FakeBackend
from nosdn.controller.config import ControllerConfig
from nosdn.controller.loop import Controller
from nosdn.controller.view import cluster_view
from nosdn.daemon.condition import NodeConditions, Wish
from nosdn.daemon.config import ConfigError
from nosdn.daemon.events import EventRecorder
from nosdn.model import Cluster, Diff, InstalledRoute
from nosdn.problems import Problem
from nosdn.sources.cache import NodeCache

CIDR = ip_network("10.244.0.0/16")


def aws_node(i: int, *, cidr: str | None = None, **kw: Any) -> dict[str, Any]:
    obj = node_object(f"node{i}", [f"10.0.1.{i}"], [cidr or f"10.244.{i}.0/24"], **kw)
    obj["spec"]["providerID"] = f"aws:///us-east-1a/i-{i:017x}"
    return obj


class FakeTable:
    """One fake route table; ``capacity`` None: unlimited."""

    quota_hint = "ask nobody"
    name = "fake"

    def __init__(self, table_id: str, backend: FakeBackend, capacity: int | None) -> None:
        self.table_id = table_id
        self.backend = backend
        self.capacity = capacity
        self._read = backend.routes()

    @property
    def used(self) -> int:
        return len(self._read)

    def routes(self) -> list[InstalledRoute]:
        return list(self._read)

    def apply(self, diff: Diff) -> ApplyResult:
        return self.backend.apply(diff)


class FakeCloud:
    """Tables by id; a node's instance is its providerID (none: a problem)."""

    name = "fake"

    def __init__(self, *table_ids: str, capacity: int | None = None) -> None:
        self.backends = {t: FakeBackend() for t in table_ids}
        self.capacity = capacity
        self.calls: Counter[str] = Counter()
        self.fail_read = False

    def resolve(self, cluster: Cluster) -> tuple[dict[str, str], list[Problem]]:
        self.calls["resolve"] += 1
        found: dict[str, str] = {}
        problems: list[Problem] = []
        for n in cluster.nodes:
            if n.instance_id:
                found[n.name] = n.instance_id
            else:
                problems.append(Problem(n.name, "spec.providerID", "(none)", "is missing"))
        return found, problems

    def tables(self, cluster: Cluster, instances: dict[str, str]) -> list[CloudTable]:
        self.calls["describe"] += 1
        if self.fail_read:
            raise CloudError("injected: the cloud is down")
        return [FakeTable(t, b, self.capacity) for t, b in self.backends.items()]

    def check_targets(self, targets: dict[str, str]) -> tuple[list[Problem], list[str]]:
        return [], []

    def prepare_targets(self, targets: dict[str, str]) -> list[str]:
        self.calls["prepare"] += 1
        return []

    def dsts(self, table: str) -> set[str]:
        return {str(r.dst) for r in self.backends[table].table if r.owned}

    @property
    def writes(self) -> int:
        return sum(b.total_writes for b in self.backends.values())


class Setup:
    def __init__(self, *, leader: bool = True, capacity: int | None = None, **cfg: Any) -> None:
        self.cloud = FakeCloud("rtb-a", "rtb-b", capacity=capacity)
        self.cache = NodeCache(condition="NetworkUnavailable")
        self.relists: list[str] = []
        self.leader = leader
        self.posted: list[Mapping[str, Any]] = []
        self.conditions = NodeConditions(None, self.cache.condition)
        self.events = EventRecorder(self, "ctl-0", component="nosdn-controller")
        config = ControllerConfig(
            CloudOptions(Cloud.aws), (CIDR,), cluster_name="demo", metrics_address=None, **cfg
        )
        self.ctl = Controller(
            config,
            self.cache,
            self.cloud,
            request_relist=lambda: self.relists.append("relist"),
            may_write=lambda: self.leader,
            events=self.events,
            conditions=self.conditions,
        )

    def create_event(self, ns: str, event: Mapping[str, Any]) -> None:  # EventApi
        self.posted.append(event)

    def queued(self) -> list[dict[str, Any]]:
        q = self.events._queue
        return [q.get_nowait() for _ in range(q.qsize())]

    def wish(self, node: str) -> tuple[str, str] | None:
        w = self.conditions.wished(node)
        return (w.status, w.reason) if w else None

    def listed(self, *objs: dict[str, Any]) -> None:
        self.cache.replace(list(objs))
        self.cache.set_connected(True)


# --- when the cloud may be touched ---------------------------------------------------------
def test_nothing_before_the_first_list_and_nothing_from_a_follower() -> None:
    s = Setup()
    assert s.ctl.run_pass({"resync"}, full=True)
    assert s.cloud.calls == Counter()
    assert "first list" in s.ctl.status.skipped_reason
    f = Setup(leader=False)
    f.listed(aws_node(1), aws_node(2))
    assert f.ctl.run_pass({"list"})
    assert f.cloud.calls == Counter()  # a follower makes no cloud call at all
    assert f.ctl.readyz() == (True, "standby (cache synced)")


def test_leader_routes_every_subnet_in_every_table_and_sets_route_created() -> None:
    s = Setup()
    s.listed(aws_node(1), aws_node(2), node_object("fresh", ["10.0.1.9"]))
    assert s.ctl.run_pass({"list"})
    for t in ("rtb-a", "rtb-b"):
        assert s.cloud.dsts(t) == {"10.244.1.0/24", "10.244.2.0/24"}
    assert s.wish("node1") == ("False", "RouteCreated")
    assert s.wish("node2") == ("False", "RouteCreated")
    assert s.wish("fresh") is None  # no pod subnet yet: not the controller's business
    assert s.ctl.readyz() == (True, "ok")
    before = s.cloud.writes
    assert s.ctl.run_pass({"resync"}, full=True)
    assert s.cloud.writes == before  # in sync: no write


def test_unchanged_wishes_are_not_handed_again_until_the_lease_is_lost_and_won() -> None:
    s = Setup()
    s.listed(aws_node(1), aws_node(2))
    handed: list[str] = []
    want = s.conditions.want

    def counting(node: str, wish: Any) -> None:
        handed.append(node)
        want(node, wish)

    s.conditions.want = counting  # type: ignore[method-assign]
    assert s.ctl.run_pass({"list"})
    assert sorted(handed) == ["node1", "node2"]
    handed.clear()
    s.cache.apply("MODIFIED", aws_node(2, cidr="10.244.9.0/24"))
    assert s.ctl.run_pass({"node"})
    assert handed == ["node2"]  # the changed node alone
    handed.clear()
    s.ctl.lost_lease()  # the wishes are forgotten: the next leader pass hands them all again
    assert s.wish("node1") is None
    assert s.ctl.run_pass({"leader"})
    assert sorted(handed) == ["node1", "node2"]
    assert s.wish("node1") == ("False", "RouteCreated")


def test_no_cloud_call_while_the_kubernetes_api_is_away() -> None:
    s = Setup()
    s.listed(aws_node(1))
    s.ctl.run_pass({"list"})
    s.cache.set_connected(False)
    calls = Counter(s.cloud.calls)
    s.cloud.backends["rtb-a"].table.clear()  # drift the controller would repair
    assert s.ctl.run_pass({"resync"}, full=True)
    assert s.cloud.calls == calls
    assert s.cloud.dsts("rtb-a") == set()
    assert "unreachable" in s.ctl.status.skipped_reason
    s.cache.set_connected(True)
    s.ctl.run_pass({"connected"})
    assert s.cloud.dsts("rtb-a") == {"10.244.1.0/24"}


def test_lease_lost_during_the_pass_writes_nothing() -> None:
    s = Setup()
    s.ctl.provider.may_write = lambda: False  # leading when the pass starts, not at the writes
    s.listed(aws_node(1))
    assert s.ctl.run_pass({"list"})
    assert s.cloud.calls["describe"] == 1
    assert s.cloud.writes == 0
    assert s.cloud.calls["prepare"] == 0
    assert "lost" in s.ctl.status.skipped_reason
    assert s.wish("node1") is None


# --- safety ----------------------------------------------------------------------------------
def test_a_shrunk_node_list_removes_nothing_until_a_fresh_list_confirms_it() -> None:
    s = Setup(deletion_hold=0)  # no hold time: the next list confirms (test_safety: the hold)
    s.listed(*[aws_node(i) for i in range(1, 5)])
    s.ctl.run_pass({"list"})
    assert len(s.cloud.dsts("rtb-a")) == 4
    s.listed(aws_node(1))  # 3 of 4 gone at once
    s.ctl.run_pass({"list"})
    assert len(s.cloud.dsts("rtb-a")) == 4
    assert len(s.cloud.dsts("rtb-b")) == 4
    assert s.relists == ["relist", "relist"]  # one per table, each guard asks
    assert s.ctl.metrics.deletions_held._value.get() == 6  # type: ignore[attr-defined]
    assert "RouteDeletionsRefused" in [e["reason"] for e in s.queued()]
    s.ctl.run_pass({"resync"}, full=True)  # no new list yet: still held
    assert len(s.cloud.dsts("rtb-a")) == 4
    s.listed(aws_node(1))  # the fresh list says the same
    s.ctl.run_pass({"list"})
    assert s.cloud.dsts("rtb-a") == s.cloud.dsts("rtb-b") == {"10.244.1.0/24"}


def test_one_node_deleted_is_removed_at_once() -> None:
    s = Setup()
    s.listed(*[aws_node(i) for i in range(1, 5)])
    s.ctl.run_pass({"list"})
    s.cache.apply("DELETED", aws_node(3))
    s.ctl.run_pass({"node"})
    assert "10.244.3.0/24" not in s.cloud.dsts("rtb-a") | s.cloud.dsts("rtb-b")
    assert s.relists == []
    assert s.wish("node3") is None  # its wish is forgotten with it


def test_a_full_table_refuses_only_what_does_not_fit_and_says_so() -> None:
    s = Setup(capacity=2)
    s.listed(aws_node(1), aws_node(2))
    s.ctl.run_pass({"list"})
    s.listed(aws_node(1), aws_node(2), aws_node(3))
    before = s.cloud.writes
    s.ctl.run_pass({"list"})
    assert s.cloud.writes == before
    assert s.cloud.calls["prepare"] == 1  # only the first pass prepared instances
    assert s.wish("node3") == ("True", "NosdnRouteTableFull")
    assert s.wish("node1") == ("False", "RouteCreated")  # its route exists
    full = [e for e in s.queued() if e["reason"] == "RouteTableFull"]
    assert len(full) == 2  # one per table
    assert "would need 3 routes but holds at most 2" in full[0]["message"]
    assert s.ctl.metrics.capacity_refusals._value.get() == 1  # type: ignore[attr-defined]
    # node1 leaves in the same pass as node4 joins: the deletion makes room for one of the two
    s.listed(aws_node(2), aws_node(3), aws_node(4))
    s.ctl.run_pass({"list"})
    assert s.cloud.dsts("rtb-a") == s.cloud.dsts("rtb-b") == {"10.244.2.0/24", "10.244.3.0/24"}
    assert s.wish("node3") == ("False", "RouteCreated")
    assert s.wish("node4") == ("True", "NosdnRouteTableFull")
    assert s.wish("node2") == ("False", "RouteCreated")


def test_conflicts_and_missing_instances_are_reported_on_the_node() -> None:
    s = Setup()
    foreign = InstalledRoute(
        ip_network("10.244.2.0/24"), (), False, "pcx-1", "10.244.2.0/24 -> pcx-1"
    )
    s.cloud.backends["rtb-b"].table.append(foreign)
    no_id = node_object("node3", ["10.0.1.3"], ["10.244.3.0/24"])
    s.listed(aws_node(1), aws_node(2), no_id)
    s.ctl.run_pass({"list"})
    assert s.cloud.backends["rtb-b"].table.count(foreign) == 1  # never touched
    assert "10.244.2.0/24" in s.cloud.dsts("rtb-a")  # the other table still gets it
    assert s.wish("node1") == ("False", "RouteCreated")
    assert s.wish("node2") == ("True", "NosdnRouteConflict")
    assert s.wish("node3") == ("True", "NosdnNoInstance")
    events = {e["reason"]: e for e in s.queued()}
    assert events["RouteConflict"]["involvedObject"] == {
        "apiVersion": "v1",
        "kind": "Node",
        "name": "node2",
    }
    assert "pcx-1" in events["RouteConflict"]["message"]
    assert events["NodeInstanceUnknown"]["involvedObject"]["name"] == "node3"
    assert events["RouteConflict"]["source"]["component"] == "nosdn-controller"


def test_unusable_nodes_get_the_reason_and_keep_out_of_the_plan() -> None:
    s = Setup()
    outside = aws_node(2, cidr="10.99.0.0/24")  # not in the cluster CIDR
    no_addr = aws_node(3)
    no_addr["status"]["addresses"] = []
    s.listed(aws_node(1), outside, no_addr)
    s.ctl.run_pass({"list"})
    assert s.cloud.dsts("rtb-a") == {"10.244.1.0/24"}
    assert s.wish("node2") == ("True", "NosdnInvalidNode")
    assert s.wish("node3") == ("True", "NosdnNoNodeAddress")


@pytest.mark.parametrize(
    "cidr", ["10.244.0.0/16", "10.244.2.0/23", "10.244.2.0/24"], ids=["cluster", "/23", "dup"]
)
def test_a_conflicting_newcomer_is_flagged_and_the_tables_keep_every_route(cidr: str) -> None:
    s = Setup()
    s.listed(aws_node(1), aws_node(2), aws_node(3))
    s.ctl.run_pass({"list"})
    before = s.cloud.dsts("rtb-a")
    assert len(before) == 3
    # "a-..." sorts first, and would have won by name
    bad = node_object("a-new", ["10.0.1.99"], [cidr])
    bad["spec"]["providerID"] = "aws:///us-east-1a/i-00000000000000099"
    s.listed(aws_node(1), aws_node(2), aws_node(3), bad)
    s.ctl.run_pass({"node"})
    assert s.cloud.dsts("rtb-a") == before
    assert s.cloud.dsts("rtb-b") == before
    assert s.wish("a-new") == ("True", "NosdnInvalidNode")
    assert s.wish("node2") == ("False", "RouteCreated")


def test_a_cloud_that_cannot_be_read_is_retried_and_changes_no_condition() -> None:
    s = Setup()
    s.listed(aws_node(1))
    s.ctl.run_pass({"list"})
    s.cloud.fail_read = True
    assert s.ctl.run_pass({"resync"}, full=True) is False  # retry soon
    assert s.wish("node1") == ("False", "RouteCreated")
    ok, why = s.ctl.readyz()
    assert not ok
    assert "cloud is down" in why


def test_dry_run_writes_nothing_and_sets_no_condition() -> None:
    s = Setup(dry_run=True)
    s.listed(aws_node(1))
    assert s.ctl.run_pass({"list"})
    assert s.cloud.writes == 0
    assert s.ctl.status.last_pass is not None
    assert [len(t.diff.add) for t in s.ctl.status.last_pass.tables] == [1, 1]
    assert s.wish("node1") is None


# --- parts -----------------------------------------------------------------------------------
def test_provider_id_becomes_the_instance_and_conditions_are_tracked_apart() -> None:
    cache = NodeCache(condition="NetworkUnavailable")
    nudges: list[str] = []
    cache.set_listener(nudges.append)
    obj = aws_node(1)
    cache.replace([obj])
    view = cluster_view(cache.snapshot(), name="demo", cluster_cidrs=(CIDR,))
    assert view.cluster.nodes[0].instance_id == "aws:///us-east-1a/i-00000000000000001"
    assert cache.condition("node1") is None
    obj["status"]["conditions"].append(
        {"type": "NetworkUnavailable", "status": "False", "reason": "RouteCreated"}
    )
    gen = cache.generation
    assert cache.apply("MODIFIED", obj) is False  # no routing change: no pass
    assert cache.generation == gen
    assert nudges == ["list"]
    assert cache.condition("node1") == ("False", "RouteCreated")
    cache.apply("DELETED", obj)
    assert cache.condition("node1") is None


def test_node_conditions_write_only_what_differs_and_wait_for_the_echo() -> None:
    live: dict[str, tuple[str, str]] = {"a": ("False", "RouteCreated")}
    now = [0.0]
    conds = NodeConditions(None, live.get, echo_wait=5.0, clock=lambda: now[0])
    conds.want("a", Wish(False, "RouteCreated", "new message only"))
    conds.want("b", Wish(True, "NosdnNoInstance", "x"))
    assert conds.needed("a") is None
    assert conds.needed("b") is not None
    conds._written["b"] = (("True", "NosdnNoInstance"), now[0])  # as the writer thread does
    assert conds.needed("b") is None  # written, the watch has not echoed it yet
    now[0] += 6
    assert conds.needed("b") is not None  # no echo: write again
    conds.forget(lambda n: n == "a")
    assert conds.wished("b") is None


def test_config_refuses_what_cannot_work() -> None:
    opts = CloudOptions(Cloud.aws)
    with pytest.raises(ConfigError, match="--cluster-cidr is required"):
        ControllerConfig(opts, ())
    with pytest.raises(ConfigError, match="--lease-retry-period < --lease-renew-deadline"):
        ControllerConfig(opts, (CIDR,), lease_duration=5, renew_deadline=6)
    with pytest.raises(ConfigError, match="--metrics-address"):
        ControllerConfig(opts, (CIDR,), metrics_address="nope")
