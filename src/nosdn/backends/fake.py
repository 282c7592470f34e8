"""An in-memory backend for tests and for people embedding nosdn (like httpx's MockTransport).

It behaves like a route table: it holds owned and foreign routes, applies diffs faithfully,
counts writes, and can be told to fail writes to chosen prefixes.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable

from nosdn.backends.base import ApplyResult, WriteError
from nosdn.model import Diff, InstalledRoute, IPNetwork, RouteKey


class FakeBackend:
    name = "fake"

    def __init__(self, routes: Iterable[InstalledRoute] = (), fail: Iterable[IPNetwork] = ()):
        self.table: list[InstalledRoute] = list(routes)
        self.fail: set[IPNetwork] = set(fail)
        self.total_writes = 0

    def routes(self) -> list[InstalledRoute]:
        return list(self.table)

    def entries_on(self, keys: Collection[RouteKey]) -> list[InstalledRoute]:
        """The routes on ``keys``, in table order (`nosdn.reconcile.ReadsKeys`)."""
        return [r for r in self.table if r.key in keys]

    def apply(self, diff: Diff) -> ApplyResult:
        result = ApplyResult()
        for old in diff.remove:
            if old.dst in self.fail:
                result.errors.append(WriteError(old.dst, None, "remove", "injected failure"))
                continue
            self.table.remove(old)
            result.writes += 1
        for ch in diff.change:
            if ch.new.dst in self.fail:
                result.errors.append(WriteError(ch.new.dst, ch.new.node, "change", "injected"))
                continue
            self.table.remove(ch.old)
            self.table.append(InstalledRoute(ch.new.dst, ch.new.via, True))
            result.writes += 1
        for new in diff.add:
            if new.dst in self.fail:
                result.errors.append(WriteError(new.dst, new.node, "add", "injected failure"))
                continue
            self.table.append(InstalledRoute(new.dst, new.via, True))
            result.writes += 1
        self.total_writes += result.writes
        return result
