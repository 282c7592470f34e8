"""The agent's own Prometheus series, beside the ones every daemon shares
(`nosdn.daemon.metrics.RouteMetrics`): CNI and egress writes, peers, BGP sessions, the
datapath probes.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from nosdn.daemon.metrics import RouteMetrics


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
        self.full_pass_seconds = Gauge(
            "nosdn_full_pass_seconds",
            "How long the last full pass took (every resync is one): the cost of recomputing "
            "the whole cluster at its size; a Node event's pass plans only what it changed",
            registry=r,
        )
        self.event_passes = Counter(
            "nosdn_event_passes_total",
            "Passes that planned only the nodes a Node event changed (the rest are full)",
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
            "0 if not (unreachable peers first, up to --probe-series peers)",
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
