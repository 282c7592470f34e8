"""One pass over a cloud's route tables, shared by the AWS, GCE and Azure providers.

A VPC route table is the cluster's router: it needs every pod subnet, pointing at the instance
of the node the subnet lives on. The two clouds differ in how they list and write routes, not in
what a pass must do, so the pass lives here once and each cloud supplies a `CloudProvider`:

1. ``resolve`` maps each node to its instance. A node whose instance cannot be found is a
   problem: its routes are neither added nor removed this pass (a transient lookup failure must
   never delete a working route), and with ``strict`` nothing is written at all.
2. ``tables`` reads every managed table once (one describe or list per table per pass; that
   read is the whole cost of a pass that finds the tables in sync).
3. Each table is diffed with `nosdn.plan.diff`, so ownership works as everywhere else: a route
   nosdn does not own to a wanted prefix is a conflict, reported and never touched.
4. Capacity is checked for every table *before the first write*. Only what does not fit is
   refused: deletions and replacements (a route changing instance, same count) always go
   through, then the new routes that fit, in plan order; the rest are left out and reported per
   node with the quota to ask for (the Kubernetes route controller finds the 50-route limit
   halfway through, and refusing the whole plan would keep a replaced instance unreachable
   until the quota is raised). Writes held back by the controller's deletion guard free no
   room; an addition counted on that room fails at the cloud and is reported as a failed write.
5. Only then are the instances behind new routes checked and prepared (source/destination
   check off) and the tables written.

``sync(provider, cluster)`` is the seam the long-running controller calls each pass, with the
provider that ``build_provider(CloudOptions(...))`` makes from the options the CLI also takes
(the cloud SDKs are imported only there, when a provider is built).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace

from nosdn.backends.base import ApplyResult, WriteError
from nosdn.backends.cloud.contract import CloudProvider, CloudTable
from nosdn.model import ROUTER, Cluster, Conflict, Diff, IPNetwork, Route
from nosdn.plan import desired_routes, diff
from nosdn.problems import Problem, ProblemsError


@dataclass(frozen=True, slots=True)
class Shortfall:
    """A table the plan would overfill: the new routes left out of it."""

    table: str
    capacity: int
    needed: int
    quota_hint: str
    #: The additions that do not fit, in plan order (not written this pass).
    overflow: tuple[Route, ...] = ()

    def __str__(self) -> str:
        shown = ", ".join(f"{r.dst} (node {r.node})" for r in self.overflow[:_SHOWN])
        more = len(self.overflow) - _SHOWN
        if more > 0:
            shown += f" and {more} more"
        return (
            f"{self.table} would need {self.needed} routes but holds at most {self.capacity}: "
            f"{len(self.overflow)} new route(s) left out: {shown}; ask for a quota of at least "
            f"{self.needed} ({self.quota_hint}), then pass --capacity {self.needed} (deletions, "
            "replacements and the new routes that fit are not held back)"
        )

    def for_node(self, node: str) -> str:
        """What a node whose route was left out is told."""
        mine = ", ".join(str(r.dst) for r in self.overflow if r.node == node)
        return (
            f"{self.table} is full ({self.capacity} routes): no room for {mine}; ask for a quota "
            f"of at least {self.needed} ({self.quota_hint}), then pass --capacity {self.needed}"
        )


_SHOWN = 10


@dataclass(slots=True)
class TablePass:
    """What one pass found and did in one table; ``applied`` is None when nothing was written."""

    table: CloudTable
    diff: Diff
    applied: ApplyResult | None = None

    @property
    def after(self) -> int:
        """Routes the table holds once the diff is applied (a change is a replace in place)."""
        return self.table.used + len(self.diff.add) - len(self.diff.remove)


@dataclass(slots=True)
class CloudPass:
    """Everything one pass over a cloud found and did."""

    cloud: str
    desired: list[Route]
    tables: list[TablePass]
    #: node -> the instance its routes point at (as the cloud names it).
    instances: dict[str, str] = field(default_factory=dict)
    #: Nodes whose routes were left as they are this pass, and why.
    problems: list[Problem] = field(default_factory=list)
    shortfalls: list[Shortfall] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    #: API calls this pass made, by operation.
    calls: Counter[str] = field(default_factory=Counter)
    dry_run: bool = True

    @property
    def conflicts(self) -> list[tuple[str, Conflict]]:
        return [(t.table.table_id, c) for t in self.tables for c in t.diff.conflicts]

    @property
    def errors(self) -> list[tuple[str, WriteError]]:
        return [(t.table.table_id, e) for t in self.tables if t.applied for e in t.applied.errors]

    @property
    def writes(self) -> int:
        return sum(t.applied.writes for t in self.tables if t.applied)

    @property
    def refused(self) -> bool:
        return bool(self.shortfalls)

    @property
    def ok(self) -> bool:
        return not (self.errors or self.conflicts or self.shortfalls or self.problems)


def _without(d: Diff, bad_nodes: set[str]) -> Diff:
    """The diff minus the writes that would point a route at an unusable instance."""
    if not bad_nodes:
        return d
    return replace(
        d,
        add=tuple(r for r in d.add if r.node not in bad_nodes),
        change=tuple(c for c in d.change if c.new.node not in bad_nodes),
    )


def _targets(passes: list[TablePass], instances: dict[str, str]) -> dict[str, str]:
    new: list[Route] = []
    for t in passes:
        new.extend(t.diff.add)
        new.extend(c.new for c in t.diff.change)
    return {r.node: instances[r.node] for r in new if r.node is not None and r.node in instances}


def sync(
    provider: CloudProvider, cluster: Cluster, *, dry_run: bool = False, strict: bool = False
) -> CloudPass:
    """One pass: make every managed table hold exactly the cluster's pod routes.

    Raises `ProblemsError` (before any write) when ``strict`` and a node's instance cannot be
    found or used, and `CloudError` when the tables cannot be read. New routes that do not fit
    a table are left out and named in ``shortfalls``; everything else is written.
    """
    start = Counter(provider.calls)
    instances, problems = provider.resolve(cluster)
    if problems and strict:
        raise ProblemsError(problems)
    skipped = {p.node for p in problems if p.node is not None}
    planned = desired_routes(cluster, ROUTER)
    frozen: set[IPNetwork] = {r.dst for r in planned if r.node in skipped}
    desired = [r for r in planned if r.node not in skipped]
    tables = provider.tables(cluster, instances)
    passes: list[TablePass] = []
    for table in tables:
        actual = table.routes()
        if frozen:  # (else no need to hash every destination)
            actual = [r for r in actual if not (r.owned and r.dst in frozen)]
        passes.append(TablePass(table, diff(desired, actual)))
    result = CloudPass(provider.name, desired, passes, instances, list(problems), dry_run=dry_run)

    targets = _targets(passes, instances)
    if targets:
        bad, notes = provider.check_targets(targets)
        result.notes.extend(notes)
        if bad:
            if strict:
                raise ProblemsError(problems + bad)
            result.problems.extend(bad)
            bad_nodes = {p.node for p in bad if p.node is not None}
            for t in passes:
                t.diff = _without(t.diff, bad_nodes)
            targets = {n: i for n, i in targets.items() if n not in bad_nodes}

    for t in passes:
        if not t.diff.add:
            continue  # capacity is only read when needed (GCE reads its quota from the API)
        cap = t.table.capacity
        if cap is not None and t.after > cap:
            room = max(cap - (t.table.used - len(t.diff.remove)), 0)
            d = t.diff
            over = d.add[room:]
            result.shortfalls.append(
                Shortfall(t.table.table_id, cap, t.after, t.table.quota_hint, over)
            )
            t.diff = replace(d, add=d.add[:room])
    if result.shortfalls:
        targets = _targets(passes, instances)  # no instance prepared for a route left out
    if not dry_run:
        if targets:
            result.notes.extend(provider.prepare_targets(targets))
        for t in passes:
            t.applied = t.table.apply(t.diff) if not t.diff.in_sync else ApplyResult()
    result.calls = Counter(provider.calls) - start
    return result
