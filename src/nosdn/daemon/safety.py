"""The deletion guard: a sudden mass disappearance of nodes is confirmed before routes go.

An API server that answers with an empty or truncated node list (a restore from an old
backup, a broken watch cache, a wrong kubeconfig pointing at another cluster) would otherwise
make every agent delete every route at once: a whole-cluster outage caused by the component
meant to prevent one. Two lessons shape the guard:

- **The share is measured over a sliding window, not per pass.** DELETED events arrive a few
  milliseconds apart, so a burst is spread over several passes, each under the share. The guard
  adds up the routes removed in the last ``window`` seconds and compares them (with the pass's
  own removals) to the routes held at the window's start.
- **The same API a moment later is no confirmation.** An API that lies lies again on the next
  list. A shrink over the share is held for ``hold`` seconds; only then is a fresh list asked
  for, and the removals go if it still wants them. An operator can release a hold at once by
  changing a token (`RELEASE_ANNOTATION` on the agent's Node, or on the controller's Lease):
  that comes from a person, not from the node list.

While a hold lasts the removals are kept (all of them: the guard cannot tell the real ones
from the lost ones) and additions and changes still go through. A pass whose removals fit the
window again (the nodes came back) ends the hold.

This is measured on routes, not on names: it is what the kernel or the cloud would lose, and it
works the same at start-up, when the "previous list" is whatever routes the last run left. The
guard wraps any `Backend` (and the controller's tables, `nosdn.controller.gate`), so
`reconcile_once` and `nosdn.backends.cloud.sync` stay unaware of it.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from nosdn.backends.base import ApplyResult, Backend
from nosdn.model import Diff, InstalledRoute, RouteKey
from nosdn.plan import ALWAYS_ALLOWED_REMOVALS, Found, mass_removal
from nosdn.reconcile import ReadsEntries, ReadsKeys

log = logging.getLogger("nosdn.daemon.safety")

#: Set (to any new value, e.g. a timestamp) on the agent's Node or the controller's Lease to
#: let the removals held now go at once.
RELEASE_ANNOTATION = "nosdn.io/release-deletions"
DEFAULT_HOLD = 300.0
DEFAULT_WINDOW = 60.0


def release_token(obj: Mapping[str, Any] | None) -> str | None:
    """The value of `RELEASE_ANNOTATION` on a Kubernetes object (None: not set)."""
    meta = (obj or {}).get("metadata")
    notes = meta.get("annotations") if isinstance(meta, Mapping) else None
    value = notes.get(RELEASE_ANNOTATION) if isinstance(notes, Mapping) else None
    return None if value is None else str(value)


def release_hint(kind: str, name: str, namespace: str | None = None) -> str:
    """The command that releases a hold, for logs and Events."""
    ns = f"-n {namespace} " if namespace else ""
    return (
        f'with: kubectl {ns}annotate {kind} {name} {RELEASE_ANNOTATION}="$(date +%s)" --overwrite'
    )


def held_message(guard: DeletionGuard) -> str:
    """What a guard holds and how it ends (stable from pass to pass, for the Event's dedup)."""
    text = (
        f"holding {guard.state.held} route removals: the node list shrank by more than "
        f"{round(guard.share * 100)}% within {guard.window:g}s; they go after {guard.hold:g}s "
        "if a fresh node list still wants them"
    )
    if guard.how_to_release:
        text += f", or at once {guard.how_to_release}"
    return text


def check_guard_options(share: float, hold: float, window: float) -> None:
    """Refuse values that would turn the guard off by accident, naming the flag."""
    if not 0 < share <= 1:
        raise ValueError(f"--max-delete-share {share}: use a share in (0, 1], e.g. 0.5")
    if hold < 0:
        raise ValueError(f"--deletion-hold {hold}: use 0 or more seconds (default 300)")
    if window < 0:
        raise ValueError(f"--deletion-window {window}: use 0 or more seconds (default 60)")


@dataclass(slots=True)
class GuardState:
    #: Removals held back by the last pass (0 when none).
    held: int = 0
    #: Routes refused in total, pass after pass (for the counter).
    refused_total: int = 0
    #: When the current hold ends (the guard's clock; None: not holding).
    deadline: float | None = None
    #: The release token when the hold began (a different one releases it).
    token: str | None = None
    #: The source's relist count when the list after the hold was asked for.
    relist_asked: int | None = None


#: Removals within one window that never hold, whatever the share (`nosdn.plan`'s rule).
ALWAYS_ALLOWED = ALWAYS_ALLOWED_REMOVALS


class DeletionGuard:
    """Decides, pass by pass, whether a diff's removals may go through."""

    def __init__(
        self,
        share: float,
        relists: Callable[[], int],
        request_relist: Callable[[], None],
        *,
        hold: float = DEFAULT_HOLD,
        window: float = DEFAULT_WINDOW,
        release: Callable[[], str | None] = lambda: None,
        how_to_release: str = "",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        check_guard_options(share, hold, window)
        self.share = share
        self.hold = hold
        self.window = window
        self.how_to_release = how_to_release
        self._relists = relists
        self._request_relist = request_relist
        self._release = release
        self.clock = clock
        #: (when, routes owned before, routes removed) of each pass that removed some.
        self._removed: deque[tuple[float, int, int]] = deque()
        self.state = GuardState()

    def seconds_left(self) -> float | None:
        """Seconds until the current hold ends (None: not holding)."""
        d = self.state.deadline
        return None if d is None else max(0.0, d - self.clock())

    def check(self, diff: Diff, owned: int) -> Diff:
        """``diff`` as it may be applied given ``owned`` routes in the table now."""
        now = self.clock()
        past = self._removed
        while past and past[0][0] <= now - self.window:
            past.popleft()
        removes = len(diff.remove)
        st = self.state
        base = past[0][1] if past else owned
        recent = sum(n for _t, _o, n in past)
        before = max(base, owned)
        if removes == 0 or not mass_removal(recent + removes, before, self.share):
            if st.deadline is not None:
                log.info("node list recovered: no mass deletion pending any more")
            return self._allow(diff, now, owned, removes, reset=False)
        if st.deadline is None:
            return self._start(diff, now, before, removes, recent)
        token = self._release()
        if token is not None and token != st.token:
            log.warning(
                "%s changed to %r: releasing %d held route removals",
                RELEASE_ANNOTATION,
                token,
                removes,
                extra={"removals": removes, "owned": owned},
            )
            return self._allow(diff, now, owned, removes, reset=True)
        if now >= st.deadline:
            relists = self._relists()
            if st.relist_asked is None:
                st.relist_asked = relists
                self._request_relist()
            elif relists > st.relist_asked:
                log.warning(
                    "a fresh node list after the hold still shrinks: removing %d of %d routes",
                    removes,
                    owned,
                    extra={"removals": removes, "owned": owned},
                )
                return self._allow(diff, now, owned, removes, reset=True)
        return self._refuse(diff, removes)

    def _start(self, diff: Diff, now: float, before: int, removes: int, recent: int) -> Diff:
        st = self.state
        st.deadline = now + self.hold
        st.token = self._release()
        st.relist_asked = None
        log.warning(
            "holding %d route removals (%d more removed in the last %gs, of %d routes then): the "
            "node list shrank by more than %d%%; they go after %gs if a fresh list still "
            "wants them%s",
            removes,
            recent,
            self.window,
            before,
            round(self.share * 100),
            self.hold,
            f", or at once {self.how_to_release}" if self.how_to_release else "",
            extra={"removals": removes, "owned": before, "share": self.share, "hold": self.hold},
        )
        if self.hold == 0:
            st.relist_asked = self._relists()
            self._request_relist()
        return self._refuse(diff, removes)

    def _refuse(self, diff: Diff, removes: int) -> Diff:
        self.state.held = removes
        self.state.refused_total += removes
        return replace(diff, remove=())

    def _allow(self, diff: Diff, now: float, owned: int, removes: int, *, reset: bool) -> Diff:
        st = self.state
        st.held = 0
        st.deadline = None
        st.relist_asked = None
        if reset:
            self._removed.clear()  # a confirmed shrink is the new normal
        elif removes:
            self._removed.append((now, owned, removes))
        return diff


class GuardedBackend:
    """A backend whose ``apply`` first passes the diff through a `DeletionGuard` (judged
    against the routes of ours the diff found: `Diff.owned`)."""

    def __init__(self, inner: Backend, guard: DeletionGuard) -> None:
        self.inner = inner
        self.guard = guard
        self.name = inner.name

    def routes(self) -> list[InstalledRoute]:
        return self.inner.routes()

    def entries(self) -> Iterable[Found]:
        inner = self.inner
        return inner.entries() if isinstance(inner, ReadsEntries) else inner.routes()

    def entries_on(self, keys: Collection[RouteKey]) -> Iterable[Found]:
        inner = self.inner
        if not isinstance(inner, ReadsKeys):
            raise TypeError(f"the {inner.name} backend cannot read routes by prefix")
        return inner.entries_on(keys)

    @property
    def reads_keys(self) -> bool:
        """Whether `entries_on` works (the backend inside reads by key)."""
        return isinstance(self.inner, ReadsKeys)

    def apply(self, diff: Diff) -> ApplyResult:
        return self.inner.apply(self.guard.check(diff, diff.owned))
