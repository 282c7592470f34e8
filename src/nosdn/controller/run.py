"""Wiring: build every part of one controller replica, run until SIGTERM, leave the routes.

Threads, each with one job, as in the agent (`nosdn.agent.run`): the node watch (reflector),
the Lease elector, the HTTP server, the condition and event writers; the loop itself runs in the
calling thread. The elector talks to the API through a client of its own with short timeouts,
so a renewal is never queued behind a long watch or list, and a hung request cannot hold the
Lease's fate longer than a retry period or two.

Stopping ends the loop after its current pass, then releases the Lease (the other replica takes
over at its next try instead of waiting for the Lease to expire); no route is removed on the
way out.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import uuid
from types import FrameType

from nosdn.backends.cloud.contract import CloudProvider
from nosdn.backends.cloud.factory import build_provider
from nosdn.controller.config import ControllerConfig
from nosdn.controller.loop import Controller
from nosdn.controller.metrics import ControllerMetrics
from nosdn.daemon.condition import CONDITION, NodeConditions
from nosdn.daemon.events import EventRecorder, Involved
from nosdn.daemon.safety import RELEASE_ANNOTATION, release_token
from nosdn.daemon.server import HealthServer
from nosdn.sources.cache import NodeCache
from nosdn.sources.errors import ApiError
from nosdn.sources.kubernetes import KubeApi, KubeSettings
from nosdn.sources.leader import LeaderElector
from nosdn.sources.reflector import Reflector

log = logging.getLogger("nosdn.controller")

COMPONENT = "nosdn-controller"


def default_identity() -> str:
    """The pod's name ($POD_NAME; in the host network the host name is the node's) or the host
    name, plus a random suffix: a restarted replica is a new candidate, never mistaken for its
    previous life."""
    return f"{os.environ.get('POD_NAME') or socket.gethostname()}_{uuid.uuid4().hex[:8]}"


def lease_settings(settings: KubeSettings, cfg: ControllerConfig) -> KubeSettings:
    timeout = max(1.0, min(5.0, 2 * cfg.retry_period))
    return KubeSettings(
        server=settings.server,
        kubeconfig=settings.kubeconfig,
        context=settings.context,
        connect_timeout=timeout,
        read_timeout=timeout,
    )


class Running:
    """A built replica and its helpers (``stop()`` from any thread or a signal)."""

    def __init__(
        self,
        cfg: ControllerConfig,
        api: KubeApi,
        lease_api: KubeApi,
        provider: CloudProvider | None = None,
    ) -> None:
        self.cfg = cfg
        self.api = api
        self.lease_api = lease_api
        self.identity = cfg.identity or default_identity()
        self.provider = provider if provider is not None else build_provider(cfg.cloud)
        self.cache = NodeCache(cfg.addresses, condition=CONDITION)
        self.reflector = Reflector(
            api, self.cache, watch_timeout=cfg.watch_timeout, deadline=cfg.watch_deadline
        )
        self.metrics = ControllerMetrics()
        self.events = EventRecorder(
            api if cfg.events and not cfg.dry_run else None,
            self.identity,
            namespace=cfg.event_namespace,
            component=COMPONENT,
        )
        self.conditions = NodeConditions(
            api if cfg.set_condition and not cfg.dry_run else None,
            self.cache.condition,
        )
        self.elector = LeaderElector(
            lease_api,
            cfg.lease_namespace,
            cfg.lease_name,
            self.identity,
            lease_duration=cfg.lease_duration,
            renew_deadline=cfg.renew_deadline,
            retry_period=cfg.retry_period,
        )
        self.controller = Controller(
            cfg,
            self.cache,
            self.provider,
            request_relist=self.reflector.request_relist,
            may_write=self.elector.holds,
            metrics=self.metrics,
            events=self.events,
            conditions=self.conditions,
            release=self._release_token,
            lease=Involved(
                "Lease",
                cfg.lease_name,
                api_version="coordination.k8s.io/v1",
                namespace=cfg.lease_namespace,
            ),
        )
        self.cache.set_listener(self.controller.nudge)
        self._stop_election = threading.Event()
        self._elector_thread = threading.Thread(
            target=self.elector.run,
            args=(self._stop_election, self._lead, self._follow),
            name="nosdn-elector",
            daemon=True,
        )
        self.server: HealthServer | None = None
        hp = cfg.metrics_host_port
        if hp is not None:

            def render() -> bytes:
                self.controller.refresh_event_metrics()
                return self.metrics.render()

            self.server = HealthServer(
                hp[0], hp[1], render, self.controller.healthz, self.controller.readyz
            )

    def _release_token(self) -> str | None:
        """The release annotation on our Lease: read only while a guard holds removals (one GET
        a pass then), through the elector's client with its short timeouts."""
        try:
            return release_token(
                self.lease_api.get_lease(self.cfg.lease_namespace, self.cfg.lease_name)
            )
        except ApiError as e:
            log.info("cannot read the lease for %s: %s", RELEASE_ANNOTATION, e)
            return None

    def _lead(self, lost: threading.Event) -> None:
        self.metrics.is_leader.set(1)
        log.info("leading: this replica (%s) programs the routes", self.identity)
        self.controller.nudge("leader")
        lost.wait()

    def _follow(self) -> None:
        self.metrics.is_leader.set(0)
        self.controller.lost_lease()
        log.info("standing by: %s no longer holds the lease", self.identity)

    def run(self) -> None:
        cfg = self.cfg
        log.info(
            "nosdn controller %s for cluster %s: %s, API %s, lease %s/%s, resync %gs%s",
            self.identity,
            cfg.cluster_name,
            self.provider.name,
            self.api.server,
            cfg.lease_namespace,
            cfg.lease_name,
            cfg.resync,
            " (dry run: nothing is written)" if cfg.dry_run else "",
            extra={"identity": self.identity, "cloud": self.provider.name},
        )
        if self.server is not None:
            self.server.start()
            log.info("serving /metrics /healthz /readyz on port %d", self.server.port)
        self.events.start()
        self.conditions.start()
        self.reflector.start()
        self._elector_thread.start()
        try:
            self.controller.run()
        finally:
            self.shutdown()

    def stop(self) -> None:
        self.controller.stop()

    def shutdown(self) -> None:
        self._stop_election.set()
        self._elector_thread.join(timeout=self.cfg.renew_deadline + 5)
        self.reflector.stop()
        self.conditions.stop()
        if self.server is not None:
            self.server.stop()
        self.api.close()
        self.lease_api.close()


def run_controller(
    cfg: ControllerConfig, settings: KubeSettings, provider: CloudProvider | None = None
) -> None:
    """Run one replica in this thread until SIGTERM or SIGINT (``provider``: default, the one
    ``cfg.cloud`` describes)."""
    running = Running(cfg, KubeApi(settings), KubeApi(lease_settings(settings, cfg)), provider)

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("signal %s: stopping (routes stay)", signal.Signals(signum).name)
        running.stop()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
    running.run()
