"""The agent's BGP mode at run time: each pass hands this node's BIRD config to the supervisor,
and a watcher thread reads the sessions every second for metrics, Events and readiness.

Kept apart from the loop (`nosdn.agent.loop`), which only calls `Announcer.sync` after the
routes and asks `Announcer.established` for the ``NetworkUnavailable`` reason: the config is a
pure function (`nosdn.agent.bgp`), BIRD's lifecycle is `nosdn.backends.bird`. The watcher also
restarts a BIRD that died (the routers keep the routes meanwhile: graceful restart).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any

from nosdn.agent.bgp import BgpConfigError, BgpOptions, bird_config, node_overrides
from nosdn.agent.metrics import AgentMetrics
from nosdn.backends.bird import BirdError, BirdSupervisor
from nosdn.backends.birdc import Session
from nosdn.daemon.events import EventRecorder
from nosdn.model import BgpPeer, Node
from nosdn.render._base import RenderError, Secret
from nosdn.render.bgp import read_password

log = logging.getLogger("nosdn.agent.bgp")
POLL = 1.0


class Announcer:
    def __init__(
        self,
        options: BgpOptions,
        supervisor: BirdSupervisor,
        metrics: AgentMetrics,
        *,
        node_name: str,
        events: EventRecorder | None = None,
        on_change: Callable[[str], None] = lambda _reason: None,
        poll: float = POLL,
    ) -> None:
        self.options = options
        self.bird = supervisor
        self.metrics = metrics
        self.node_name = node_name
        self.events = events
        self.on_change = on_change
        self.poll = poll
        self.error = ""
        self.peers: tuple[BgpPeer, ...] = options.peers
        self._sessions: list[Session] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._was_up: dict[str, bool] = {}
        self._starts_seen = 0
        self._configures_seen = 0

    # --- from the loop --------------------------------------------------------------------
    def sync(self, me: Node, obj: Mapping[str, Any] | None) -> None:
        """Bring BIRD to this node's config (nothing happens when the text is the same)."""
        try:
            asn, peers = node_overrides(me.name, obj, self.options)
            passwords = self._passwords(peers)
            text = bird_config(me, asn, peers, self.options, passwords)
            self.bird.sync(text)
        except (BgpConfigError, RenderError, BirdError) as e:
            if str(e) != self.error:
                log.error("BGP: %s; BIRD keeps its last config", e)
            self.error = str(e)
            self._count()
            return
        self.peers = peers
        self.error = ""
        self._count()

    def _passwords(self, peers: tuple[BgpPeer, ...]) -> tuple[tuple[str, Secret], ...]:
        files = sorted({p.password_file for p in peers if p.password_file})
        return tuple((f, read_password(f, f"--bgp-password-file {f}")) for f in files)

    def _count(self) -> None:
        m = self.metrics
        if self.bird.starts > self._starts_seen:
            m.bgp_bird_starts.inc(self.bird.starts - self._starts_seen)
            self._starts_seen = self.bird.starts
        if self.bird.configures > self._configures_seen:
            m.bgp_configures.inc(self.bird.configures - self._configures_seen)
            self._configures_seen = self.bird.configures

    def sessions(self) -> list[Session]:
        with self._lock:
            return list(self._sessions)

    def established(self) -> int:
        return sum(1 for s in self.sessions() if s.established)

    def why_down(self) -> str:
        """The ``NetworkUnavailable`` message when no session is established."""
        if self.error:
            return f"BGP: {self.error}"
        ss = self.sessions()
        if not ss:
            return "BGP: no session (BIRD not answering yet)"
        s = ss[0]
        return (
            f"no BGP session established, e.g. peer {s.neighbor or s.name} "
            f"AS {s.neighbor_as}: {s.bgp_state}"
            + (f" ({s.last_error})" if s.last_error else "")
            + f" — {s.fix()}"
        )

    # --- the watcher ----------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._watch, name="nosdn-bgp", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _watch(self) -> None:
        while not self._stop.wait(self.poll):
            self.check()

    def check(self) -> None:
        """One look at BIRD: restart it if it died, read its sessions, account for them."""
        if self.bird.loaded is not None and not self.bird.alive():
            log.warning("BIRD is not answering on %s: starting it again", self.bird.socket)
            try:
                self.bird.sync(self.bird.loaded)
            except BirdError as e:
                log.error("BGP: %s", e)
            self._count()
        try:
            sessions = self.bird.sessions()
        except BirdError:
            sessions = []
        with self._lock:
            self._sessions = sessions
        changed = False
        m = self.metrics
        for s in sessions:
            peer = s.neighbor or s.name
            m.bgp_session_up.labels(peer).set(1 if s.established else 0)
            m.bgp_prefixes_announced.labels(peer).set(s.exported if s.established else 0)
            was = self._was_up.get(peer)
            if was != s.established:
                changed = True
                if was:
                    m.bgp_session_flaps.labels(peer).inc()
                    msg = (
                        f"BGP session to {peer} (AS {s.neighbor_as}) lost: {s.bgp_state}"
                        + (f" ({s.last_error})" if s.last_error else "")
                        + f" — {s.fix()}"
                    )
                    log.warning("%s", msg)
                    if self.events is not None:
                        self.events.record("Warning", "BgpSessionDown", msg)
                elif s.established:
                    log.info("BGP session to %s (AS %s) established", peer, s.neighbor_as)
                self._was_up[peer] = s.established
        if changed:
            self.on_change("bgp")
