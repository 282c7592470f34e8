"""Everything `nosdn controller` can be told, as one frozen value checked before anything starts.

The command line builds it; tests build it directly. As with the agent's config, every refusal
names the option, the value and what to use, and comes before the first API call. The cloud
half is the same `CloudOptions` that ``nosdn plan/apply --cloud`` take, so one flag means one
thing everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from nosdn.backends.cloud.factory import CloudOptions
from nosdn.daemon.config import ConfigError, check_metrics_address, metrics_host_port
from nosdn.daemon.safety import DEFAULT_HOLD, DEFAULT_WINDOW, check_guard_options
from nosdn.model import IPNetwork
from nosdn.sources.nodes import AddressPolicy
from nosdn.sources.reflector import DEFAULT_WATCH_DEADLINE

#: Beside the agent's 9712, as both may run in the host network of one node.
DEFAULT_METRICS_PORT = 9713
DEFAULT_LEASE = "nosdn-controller"


@dataclass(frozen=True, slots=True)
class ControllerConfig:
    cloud: CloudOptions
    #: The pod ranges: routes inside them that point at the cluster's instances are ours.
    cluster_cidrs: tuple[IPNetwork, ...]
    #: Names the cluster in the cloud: the AWS table tag ``kubernetes.io/cluster/<name>``,
    #: the GCE route names and descriptions.
    cluster_name: str = "kubernetes"
    node_cidr_mask_v4: int = 24
    node_cidr_mask_v6: int = 64
    addresses: AddressPolicy = field(default_factory=AddressPolicy)
    #: Full pass at least this often (seconds): one describe per table each time.
    resync: float = 30.0
    #: The deletion guard, per table (`nosdn.daemon.safety`).
    max_delete_share: float = 0.5
    deletion_hold: float = DEFAULT_HOLD
    deletion_window: float = DEFAULT_WINDOW
    #: Seconds per watch request (capped at 3/4 of ``watch_deadline``, see the reflector).
    watch_timeout: int = 30
    #: A watch that brings nothing (no event, bookmark or end) this long is taken for dead.
    watch_deadline: float = DEFAULT_WATCH_DEADLINE
    #: Compute and report every pass, write nothing (no routes, no conditions).
    dry_run: bool = False
    lease_namespace: str = "kube-system"
    lease_name: str = DEFAULT_LEASE
    #: This replica's name in the Lease (default: host name plus a random suffix).
    identity: str = ""
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0
    set_condition: bool = True
    events: bool = True
    #: Namespace of Events about Nodes (cluster-scoped); those about the Lease go to its own.
    event_namespace: str = "default"
    metrics_address: str | None = f"0.0.0.0:{DEFAULT_METRICS_PORT}"

    def __post_init__(self) -> None:
        if not self.cluster_cidrs:
            raise ConfigError(
                "--cluster-cidr is required: the pod range(s) of the cluster, e.g. "
                "--cluster-cidr 10.244.0.0/16 (only routes inside it are ever changed or removed)"
            )
        if not self.cluster_name.strip():
            raise ConfigError("--cluster-name is empty: name the cluster, e.g. --cluster-name prod")
        if self.resync < 1:
            raise ConfigError(f"--resync {self.resync}: use at least 1 second (default 30)")
        try:
            check_guard_options(self.max_delete_share, self.deletion_hold, self.deletion_window)
        except ValueError as e:
            raise ConfigError(str(e)) from None
        if self.watch_timeout < 1:
            raise ConfigError(f"--watch-timeout {self.watch_timeout}: use at least 1 second")
        if self.watch_deadline < 2:
            raise ConfigError(
                f"--watch-deadline {self.watch_deadline:g}: use at least 2 seconds "
                f"(default {DEFAULT_WATCH_DEADLINE:g})"
            )
        if not 0 < self.retry_period < self.renew_deadline < self.lease_duration:
            raise ConfigError(
                "leader election needs --lease-retry-period < --lease-renew-deadline < "
                f"--lease-duration (got {self.retry_period:g}, {self.renew_deadline:g}, "
                f"{self.lease_duration:g}), e.g. 2, 10, 15"
            )
        check_metrics_address(self.metrics_address, DEFAULT_METRICS_PORT)

    @property
    def metrics_host_port(self) -> tuple[str, int] | None:
        return metrics_host_port(self.metrics_address)
