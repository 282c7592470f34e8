"""The cloud route controller's loop: the agent's rules, one VPC instead of one kernel.

The shape is the agent's (`nosdn.agent.loop`): watch events only nudge, nudges that arrive
during a pass are coalesced, every pass takes the cluster from the node cache (its view kept up
to date from the nodes that changed, `nosdn.controller.liveview`) and lets
`nosdn.backends.cloud.sync.sync` diff it against what the tables hold (one read per table), a full
resync runs every ``resync`` seconds whatever the events say (and rebuilds the view from
scratch), and a failed pass is retried with backoff. What differs, and why:

- **Only the leader touches the cloud.** Every replica keeps its node cache warm; only the one
  holding the Lease runs passes, and it asks again before each write (`nosdn.controller.gate`).
  A follower makes no cloud call at all (two replicas must not double the rate-limit budget),
  and becomes useful the moment the Lease is its: its first pass runs at once, on a warm cache.
- **No writes while the Kubernetes API is away.** The agent repairs its kernel from the last
  known nodes during an outage; a controller cannot tell an outage from a lost Lease, and a
  stale view of a whole cluster is worth less than one of a single node, so it waits.
- **Nothing before the first complete list; never a mass deletion on the node list's word
  alone** (the agent's deletion guard, per table: held for a while, then confirmed by a fresh
  list, or released at once by the `nosdn.daemon.safety.RELEASE_ANNOTATION` on the Lease).
- After each pass the leader sets ``NetworkUnavailable`` on every node whose state the pass
  established (`nosdn.controller.view.Verdicts`: only the nodes a pass names are judged
  again): ``False``/``RouteCreated`` once its routes exist, ``True`` with the reason when
  they cannot be programmed. Events report what a person must fix: conflicts, nodes without
  an instance and failed writes on the Node, a table too small for the plan and held-back
  deletions on the controller's Lease.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from nosdn.backends.cloud.contract import CloudError, CloudProvider
from nosdn.backends.cloud.sync import CloudPass, sync
from nosdn.controller.config import ControllerConfig
from nosdn.controller.gate import GatedProvider, NotLeadingError
from nosdn.controller.liveview import LiveView
from nosdn.controller.metrics import ControllerMetrics
from nosdn.controller.view import REASON_INVALID, ClusterView, Verdicts
from nosdn.daemon.condition import NodeConditions, Wish
from nosdn.daemon.events import EventRecorder, Involved
from nosdn.daemon.safety import DeletionGuard, held_message, release_hint
from nosdn.daemon.schedule import Nudger, run_passes
from nosdn.problems import ProblemsError
from nosdn.sources.cache import NodeCache, Snapshot

log = logging.getLogger("nosdn.controller")


@dataclass(slots=True)
class Status:
    """What the last passes found (for probes, metrics and tests)."""

    passes: int = 0
    last_pass: CloudPass | None = None
    last_ok: bool = False
    last_error: str = ""
    heartbeat: float = field(default_factory=time.monotonic)
    skipped_reason: str = ""


class Controller:
    """The loop of one replica. Wire it with `nosdn.controller.run.Running` (or by hand)."""

    def __init__(
        self,
        cfg: ControllerConfig,
        cache: NodeCache,
        provider: CloudProvider,
        *,
        request_relist: Callable[[], None],
        may_write: Callable[[], bool] = lambda: True,
        metrics: ControllerMetrics | None = None,
        events: EventRecorder | None = None,
        conditions: NodeConditions | None = None,
        lease: Involved | None = None,
        release: Callable[[], str | None] = lambda: None,
    ) -> None:
        self.cfg = cfg
        self.cache = cache
        self.may_write = may_write
        self.metrics = metrics or ControllerMetrics()
        self.events = events
        self.conditions = conditions
        self.lease = lease
        self.nudger = Nudger()
        self.provider = GatedProvider(
            provider,
            may_write,
            lambda: DeletionGuard(
                cfg.max_delete_share,
                lambda: self.cache.snapshot().relists,
                request_relist,
                hold=cfg.deletion_hold,
                window=cfg.deletion_window,
                release=release,
                how_to_release=release_hint("lease", cfg.lease_name, cfg.lease_namespace),
            ),
        )
        self.status = Status()
        self._view: ClusterView | None = None
        self._verdicts = Verdicts()
        #: node -> the wish last handed to ``conditions`` (they only drop a wish when told to)
        self._given: dict[str, Wish] = {}
        self._epoch = 0
        self._given_lock = threading.Lock()
        self._live = LiveView(
            name=cfg.cluster_name,
            cluster_cidrs=cfg.cluster_cidrs,
            mask_v4=cfg.node_cidr_mask_v4,
            mask_v6=cfg.node_cidr_mask_v6,
        )
        self._reported: set[str] = set()
        self._last_refused = 0
        self._stop = threading.Event()

    # --- lifecycle ------------------------------------------------------------------------
    def nudge(self, reason: str) -> None:
        self.nudger.nudge(reason)

    def stop(self) -> None:
        self._stop.set()
        self.nudger.nudge("stop")

    def lost_lease(self) -> None:
        """Forget the condition wishes of our time as leader: the next leader decides."""
        if self.conditions is not None:
            self.conditions.forget(lambda _node: False)
        with self._given_lock:
            self._epoch += 1
            self._given = {}

    def run(self) -> None:
        """Run passes until `stop`. Leaves every route in place when it returns."""

        def heartbeat(now: float) -> None:
            self.status.heartbeat = now

        run_passes(
            stop=self._stop,
            nudger=self.nudger,
            resync=self.cfg.resync,
            run_pass=lambda reasons, full: self.run_pass(reasons, full=full),
            heartbeat=heartbeat,
        )
        log.info("controller stopped; routes are left in place")

    # --- one pass -------------------------------------------------------------------------
    def view(self, snap: Snapshot, *, full: bool = False) -> ClusterView:
        """The cluster of ``snap``: kept up to date from the nodes that changed
        (`nosdn.controller.liveview`), rebuilt from scratch when ``full`` (the resync)."""
        v = self._view
        if v is not None and v.generation == snap.generation and not full:
            return v
        drifts = self._live.drifts
        v = self._view = self._live.update(snap, full=full)
        if self._live.drifts > drifts:
            log.warning("the kept-up-to-date view differed from the full one; the full one is used")
        new = set(v.problems) - self._reported
        for text in sorted(new)[:20]:
            log.warning("skipped: %s", text)
        if len(new) > 20:
            log.warning("... and %d more node problems", len(new) - 20)
        self._reported = set(v.problems)
        if self.events is not None:  # the recorder says each message once per ten minutes
            for node, wish in sorted(v.unusable.items()):
                if wish.reason == REASON_INVALID:
                    self.events.record(
                        "Warning",
                        "NodeSkipped",
                        f"nosdn skips node {node}: {wish.message}",
                        about=Involved("Node", node),
                    )
        return v

    def _skip(self, why: str) -> bool:
        if why != self.status.skipped_reason:
            log.info("no pass: %s", why)
        self.status.skipped_reason = why
        return True

    def run_pass(self, reasons: set[str], *, full: bool = False) -> bool:
        """One pass; returns False when it should be retried soon."""
        m = self.metrics
        snap = self.cache.snapshot()
        m.api_connected.set(1 if snap.connected else 0)
        m.relists.set(snap.relists)
        if not snap.synced:
            return self._skip("waiting for the first list of nodes")
        m.nodes.set(len(snap))
        if not self.may_write():  # a follower only keeps its cache: no view, no cloud
            return self._skip("standby: another replica holds the lease")
        v = self.view(snap, full=full)
        m.nodes_without_subnet.set(v.without_subnet)
        m.node_problems.set(len(v.unusable))
        if not snap.connected:
            return self._skip("the Kubernetes API is unreachable: no cloud writes until it is back")
        self.status.skipped_reason = ""
        trigger = "resync" if full else sorted(reasons)[0] if reasons else "manual"
        m.pass_counter(trigger).inc()
        t0 = time.perf_counter()
        try:
            result = sync(self.provider, v.cluster, dry_run=self.cfg.dry_run)
        except NotLeadingError as e:
            log.warning("pass dropped: %s", e)
            return self._skip("standby: the lease was lost during a pass")
        except (CloudError, ProblemsError) as e:
            m.errors.labels("cloud").inc()
            self.status.last_ok = False
            self.status.last_error = f"{self.provider.name}: {e}"
            log.error("cloud pass failed: %s", e)
            return False
        finally:
            m.reconcile_duration.observe(time.perf_counter() - t0)
        self.status.passes += 1
        self.status.last_pass = result
        ok = self._account(result)
        if not self.cfg.dry_run:
            self._set_conditions(v, result)
        return ok

    def _account(self, result: CloudPass) -> bool:
        m = self.metrics
        for op, n in result.calls.items():
            m.cloud_calls.labels(op).inc(n)
        m.tables.set(len(result.tables))
        m.routes_desired.set(len(result.desired))
        stuck = {c.wanted.dst for t in result.tables for c in t.diff.conflicts}
        stuck |= {e.dst for _t, e in result.errors if e.action != "remove"}
        stuck |= {r.dst for s in result.shortfalls for r in s.overflow}
        if result.dry_run:
            stuck |= {r.dst for t in result.tables for r in t.diff.add}
            stuck |= {c.new.dst for t in result.tables for c in t.diff.change}
        # every stuck destination is one of the desired routes' (conflicts, failed additions
        # and changes, left out, not written): no need to look at the thousands that are not
        m.routes_programmed.set(max(0, len(result.desired) - len(stuck)))
        m.route_conflicts.set(len(result.conflicts))
        m.route_writes.inc(result.writes)
        held = self.provider.held
        m.set_held(held, self.provider.seconds_left())
        refused = self.provider.refused_total
        if refused > self._last_refused:
            m.deletions_refused.inc(refused - self._last_refused)
        self._last_refused = refused
        if result.refused:
            m.capacity_refusals.inc()
        verb = "would make" if result.dry_run else "made"
        for t in result.tables:
            d = t.diff
            if d.writes:
                log.info(
                    "%s: %s %d add, %d change, %d remove (%d in sync)",
                    t.table.table_id,
                    verb,
                    len(d.add),
                    len(d.change),
                    len(d.remove),
                    len(d.keep),
                    extra={
                        "table": t.table.table_id,
                        "add": len(d.add),
                        "change": len(d.change),
                        "remove": len(d.remove),
                        "keep": len(d.keep),
                        "dry_run": result.dry_run,
                    },
                )
        for note in result.notes:
            log.info("%s", note)
        for table, e in result.errors:
            m.errors.labels("route").inc()
            who = f"node {e.node}" if e.node else "stale route"
            log.error("failed to %s %s in %s (%s): %s", e.action, e.dst, table, who, e.message)
        for s in result.shortfalls:
            log.error("refused: %s", s)
        self._report(result, held)
        ok = not result.errors
        self.status.last_ok = ok
        if ok:
            self.status.last_error = ""
            m.last_success.set_to_current_time()
        else:
            self.status.last_error = f"{len(result.errors)} route write(s) failed"
        return ok

    def _report(self, result: CloudPass, held: int) -> None:
        ev = self.events
        if ev is None:
            return

        def node(name: str | None) -> Involved | None:
            return Involved("Node", name) if name else self.lease

        for table, c in result.conflicts:
            ev.record(
                "Warning",
                "RouteConflict",
                f"route to {c.wanted.dst} (pods of node {c.wanted.node}) in {table} is owned by "
                f"{c.found.owner}: {c.found.detail}; left alone",
                about=node(c.wanted.node),
            )
        for p in result.problems:
            ev.record("Warning", "NodeInstanceUnknown", str(p), about=node(p.node))
        for table, e in result.errors:
            ev.record(
                "Warning",
                "RouteWriteFailed",
                f"failed to {e.action} {e.dst} in {table}: {e.message}",
                about=node(e.node),
            )
        for s in result.shortfalls:
            ev.record("Warning", "RouteTableFull", str(s), about=self.lease)
        for table, guard in sorted(self.provider.guards.items()):
            if guard.state.held:
                ev.record(
                    "Warning",
                    "RouteDeletionsRefused",
                    f"{table}: {held_message(guard)}",
                    about=self.lease,
                )

    def _set_conditions(self, v: ClusterView, result: CloudPass) -> None:
        wishes = {**v.unusable, **self._verdicts(v.cluster, result)}
        self.metrics.nodes_routed.set(sum(1 for w in wishes.values() if not w.unavailable))
        self.metrics.nodes_unroutable.set(sum(1 for w in wishes.values() if w.unavailable))
        c = self.conditions
        if c is None or not self.cfg.set_condition:
            return
        c.forget(lambda name: name in v.names)
        if not self.may_write():
            return
        epoch, given = self._epoch, self._given  # a wish handed over, unchanged, is not again
        for name, wish in wishes.items():
            if given.get(name) is not wish:
                c.want(name, wish)
        with self._given_lock:  # unless the lease was lost meanwhile: then all of them again
            self._given = wishes if self._epoch == epoch else {}

    # --- probes and scrapes ---------------------------------------------------------------
    def refresh_event_metrics(self) -> None:
        self.metrics.copy_event_counts(self.cache.events, self.cache.ignored)

    def healthz(self) -> tuple[bool, str]:
        age = time.monotonic() - self.status.heartbeat
        limit = 3 * self.cfg.resync + 10
        if age > limit:
            return False, f"loop stuck: no pass for {age:.0f} s"
        return True, "ok"

    def readyz(self) -> tuple[bool, str]:
        """Ready: a follower once its cache is synced (it can take over); the leader once its
        last pass wrote everything it tried to. Neither while the API is unreachable."""
        snap = self.cache.snapshot()
        if not snap.synced:
            return False, "waiting for the first list of nodes"
        if not snap.connected:  # a dead watch included: the cache may be stale
            return False, "the Kubernetes API is unreachable"
        if not self.may_write():
            return True, "standby (cache synced)"
        if self.status.last_pass is None:
            return False, self.status.skipped_reason or "no pass yet"
        if not self.status.last_ok:
            return False, self.status.last_error or "last pass failed"
        return True, "ok"
