"""The agent's loop: events nudge, a Node event's pass plans what it changed, resync plans all.

Copied from what works elsewhere (the Kubernetes route controller, flannel's single loop):
watch events and netlink notifications only *nudge*; nudges that arrive while a pass runs are
coalesced into the next one. A pass woken by Node events alone plans the routes of the nodes
those events touched (and of those whose blame they flipped), diffs their prefixes against
what the kernel holds there and writes only that (the event pass, `nosdn.agent.standing`):
one change costs every agent O(what changed), not O(cluster). Every other pass is a full one:
it rebuilds the whole desired state from the node cache and lets `reconcile_once` diff it
against the whole table; it is the definition of right, and it runs on every resync (every
``resync`` seconds regardless), after a relist, after any kernel change that is not the echo
of our own writes, after a failed write or held removals, and when this node itself changed.
A missed or duplicated event costs at most one pass; a pass that failed is retried with
backoff.

Safety rules live here, in order of the damage they prevent:

- nothing is written before the first complete list of nodes (no known state, no change);
  nothing is flushed at start: the first pass diffs against what the last run left;
- while the API is unreachable the cache keeps the last known nodes, so passes keep that state
  (and repair it) but never change it;
- when this node's own Node object is missing, or has no address, routes are left as they are;
- ready (``/readyz``, ``NetworkUnavailable=False``) only when the last pass succeeded, the API
  is connected, and, when other nodes have pod subnets, at least one of them is routed: a
  node whose every peer was refused (by the checks, off-link, a conflict) is not ready with
  0 routes; a single-node cluster is;
- removals over a share of our routes within a short window are held, and go only after a hold
  time and a fresh list, or when an operator releases them (`nosdn.daemon.safety`);
- on stop, nothing is removed.

After the routes, the pass does this node's own chores: CNI conflist, IP forwarding, egress
masquerade and the ``NetworkUnavailable`` condition, each only writing when something changed.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from nosdn.agent.announce import Announcer
from nosdn.agent.cni import interface_mtu, interface_of, write_if_changed
from nosdn.agent.config import AgentConfig
from nosdn.agent.egress import Egress, EgressError, render
from nosdn.agent.forwarding import ensure_forwarding
from nosdn.agent.metrics import AgentMetrics
from nosdn.agent.standing import Standing
from nosdn.agent.view import ClusterView, Views
from nosdn.backends.base import Backend
from nosdn.daemon.condition import (
    REASON_ERRORS,
    REASON_NO_ADDRESS,
    REASON_NO_BGP,
    REASON_NO_CIDR,
    REASON_NO_PEER,
    REASON_UP,
    ConditionSetter,
    Wish,
)
from nosdn.daemon.events import EventRecorder, Involved
from nosdn.daemon.safety import (
    DeletionGuard,
    GuardedBackend,
    held_message,
    release_hint,
    release_token,
)
from nosdn.daemon.schedule import Nudger, run_passes
from nosdn.model import Cluster, IPAddress, IPNetwork, Node, Target, route_key
from nosdn.plan import desired_routes
from nosdn.problems import Problem
from nosdn.reconcile import AdjacencyCheck, PassResult, Scope, reconcile_once, reconcile_routes
from nosdn.render.cni import render_cni
from nosdn.sources.cache import NodeCache, Snapshot

log = logging.getLogger("nosdn.agent")

#: Local addresses with the interface holding each (for the pods' MTU).
LocalAddresses = Callable[[], Sequence[tuple[IPAddress, str]]]
FALLBACK_MTU = 1500
#: The netlink monitor's reasons after which next hops may lead elsewhere (links, addresses,
#: connected routes, others' routes and nexthops: "netlink-lookups" is a note, not a nudge),
#: or after which nothing it reported can be trusted to be complete (an overflow).
LOOKUP_REASONS = frozenset(
    {"netlink-link", "netlink-addr", "netlink-connected", "netlink-lookups", "netlink-overflow"}
)


@dataclass(slots=True)
class Status:
    """What the last passes found (for probes, metrics and tests)."""

    passes: int = 0
    last_pass: PassResult | None = None
    last_ok: bool = False
    last_error: str = ""
    heartbeat: float = field(default_factory=time.monotonic)
    skipped_reason: str = ""
    #: False from the start of a loop that freezes the collector until that is done (the
    #: full collection after the first pass takes a while: not ready before it is over)
    settled: bool = True
    #: Other nodes with pod subnets, and how many of them the last pass routed.
    peers: int = 0
    peers_routed: int = 0
    #: When peers exist and none is routed: why (the first reason found).
    no_peer_reason: str = ""
    #: Passes that planned only the nodes a Node event touched (`nosdn.agent.standing`).
    event_passes: int = 0


class Agent:
    """One node's agent loop. Wire it with `nosdn.agent.run.build` (or by hand in tests)."""

    def __init__(
        self,
        cfg: AgentConfig,
        cache: NodeCache,
        backend: Backend,
        *,
        request_relist: Callable[[], None],
        adjacency: AdjacencyCheck | None = None,
        local_addresses: LocalAddresses | None = None,
        invalidate: Callable[[bool], None] = lambda lookups: None,
        metrics: AgentMetrics | None = None,
        events: EventRecorder | None = None,
        condition: ConditionSetter | None = None,
        egress: Egress | None = None,
        announcer: Announcer | None = None,
    ) -> None:
        self.cfg = cfg
        self.cache = cache
        self.nudger = Nudger()
        self.metrics = metrics or AgentMetrics()
        self.guard = DeletionGuard(
            cfg.max_delete_share,
            lambda: self.cache.snapshot().relists,
            request_relist,
            hold=cfg.deletion_hold,
            window=cfg.deletion_window,
            release=lambda: release_token(self.cache.self_object),
            how_to_release=release_hint("node", cfg.node_name),
        )
        self.backend = GuardedBackend(backend, self.guard)
        self.adjacency = adjacency
        self.local_addresses = local_addresses
        self.invalidate = invalidate
        self.events = events
        self.condition = condition
        self.egress = egress
        self.announcer = announcer
        self.status = Status()
        self._view: ClusterView | None = None
        self._views = Views(cfg)
        self._mtu: int | None = cfg.mtu
        self._reported_problems: set[str] = set()
        self._stop = threading.Event()
        self._egress_key: tuple[int, bool] | None = None
        self._egress_script: str | None = None
        self._event_counts: dict[tuple[str, bool], int] = {}
        self._last_refused = 0
        #: The prefixes the last pass wanted, as (version, length, address) (`wants_prefix`),
        #: and the pass they were read from: built when the monitor first asks after a pass.
        self._wanted: frozenset[tuple[int, int, int]] = frozenset()
        self._wanted_of: PassResult | None = None
        self._conflicts: frozenset[IPNetwork] = frozenset()
        #: What the passes so far left, by prefix (None: a full pass comes next).
        self._standing: Standing | None = None

    # --- lifecycle ------------------------------------------------------------------------
    def nudge(self, reason: str) -> None:
        self.nudger.nudge(reason)

    def stop(self) -> None:
        self._stop.set()
        self.nudger.nudge("stop")

    def run(self, *, freeze_gc: bool = False) -> None:
        """Run passes until `stop`. Leaves every route in place when it returns.

        ``freeze_gc``: after the first pass, move everything alive (the Kubernetes client's
        modules, the node cache) out of the cyclic collector's reach (`gc.freeze`): a full
        collection over them cost the daemon pauses of a hundred milliseconds and more. The
        young generation is then collected less often (see below)."""
        frozen = not freeze_gc
        self.status.settled = frozen

        def after_pass() -> None:
            nonlocal frozen
            if not frozen and self.status.passes:
                gc.collect()
                gc.freeze()
                # a pass allocates some 30,000 short-lived objects (at 5,000 nodes), freed by
                # reference counting: collecting the young generation every 700 allocations
                # only rescanned them, over and over
                gc.set_threshold(50_000, 20, 20)
                frozen = True
                self.status.settled = True

        def heartbeat(now: float) -> None:
            self.status.heartbeat = now

        run_passes(
            stop=self._stop,
            nudger=self.nudger,
            resync=self.cfg.resync,
            run_pass=lambda reasons, full: self.run_pass(reasons, full=full),
            heartbeat=heartbeat,
            after_pass=after_pass,
        )
        log.info("agent stopped; routes are left in place")

    def wants_prefix(self, version: int, prefixlen: int, address: int) -> bool:
        """Whether the last pass wanted a route to this prefix (the netlink monitor asks, from
        its thread, about other protocols' routes: a take-over of ours, or its end)."""
        result = self.status.last_pass
        if result is None:
            return False
        if self._wanted_of is not result:
            self._wanted = frozenset(
                (r.dst.version, r.dst.prefixlen, int(r.dst.network_address)) for r in result.desired
            )
            self._wanted_of = result
        return (version, prefixlen, address) in self._wanted

    # --- building the cluster -------------------------------------------------------------
    def view(self, snap: Snapshot, *, full: bool = False) -> ClusterView:
        """The cluster of one cache generation: usable nodes, checked (cached per generation).

        Built from the last view and the nodes changed since (`nosdn.agent.view`); ``full``
        rebuilds it from the whole snapshot, as every resync does."""
        v = self._view
        if v is not None and v.generation == snap.generation and not full:
            return v
        views = self._views
        changed = None if full else self.cache.changes_since(views.generation, snap.generation)
        v = self._view = views.build(snap, changed, self._found_routed)
        new = set(v.problems) - self._reported_problems
        for text in sorted(new)[:20]:
            log.warning("skipped: %s", text)
        if len(new) > 20:
            log.warning("... and %d more node problems", len(new) - 20)
        self._reported_problems = set(v.problems)
        self._report_skipped(v.skipped, self.cfg.node_name)
        return v

    def _found_routed(self, cluster: Cluster) -> frozenset[Node]:
        """The nodes whose every pod subnet the kernel already routes to them, as ours: after a
        restart they are as established as before it (read once, before the first pass)."""
        try:
            found = {(r.dst, r.via) for r in self.backend.routes() if r.owned}
        except OSError as e:
            log.warning("could not read the routes the last run left: %s", e)
            return frozenset()
        return frozenset(
            n
            for n in cluster.nodes
            if n.pod_cidrs and all((c, (n.ip_for(c.version),)) in found for c in n.pod_cidrs)
        )

    def _report_skipped(self, skipped: Sequence[Problem], mine: str) -> None:
        """An Event on each Node skipped for a conflict with this one. Only the parties of a
        conflict post it, so one bad Node costs the API an Event per node it conflicts with,
        not one per node of the cluster."""
        if self.events is None:
            return
        for p in skipped:
            if p.party == mine:
                self.events.record(
                    "Warning",
                    "NodeSkipped",
                    f"nosdn skips node {p.node}: {p}; node {mine} keeps its routes",
                    about=Involved("Node", p.node or ""),
                )

    # --- one pass -------------------------------------------------------------------------
    def run_pass(self, reasons: set[str], *, full: bool = False) -> bool:
        """One pass; returns False when it should be retried soon."""
        m = self.metrics
        trigger = "resync" if full else sorted(reasons)[0] if reasons else "manual"
        snap = self.cache.snapshot()
        self._update_source_metrics(snap)
        if not snap.synced:
            self.status.skipped_reason = "waiting for the first list of nodes"
            return True
        t0 = time.perf_counter()
        if full or reasons & LOOKUP_REASONS:
            self.invalidate(True)  # next hops may have moved on or off link
            if full:
                self._mtu = self.cfg.mtu
        elif any(r.startswith("netlink-") for r in reasons):
            self.invalidate(False)  # our table changed under us: read it again
        v = self.view(snap, full=full)
        me = v.me
        m.nodes.set(len(snap))
        m.nodes_without_subnet.set(v.without_subnet)
        m.node_problems.set(len(v.problems))
        if me is None:
            self.status.skipped_reason = f"node {self.cfg.node_name} is not in the API (yet)"
            log.warning("%s: routes left as they are", self.status.skipped_reason)
            return True
        if not me.ips:
            self.status.skipped_reason = f"node {me.name} has no usable address"
            self._want(Wish(True, REASON_NO_ADDRESS, self.status.skipped_reason))
            log.warning("%s: routes left as they are", self.status.skipped_reason)
            return True
        self.status.skipped_reason = ""
        m.pass_counter(trigger).inc()
        # taken for the pass: a pass that fails in any way leaves none, and the next is full
        standing, self._standing = self._standing, None
        try:
            scoped = (
                self._event_pass(v, me, standing)
                if standing is not None and not full and reasons == {"node"}
                else None
            )
            if scoped is not None:
                result = scoped
            else:
                result = reconcile_once(
                    v.cluster, Target.for_node(me.name), self.backend, adjacency=self.adjacency
                )
                standing = Standing.of(result)
        except OSError as e:
            m.errors.labels("kernel").inc()
            self.status.last_error = f"kernel: {e}"
            self.status.last_ok = False
            log.error("reading or writing the kernel's routes failed: %s", e)
            return False
        assert standing is not None  # the event pass folded into it, or the full pass made it
        standing.settle(result, held=bool(self.guard.state.held))
        self._standing = standing
        self.status.passes += 1
        self.status.last_pass = result
        ok = self._account(result)
        self._count_peers(v, me, result, standing)
        self._node_chores(v, me, full)
        took = time.perf_counter() - t0
        m.reconcile_duration.observe(took)
        if scoped is not None:
            self.status.event_passes += 1
            m.event_passes.inc()
        else:
            m.full_pass_seconds.set(took)
        return ok

    def _event_pass(self, v: ClusterView, me: Node, standing: Standing) -> PassResult | None:
        """The pass of a Node event: the routes of the nodes it touched, planned, diffed on
        their prefixes alone, applied and folded into ``standing``; None when only a full pass
        will do (this node changed, the last pass left something undone, a prefix is another
        node's too)."""
        touched = v.touched
        if (
            not standing.clean
            or touched is None
            or me.name in touched
            or not self.backend.reads_keys
        ):
            return None
        target = Target.for_node(me.name)
        planned = desired_routes(v.with_nodes((me, *v.touched_nodes)), target)
        for r in planned:
            owner = standing.owner(route_key(r.dst))
            if owner is not None and owner not in touched:
                return None  # wanted by a node not planned here: the full pass decides
        scoped = reconcile_routes(
            planned,
            target,
            self.backend,
            adjacency=self.adjacency,
            scope=Scope(standing.scope(touched, planned), standing.owned),
        )
        return standing.fold(touched, scoped)

    def _account(self, result: PassResult) -> bool:
        m = self.metrics
        d = result.diff
        failed = {e.dst for e in result.errors if e.action != "remove"}
        m.routes_desired.set(len(result.desired))
        m.routes_programmed.set(len(result.desired) - len(d.conflicts) - len(failed))
        m.route_conflicts.set(len(d.conflicts))
        m.offlink_nodes.set(len(result.offlink))
        m.route_writes.inc(result.writes)
        m.set_held(self.guard.state.held, self.guard.seconds_left())
        refused = self.guard.state.refused_total
        if refused > self._last_refused:
            m.deletions_refused.inc(refused - self._last_refused)
            self._last_refused = refused
        if result.writes:
            log.info(
                "routes: %d added, %d changed, %d removed, %d in sync",
                len(d.add),
                len(d.change),
                len(d.remove) if not self.guard.state.held else 0,
                len(d.keep),
                extra={
                    "add": len(d.add),
                    "change": len(d.change),
                    "remove": len(d.remove),
                    "keep": len(d.keep),
                    "writes": result.writes,
                },
            )
        for e in result.errors:
            m.errors.labels("route").inc()
            who = f"node {e.node}" if e.node else "stale route"
            log.error("failed to %s %s (%s): %s", e.action, e.dst, who, e.message)
        conflicts = frozenset(c.wanted.dst for c in d.conflicts)
        for c in d.conflicts:
            if c.wanted.dst not in self._conflicts:
                log.warning(
                    "conflict: route to %s (pods of node %s) is owned by %s: %s; left alone",
                    c.wanted.dst,
                    c.wanted.node,
                    c.found.owner,
                    c.found.detail,
                    extra={"dst": str(c.wanted.dst), "owner": c.found.owner},
                )
        self._conflicts = conflicts
        if self.events is not None:
            for c in d.conflicts:
                self.events.record(
                    "Warning",
                    "RouteConflict",
                    f"route to {c.wanted.dst} (pods of node {c.wanted.node}) is owned by "
                    f"{c.found.owner}: {c.found.detail}; left alone",
                )
            for o in result.offlink if self.announcer is None else ():
                self.events.record(
                    "Warning",
                    "NodeOffLink",
                    f"node {o.node or '?'} ({o.gateway}): {o.reason}; its pod routes are skipped",
                )
            if self.guard.state.held:
                self.events.record(
                    "Warning",
                    "RouteDeletionsRefused",
                    held_message(self.guard),
                )
        ok = not result.errors
        self.status.last_ok = ok
        if ok:
            self.status.last_error = ""
            m.last_success.set_to_current_time()
        else:
            self.status.last_error = f"{len(result.errors)} route write(s) failed"
        return ok

    def _count_peers(
        self, v: ClusterView, me: Node, result: PassResult, standing: Standing
    ) -> None:
        """How many other nodes the pass routed, and when none of several: why."""
        st = self.status
        lost = [c.wanted.dst for c in result.diff.conflicts]
        lost.extend(e.dst for e in result.errors if e.action != "remove")
        also: Iterable[str] = ()
        if self.announcer is not None and self.announcer.established():
            # BGP mode: off-link nodes are reached through the router, which learned their
            # subnets from them over BGP: the path is there, not an error
            also = (o.node for o in result.offlink if o.node is not None)
        routed = standing.routed(lost, me.name, also)
        st.peers, st.peers_routed = v.peers, routed
        self.metrics.peers.set(v.peers)
        self.metrics.peers_routed.set(routed)
        before, st.no_peer_reason = st.no_peer_reason, ""
        if v.peers and not routed:
            if v.skipped:
                why = str(v.skipped[0])
            elif result.offlink:
                o = result.offlink[0]
                why = f"node {o.node or '?'} ({o.gateway}): {o.reason}"
            elif result.diff.conflicts:
                c = result.diff.conflicts[0]
                why = f"{c.wanted.dst} is routed by {c.found.owner}"
            else:
                why = next((p for p in v.problems if not p.startswith(f"node {me.name}:")), "")
            st.no_peer_reason = (
                f"no route to any of the {v.peers} other node(s) with pod subnets"
                + (f", e.g. {why}" if why else "")
            )
            if st.no_peer_reason != before:
                log.warning("%s: not ready", st.no_peer_reason)

    def _want(self, wish: Wish) -> None:
        if self.condition is not None and self.cfg.set_condition:
            self.condition.want(wish)

    def _node_chores(self, v: ClusterView, me: Node, full: bool) -> None:
        cfg = self.cfg
        result = self.status.last_pass
        bgp = self.announcer
        if bgp is not None:
            bgp.sync(me, self.cache.self_object)
        if not me.pod_cidrs:
            self._want(Wish(True, REASON_NO_CIDR, f"node {me.name} has no spec.podCIDRs yet"))
        elif result is not None and result.errors:
            e = result.errors[0]
            self._want(
                Wish(
                    True,
                    REASON_ERRORS,
                    f"{len(result.errors)} route(s) failed, e.g. {e.dst}: {e.message}",
                )
            )
        elif bgp is not None and not bgp.established():
            self._want(Wish(True, REASON_NO_BGP, bgp.why_down()))
        elif self.status.no_peer_reason:
            self._want(Wish(True, REASON_NO_PEER, self.status.no_peer_reason))
        else:
            n = len(result.desired) if result else 0
            self._want(Wish(False, REASON_UP, f"nosdn programmed routes to {n} pod subnet(s)"))
        if not me.pod_cidrs:
            return
        if cfg.cni_conf is not None:
            try:
                text = render_cni(
                    v.with_nodes((me,)), me.name, mtu=self._pod_mtu(me), bridge=cfg.cni_bridge
                )
                if write_if_changed(cfg.cni_conf, text):
                    self.metrics.cni_writes.inc()
                    log.info("wrote %s", cfg.cni_conf, extra={"path": str(cfg.cni_conf)})
            except (OSError, ValueError) as e:
                self.metrics.errors.labels("cni").inc()
                log.error("cannot write the CNI config %s: %s", cfg.cni_conf, e)
        if cfg.ip_forward and (full or self.status.passes == 1):
            ensure_forwarding((c.version for c in me.pod_cidrs), cfg.proc_sys_net)
        if self.egress is not None:
            key = (v.generation, cfg.masquerade)
            if key != self._egress_key:
                self._egress_script = render(me.pod_cidrs, v.masquerade_exempt)
                self._egress_key = key
            try:
                if self.egress.sync(self._egress_script, verify=full):
                    self.metrics.egress_writes.inc()
                    log.info("egress masquerade rules written (nftables table inet nosdn)")
            except EgressError as e:
                self.metrics.errors.labels("egress").inc()
                self._egress_key = None
                log.error("%s", e)

    def _pod_mtu(self, me: Node) -> int:
        if self._mtu is not None:
            return self._mtu
        mtu = FALLBACK_MTU
        if self.local_addresses is not None:
            dev = interface_of(me.ips, self.local_addresses())
            if dev is not None:
                try:
                    mtu = interface_mtu(dev)
                except OSError as e:
                    log.warning("cannot read the MTU of %s (%s); using %d", dev, e, mtu)
        self._mtu = mtu
        return mtu

    def _update_source_metrics(self, snap: Snapshot) -> None:
        m = self.metrics
        m.api_connected.set(1 if snap.connected else 0)
        m.relists.set(snap.relists)

    def refresh_event_metrics(self) -> None:
        """Copy the cache's event counters into the metrics (called before each scrape, so
        the watch thread pays nothing per event for them), and the API connection as it is
        now (not as the last pass saw it)."""
        self._update_source_metrics(self.cache.snapshot())
        counts: dict[tuple[str, bool], int] = {}
        for etype, seen in list(self.cache.events.items()):
            ignored = self.cache.ignored.get(etype, 0)
            counts[(etype, False)] = ignored
            counts[(etype, True)] = max(0, seen - ignored)
        for (etype, rel), total in counts.items():
            prev = self._event_counts.get((etype, rel), 0)
            if total > prev:
                self.metrics.count_events(etype, rel, total - prev)
                self._event_counts[(etype, rel)] = total

    # --- probes ---------------------------------------------------------------------------
    def healthz(self) -> tuple[bool, str]:
        age = time.monotonic() - self.status.heartbeat
        limit = 3 * self.cfg.resync + 10
        if age > limit:
            return False, f"loop stuck: no pass for {age:.0f} s"
        return True, "ok"

    def readyz(self) -> tuple[bool, str]:
        snap = self.cache.snapshot()
        if not snap.synced:
            return False, "waiting for the first list of nodes"
        if not snap.connected:
            return False, (
                "not connected to the Kubernetes API: routes kept as last known, changes "
                "unseen until a list succeeds"
            )
        if self.status.skipped_reason:
            return False, self.status.skipped_reason
        if self.status.last_pass is None:
            return False, "no pass yet"
        if not self.status.settled:
            return False, "settling after the first pass"
        if not self.status.last_ok:
            return False, self.status.last_error or "last pass failed"
        if self.announcer is not None and not self.announcer.established():
            return False, self.announcer.why_down()
        if self.status.no_peer_reason:
            return False, self.status.no_peer_reason
        return True, "ok"
