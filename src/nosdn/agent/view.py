"""The agent's picture of the cluster, kept up to date one changed Node at a time.

Why it exists: every agent sees every Node change, and rebuilding the cluster and running
`check_cluster` over all its nodes on each change made the cluster's total cost of one change
grow with the square of its size. `Views` keeps, between cache generations, what a view is made
of (the usable nodes by name, the counts, each node's field problems, the live checks' indexes
and the nodes the last view routed) and applies only the names the cache says changed
(`NodeCache.changes_since`).

The rules stay where they were: which nodes are usable is decided here once (`_usable`), the
checks are `nosdn.livechecks`' (`nosdn.checks`' own functions), seniority is
`nosdn.sources.nodes.rank`. A full rebuild runs on the first view, on every resync, and when the
cache's change log no longer reaches back; a property test drives random Node events through
both paths and expects the same view as the old whole-cluster build.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, replace

from nosdn.agent.config import AgentConfig
from nosdn.livechecks import LiveChecks
from nosdn.model import Cluster, IPNetwork, Node
from nosdn.problems import Problem
from nosdn.sources.cache import Snapshot
from nosdn.sources.nodes import NodeInfo, rank


@dataclass(slots=True)
class ClusterView:
    """The cluster built from one cache generation, with what had to be left out.

    ``cluster`` (every usable node) is put together when first asked, which must be before
    the next view is built: the event pass of a Node change never asks (`with_nodes` makes
    the cluster of the few nodes it plans)."""

    generation: int
    _whole: Callable[[], Cluster]
    #: the cluster's address plan (its ranges and masks), with no nodes
    plan: Cluster
    me: Node | None
    without_subnet: int
    problems: list[str]
    masquerade_exempt: tuple[IPNetwork, ...]
    #: Why other nodes were left out, each naming the node skipped (and ``party``, the node it
    #: conflicts with, if any).
    skipped: tuple[Problem, ...] = ()
    #: Other nodes whose object names pod subnets (routable or not).
    peers: int = 0
    #: The nodes whose routes may differ from the last view's: the names that changed and
    #: those whose blame flipped (None: a rebuild, where anything may have changed).
    touched: frozenset[str] | None = None
    #: Those of ``touched`` that are in ``cluster`` now.
    touched_nodes: tuple[Node, ...] = ()
    _cluster: Cluster | None = None

    @property
    def cluster(self) -> Cluster:
        if self._cluster is None:
            self._cluster = self._whole()
        return self._cluster

    def with_nodes(self, nodes: tuple[Node, ...]) -> Cluster:
        """A cluster of ``nodes`` alone, in this one's address plan."""
        return replace(self.plan, nodes=nodes)


#: The nodes of a cluster whose routes the kernel already holds as ours (asked once, before the
#: first view: after a restart they are as established as before it).
FoundRouted = Callable[[Cluster], frozenset[Node]]


class Views:
    """Builds the `ClusterView` of each cache generation from the last one and the names that
    changed in between (all of them when ``changed`` is None)."""

    def __init__(self, cfg: AgentConfig) -> None:
        self.cfg = cfg
        #: The generation of the last view built (-1: none yet).
        self.generation = -1
        self._nodes: dict[str, Node] = {}  # usable nodes (this one always, if it exists)
        self._order: list[str] = []  # their names, sorted
        self._created: dict[str, str] = {}
        self._fields: dict[str, tuple[str, ...]] = {}  # nodes with field problems
        self._peers: set[str] = set()  # other nodes whose object names pod subnets
        self._without: set[str] = set()  # other nodes with no pod subnet
        self._checks: LiveChecks | None = None
        #: The nodes the last view routed, as they were then (None: before the first view).
        self._routed: dict[str, Node] | None = None
        self._bad: frozenset[str] = frozenset()

    def build(
        self, snap: Snapshot, changed: Collection[str] | None, found_routed: FoundRouted
    ) -> ClusterView:
        if changed is None or self._checks is None:
            changed = None
            self._rebuild(snap)
        else:
            checks = self._checks
            for name in changed:
                self._put(name, snap.node(name))
                checks.set(name, self._nodes.get(name))
        mine = self.cfg.node_name
        if self._routed is None:
            self._routed = {n.name: n for n in found_routed(self._cluster(frozenset()))}
        routed, nodes, created = self._routed, self._nodes, self._created

        def seniority(name: str) -> tuple[int, str]:
            return rank(name == mine, routed.get(name) == nodes[name], created[name])

        assert self._checks is not None
        problems = [p for name in sorted(self._fields) for p in self._fields[name]]
        skipped: list[Problem] = []
        for p in sorted(self._checks.problems(seniority), key=_problem_order):
            problems.append(str(p))
            if p.node is not None and p.node != mine:
                skipped.append(p)
        bad = frozenset(p.node for p in skipped if p.node is not None)
        touched = None if changed is None else frozenset({*changed, *(bad ^ self._bad)})
        self._remember_routed(changed, bad)
        cfg = self.cfg
        exempt = cfg.cluster_cidrs or tuple(
            c for n in self._order if n not in bad for c in nodes[n].pod_cidrs
        )
        generation = self.generation = snap.generation

        def whole() -> Cluster:
            if self.generation != generation:
                raise RuntimeError(f"the view of generation {generation} is no longer current")
            return self._cluster(bad)

        return ClusterView(
            generation,
            whole,
            self._cluster(frozenset(), ()),
            nodes.get(mine),
            len(self._without),
            problems,
            tuple(exempt) + cfg.no_masquerade_cidrs,
            tuple(skipped),
            len(self._peers),
            touched,
            ()
            if touched is None
            else tuple(nodes[n] for n in sorted(touched) if n in nodes and n not in bad),
        )

    # --- the per-node state -----------------------------------------------------------------
    def _rebuild(self, snap: Snapshot) -> None:
        for keep in (self._nodes, self._created, self._fields, self._peers, self._without):
            keep.clear()
        self._order.clear()
        for info in snap.nodes:
            self._put(info.name, info, sort=False)
        self._order.sort()
        self._checks = LiveChecks(self._cluster(frozenset()))

    def _put(self, name: str, info: NodeInfo | None, *, sort: bool = True) -> None:
        """Node ``name`` is now ``info`` (None: gone) in every per-node record."""
        mine = name == self.cfg.node_name
        had = name in self._nodes
        node = info.node if info is not None else None
        if info is not None and info.problems:
            self._fields[name] = info.problems
        else:
            self._fields.pop(name, None)
        _mark(self._peers, name, info is not None and info.claims_subnet and not mine)
        _mark(self._without, name, node is not None and not mine and not node.pod_cidrs)
        if info is not None and (mine or bool(info.node.pod_cidrs and info.node.ips)):
            self._nodes[name] = info.node
            self._created[name] = info.created
            if not had and sort:
                insort(self._order, name)
            elif not had:
                self._order.append(name)
        elif had:
            del self._nodes[name]
            del self._created[name]
            del self._order[bisect_left(self._order, name)]

    def _cluster(self, bad: frozenset[str], order: Sequence[str] | None = None) -> Cluster:
        """The cluster of the usable nodes not in ``bad`` (of ``order``: by default all)."""
        cfg, nodes = self.cfg, self._nodes
        names = self._order if order is None else order
        return Cluster(
            tuple(nodes[n] for n in names if n not in bad)
            if bad
            else tuple(nodes[n] for n in names),
            cluster_cidrs=cfg.cluster_cidrs,
            node_cidr_mask_size_v4=cfg.node_cidr_mask_v4,
            node_cidr_mask_size_v6=cfg.node_cidr_mask_v6,
        )

    def _remember_routed(self, changed: Collection[str] | None, bad: frozenset[str]) -> None:
        """The nodes this view routes, as they are now: the next view's seniority."""
        routed = self._routed
        assert routed is not None
        if changed is None:
            routed.clear()
            routed.update((n, node) for n, node in self._nodes.items() if n not in bad)
        else:
            for name in {*changed, *(bad ^ self._bad)}:
                node = self._nodes.get(name)
                if node is not None and name not in bad:
                    routed[name] = node
                else:
                    routed.pop(name, None)
        self._bad = bad


def _mark(names: set[str], name: str, member: bool) -> None:
    if member:
        names.add(name)
    else:
        names.discard(name)


def _problem_order(p: Problem) -> tuple[str, str]:
    return p.node or "", str(p)
