"""`nosdn agent` (the node daemon) and `nosdn manifests` (the objects that deploy it, or with
``--controller`` the cloud route controller).

Options are parsed and checked here, all before anything starts; the daemons live in
`nosdn.agent` and `nosdn.controller`. Boolean switches take a value (``--masquerade=false``)
because that is how they are written in a DaemonSet's args. The options both daemons take
(the API connection, node addresses, cluster CIDRs, resync, logging, probes, events) are
defined once here and used by ``nosdn controller`` (`nosdn.cli._controller_cmds`) too; those
that every reader of Node objects takes (the API connection, node addresses, cluster CIDRs)
live in `nosdn.cli._click`, where the one-shot commands (status, doctor, ...) find them.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from nosdn.cli._click import (
    API_PANEL,
    address_policy,
    cluster_cidr_option,
    command,
    kube_api_options,
    nets,
    node_address_options,
    option,
    require_net_admin,
    stack,
)
from nosdn.cli._output import EXIT_FAILURE, fail
from nosdn.cli._params import TABLE, reexec_in_netns
from nosdn.model import DEFAULT_PROTOCOL

F = TypeVar("F", bound=Callable[..., Any])

BOOL: dict[str, Any] = {"type": click.BOOL, "metavar": "true|false"}
API = API_PANEL
ROUTING = "Nodes and routes"
SERVING = "Logs, probes, events"
BGP = "BGP mode (--bgp): announce this node's pod subnets to its routers"

#: The agent's BGP mode (`nosdn.agent.bgp`): BIRD on the node, peers and session options.
bgp_options = stack(
    option(
        "--bgp",
        is_flag=True,
        help="Announce this node's pod subnets over BGP (BIRD 2, run and supervised by the "
        "agent); host routes stay for same-segment nodes.",
        panel=BGP,
    ),
    option("--bgp-asn", type=int, default=64512, help="This node's AS number.", panel=BGP),
    option(
        "--bgp-peer",
        multiple=True,
        metavar="ADDRESS:ASN",
        help="A router to announce to (repeatable; IPv6 as [ADDR]:ASN). A Node annotation "
        "nosdn.io/bgp-peers (and nosdn.io/bgp-asn) overrides them for its rack.",
        panel=BGP,
    ),
    option("--bgp-password-file", help="MD5 password (a mounted Secret's file).", panel=BGP),
    option("--bgp-multihop", type=int, default=0, help="eBGP multihop TTL (0: direct).", panel=BGP),
    option("--bgp-bfd", default=False, help="BFD on every session.", panel=BGP, **BOOL),
    option(
        "--bgp-graceful-restart-time",
        type=int,
        default=120,
        help="Seconds the routers keep this node's routes while BIRD or the agent restarts.",
        panel=BGP,
    ),
    option(
        "--bgp-service-cidr",
        multiple=True,
        help="Service CIDR announced by the --bgp-service-via nodes (repeatable).",
        panel=BGP,
    ),
    option(
        "--bgp-service-via",
        multiple=True,
        help="Nodes (kube-proxy) that announce the service CIDRs (repeatable).",
        panel=BGP,
    ),
    option(
        "--bgp-dir",
        type=click.Path(),
        default="/run/nosdn-bird",
        help="BIRD's config, control socket and pid file (status and doctor read it).",
        panel=BGP,
    ),
)


def bgp_config(
    *,
    bgp: bool,
    bgp_asn: int,
    bgp_peer: tuple[str, ...],
    bgp_password_file: str | None,
    bgp_multihop: int,
    bgp_bfd: bool,
    bgp_graceful_restart_time: int,
    bgp_service_cidr: tuple[str, ...],
    bgp_service_via: tuple[str, ...],
) -> Any:
    """The `BgpOptions` of the flags (None without ``--bgp``); raises ValueError naming the
    flag and value."""
    from nosdn.agent.bgp import BgpOptions, parse_routers

    if not bgp:
        if bgp_peer:
            raise ValueError("--bgp-peer goes with --bgp")
        return None
    if bgp_password_file:
        from nosdn.render.bgp import read_password

        read_password(bgp_password_file, f"--bgp-password-file {bgp_password_file}")
    return BgpOptions(
        asn=bgp_asn,
        routers=parse_routers(",".join(bgp_peer), "--bgp-peer") if bgp_peer else (),
        graceful_restart_time=bgp_graceful_restart_time,
        password_file=bgp_password_file,
        multihop=bgp_multihop,
        bfd=bgp_bfd,
        service_cidrs=nets(bgp_service_cidr, "--bgp-service-cidr"),
        service_via=bgp_service_via,
    )


#: How to reach the API server (both daemons; the first three are every API reader's).
api_options = stack(
    kube_api_options(API),
    option(
        "--watch-timeout",
        type=int,
        default=30,
        help="Seconds per watch request (at most 3/4 of the watch deadline).",
        panel=API,
    ),
    option(
        "--watch-deadline",
        type=float,
        default=40.0,
        help="Seconds a watch may bring nothing (no event, bookmark or end) before it is taken "
        "for dead: reported disconnected, not ready, and the nodes listed again.",
        panel=API,
    ),
)
#: Which nodes and addresses, which ranges, how often (both daemons).
routing_options = stack(
    cluster_cidr_option(ROUTING),
    node_address_options(ROUTING),
    option("--node-cidr-mask-size", "mask_v4", type=int, default=24, panel=ROUTING),
    option("--node-cidr-mask-size-ipv6", "mask_v6", type=int, default=64, panel=ROUTING),
    option("--resync", type=float, default=30.0, help="Full pass every N seconds.", panel=ROUTING),
    option(
        "--max-delete-share",
        type=click.FloatRange(0, 1, min_open=True),
        default=0.5,
        help="Hold route removals once they exceed this share of our routes within "
        "--deletion-window.",
        panel=ROUTING,
    ),
    option(
        "--deletion-hold",
        type=float,
        default=300.0,
        help="Seconds held removals wait before a fresh node list may confirm them (or set the "
        "annotation nosdn.io/release-deletions to release them at once).",
        panel=ROUTING,
    ),
    option(
        "--deletion-window",
        type=float,
        default=60.0,
        help="Seconds over which removals are added up against --max-delete-share.",
        panel=ROUTING,
    ),
)


def serving_options(metrics_port: int) -> Callable[[F], F]:
    """Logs, /metrics and probes, the NetworkUnavailable condition, Events (both daemons)."""
    return stack(
        option(
            "--metrics-address",
            default=f"0.0.0.0:{metrics_port}",
            help="HOST:PORT for /metrics /healthz /readyz ('' off).",
            panel=SERVING,
        ),
        option(
            "--set-condition",
            "condition",
            default=True,
            help="Set NetworkUnavailable on Nodes.",
            panel=SERVING,
            **BOOL,
        ),
        option("--events", default=True, help="Post Kubernetes Events.", panel=SERVING, **BOOL),
        option(
            "--event-namespace",
            default="default",
            help="Namespace of Events about Nodes.",
            panel=SERVING,
        ),
        option(
            "--log-format",
            type=click.Choice(["text", "json"]),
            default="text",
            help="text for people, json for log collectors.",
            panel=SERVING,
        ),
        option(
            "--log-level",
            type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False),
            default="info",
            panel=SERVING,
        ),
    )


# --- nosdn agent -----------------------------------------------------------------------------
@command("agent")
@option(
    "--node",
    "node_name",
    envvar="NODE_NAME",
    default="",
    show_default=False,
    help="This node's Node object name (DaemonSet: env NODE_NAME from spec.nodeName).",
)
@option(
    "--node-name",
    "old_node_name",
    default=None,
    hidden=True,
    help="The old name of --node (kept for manifests made before it).",
)
@api_options
@routing_options
@option(
    "--allocate-node-cidrs",
    "allocate",
    is_flag=True,
    help="Elect one agent (Lease) to set spec.podCIDRs on nodes that lack it.",
    panel=ROUTING,
)
@option("--lease-namespace", default="kube-system", panel=ROUTING)
@option("--lease-name", default="nosdn-ipam", panel=ROUTING)
@option(
    "--netns",
    help="Run in this named network namespace (as `ip netns exec NETNS nosdn agent ...`).",
)
@option("--table", type=TABLE, default="main", help="Kernel routing table (main = 254).")
@option("--protocol", type=int, default=DEFAULT_PROTOCOL, help="Protocol number of our routes.")
@option(
    "--cni-conf",
    type=click.Path(),
    default="/etc/cni/net.d/10-nosdn.conflist",
    help="Conflist ('' none).",
)
@option("--cni-bridge", default="cni0", help="Pod bridge name.")
@option("--mtu", type=int, help="Pod MTU (default: MTU of the node address's interface).")
@option("--ip-forward", default=True, **BOOL)
@option("--proc-sys-net", default="/proc/sys/net")
@option("--masquerade", default=True, help="Masquerade pod traffic leaving the cluster.", **BOOL)
@option("--no-masquerade-cidr", multiple=True, help="Never masquerade to these (repeatable).")
@option(
    "--probe-interval",
    type=float,
    default=10.0,
    help="Seconds between datapath probe batches (0: no probes).",
    panel=SERVING,
)
@option("--probe-batch", type=int, default=64, help="Peers probed per batch.", panel=SERVING)
@option(
    "--probe-timeout", type=float, default=1.0, help="Seconds to wait for answers.", panel=SERVING
)
@option(
    "--probe-series",
    type=int,
    default=200,
    help="Per-peer reachability series at most (unreachable peers first).",
    panel=SERVING,
)
@bgp_options
@serving_options(9712)
def agent(
    *,
    node_name: str,
    old_node_name: str | None,
    netns: str | None,
    kubeconfig: str | None,
    kube_server: str | None,
    context: str | None,
    watch_timeout: int,
    watch_deadline: float,
    cluster_cidr: tuple[str, ...],
    address_types: str,
    address_cidr: tuple[str, ...],
    mask_v4: int,
    mask_v6: int,
    resync: float,
    max_delete_share: float,
    deletion_hold: float,
    deletion_window: float,
    allocate: bool,
    lease_namespace: str,
    lease_name: str,
    table: int,
    protocol: int,
    cni_conf: str,
    cni_bridge: str,
    mtu: int | None,
    ip_forward: bool,
    proc_sys_net: str,
    masquerade: bool,
    no_masquerade_cidr: tuple[str, ...],
    metrics_address: str,
    condition: bool,
    events: bool,
    event_namespace: str,
    log_format: str,
    log_level: str,
    bgp_dir: str,
    probe_interval: float,
    probe_batch: int,
    probe_timeout: float,
    probe_series: int,
    **bgp_flags: Any,
) -> None:
    """Run the node agent: keep this node's routes, CNI config and egress rules equal to the
    cluster's Node objects, repair what others break, never flush. Runs until SIGTERM."""
    from nosdn.agent.config import AgentConfig
    from nosdn.daemon.config import ConfigError
    from nosdn.daemon.logs import setup_logging
    from nosdn.sources.errors import ApiError
    from nosdn.sources.kubernetes import KubeSettings

    reexec_in_netns(netns)
    node_name = old_node_name if old_node_name is not None and not node_name else node_name
    try:
        cfg = AgentConfig(
            node_name=node_name,
            table=table,
            protocol=protocol,
            resync=resync,
            max_delete_share=max_delete_share,
            deletion_hold=deletion_hold,
            deletion_window=deletion_window,
            addresses=address_policy(address_types, address_cidr),
            cluster_cidrs=nets(cluster_cidr, "--cluster-cidr"),
            node_cidr_mask_v4=mask_v4,
            node_cidr_mask_v6=mask_v6,
            cni_conf=Path(cni_conf) if cni_conf else None,
            cni_bridge=cni_bridge,
            mtu=mtu,
            ip_forward=ip_forward,
            proc_sys_net=Path(proc_sys_net),
            masquerade=masquerade,
            no_masquerade_cidrs=nets(no_masquerade_cidr, "--no-masquerade-cidr"),
            set_condition=condition,
            events=events,
            event_namespace=event_namespace,
            metrics_address=metrics_address or None,
            watch_timeout=watch_timeout,
            watch_deadline=watch_deadline,
            allocate=allocate,
            lease_namespace=lease_namespace,
            lease_name=lease_name,
            bgp=bgp_config(**bgp_flags),
            bgp_dir=Path(bgp_dir),
            probe_interval=probe_interval,
            probe_batch=probe_batch,
            probe_timeout=probe_timeout,
            probe_series=probe_series,
        )
    except (ConfigError, ValueError) as e:
        fail(str(e))
    require_net_admin("the agent writes routes: it")
    setup_logging(log_format, log_level)
    from nosdn.agent.run import run_agent

    try:
        run_agent(cfg, KubeSettings(server=kube_server, kubeconfig=kubeconfig, context=context))
    except ApiError as e:
        fail(str(e), EXIT_FAILURE)


# --- nosdn manifests -------------------------------------------------------------------------
CONTROLLER = "The cloud route controller (--controller)"


@command("manifests")
@option("--image", default="", show_default=False, help="Container image of nosdn.")
@option(
    "--cluster-cidr",
    multiple=True,
    help="Pod range(s): exempt from masquerade; the controller's routes live in them (repeatable).",
)
@option(
    "--allocate-node-cidrs",
    "allocate",
    is_flag=True,
    help="Include the allocator (Lease, nodes patch).",
)
@option("--namespace", default="kube-system")
@option("--masquerade", default=True, **BOOL)
@option(
    "--monitoring",
    is_flag=True,
    help="Add scrape annotations, a PodMonitor and the alert rules as a PrometheusRule.",
)
@option(
    "--dashboard",
    is_flag=True,
    help='Add the Grafana dashboard as a ConfigMap labelled grafana_dashboard: "1" (for the '
    "Grafana sidecar).",
)
@option(
    "--controller",
    is_flag=True,
    help="Print the cloud route controller's Deployment and RBAC instead of the agent's.",
    panel=CONTROLLER,
)
@option(
    "--cloud",
    type=click.Choice(["aws", "gce", "azure"]),
    help="The controller's cloud.",
    panel=CONTROLLER,
)
@option(
    "--cluster-name",
    default="kubernetes",
    help="Tag/name of the cluster in the cloud.",
    panel=CONTROLLER,
)
@option(
    "--uninstall",
    is_flag=True,
    help="Print the one-shot cleanup instead: a DaemonSet removing nosdn's routes, nexthops, "
    "conflist and nftables table from every node (apply it once the agent is deleted).",
)
@option("--replicas", type=int, default=2, help="Controller replicas.", panel=CONTROLLER)
@option("--route-table", multiple=True, help="AWS, Azure: manage these tables.", panel=CONTROLLER)
@option("--capacity", type=int, help="Routes a table may hold.", panel=CONTROLLER)
@option("--aws-region", help="AWS region.", panel=CONTROLLER)
@option("--gce-project", help="GCE project.", panel=CONTROLLER)
@option("--gce-network", default="default", help="GCE VPC network.", panel=CONTROLLER)
@option("--gce-zone", help="Zone of instances named without one.", panel=CONTROLLER)
@option("--azure-subscription", help="Azure subscription id.", panel=CONTROLLER)
@option("--azure-resource-group", help="Azure resource group.", panel=CONTROLLER)
@bgp_options
@option(
    "--bgp-password-secret",
    help="--bgp: a Secret whose key 'password' is the MD5 password (mounted read-only).",
    panel=BGP,
)
def manifests(
    *,
    image: str,
    cluster_cidr: tuple[str, ...],
    allocate: bool,
    namespace: str,
    masquerade: bool,
    monitoring: bool,
    dashboard: bool,
    controller: bool,
    uninstall: bool,
    cloud: str | None,
    cluster_name: str,
    replicas: int,
    route_table: tuple[str, ...],
    capacity: int | None,
    aws_region: str | None,
    gce_project: str | None,
    gce_network: str,
    gce_zone: str | None,
    azure_subscription: str | None,
    azure_resource_group: str | None,
    bgp_dir: str,
    bgp_password_secret: str | None,
    **bgp_flags: Any,
) -> None:
    """Print the objects that deploy the agent (ServiceAccount, RBAC, DaemonSet) as YAML:
    `nosdn manifests --cluster-cidr 10.244.0.0/16 | kubectl apply -f -`.

    With --bgp (and its --bgp-* flags, as `nosdn agent` takes them): the agent announces its
    node's pod subnets; BIRD's directory is the host's /run/nosdn-bird, the MD5 password comes
    from --bgp-password-secret.

    With --controller --cloud aws|gce|azure: the cloud route controller's instead
    (ServiceAccount, RBAC, Lease Role, a Deployment of --replicas, one of which leads; on Azure
    the Deployment's nosdn.io/azure-permissions annotation says what its identity needs).

    With --uninstall: the cleanup DaemonSet (its ServiceAccount has no rights). Delete the
    agent's DaemonSet first, apply this, wait for `kubectl -n kube-system rollout status
    daemonset/nosdn-uninstall`, then delete it.

    With --monitoring: prometheus.io/* scrape annotations on the pods, a PodMonitor and the
    alert rules as a PrometheusRule (prometheus-operator's monitoring.coreos.com/v1). With
    --dashboard: the Grafana dashboard as a ConfigMap the Grafana sidecar loads."""
    from nosdn.agent.manifests import manifests as agent_objects
    from nosdn.daemon.deploy import DEFAULT_IMAGE
    from nosdn.names import install_names_problem

    problem = install_names_problem(image or DEFAULT_IMAGE, namespace)
    if problem is not None:
        fail(problem)
    ctx = click.get_current_context()
    controller_only = [
        p.name
        for p in ctx.command.params
        if getattr(p, "panel", None) == CONTROLLER
        and p.name not in ("controller", "cloud")
        and ctx.get_parameter_source(p.name or "") is click.core.ParameterSource.COMMANDLINE
    ]
    try:
        if uninstall:
            if controller:
                fail("--uninstall cleans the agent's nodes; it does not go with --controller")
            if monitoring or dashboard:
                fail(
                    f"--uninstall prints a one-shot cleanup, nothing to scrape: leave out "
                    f"{'--monitoring' if monitoring else '--dashboard'} (to remove the "
                    "monitoring objects: nosdn manifests --monitoring --dashboard | kubectl "
                    "delete -f -)"
                )
            from nosdn.agent.uninstall_manifests import uninstall_manifests

            docs = uninstall_manifests(image=image or DEFAULT_IMAGE, namespace=namespace)
        elif controller:
            if cloud is None:
                fail("--controller needs --cloud aws|gce|azure")
            if allocate:
                fail("--allocate-node-cidrs is for the agent, not with --controller")
            docs = _controller_objects(
                cloud,
                image=image or DEFAULT_IMAGE,
                namespace=namespace,
                cluster_cidrs=nets(cluster_cidr, "--cluster-cidr"),
                cluster_name=cluster_name,
                replicas=replicas,
                route_tables=route_table,
                capacity=capacity,
                aws_region=aws_region,
                gce_project=gce_project,
                gce_network=gce_network,
                gce_zone=gce_zone,
                azure_subscription=azure_subscription,
                azure_resource_group=azure_resource_group,
            )
        else:
            if cloud is not None or controller_only:
                first = "cloud" if cloud is not None else controller_only[0]
                fail(f"--{first.replace('_', '-')} needs --controller")
            if bgp_flags["bgp_password_file"] or bgp_dir != "/run/nosdn-bird":
                fail(
                    "manifests: give the MD5 password as --bgp-password-secret NAME (a Secret "
                    "mounted into the agent), not --bgp-password-file; --bgp-dir is fixed"
                )
            docs = agent_objects(
                image=image or DEFAULT_IMAGE,
                namespace=namespace,
                cluster_cidrs=nets(cluster_cidr, "--cluster-cidr"),
                allocate=allocate,
                masquerade=masquerade,
                bgp=bgp_config(**bgp_flags),
                bgp_password_secret=bgp_password_secret,
            )
    except ValueError as e:
        fail(str(e))
    if monitoring:
        from nosdn.agent.monitoring import with_monitoring

        docs = with_monitoring(docs, namespace)
    if dashboard:
        from nosdn.agent.dashboard_configmap import dashboard_configmap

        docs = [*docs, dashboard_configmap(namespace)]
    if controller and cloud is not None:
        from nosdn.backends.cloud.factory import Cloud
        from nosdn.controller.manifests import cloud_access_note

        sys.stdout.write("".join(f"# {line}\n" for line in cloud_access_note(Cloud(cloud))))
    sys.stdout.write(_yaml_docs(docs))


def _yaml_docs(docs: list[dict[str, Any]]) -> str:
    """The documents as YAML, multi-line strings (the dashboard's JSON, a rule's expression) as
    literal blocks, readable as they are in their files, rather than one quoted line."""
    import yaml

    class Dumper(yaml.SafeDumper):
        pass

    def text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
        style = "|" if "\n" in value else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)

    Dumper.add_representer(str, text)
    return yaml.dump_all(docs, Dumper=Dumper, sort_keys=False, default_flow_style=False)


def _controller_objects(cloud: str, **kw: Any) -> list[dict[str, Any]]:
    """The controller's objects; refuses cloud options the other cloud's controller would
    refuse at start (`nosdn.backends.cloud.factory.build_provider` checks the rest when it runs)."""
    from nosdn.backends.cloud.factory import Cloud, CloudOptions
    from nosdn.controller.manifests import controller_manifests

    opts = CloudOptions(
        Cloud(cloud),
        route_tables=tuple(kw.pop("route_tables")),
        capacity=kw.pop("capacity"),
        aws_region=kw.pop("aws_region"),
        gce_project=kw.pop("gce_project"),
        gce_network=kw.pop("gce_network"),
        gce_zone=kw.pop("gce_zone"),
        azure_subscription=kw.pop("azure_subscription"),
        azure_resource_group=kw.pop("azure_resource_group"),
    )
    azure = (
        ("--azure-subscription", opts.azure_subscription),
        ("--azure-resource-group", opts.azure_resource_group),
    )
    other = {
        Cloud.aws: (("--gce-project", opts.gce_project), ("--gce-zone", opts.gce_zone), *azure),
        Cloud.gce: (
            ("--aws-region", opts.aws_region),
            ("--route-table", opts.route_tables),
            *azure,
        ),
        Cloud.azure: (
            ("--aws-region", opts.aws_region),
            ("--gce-project", opts.gce_project),
            ("--gce-zone", opts.gce_zone),
        ),
    }[opts.cloud]
    for flag, value in other:
        if value:
            fail(f"{flag} is not for --cloud {cloud}")
    if opts.cloud is Cloud.gce and not opts.gce_project:
        fail("--cloud gce needs --gce-project (the project whose network holds the routes)")
    if opts.cloud is Cloud.azure:
        from nosdn.backends.cloud.factory import check_azure

        try:
            check_azure(opts)
        except ValueError as e:
            fail(str(e))
    return controller_manifests(opts, **kw)
