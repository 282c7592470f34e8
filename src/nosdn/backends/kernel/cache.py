"""What the node agent keeps of its kernel table between passes, around the stateless backend.

Why: the agent runs a whole pass per node change, and most of what a pass would ask the kernel
is what the previous pass was told: the same table (when nothing but our own writes changed
it), the same next-hop lookups (one per peer), the same count of other tables' routes through
our nexthops. Only a kernel change can alter those, and the agent's netlink monitor reports
every such change; the agent then calls `invalidate` from its own loop, at the start of the
pass the report wakes. Nothing here is touched from another thread.

What is kept, and what drops it:
- the last read of the table (read back right after each of our own writes, so the next pass
  does not dump and decode the table on its critical path): any `invalidate`;
- each route and nexthop message's decoded entry (`_read.ReadMemo`): never wrong, kept;
- next-hop lookups and adjacency verdicts, and other tables' use of our nexthops:
  ``invalidate()``, not ``invalidate(lookups=False)`` (a change of our own table's routes).
What the monitor cannot report (someone writing with our own protocol number) waits for the
periodic resync, which invalidates everything.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from types import MappingProxyType

from nosdn.backends.base import ApplyResult
from nosdn.backends.kernel._read import Entry, ReadMemo
from nosdn.backends.kernel.backend import Adjacency, KernelBackend, Lookups, TableRead
from nosdn.model import Diff, InstalledRoute, IPAddress

#: After a write of at least this many routes, other tables' use of our nexthops is counted
#: right away, off the next change's critical path (a bulk install is followed by changes).
_WARM_AFTER = 1000


class KernelCache:
    """A `KernelBackend` (``table``) with the agent's memory of it: the `Backend` surface plus
    `entries`, `adjacency` and `invalidate`."""

    name = "kernel"

    def __init__(self, table: KernelBackend) -> None:
        self.table = table
        self._memo = ReadMemo()
        self._found: list[Entry] | None = None
        self._read: TableRead | None = None
        self._lookups: Lookups = {}
        self._verdicts: dict[IPAddress, Adjacency] = {}
        self._other_refs: Counter[int] | None = None

    def invalidate(self, *, lookups: bool = True) -> None:
        """The kernel changed: read the table again at the next pass, and (``lookups``) ask
        again where every next hop goes and which other routes use our nexthops."""
        self._found = None
        self._read = None
        if lookups:
            self._lookups = {}
            self._verdicts = {}
            self._other_refs = None

    def entries(self) -> list[Entry]:
        if self._found is None or self._read is None:
            self._found = self.table.entries(self._memo)
            self._read = self.table.last_read
        return self._found

    def routes(self) -> list[InstalledRoute]:
        return [e.installed() for e in self.entries()]

    def adjacency(self, gateways: Sequence[IPAddress]) -> Mapping[IPAddress, Adjacency]:
        """A verdict for each of ``gateways``, asked of the kernel only for those it has not
        answered since the last `invalidate`. The mapping may hold other gateways too (it is
        the cache itself, read-only: copying 5,000 verdicts a pass would be a copy's cost)."""
        verdicts = self._verdicts
        missing = [g for g in gateways if g not in verdicts]
        if missing:
            verdicts.update(self.table.adjacency(missing, lookups=self._lookups))
        return MappingProxyType(verdicts)

    def _count_other_refs(self) -> Counter[int]:
        if self._other_refs is None:
            self._other_refs = self.table.count_other_refs()
        return self._other_refs

    def apply(self, diff: Diff) -> ApplyResult:
        if self._read is None:
            self.entries()
        try:
            result = self.table.apply(
                diff, read=self._read, lookups=self._lookups, other_refs=self._count_other_refs
            )
        except BaseException:
            self.invalidate(lookups=False)  # some writes may have happened: read again
            raise
        if diff.writes or result.writes:
            # Read the table back now, once the kernel has what was wanted: the next pass (the
            # next node change) starts from this read instead of dumping the table itself.
            self._found = None
            self.entries()
            if diff.writes >= _WARM_AFTER and self.table.use_nexthops:
                self._count_other_refs()
        return result
