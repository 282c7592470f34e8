"""What the agent's passes left, prefix by prefix: where the next Node event starts from.

Why it exists: a Node event changes the routes of the node that changed (and of the few whose
blame it flipped), yet a pass that plans and diffs every route costs every agent O(cluster) per
change, and so the cluster O(cluster²). The event pass (`nosdn.agent.loop.Agent.run_pass`) plans
only those nodes' routes (`plan.desired_routes` of a cluster of them and this node), reads and
diffs only their prefixes (`reconcile_routes` with a `Scope`) and folds the outcome in here. The
whole-cluster figures the agent reports (routes wanted, conflicts, off-link next hops, routes of
ours in the table) are read from this record, not recomputed.

Nothing is decided here: which routes a node needs is `plan.desired_routes`', what a prefix's
routes call for is `plan.diff`'s. A full pass replaces the record (`Standing.of`) and stays the
definition of right: it runs on every resync, after a relist, after a kernel change that is not
the echo of our own writes, after a failed write or held removals, and when this node itself
changed; a property test drives random Node events through both and expects the same table and
the same figures after each.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field

from nosdn.model import Conflict, Diff, IPNetwork, Route, RouteKey, route_key
from nosdn.reconcile import OffLink, PassResult


@dataclass(slots=True)
class Standing:
    """The outcome of the passes so far over the whole cluster, by prefix and by node."""

    #: every route wanted, after the off-link check, by prefix
    wanted: dict[RouteKey, Route] = field(default_factory=dict)
    #: the routes that lost a next hop to the off-link check, as planned, by prefix
    skipped: dict[RouteKey, Route] = field(default_factory=dict)
    #: each node's prefixes as planned (wanted or skipped)
    keys: dict[str, list[RouteKey]] = field(default_factory=dict)
    conflicts: dict[RouteKey, Conflict] = field(default_factory=dict)
    #: how many routes each node has in ``wanted``
    routes_of: Counter[str] = field(default_factory=Counter)
    #: the off-link next hops, by the node whose route names them
    offlink: dict[str | None, list[OffLink]] = field(default_factory=dict)
    #: routes of ours in the table after the last pass (known only when ``clean``)
    owned: int = 0
    #: the last pass wrote all it meant to: nothing failed, no removal was held back (else
    #: the next pass is a full one, which retries them)
    clean: bool = False

    @classmethod
    def of(cls, result: PassResult) -> Standing:
        """The record of a full pass."""
        s = cls()
        s._add(result)
        return s

    def owner(self, key: RouteKey) -> str | None:
        """The node whose planned route is on ``key`` (None: no node's)."""
        r = self.wanted.get(key) or self.skipped.get(key)
        return None if r is None else r.node

    def scope(self, touched: Iterable[str], planned: Iterable[Route]) -> set[RouteKey]:
        """The prefixes an event pass must diff: those ``touched`` nodes had and those their
        ``planned`` routes are on now."""
        keys = {route_key(r.dst) for r in planned}
        for name in touched:
            keys.update(self.keys.get(name, ()))
        return keys

    def fold(self, touched: Collection[str], scoped: PassResult) -> PassResult:
        """Replace what ``touched`` nodes had with what the ``scoped`` pass found for them;
        return the whole-cluster result (its diff: the scoped one's writes, every conflict)."""
        for name in touched:
            for k in self.keys.pop(name, ()):
                if self.wanted.pop(k, None) is not None:
                    self.routes_of[name] -= 1
                self.skipped.pop(k, None)
                self.conflicts.pop(k, None)
            self.offlink.pop(name, None)
            if not self.routes_of[name]:
                del self.routes_of[name]
        self._add(scoped)
        d = scoped.diff
        return PassResult(
            scoped.target,
            list(self.wanted.values()),
            Diff(d.add, d.change, d.remove, d.keep, tuple(self.conflicts.values()), d.owned),
            sorted(
                (o for group in self.offlink.values() for o in group),
                key=lambda o: (o.gateway.version, int(o.gateway)),
            ),
            list(self.skipped.values()),
            scoped.applied,
        )

    def settle(self, result: PassResult, *, held: bool) -> None:
        """After ``result`` was applied (``held``: the deletion guard kept its removals)."""
        d = result.diff
        self.clean = result.applied is not None and not result.errors and not held
        self.owned = d.owned + len(d.add) - len(d.remove) if self.clean else 0

    def routed(self, lost: Iterable[IPNetwork], me: str, also: Iterable[str] = ()) -> int:
        """How many nodes but ``me`` have a route wanted that is not ``lost`` (to a conflict,
        a failed write), or are among ``also`` (reached another way)."""
        per = self.routes_of
        gone: Counter[str] = Counter()
        for dst in lost:
            r = self.wanted.get(route_key(dst))
            if r is not None:
                gone[r.node or ""] += 1
        out = {name for name, n in gone.items() if n >= per[name]}
        count = len(per) - (me in per) - len(out - {me})
        extra = {name for name in also if name != me and (name not in per or name in out)}
        return count + len(extra)

    def _add(self, result: PassResult) -> None:
        keys, routes_of = self.keys, self.routes_of
        for routes, into in ((result.desired, self.wanted), (result.skipped, self.skipped)):
            wanted = into is self.wanted
            for r in routes:
                k = route_key(r.dst)
                into[k] = r
                name = r.node or ""
                if wanted:
                    routes_of[name] += 1
                mine = keys.get(name)
                if mine is None:
                    keys[name] = [k]
                elif k not in mine:
                    mine.append(k)
        for c in result.diff.conflicts:
            self.conflicts[route_key(c.wanted.dst)] = c
        for o in result.offlink:
            self.offlink.setdefault(o.node, []).append(o)
