"""The controller's cluster view, kept up to date one changed Node at a time.

Why it exists: on the wire a single-node change is one write per table, yet every change made
the controller rebuild its whole view, running `check_cluster` over every node (at 5,000 nodes
most of the CPU of such a pass). `LiveView` keeps the checks' state between changes
(`nosdn.livechecks.LiveChecks`: each node's own problems and an index of addresses, subnets and
instances), finds what changed by comparing the snapshot's `NodeInfo` objects by identity with
the last one's (the cache keeps an unchanged node's object), tells the checks only that, and
builds the view with `nosdn.controller.view.cluster_view` itself, so the only difference from a
full view is where the problems come from.

The full recompute stays the definition of right and the resync: `update(snap, full=True)`
also builds the view with `check_cluster` over every node and uses that one (rebuilding the
checks' index if the two ever differ, counted in ``drifts``); a change that touches more than a
quarter of the nodes rebuilds everything. A property test drives random changes through both
and expects equal views.
"""

from __future__ import annotations

from collections.abc import Iterable

from nosdn.checks import Seniority
from nosdn.controller.view import Checks, ClusterView, cluster_view
from nosdn.livechecks import LiveChecks
from nosdn.model import Cluster, IPNetwork, Node
from nosdn.problems import Problem
from nosdn.sources.cache import Snapshot
from nosdn.sources.nodes import NodeInfo


def _routable(info: NodeInfo) -> Node | None:
    """The node as the checks see it: with a subnet and an address (else not in the view's
    cluster, and so not checked)."""
    return info.node if info.node.pod_cidrs and info.node.ips else None


class LiveView:
    """`cluster_view` of successive snapshots, incremental between full rebuilds."""

    def __init__(
        self,
        *,
        name: str,
        cluster_cidrs: tuple[IPNetwork, ...],
        mask_v4: int = 24,
        mask_v6: int = 64,
        full_share: float = 0.25,
    ) -> None:
        self._base = Cluster(
            (),
            cluster_cidrs=cluster_cidrs,
            node_cidr_mask_size_v4=mask_v4,
            node_cidr_mask_size_v6=mask_v6,
            name=name,
        )
        self.full_share = full_share
        self._live: LiveChecks | None = None
        self._infos: dict[str, NodeInfo] = {}
        self.last: ClusterView | None = None
        #: How many views were built each way (for tests and the bench).
        self.full_views = 0
        self.live_views = 0
        #: Resyncs whose full view differed from the kept-up-to-date one (a bug if ever > 0).
        self.drifts = 0

    def update(self, snap: Snapshot, *, full: bool = False) -> ClusterView:
        """The view of ``snap``; ``full`` rebuilds it (and the checks' index) from scratch."""
        prev = self.last
        if not full and prev is not None and prev.generation == snap.generation:
            return prev
        changed = None if self._live is None else self._changes(snap)
        if changed is None:
            view = self._full(snap, prev)
        else:
            view = self._incremental(snap, prev, changed)
            if full:  # the resync: the full checks decide, and a drift rebuilds the index
                whole = self._view(snap, prev)
                self.full_views += 1
                if whole != view:
                    self.drifts += 1
                    view = self._full(snap, prev)
        self.last = view
        return view

    def _changes(self, snap: Snapshot) -> list[tuple[str, NodeInfo | None]] | None:
        """(name, its info now, None when gone) of every node that changed since the last
        snapshot, or None when so many did that a full rebuild is cheaper."""
        old = self._infos
        changed: list[tuple[str, NodeInfo | None]] = []
        new = 0
        limit = max(8, int(self.full_share * max(len(old), len(snap.nodes))))
        for info in snap.nodes:
            was = old.get(info.name)
            if was is not info:
                changed.append((info.name, info))
                new += was is None
                if len(changed) > limit:
                    return None
        if len(old) + new != len(snap.nodes):  # some are gone (rare: a set difference)
            names = {i.name for i in snap.nodes}
            changed.extend((n, None) for n in old if n not in names)
            if len(changed) > limit:
                return None
        return changed

    def _routed(self, prev: ClusterView | None) -> frozenset[Node]:
        return frozenset(prev.cluster.nodes) if prev is not None else frozenset()

    def _full(self, snap: Snapshot, prev: ClusterView | None) -> ClusterView:
        self.full_views += 1
        self._infos = {i.name: i for i in snap.nodes}
        nodes = tuple(n for i in snap.nodes if (n := _routable(i)) is not None)
        live = LiveChecks(Cluster(nodes, *self._base_args()))
        self._live = live
        return self._view(snap, prev)

    def _base_args(self) -> tuple[tuple[IPNetwork, ...], int, int]:
        b = self._base
        return b.cluster_cidrs, b.node_cidr_mask_size_v4, b.node_cidr_mask_size_v6

    def _view(
        self, snap: Snapshot, prev: ClusterView | None, checks: Checks | None = None
    ) -> ClusterView:
        b = self._base
        return cluster_view(
            snap,
            name=b.name,
            cluster_cidrs=b.cluster_cidrs,
            mask_v4=b.node_cidr_mask_size_v4,
            mask_v6=b.node_cidr_mask_size_v6,
            routed=lambda: self._routed(prev),
            **({"checks": checks} if checks is not None else {}),
        )

    def _incremental(
        self,
        snap: Snapshot,
        prev: ClusterView | None,
        changed: list[tuple[str, NodeInfo | None]],
    ) -> ClusterView:
        self.live_views += 1
        live = self._live
        assert live is not None
        for name, info in changed:
            if info is None:
                self._infos.pop(name, None)
                live.set(name, None)
            else:
                self._infos[name] = info
                live.set(name, _routable(info))
        by_name = live.nodes

        def checks(_cluster: Cluster, senior: Seniority) -> Iterable[Problem]:
            return live.problems(lambda name: senior(by_name[name]))

        return self._view(snap, prev, checks)
