"""Kubernetes Events about this node: route conflicts, off-link peers, refused deletions.

``kubectl describe node`` is where people look first, so the problems an agent cannot fix
itself are reported there as core/v1 Events on its own Node. Posting happens in a background
thread from a bounded queue (the loop must never wait for the API, least of all while the API is
down: then events are dropped, and counted). The same (reason, message) is posted at most once
per ``repeat`` seconds, so a conflict that lasts for hours is one Event every ten minutes, not
one per pass.

The cloud route controller posts through the same recorder about many objects: a node's
route conflict on that Node (``about``), a table that cannot hold the plan on the controller's
Lease; ``component`` tells the two apart in ``kubectl get events``.
"""

from __future__ import annotations

import logging
import queue
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from nosdn.sources.errors import ApiError

log = logging.getLogger("nosdn.daemon.events")

COMPONENT = "nosdn-agent"


class EventApi(Protocol):
    def create_event(self, namespace: str, event: Mapping[str, Any]) -> None: ...


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True, slots=True)
class Involved:
    """The object an Event is about (``namespace`` None: cluster-scoped, like a Node)."""

    kind: str
    name: str
    api_version: str = "v1"
    namespace: str | None = None
    uid: str | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"apiVersion": self.api_version, "kind": self.kind, "name": self.name}
        if self.namespace:
            out["namespace"] = self.namespace
        if self.uid:
            out["uid"] = self.uid
        return out


def event_body(
    node: str,
    *,
    namespace: str,
    etype: str,
    reason: str,
    message: str,
    uid: str | None = None,
    component: str = COMPONENT,
    about: Involved | None = None,
) -> dict[str, Any]:
    """An Event about ``about`` (default: the Node ``node``), reported from host ``node``."""
    ts = now_rfc3339()
    subject = about or Involved("Node", node, uid=uid)
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": f"{subject.name}.{secrets.token_hex(8)}", "namespace": namespace},
        "involvedObject": subject.as_dict(),
        "reason": reason,
        "message": message[:1024],
        "type": etype,
        "source": {"component": component, "host": node},
        "reportingComponent": component,
        "reportingInstance": node,
        "firstTimestamp": ts,
        "lastTimestamp": ts,
        "count": 1,
    }


class EventRecorder:
    def __init__(
        self,
        api: EventApi | None,
        node: str,
        *,
        namespace: str = "default",
        repeat: float = 600.0,
        uid: Callable[[], str | None] = lambda: None,
        clock: Callable[[], float] = time.monotonic,
        component: str = COMPONENT,
    ) -> None:
        self.api = api
        self.node = node
        self.component = component
        self.namespace = namespace
        self.repeat = repeat
        self.uid = uid
        self.clock = clock
        self._last: dict[tuple[str, str], float] = {}
        self._queue: queue.Queue[dict[str, Any]] = queue.Queue(maxsize=100)
        self._thread: threading.Thread | None = None
        self.posted = 0
        self.dropped = 0

    def start(self) -> None:
        if self.api is None:
            return
        self._thread = threading.Thread(target=self._run, name="nosdn-events", daemon=True)
        self._thread.start()

    def record(
        self, etype: str, reason: str, message: str, *, about: Involved | None = None
    ) -> bool:
        """Queue an Event (about this node, or ``about``) unless the same one was queued less
        than ``repeat`` s ago. An Event about a namespaced object goes to its namespace."""
        key = (reason, message)
        now = self.clock()
        last = self._last.get(key)
        if last is not None and now - last < self.repeat:
            return False
        self._last[key] = now
        if len(self._last) > 10_000:  # forget old keys rather than grow without end
            cutoff = now - self.repeat
            self._last = {k: t for k, t in self._last.items() if t >= cutoff}
        log.info("event %s: %s", reason, message, extra={"reason": reason, "event_type": etype})
        if self.api is None:
            return True
        namespace = (about.namespace if about else None) or self.namespace
        body = event_body(
            self.node,
            namespace=namespace,
            etype=etype,
            reason=reason,
            message=message,
            uid=self.uid() if about is None else None,
            component=self.component,
            about=about,
        )
        try:
            self._queue.put_nowait(body)
        except queue.Full:
            self.dropped += 1
            return False
        return True

    def _run(self) -> None:
        assert self.api is not None
        while True:
            body = self._queue.get()
            try:
                self.api.create_event(body["metadata"]["namespace"], body)
                self.posted += 1
            except ApiError as e:
                self.dropped += 1
                log.debug("could not post event %s: %s", body["reason"], e)
