"""The agent's Prometheus metrics, in a registry of its own.

A registry per agent (not the library's global one) so that several agents can live in one
process (tests, embedding) and ``/metrics`` shows exactly nosdn's series plus the process
collector. Names follow Prometheus conventions: ``nosdn_`` prefix, ``_total`` counters,
``_seconds`` durations. Per-event counters use pre-bound label children so a watch event costs
one increment, not a label lookup.

`RouteMetrics` holds the series every nosdn daemon shares (routes, passes, writes, node
events, deletion guard, API connection): the agent (`AgentMetrics`) and the cloud route
controller add their own to it, so one dashboard reads both.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)

# no "_created" twin per counter: noise in every scrape
disable_created_metrics()  # type: ignore[no-untyped-call]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class RouteMetrics:
    """The series shared by the node agent and the cloud route controller."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = self.registry = registry or CollectorRegistry()
        ProcessCollector(registry=r)
        self._copied: dict[tuple[str, bool], int] = {}
        self.routes_desired = Gauge(
            "nosdn_routes_desired",
            "Routes that should exist (agent: this node's, after off-link ones; controller: "
            "every pod subnet, per managed table)",
            registry=r,
        )
        self.routes_programmed = Gauge(
            "nosdn_routes_programmed", "Desired routes installed as wanted", registry=r
        )
        self.route_conflicts = Gauge(
            "nosdn_route_conflicts",
            "Wanted prefixes routed by someone else (left alone, reported)",
            registry=r,
        )
        self.nodes = Gauge("nosdn_nodes", "Nodes known from the API", registry=r)
        self.nodes_without_subnet = Gauge(
            "nosdn_nodes_without_pod_cidr", "Nodes skipped: no spec.podCIDRs yet", registry=r
        )
        self.node_problems = Gauge(
            "nosdn_node_problems",
            "Nodes skipped: their addresses or subnets are invalid",
            registry=r,
        )
        self.reconcile_duration = Histogram(
            "nosdn_reconcile_duration_seconds",
            "Duration of one reconcile pass",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=r,
        )
        passes = Counter(
            "nosdn_reconcile_passes_total", "Reconcile passes, by trigger", ["trigger"], registry=r
        )
        self._passes = passes
        self.route_writes = Counter(
            "nosdn_route_writes_total",
            "Route writes made (kernel routes and nexthops, or cloud routes)",
            registry=r,
        )
        self.errors = Counter("nosdn_errors_total", "Failures, by kind", ["kind"], registry=r)
        self.errors.labels("route")  # at 0 from the start: rate() and dashboards see a series
        events = Counter(
            "nosdn_node_events_total",
            "Node watch events, by type and whether they changed routing input",
            ["type", "relevant"],
            registry=r,
        )
        self._events = events
        self.deletions_refused = Counter(
            "nosdn_deletions_refused_total",
            "Route deletions refused because the node list shrank too much at once",
            registry=r,
        )
        self.deletions_held = Gauge(
            "nosdn_deletions_held",
            "Route removals held back now: the node list shrank too much at once",
            registry=r,
        )
        self.deletions_held_until = Gauge(
            "nosdn_deletions_held_until_timestamp_seconds",
            "When the current hold of route removals ends (0: none held); after it a fresh "
            "node list confirms them, or the release annotation lets them go at once",
            registry=r,
        )
        self.api_connected = Gauge(
            "nosdn_api_connected", "1 while the node watch is connected", registry=r
        )
        self.relists = Gauge("nosdn_node_lists", "Complete node lists read since start", registry=r)
        self.last_success = Gauge(
            "nosdn_last_successful_pass_timestamp_seconds",
            "When a pass last ended with every route programmed",
            registry=r,
        )

    def set_held(self, held: int, seconds_left: float | None) -> None:
        """Publish what a deletion guard holds, and until when (wall clock)."""
        self.deletions_held.set(held)
        self.deletions_held_until.set(
            0 if not held or seconds_left is None else time.time() + seconds_left
        )

    def pass_counter(self, trigger: str) -> Counter:
        return self._passes.labels(trigger)

    def count_events(self, etype: str, relevant: bool, n: int) -> None:
        if n:
            self._events.labels(etype, "true" if relevant else "false").inc(n)

    def copy_event_counts(self, seen: Mapping[str, int], ignored: Mapping[str, int]) -> None:
        """Bring ``nosdn_node_events_total`` up to a node cache's own counters (``events`` and
        ``ignored``), called before each scrape so the watch thread pays nothing per event."""
        done = self._copied
        for etype, total in list(seen.items()):
            skipped = ignored.get(etype, 0)
            for relevant, n in ((False, skipped), (True, max(0, total - skipped))):
                prev = done.get((etype, relevant), 0)
                if n > prev:
                    self.count_events(etype, relevant, n - prev)
                    done[(etype, relevant)] = n

    def render(self) -> bytes:
        return generate_latest(self.registry)


class AgentMetrics(RouteMetrics):
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        super().__init__(registry)
        r = self.registry
        for kind in ("kernel", "cni", "egress"):
            self.errors.labels(kind)
        self.peers = Gauge(
            "nosdn_peers",
            "Other nodes with pod subnets (whether they can be routed or not)",
            registry=r,
        )
        self.peers_routed = Gauge(
            "nosdn_peers_routed",
            "Other nodes this node has a route of its own to (0 of several peers: not ready)",
            registry=r,
        )
        self.offlink_nodes = Gauge(
            "nosdn_offlink_nodes",
            "Nodes whose address is not on a directly connected network (routes skipped)",
            registry=r,
        )
        self.cni_writes = Counter(
            "nosdn_cni_config_writes_total", "Times the CNI conflist was (re)written", registry=r
        )
        self.egress_writes = Counter(
            "nosdn_egress_rules_writes_total", "Times the nftables table was replaced", registry=r
        )
        self.is_leader = Gauge(
            "nosdn_allocator_leader", "1 while this agent holds the allocator Lease", registry=r
        )
        self.allocations = Counter(
            "nosdn_pod_cidr_allocations_total",
            "Pod CIDRs set on nodes by the allocator",
            registry=r,
        )
        # BGP mode (`nosdn.agent.announce`): per peer, labelled by its address
        self.bgp_session_up = Gauge(
            "nosdn_bgp_session_up",
            "1 while the BGP session to this peer is Established (BGP mode)",
            ["peer"],
            registry=r,
        )
        self.bgp_prefixes_announced = Gauge(
            "nosdn_bgp_prefixes_announced",
            "Prefixes this node exports to the peer (its own pod subnets, service CIDRs)",
            ["peer"],
            registry=r,
        )
        self.bgp_session_flaps = Counter(
            "nosdn_bgp_session_flaps_total",
            "Times an Established session to the peer went down",
            ["peer"],
            registry=r,
        )
        self.bgp_bird_starts = Counter(
            "nosdn_bgp_bird_starts_total",
            "Times the agent started BIRD (not counting a running one it adopted)",
            registry=r,
        )
        self.bgp_configures = Counter(
            "nosdn_bgp_bird_configures_total",
            "Times BIRD was told to load a changed config (birdc configure)",
            registry=r,
        )
        # datapath probes (`nosdn.agent.probes`): ICMP from this node's pod bridge address to
        # each peer's; per-peer series only up to a bound (5,000 nodes would make 25 million)
        self.probe_peers = Gauge(
            "nosdn_probe_peers",
            "Peers by what the datapath probe last saw (reachable, unreachable, unknown: not "
            "probed yet)",
            ["state"],
            registry=r,
        )
        self.probe_peer_reachable = Gauge(
            "nosdn_probe_peer_reachable",
            "1 if the peer's pod bridge address answered the last probe through the pod path, "
            "0 if not (unreachable peers first, up to --probe-peer-series peers)",
            ["peer"],
            registry=r,
        )
        self.probe_rtt = Histogram(
            "nosdn_probe_rtt_seconds",
            "Round trip of an answered datapath probe (ICMP echo, pod bridge to pod bridge)",
            buckets=(
                0.0001,
                0.00025,
                0.0005,
                0.001,
                0.0025,
                0.005,
                0.01,
                0.025,
                0.05,
                0.1,
                0.25,
                1,
            ),
            registry=r,
        )
        self.probes = Counter(
            "nosdn_probes_total",
            "Datapath probes sent, by result (answered, lost)",
            ["result"],
            registry=r,
        )
