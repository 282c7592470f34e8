"""The Node condition ``NetworkUnavailable``: what the scheduler and kubelet read about us.

Kubelets on clusters with a network plugin start their node with ``NetworkUnavailable=True``
(and the matching taint) until the plugin says otherwise; the route controller of cloud
providers does the same. The agent sets ``False`` with reason ``NosdnIsUp`` once this node's
routes are programmed, and ``True`` with a reason (``NosdnNoPodCIDR``, ``NosdnRouteErrors``,
``NosdnNoNodeAddress``) when it cannot program them.

The patch goes out from a background thread (the loop never waits for the API) and only when
status or reason differ from the node's current condition: a message change alone (route
counts) is not worth a write. On failure it is retried with backoff; the newest wish wins.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from nosdn.agent.events import now_rfc3339
from nosdn.sources.errors import ApiError
from nosdn.sources.reflector import Backoff

log = logging.getLogger("nosdn.agent.condition")

CONDITION = "NetworkUnavailable"
REASON_UP = "NosdnIsUp"
REASON_NO_CIDR = "NosdnNoPodCIDR"
REASON_ERRORS = "NosdnRouteErrors"
REASON_NO_ADDRESS = "NosdnNoNodeAddress"


class StatusApi(Protocol):
    def patch_node_status(self, name: str, patch: Mapping[str, Any]) -> None: ...


@dataclass(frozen=True, slots=True)
class Wish:
    unavailable: bool
    reason: str
    message: str

    @property
    def status(self) -> str:
        return "True" if self.unavailable else "False"


def current(obj: Mapping[str, Any] | None) -> tuple[str, str] | None:
    """(status, reason) of the node's NetworkUnavailable condition, if it has one."""
    if not obj:
        return None
    for c in (obj.get("status") or {}).get("conditions") or ():
        if c.get("type") == CONDITION:
            return str(c.get("status", "")), str(c.get("reason", ""))
    return None


def patch_for(w: Wish) -> dict[str, Any]:
    ts = now_rfc3339()
    return {
        "status": {
            "conditions": [
                {
                    "type": CONDITION,
                    "status": w.status,
                    "reason": w.reason,
                    "message": w.message,
                    "lastTransitionTime": ts,
                    "lastHeartbeatTime": ts,
                }
            ]
        }
    }


class ConditionSetter:
    def __init__(
        self,
        api: StatusApi | None,
        node: str,
        observed: Callable[[], Mapping[str, Any] | None],
    ) -> None:
        self.api = api
        self.node = node
        self.observed = observed
        self._wish: Wish | None = None
        self._written: tuple[str, str] | None = None
        self._cv = threading.Condition()
        self._stop = False
        self._thread: threading.Thread | None = None
        self.writes = 0
        self.failures = 0

    def start(self) -> None:
        if self.api is None:
            return
        self._thread = threading.Thread(target=self._run, name="nosdn-condition", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        with self._cv:
            self._stop = True
            self._cv.notify_all()

    def want(self, wish: Wish) -> None:
        with self._cv:
            if wish != self._wish:
                self._wish = wish
                self._cv.notify_all()

    def poke(self) -> None:
        """Re-check the node's live condition (someone may have changed it)."""
        with self._cv:
            self._cv.notify_all()

    def _needed(self) -> Wish | None:
        w = self._wish
        if w is None:
            return None
        want = (w.status, w.reason)
        live = current(self.observed())
        if live == want:
            self._written = want
            return None
        if live is None and self._written == want:
            return None  # written, not yet seen back from the watch
        return w

    def _run(self) -> None:
        assert self.api is not None
        backoff = Backoff(1.0, 60.0)
        while True:
            with self._cv:
                while not self._stop and self._needed() is None:
                    self._cv.wait(timeout=30)
                if self._stop:
                    return
                w = self._needed()
            if w is None:
                continue
            try:
                self.api.patch_node_status(self.node, patch_for(w))
            except ApiError as e:
                self.failures += 1
                delay = backoff.next()
                log.warning("cannot set %s on node %s: %s", CONDITION, self.node, e)
                with self._cv:
                    self._cv.wait(timeout=delay)
                continue
            backoff.reset()
            self.writes += 1
            self._written = (w.status, w.reason)
            log.info(
                "node %s: %s=%s (%s)",
                self.node,
                CONDITION,
                w.status,
                w.reason,
                extra={"condition": CONDITION, "status": w.status, "reason": w.reason},
            )
            with self._cv:  # let the watch echo the change back before comparing again
                self._cv.wait(timeout=1.0)
