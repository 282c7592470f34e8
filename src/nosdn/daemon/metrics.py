"""The Prometheus series every nosdn daemon shares, in a registry of each daemon's own.

A registry per daemon (not the library's global one) so that several can live in one process
(tests, embedding) and ``/metrics`` shows exactly nosdn's series plus the process collector.
Names follow Prometheus conventions: ``nosdn_`` prefix, ``_total`` counters, ``_seconds``
durations. Per-event counters use pre-bound label children so a watch event costs one
increment, not a label lookup.

`RouteMetrics` holds the series of routes, passes, writes, node events, the deletion guard and
the API connection: the agent (`nosdn.agent.metrics.AgentMetrics`) and the cloud route
controller (`nosdn.controller.metrics`) add their own to it, so one dashboard reads both.
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
