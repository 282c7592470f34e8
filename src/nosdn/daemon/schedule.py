"""When a daemon runs its next pass: the one loop the node agent and the cloud controller share.

The Kubernetes route controller's rule: events only nudge (reasons coalesce into the next pass,
whichever thread sends them), a periodic full resync catches what events missed, and a failed
pass is retried with exponential backoff capped at the resync period. What a pass does is the
caller's; this module only decides when.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class Nudger:
    """Coalesces wake-up reasons from any thread into the loop's next pass."""

    def __init__(self) -> None:
        self._cv = threading.Condition()
        self._reasons: set[str] = set()
        self._notes: set[str] = set()

    def nudge(self, reason: str) -> None:
        with self._cv:
            self._reasons.add(reason)
            self._cv.notify()

    def note(self, reason: str) -> None:
        """A reason for the next pass to know, without waking the loop for it (a kernel
        change that makes what the agent keeps stale but needs no pass of its own)."""
        with self._cv:
            self._notes.add(reason)

    def wait(self, timeout: float) -> set[str]:
        """The reasons (and notes) since the last call, once there is a reason or after
        ``timeout``."""
        with self._cv:
            if not self._reasons and timeout > 0:
                self._cv.wait(timeout)
            reasons = self._reasons | self._notes
            self._reasons, self._notes = set(), set()
            return reasons


def run_passes(
    *,
    stop: threading.Event,
    nudger: Nudger,
    resync: float,
    run_pass: Callable[[set[str], bool], bool],
    heartbeat: Callable[[float], None],
    after_pass: Callable[[], None] | None = None,
) -> None:
    """Call ``run_pass(reasons, full)`` on every nudge, every ``resync`` seconds (``full``), and
    again after a failed pass (0.5 s doubling, at most ``resync``) until ``stop`` is set."""
    next_resync = time.monotonic()
    retry_at: float | None = None
    failures = 0
    while not stop.is_set():
        now = time.monotonic()
        deadline = next_resync if retry_at is None else min(next_resync, retry_at)
        reasons = nudger.wait(max(0.0, deadline - now))
        if stop.is_set():
            break
        now = time.monotonic()
        heartbeat(now)
        full = now >= next_resync
        if full:
            reasons.add("resync")
            next_resync = now + resync
        if retry_at is not None and now >= retry_at:
            reasons.add("retry")
            retry_at = None
        if not reasons:
            continue
        ok = run_pass(reasons, full)
        if after_pass is not None:
            after_pass()
        if ok:
            failures = 0
            retry_at = None
        else:
            retry_at = time.monotonic() + min(resync, 0.5 * 2 ** min(failures, 10))
            failures += 1
