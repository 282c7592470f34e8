"""What stands between one pass of `nosdn.backends.cloud.sync.sync` and the cloud's tables.

`sync` is shared with ``nosdn apply --cloud`` and knows nothing of leases or of the node list's
history, so the controller hands it a wrapped provider whose every write first passes two
checks:

- **leadership**, asked right before the instances are prepared and right before each table is
  written (not only when the pass starts: reading the tables and instances takes API calls, and
  a Lease can be lost meanwhile). A replica that no longer holds its Lease raises `NotLeadingError`
  and writes nothing more; the pass is dropped.
- **the deletion guard** of the agent (`nosdn.daemon.safety.DeletionGuard`), one per table:
  removals beyond a share of the routes nosdn owns in a table within a window are held, until
  the hold time is over and a fresh node list still wants them, or an operator releases them.
  One guard per table, because a guard's state is reset by a pass with no removals, and a
  second table in sync must not reset the first's.

Everything else (reads, diffs, capacity checks) goes to the real provider unchanged.
"""

from __future__ import annotations

from collections.abc import Callable

from nosdn.backends.base import ApplyResult
from nosdn.backends.cloud.contract import CloudProvider, CloudTable
from nosdn.daemon.safety import DeletionGuard
from nosdn.model import Cluster, Diff, InstalledRoute
from nosdn.problems import Problem


class NotLeadingError(RuntimeError):
    """This replica lost its Lease during a pass: nothing more was written."""


class GatedTable:
    """A `CloudTable` whose ``apply`` asks the gate and the table's deletion guard first."""

    def __init__(
        self, inner: CloudTable, guard: DeletionGuard, may_write: Callable[[], bool]
    ) -> None:
        self.inner = inner
        self.guard = guard
        self.may_write = may_write
        self.name = inner.name
        self.table_id = inner.table_id
        self.quota_hint = inner.quota_hint

    @property
    def capacity(self) -> int | None:
        return self.inner.capacity

    @property
    def used(self) -> int:
        return self.inner.used

    def routes(self) -> list[InstalledRoute]:
        return self.inner.routes()

    def apply(self, diff: Diff) -> ApplyResult:
        if not self.may_write():
            raise NotLeadingError(f"lost the lease before writing {self.table_id}")
        return self.inner.apply(self.guard.check(diff, diff.owned))


class GatedProvider:
    """A `CloudProvider` whose tables are `GatedTable`s and whose instance preparation (a write:
    source/destination check, tags) asks the gate too."""

    def __init__(
        self,
        inner: CloudProvider,
        may_write: Callable[[], bool],
        new_guard: Callable[[], DeletionGuard],
    ) -> None:
        self.inner = inner
        self.may_write = may_write
        self.new_guard = new_guard
        self.name = inner.name
        self.calls = inner.calls  # the same Counter: the inner provider counts into it
        #: table id -> its deletion guard (kept across passes: the guard remembers refusals).
        self.guards: dict[str, DeletionGuard] = {}

    def resolve(self, cluster: Cluster) -> tuple[dict[str, str], list[Problem]]:
        return self.inner.resolve(cluster)

    def tables(self, cluster: Cluster, instances: dict[str, str]) -> list[CloudTable]:
        out: list[CloudTable] = []
        guards: dict[str, DeletionGuard] = {}
        for t in self.inner.tables(cluster, instances):
            guard = guards[t.table_id] = self.guards.get(t.table_id) or self.new_guard()
            out.append(GatedTable(t, guard, self.may_write))
        self.guards = guards  # a table no longer managed takes its guard along
        return out

    def check_targets(self, targets: dict[str, str]) -> tuple[list[Problem], list[str]]:
        return self.inner.check_targets(targets)

    def prepare_targets(self, targets: dict[str, str]) -> list[str]:
        if not self.may_write():
            raise NotLeadingError("lost the lease before preparing instances")
        return self.inner.prepare_targets(targets)

    @property
    def held(self) -> int:
        """Removals the guards hold back now, over every table."""
        return sum(g.state.held for g in self.guards.values())

    def seconds_left(self) -> float | None:
        """Seconds until the first of the current holds ends (None: none held)."""
        left = [x for g in self.guards.values() if (x := g.seconds_left()) is not None]
        return min(left) if left else None

    @property
    def refused_total(self) -> int:
        return sum(g.state.refused_total for g in self.guards.values())
