"""Everything `nosdn agent` can be told, as one frozen value checked before anything starts.

The command line builds it; tests and embedders build it directly. Validation here names the
option, the value and what to use, and runs before the first write (house rule).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from nosdn.agent.bgp import BgpOptions
from nosdn.backends.bird import DEFAULT_DIR as BIRD_DIR
from nosdn.daemon.config import ConfigError, check_metrics_address, metrics_host_port
from nosdn.daemon.safety import DEFAULT_HOLD, DEFAULT_WINDOW, check_guard_options
from nosdn.model import DEFAULT_PROTOCOL, IPNetwork
from nosdn.render.cni import CONFLIST_PATH
from nosdn.sources.nodes import AddressPolicy
from nosdn.sources.reflector import DEFAULT_WATCH_DEADLINE

DEFAULT_METRICS_PORT = 9712


@dataclass(frozen=True, slots=True)
class AgentConfig:
    node_name: str
    table: int = 254
    protocol: int = DEFAULT_PROTOCOL
    #: Full pass at least this often (seconds), whatever the events say.
    resync: float = 30.0
    #: Removals over this share of our routes within ``deletion_window`` seconds are held
    #: for ``deletion_hold`` seconds (or until released), then confirmed by a fresh list.
    max_delete_share: float = 0.5
    deletion_hold: float = DEFAULT_HOLD
    deletion_window: float = DEFAULT_WINDOW
    addresses: AddressPolicy = field(default_factory=AddressPolicy)
    cluster_cidrs: tuple[IPNetwork, ...] = ()
    node_cidr_mask_v4: int = 24
    node_cidr_mask_v6: int = 64
    #: Where to write the CNI conflist; None: do not write one.
    cni_conf: Path | None = Path(CONFLIST_PATH)
    cni_bridge: str = "cni0"
    #: MTU for pods; None: the MTU of the interface holding the node's address.
    mtu: int | None = None
    ip_forward: bool = True
    #: Where /proc/sys/net is (the DaemonSet mounts the host's at /host/proc/sys/net).
    proc_sys_net: Path = Path("/proc/sys/net")
    masquerade: bool = True
    no_masquerade_cidrs: tuple[IPNetwork, ...] = ()
    set_condition: bool = True
    events: bool = True
    event_namespace: str = "default"
    #: ``host:port`` for /metrics, /healthz, /readyz; port 0 picks one; None: no server.
    metrics_address: str | None = f"0.0.0.0:{DEFAULT_METRICS_PORT}"
    #: Seconds per watch request (capped at 3/4 of ``watch_deadline``, see the reflector).
    watch_timeout: int = 30
    #: A watch that brings nothing (no event, bookmark or end) this long is taken for dead.
    watch_deadline: float = DEFAULT_WATCH_DEADLINE
    allocate: bool = False
    lease_namespace: str = "kube-system"
    lease_name: str = "nosdn-ipam"
    #: Do the kernel work (routes, netlink monitor) in this named network namespace.
    netns: str | None = None
    #: BGP mode (``--bgp``): announce this node's pod subnets through BIRD; None: off.
    bgp: BgpOptions | None = None
    #: BIRD's config, control socket and pid file (``--bgp-dir``).
    bgp_dir: Path = BIRD_DIR
    #: Datapath probes (`nosdn.agent.probes`): seconds between batches (0: off), peers per
    #: batch, seconds to wait for answers, per-peer series at most.
    probe_interval: float = 10.0
    probe_batch: int = 64
    probe_timeout: float = 1.0
    probe_series: int = 200

    def __post_init__(self) -> None:
        if not self.node_name:
            raise ConfigError(
                "--node is empty: pass the name of this node's Node object "
                "(in a DaemonSet: env NODE_NAME from spec.nodeName)"
            )
        if not 0 < self.protocol < 256:
            raise ConfigError(f"--protocol {self.protocol}: must be 1..255 (nosdn uses 157)")
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
        if self.allocate and not self.cluster_cidrs:
            raise ConfigError(
                "--allocate-node-cidrs needs --cluster-cidr (the range to hand subnets out of), "
                "e.g. --cluster-cidr 10.244.0.0/16"
            )
        if self.mtu is not None and not 68 <= self.mtu <= 65535:
            raise ConfigError(f"--mtu {self.mtu}: use 68..65535 (1280+ with IPv6), e.g. 1500")
        check_metrics_address(self.metrics_address, DEFAULT_METRICS_PORT)
        if self.probe_interval and not self.probe_interval >= 1:
            raise ConfigError(
                f"--probe-interval {self.probe_interval:g}: use at least 1 second (0: off)"
            )
        if not 1 <= self.probe_batch <= 10_000:
            raise ConfigError(f"--probe-batch {self.probe_batch}: use 1..10000 (default 64)")
        if not 0.05 <= self.probe_timeout <= 10 or (
            self.probe_interval and self.probe_timeout * 2 > self.probe_interval
        ):
            raise ConfigError(
                f"--probe-timeout {self.probe_timeout:g}: use 0.05..10 s, at most half the "
                "--probe-interval (default 1)"
            )
        if self.probe_series < 0:
            raise ConfigError(f"--probe-series {self.probe_series}: use 0 or more (default 200)")

    @property
    def metrics_host_port(self) -> tuple[str, int] | None:
        return metrics_host_port(self.metrics_address)
