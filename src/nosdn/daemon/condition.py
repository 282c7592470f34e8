"""The Node condition ``NetworkUnavailable``: what the scheduler and kubelet read about us.

Kubelets on clusters with a network plugin start their node with ``NetworkUnavailable=True``
(and the matching taint) until the plugin says otherwise; the route controller of cloud
providers does the same. The agent sets ``False`` with reason ``NosdnIsUp`` once this node's
routes are programmed, and ``True`` with a reason (``NosdnNoPodCIDR``, ``NosdnRouteErrors``,
``NosdnNoNodeAddress``, ``NosdnNoRoutablePeer``, in BGP mode ``NosdnNoBgpSession``) when it
cannot program them. "Programmed"
means routes to at least one other node when other nodes have pod subnets: 0 routes in a
cluster of several nodes (every peer refused, say dual-stack Nodes with only an IPv4
``--cluster-cidr``) is no network; a single-node cluster needs none.

The patch goes out from a background thread (the loop never waits for the API) and only when
status or reason differ from the node's current condition: a message change alone (route
counts) is not worth a write. On failure it is retried with backoff; the newest wish wins.
`NodeConditions` does this for many nodes from one thread (the cloud route controller, which
sets ``RouteCreated`` on every node whose routes exist); `ConditionSetter` is its one-node form.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from nosdn.daemon.events import now_rfc3339
from nosdn.sources.cache import condition_of
from nosdn.sources.errors import ApiError
from nosdn.sources.reflector import Backoff

log = logging.getLogger("nosdn.daemon.condition")

CONDITION = "NetworkUnavailable"
REASON_UP = "NosdnIsUp"
REASON_NO_CIDR = "NosdnNoPodCIDR"
REASON_ERRORS = "NosdnRouteErrors"
REASON_NO_ADDRESS = "NosdnNoNodeAddress"
REASON_NO_PEER = "NosdnNoRoutablePeer"
#: BGP mode: BIRD has no Established session, so the routers do not learn this node's pods.
REASON_NO_BGP = "NosdnNoBgpSession"


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
    return condition_of(obj, CONDITION) if obj else None


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


class NodeConditions:
    """The condition of many nodes (the cloud controller sets it on every node), written from
    one background thread: ``want(node, wish)`` records the newest wish, the thread patches the
    nodes whose live (status, reason), as ``observed(node)`` reports it, differs.

    A patch just written is not written again while the watch has not echoed it back yet
    (``echo_wait`` seconds); a failed patch is retried with backoff.
    """

    def __init__(
        self,
        api: StatusApi | None,
        observed: Callable[[str], tuple[str, str] | None],
        *,
        echo_wait: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.api = api
        self.observed = observed
        self.echo_wait = echo_wait
        self.clock = clock
        self._wishes: dict[str, Wish] = {}
        #: node -> ((status, reason) written, when)
        self._written: dict[str, tuple[tuple[str, str], float]] = {}
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

    def want(self, node: str, wish: Wish) -> None:
        with self._cv:
            if wish != self._wishes.get(node):
                self._wishes[node] = wish
                self._cv.notify_all()

    def forget(self, keep: Callable[[str], bool]) -> None:
        """Drop the wishes of nodes ``keep`` rejects (deleted nodes)."""
        with self._cv:
            for node in [n for n in self._wishes if not keep(n)]:
                del self._wishes[node]
                self._written.pop(node, None)

    def poke(self) -> None:
        """Re-check the nodes' live conditions (someone may have changed them)."""
        with self._cv:
            self._cv.notify_all()

    def wished(self, node: str) -> Wish | None:
        return self._wishes.get(node)

    def needed(self, node: str) -> Wish | None:
        """The wish to write for ``node`` now, or None (in place, or waiting for the echo)."""
        w = self._wishes.get(node)
        if w is None:
            return None
        want = (w.status, w.reason)
        if self.observed(node) == want:
            self._written[node] = (want, float("-inf"))
            return None
        written = self._written.get(node)
        if (
            written is not None
            and written[0] == want
            and self.clock() - written[1] < self.echo_wait
        ):
            return None  # written, not yet seen back from the watch
        return w

    def _pending(self) -> list[tuple[str, Wish]]:
        out: list[tuple[str, Wish]] = []
        for node in list(self._wishes):
            w = self.needed(node)
            if w is not None:
                out.append((node, w))
        return out

    def _run(self) -> None:
        assert self.api is not None
        backoff = Backoff(1.0, 60.0)
        while True:
            with self._cv:
                pending = self._pending()
                while not self._stop and not pending:
                    self._cv.wait(timeout=min(30.0, self.echo_wait))
                    pending = self._pending()
                if self._stop:
                    return
            failed = False
            for node, w in pending:
                if self._stop:
                    return
                try:
                    self.api.patch_node_status(node, patch_for(w))
                except ApiError as e:
                    self.failures += 1
                    failed = True
                    log.warning("cannot set %s on node %s: %s", CONDITION, node, e)
                    break
                self.writes += 1
                self._written[node] = ((w.status, w.reason), self.clock())
                log.info(
                    "node %s: %s=%s (%s)",
                    node,
                    CONDITION,
                    w.status,
                    w.reason,
                    extra={
                        "node": node,
                        "condition": CONDITION,
                        "status": w.status,
                        "reason": w.reason,
                    },
                )
            if failed:
                delay = backoff.next()
                with self._cv:
                    self._cv.wait(timeout=delay)
            else:
                backoff.reset()


class ConditionSetter:
    """The condition of one node: the agent's own."""

    def __init__(
        self,
        api: StatusApi | None,
        node: str,
        observed: Callable[[], Mapping[str, Any] | None],
    ) -> None:
        self.node = node
        self.conditions = NodeConditions(api, lambda _name: current(observed()), echo_wait=1.0)

    def start(self) -> None:
        self.conditions.start()

    def stop(self) -> None:
        self.conditions.stop()

    def want(self, wish: Wish) -> None:
        self.conditions.want(self.node, wish)

    def poke(self) -> None:
        self.conditions.poke()

    @property
    def writes(self) -> int:
        return self.conditions.writes

    @property
    def failures(self) -> int:
        return self.conditions.failures

    @property
    def _wish(self) -> Wish | None:
        return self.conditions.wished(self.node)

    @_wish.setter
    def _wish(self, wish: Wish) -> None:
        self.conditions.want(self.node, wish)

    def _needed(self) -> Wish | None:
        return self.conditions.needed(self.node)
