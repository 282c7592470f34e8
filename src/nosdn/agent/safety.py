"""The deletion guard: a sudden mass disappearance of nodes is confirmed before routes go.

An API server that answers with an empty or truncated node list (a restore from an old
backup, a broken watch cache, a wrong kubeconfig pointing at another cluster) would otherwise
make every agent delete every route at once: a whole-cluster outage caused by the component
meant to prevent one. So when one pass would remove more than ``share`` of the routes nosdn
owns in the table, the removals are refused (adds and changes still go through), the event is
logged and counted, and a fresh list of nodes is requested. Once that list has been read (the
source's ``relists`` count moved past the one seen at refusal), the same shrink is taken as
real and the removals proceed.

This is measured on routes, not on names: it is what the kernel would lose, and it works the
same at start-up, when the "previous list" is whatever routes the last run left behind.
The guard wraps any `Backend`, so `reconcile_once` stays unaware of it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from nosdn.backends.base import ApplyResult, Backend
from nosdn.model import Diff, InstalledRoute, Route
from nosdn.plan import diff
from nosdn.reconcile import ReadsDiff

log = logging.getLogger("nosdn.agent.safety")


@dataclass(slots=True)
class GuardState:
    #: Removals held back by the last pass (0 when none).
    held: int = 0
    #: The source's relist count when the removals were first refused (None: not refusing).
    refused_at: int | None = None
    #: Routes refused in total (for the metric).
    refused_total: int = 0


class DeletionGuard:
    """Decides, pass by pass, whether a diff's removals may go through."""

    def __init__(
        self,
        share: float,
        relists: Callable[[], int],
        request_relist: Callable[[], None],
    ) -> None:
        if not 0 < share <= 1:
            raise ValueError(
                f"--max-delete-share {share}: must be more than 0 and at most 1 (e.g. 0.5)"
            )
        self.share = share
        self._relists = relists
        self._request_relist = request_relist
        self.state = GuardState()

    def check(self, diff: Diff, owned: int) -> Diff:
        """``diff`` as it may be applied given ``owned`` routes in the table now."""
        removes = len(diff.remove)
        st = self.state
        if removes == 0 or removes <= self.share * owned:
            if st.refused_at is not None:
                log.info("node list recovered: no mass deletion pending any more")
            st.held = 0
            st.refused_at = None
            return diff
        relists = self._relists()
        if st.refused_at is not None and relists > st.refused_at:
            log.warning(
                "a fresh node list confirms the shrink: removing %d of %d routes",
                removes,
                owned,
                extra={"removals": removes, "owned": owned},
            )
            st.held = 0
            st.refused_at = None
            return diff
        if st.refused_at is None:
            st.refused_at = relists
            log.warning(
                "refusing to remove %d of %d routes at once (more than %d%%): the node list "
                "shrank suddenly; asking the API for a fresh list to confirm",
                removes,
                owned,
                round(self.share * 100),
                extra={"removals": removes, "owned": owned, "share": self.share},
            )
            self._request_relist()
        st.held = removes
        st.refused_total += removes
        return replace(diff, remove=())


class GuardedBackend:
    """A backend whose ``apply`` first passes the diff through a `DeletionGuard`."""

    def __init__(self, inner: Backend, guard: DeletionGuard) -> None:
        self.inner = inner
        self.guard = guard
        self.name = inner.name
        self._owned = 0

    def routes(self) -> list[InstalledRoute]:
        found = self.inner.routes()
        self._owned = sum(1 for r in found if r.owned)
        return found

    def read_diff(self, desired: Sequence[Route]) -> tuple[Diff, int]:
        inner = self.inner
        if isinstance(inner, ReadsDiff):
            d, self._owned = inner.read_diff(desired)
        else:
            d = diff(desired, self.routes())
        return d, self._owned

    def apply(self, diff: Diff) -> ApplyResult:
        return self.inner.apply(self.guard.check(diff, self._owned))
