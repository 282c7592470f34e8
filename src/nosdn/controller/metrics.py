"""The controller's Prometheus metrics: the agent's shared series plus the cloud's own.

Shared with the agent (`nosdn.daemon.metrics.RouteMetrics`): routes desired and programmed,
conflicts, writes, passes, node events, the deletion guard, the API connection. Added here:
who leads, what the cloud API was asked (``nosdn_cloud_api_calls_total{op}``, retries as
``retry:<op>``: the rate-limit budget is what runs out first in a big VPC), how often a plan was
refused for want of table capacity, and how many nodes carry ``RouteCreated``.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

from nosdn.daemon.metrics import RouteMetrics


class ControllerMetrics(RouteMetrics):
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        super().__init__(registry)
        r = self.registry
        self.errors.labels("cloud")
        self.is_leader = Gauge(
            "nosdn_controller_leader", "1 while this replica holds the controller Lease", registry=r
        )
        self.cloud_calls = Counter(
            "nosdn_cloud_api_calls", "Cloud API calls made, by operation", ["op"], registry=r
        )
        self.tables = Gauge("nosdn_route_tables", "Route tables managed (last pass)", registry=r)
        self.capacity_refusals = Counter(
            "nosdn_route_capacity_refusals_total",
            "Passes refused whole because a table could not hold the plan",
            registry=r,
        )
        self.nodes_routed = Gauge(
            "nosdn_nodes_route_created",
            "Nodes whose routes exist in every managed table (NetworkUnavailable=False)",
            registry=r,
        )
        self.nodes_unroutable = Gauge(
            "nosdn_nodes_route_missing",
            "Nodes whose routes cannot be programmed (NetworkUnavailable=True, with the reason)",
            registry=r,
        )
