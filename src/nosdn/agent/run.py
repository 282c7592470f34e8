"""Wiring: build every part of the agent from its config, run until SIGTERM, leave routes.

Threads, each small and with one job: the node watch (reflector), the netlink monitor, the
HTTP server, the condition and event writers, the allocator's elector; the loop itself runs in
the calling thread. Stopping (SIGTERM/SIGINT) ends the loop after its current pass and stops
the rest; no route, nexthop, CNI file or nftables rule is removed on the way out, so pods keep
working while the agent is restarted or upgraded.
"""

from __future__ import annotations

import ipaddress
import logging
import shutil
import signal
import threading
from collections.abc import Callable
from types import FrameType

from nosdn.agent.announce import Announcer
from nosdn.agent.config import AgentConfig
from nosdn.agent.egress import Egress
from nosdn.agent.loop import Agent
from nosdn.agent.metrics import AgentMetrics
from nosdn.agent.monitor import NetlinkMonitor
from nosdn.agent.probes import Pinger, Prober, RouteUsed, ensure_bridge, kernel_diagnosis
from nosdn.backends.bird import BirdSupervisor
from nosdn.backends.kernel import KernelBackend
from nosdn.backends.kernel.cache import KernelCache
from nosdn.daemon.condition import ConditionSetter
from nosdn.daemon.events import EventRecorder
from nosdn.daemon.server import HealthServer
from nosdn.model import IPAddress
from nosdn.sources.cache import NodeCache
from nosdn.sources.kubernetes import KubeApi, KubeSettings
from nosdn.sources.reflector import Reflector

log = logging.getLogger("nosdn.agent")


def _local_addresses(backend: KernelBackend) -> Callable[[], list[tuple[IPAddress, str]]]:
    def read() -> list[tuple[IPAddress, str]]:
        links = backend.nl.links()
        return [
            (ipaddress.ip_address(a.address), links.get(a.ifindex, ""))
            for a in backend.nl.addresses()
            if len(a.address) in (4, 16)
        ]

    return read


def build_prober(
    cfg: AgentConfig,
    cache: NodeCache,
    metrics: AgentMetrics,
    events: EventRecorder,
    backend: KernelBackend,
) -> Prober | None:
    """The datapath prober (`nosdn.agent.probes`), or None with ``--probe-interval 0``."""
    if not cfg.probe_interval:
        return None
    pinger = Pinger(cfg.netns)

    def node_ips() -> list[IPAddress]:
        me = cache.snapshot().node(cfg.node_name)
        return list(me.node.ips) if me is not None else []

    def route_used() -> RouteUsed:
        # the probe thread's own netlink socket: the loop's is not shared between threads
        return KernelBackend(table=cfg.table, protocol=cfg.protocol, netns=cfg.netns).route_used

    return Prober(
        lambda: cache.snapshot().nodes,
        cfg.node_name,
        metrics,
        pinger=pinger,
        events=events,
        diagnose=kernel_diagnosis(route_used, pinger, node_ips, timeout=cfg.probe_timeout),
        # only where the agent writes the conflist: the bridge is then ours to make
        ensure_bridge=ensure_bridge(cfg.netns, cfg.cni_bridge) if cfg.cni_conf else None,
        interval=cfg.probe_interval,
        batch=cfg.probe_batch,
        timeout=cfg.probe_timeout,
        max_series=cfg.probe_series,
    )


class Running:
    """A built agent and its helpers (``stop()`` from any thread or a signal)."""

    def __init__(self, cfg: AgentConfig, api: KubeApi) -> None:
        self.cfg = cfg
        self.api = api
        self.cache = NodeCache(cfg.addresses, self_name=cfg.node_name)
        self.reflector = Reflector(
            api, self.cache, watch_timeout=cfg.watch_timeout, deadline=cfg.watch_deadline
        )
        self.table = KernelBackend(table=cfg.table, protocol=cfg.protocol, netns=cfg.netns)
        # what the agent keeps of its table between passes: the netlink monitor below reports
        # every kernel change that makes it stale, and the pass it wakes invalidates it
        self.backend = KernelCache(self.table)
        self.metrics = AgentMetrics()

        def uid() -> str | None:
            obj = self.cache.self_object
            meta = (obj or {}).get("metadata") or {}
            return meta.get("uid")

        self.events = EventRecorder(
            api if cfg.events else None, cfg.node_name, namespace=cfg.event_namespace, uid=uid
        )
        self.condition = ConditionSetter(
            api if cfg.set_condition else None, cfg.node_name, lambda: self.cache.self_object
        )
        egress: Egress | None = Egress(enabled=cfg.masquerade)
        if not cfg.masquerade and shutil.which("nft") is None:
            egress = None  # nothing to turn off
        self.announcer: Announcer | None = None
        if cfg.bgp is not None:
            self.announcer = Announcer(
                cfg.bgp,
                BirdSupervisor(cfg.bgp_dir, cfg.netns),
                self.metrics,
                node_name=cfg.node_name,
                events=self.events,
            )
        self.agent = Agent(
            cfg,
            self.cache,
            self.backend,
            request_relist=self.reflector.request_relist,
            adjacency=self.backend.adjacency,
            local_addresses=_local_addresses(self.table),
            invalidate=lambda lookups: self.backend.invalidate(lookups=lookups),
            metrics=self.metrics,
            events=self.events,
            condition=self.condition,
            egress=egress,
            announcer=self.announcer,
        )
        self.cache.set_listener(self.agent.nudge)
        if self.announcer is not None:
            self.announcer.on_change = self.agent.nudge  # a session up or down: pass again

        self.monitor = NetlinkMonitor(
            self.agent.nudge,
            protocol=cfg.protocol,
            table=cfg.table,
            netns=cfg.netns,
            invalidate=lambda: self.agent.nudger.note("netlink-lookups"),
            wanted=self.agent.wants_prefix,
            writer=self.table.nl.pid,
        )
        self.prober = build_prober(cfg, self.cache, self.metrics, self.events, self.table)
        self.server: HealthServer | None = None
        hp = cfg.metrics_host_port
        if hp is not None:

            def render() -> bytes:
                self.agent.refresh_event_metrics()
                return self.metrics.render()

            pages = {} if self.prober is None else {"/probes": self.prober.report_json}
            self.server = HealthServer(
                hp[0], hp[1], render, self.agent.healthz, self.agent.readyz, extra=pages
            )
        self.allocator: Callable[[], None] | None = None
        if cfg.allocate:
            from nosdn.agent.allocator import start_allocator

            self.allocator = start_allocator(cfg, api, self.cache, self.metrics)

    def run(self) -> None:
        log.info(
            "nosdn agent for node %s: API %s, table %d, protocol %d, resync %gs",
            self.cfg.node_name,
            self.api.server,
            self.cfg.table,
            self.cfg.protocol,
            self.cfg.resync,
            extra={"node": self.cfg.node_name},
        )
        if self.server is not None:
            self.server.start()
            log.info("serving /metrics /healthz /readyz on port %d", self.server.port)
        self.events.start()
        self.condition.start()
        self.monitor.start()
        self.reflector.start()
        if self.announcer is not None:
            self.announcer.start()
        if self.prober is not None:
            self.prober.start()
        try:
            self.agent.run(freeze_gc=True)
        finally:
            self.shutdown()

    def stop(self) -> None:
        self.agent.stop()

    def shutdown(self) -> None:
        if self.allocator is not None:
            self.allocator()
        self.reflector.stop()
        if self.prober is not None:
            self.prober.stop()
        if self.announcer is not None:
            self.announcer.stop()  # BIRD keeps running: the routers keep the routes
        self.monitor.stop()
        self.condition.stop()
        if self.server is not None:
            self.server.stop()
        self.table.close()
        self.api.close()


def run_agent(cfg: AgentConfig, settings: KubeSettings) -> None:
    """Run the agent in this thread until SIGTERM or SIGINT."""
    running = Running(cfg, KubeApi(settings))

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("signal %s: stopping (routes stay)", signal.Signals(signum).name)
        running.stop()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
    running.run()
