"""From the node cache to the cluster one pass routes, and from a pass to each node's condition.

Two pure functions, kept apart from the loop so their judgement is tested without any API:

`cluster_view` builds the `Cluster` of one cache generation. Nodes without ``spec.podCIDRs`` are
not the controller's business yet (as for the Kubernetes route controller); nodes with a subnet
but no usable address, or that the checks refuse (a subnet outside the cluster CIDRs, overlapping
another), are left out with the reason, and get ``NetworkUnavailable=True`` saying so. Each node
keeps its ``spec.providerID`` as ``instance_id``: that is how the backends find its instance.

`verdicts` reads one `CloudPass` and says, per node, whether its routes exist: every pod subnet
of the node is in every managed table, either already (``diff.keep``) or written this pass
without error. Otherwise the first reason that applies: no instance, its new route did not fit
a table, someone else's route to the subnet, a failed write. A node whose state this pass cannot
tell (a dry run) gets no verdict, and its condition is left as it is.
"""

from __future__ import annotations

from collections.abc import Callable, Container, Iterable
from dataclasses import dataclass, field

from nosdn.backends.cloud.sync import CloudPass
from nosdn.checks import Seniority, check_cluster
from nosdn.daemon.condition import REASON_ERRORS, REASON_NO_ADDRESS, Wish
from nosdn.model import Cluster, IPNetwork, Node
from nosdn.problems import Problem
from nosdn.sources.cache import Snapshot
from nosdn.sources.nodes import seniority

#: The Kubernetes route controller's reason, which tools and people already look for.
REASON_CREATED = "RouteCreated"
REASON_NO_INSTANCE = "NosdnNoInstance"
REASON_TABLE_FULL = "NosdnRouteTableFull"
REASON_CONFLICT = "NosdnRouteConflict"
REASON_INVALID = "NosdnInvalidNode"


@dataclass(slots=True)
class ClusterView:
    generation: int
    cluster: Cluster
    #: Nodes with a subnet that cannot be routed, and why (their condition says so).
    unusable: dict[str, Wish] = field(default_factory=dict)
    without_subnet: int = 0
    problems: list[str] = field(default_factory=list)
    names: frozenset[str] = frozenset()


#: The checks of one view: (the cluster before any node is left out, who wins a conflict) ->
#: every problem (`check_cluster`, or `nosdn.controller.liveview`'s kept-up-to-date answer).
Checks = Callable[[Cluster, Seniority], Iterable[Problem]]


def _full_checks(cluster: Cluster, senior: Seniority) -> Iterable[Problem]:
    return check_cluster(cluster, seniority=senior)


def lazy_seniority(snap: Snapshot, routed: Callable[[], frozenset[Node]]) -> Seniority:
    """`seniority` of ``snap``'s nodes, built on its first use (only conflicts need it: in a
    sound cluster nobody asks, and ``routed`` costs a hash of every node)."""
    key: Seniority | None = None

    def senior(node: Node) -> tuple[int, str]:
        nonlocal key
        if key is None:
            key = seniority(snap.nodes, routed=routed())
        return key(node)

    return senior


def cluster_view(
    snap: Snapshot,
    *,
    name: str,
    cluster_cidrs: tuple[IPNetwork, ...],
    mask_v4: int = 24,
    mask_v6: int = 64,
    routed: frozenset[Node] | Callable[[], frozenset[Node]] = frozenset(),
    checks: Checks = _full_checks,
) -> ClusterView:
    """``routed``: the nodes the last view routed (in a conflict with a newcomer they win), or
    a function returning them. The problems are reported sorted (each node's condition names
    the first of its own), so any ``checks`` giving the same set gives the same view."""
    nodes: list[Node] = []
    unusable: dict[str, Wish] = {}
    problems: list[str] = []
    without = 0
    for info in snap.nodes:
        problems.extend(info.problems)
        if not info.has_subnet:
            without += 1
            continue
        if not info.node.ips:
            text = info.problems[-1] if info.problems else f"node {info.name} has no address"
            unusable[info.name] = Wish(True, REASON_NO_ADDRESS, text)
            continue
        nodes.append(info.node)

    def make(keep: list[Node]) -> Cluster:
        return Cluster(
            tuple(keep),
            cluster_cidrs=cluster_cidrs,
            node_cidr_mask_size_v4=mask_v4,
            node_cidr_mask_size_v6=mask_v6,
            name=name,
        )

    cluster = make(nodes)
    bad: dict[str, str] = {}
    found = routed
    senior = lazy_seniority(snap, found if callable(found) else lambda: found)
    for text, node in sorted((str(p), p.node) for p in checks(cluster, senior)):
        problems.append(text)
        if node is not None:
            bad.setdefault(node, text)
    if bad:
        cluster = make([n for n in nodes if n.name not in bad])
        for node, text in bad.items():
            unusable[node] = Wish(True, REASON_INVALID, text)
    return ClusterView(
        snap.generation,
        cluster,
        unusable,
        without,
        problems,
        frozenset(i.name for i in snap.nodes),
    )


def verdicts(
    cluster: Cluster, result: CloudPass, *, only: Container[str] | None = None
) -> dict[str, Wish]:
    """node -> its condition after ``result`` (nodes whose state is unknown are left out).
    ``only``: the names of ``cluster``'s nodes when it is a few of the pass's (`Verdicts`), so
    the routes kept in each table are looked at for those nodes alone."""
    out: dict[str, Wish] = {}
    problem = {p.node: str(p) for p in result.problems if p.node is not None}
    conflict: dict[IPNetwork, str] = {}
    for table, c in result.conflicts:
        conflict.setdefault(
            c.wanted.dst,
            f"route to {c.wanted.dst} in {table} is {c.found.owner}'s: {c.found.detail}",
        )
    failed: dict[IPNetwork, str] = {}
    for table, e in result.errors:
        failed.setdefault(e.dst, f"{e.action} {e.dst} in {table}: {e.message}")
    exists: list[set[IPNetwork]] = []
    for t in result.tables:
        if only is None:
            have = {r.dst for r in t.diff.keep}
        else:  # a name is cheaper to hash than a network
            have = {r.dst for r in t.diff.keep if r.node in only}
        if t.applied is not None:
            have |= {r.dst for r in t.diff.add} | {c.new.dst for c in t.diff.change}
            have -= {e.dst for e in t.applied.errors}
        exists.append(have)
    full: dict[str, str] = {}
    for s in result.shortfalls:
        for r in s.overflow:
            if r.node is not None:
                full.setdefault(r.node, s.for_node(r.node))
    n_tables = len(result.tables)
    for node in cluster.nodes:
        if not node.pod_cidrs:
            continue
        if node.name in problem:
            out[node.name] = Wish(True, REASON_NO_INSTANCE, problem[node.name])
            continue
        cidrs = node.pod_cidrs
        if all(c in have for have in exists for c in cidrs) and exists:
            out[node.name] = _created(
                node, result.instances.get(node.name, "its instance"), n_tables
            )
            continue
        clash = next((d for d in cidrs if d in conflict), None)
        broken = next((d for d in cidrs if d in failed), None)
        if clash is not None:
            out[node.name] = Wish(True, REASON_CONFLICT, conflict[clash] + "; left alone")
        elif node.name in full:
            out[node.name] = Wish(True, REASON_TABLE_FULL, full[node.name])
        elif broken is not None:
            out[node.name] = Wish(True, REASON_ERRORS, failed[broken])
        # else: not written (dry run, or no table): unknown, no verdict
    return out


class Verdicts:
    """`verdicts`, pass after pass, without redoing the nodes the pass did not touch.

    A node of the cluster that no problem, conflict, write error, shortfall, addition or
    change of this pass names has every pod subnet kept in every table: its verdict is
    ``RouteCreated``, and its message is the last pass's when its node, instance and the number
    of tables are the same. Only the nodes a pass names are judged by `verdicts` itself, so a
    pass that changes one node costs one node's judgement and a lookup per other node. A pass
    that names a stale route's removal without its node, or finds no table, is judged whole.
    A property test checks the answer equals `verdicts` after every pass.
    """

    def __init__(self) -> None:
        #: node -> (its Node, its instance, tables, its RouteCreated wish) of the last pass
        self._created: dict[str, tuple[Node, str, int, Wish]] = {}

    def __call__(self, cluster: Cluster, result: CloudPass) -> dict[str, Wish]:
        n_tables = len(result.tables)
        named: set[str] = {p.node for p in result.problems if p.node is not None}
        whole = n_tables == 0
        for t in result.tables:
            d = t.diff
            named.update(r.node for r in d.add if r.node is not None)
            named.update(c.new.node for c in d.change if c.new.node is not None)
            named.update(c.wanted.node for c in d.conflicts if c.wanted.node is not None)
            for e in t.applied.errors if t.applied is not None else ():
                if e.node is None:
                    whole = True  # a route no node names: whose subnet it is needs a search
                else:
                    named.add(e.node)
        for s in result.shortfalls:
            named.update(r.node for r in s.overflow if r.node is not None)
        if whole:
            self._created = {}
            every = verdicts(cluster, result)
            self._remember(cluster, result, every, n_tables)
            return every
        judged = verdicts(_only(cluster, named), result, only=named) if named else {}
        out: dict[str, Wish] = {}
        created = self._created
        kept: dict[str, tuple[Node, str, int, Wish]] = {}
        instances = result.instances
        for node in cluster.nodes:
            name = node.name
            if not node.pod_cidrs:
                continue
            where = instances.get(name, "its instance")
            if name in named:
                if (wish := judged.get(name)) is not None:
                    out[name] = wish
                    if wish.reason == REASON_CREATED:
                        kept[name] = (node, where, n_tables, wish)
                continue
            last = created.get(name)
            if last is not None and last[0] is node and last[1] == where and last[2] == n_tables:
                wish = last[3]
            else:
                wish = _created(node, where, n_tables)
            out[name] = wish
            kept[name] = (node, where, n_tables, wish)
        self._created = kept
        return out

    def _remember(
        self, cluster: Cluster, result: CloudPass, out: dict[str, Wish], n_tables: int
    ) -> None:
        for node in cluster.nodes:
            wish = out.get(node.name)
            if wish is not None and wish.reason == REASON_CREATED:
                where = result.instances.get(node.name, "its instance")
                self._created[node.name] = (node, where, n_tables, wish)


def _only(cluster: Cluster, names: set[str]) -> Cluster:
    """The cluster of just ``names`` (for judging them: `verdicts` reads only their nodes)."""
    return Cluster(tuple(n for n in cluster.nodes if n.name in names), cluster.cluster_cidrs)


def _created(node: Node, where: str, n_tables: int) -> Wish:
    cidrs = ", ".join(map(str, node.pod_cidrs))
    return Wish(False, REASON_CREATED, f"nosdn routes {cidrs} to {where} in {n_tables} table(s)")
