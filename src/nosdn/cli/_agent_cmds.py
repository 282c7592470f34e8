"""`nosdn agent` (the node daemon) and `nosdn manifests` (the objects that deploy it, or with
``--controller`` the cloud route controller).

Options are parsed and checked here, all before anything starts; the daemons live in
`nosdn.agent` and `nosdn.controller`. Boolean switches take a value (``--masquerade=false``)
because that is how they are written in a DaemonSet's args. The options both daemons take
(the API connection, node addresses, cluster CIDRs, resync, logging, probes, events) are
defined once here and used by ``nosdn controller`` (`nosdn.cli._controller_cmds`) too; those
that every reader of Node objects takes (the API connection, node addresses, cluster CIDRs)
live in `nosdn.cli._common`, where the one-shot commands (status, doctor, ...) find them.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from nosdn.cli._common import (
    API_PANEL,
    EXIT_FAILURE,
    address_policy,
    cluster_cidr_option,
    command,
    fail,
    kube_api_options,
    nets,
    node_address_options,
    option,
    require_net_admin,
    stack,
)
from nosdn.model import DEFAULT_PROTOCOL

F = TypeVar("F", bound=Callable[..., Any])

BOOL: dict[str, Any] = {"type": click.BOOL, "metavar": "true|false"}
API = API_PANEL
ROUTING = "Nodes and routes"
SERVING = "Logs, probes, events"


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
        type=float,
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
    "--node-name",
    envvar="NODE_NAME",
    default="",
    show_default=False,
    help="This node's Node object name (DaemonSet: env NODE_NAME from spec.nodeName).",
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
@option("--table", type=int, default=254, help="Kernel routing table (254 = main).")
@option("--protocol", type=int, default=DEFAULT_PROTOCOL, help="Protocol number of our routes.")
@option("--cni-conf", default="/etc/cni/net.d/10-nosdn.conflist", help="Conflist ('' none).")
@option("--cni-bridge", default="cni0")
@option("--mtu", type=int, help="Pod MTU (default: MTU of the node address's interface).")
@option("--ip-forward", default=True, **BOOL)
@option("--proc-sys-net", default="/proc/sys/net")
@option("--masquerade", default=True, help="Masquerade pod traffic leaving the cluster.", **BOOL)
@option("--no-masquerade-cidr", multiple=True, help="Never masquerade to these (repeatable).")
@serving_options(9712)
def agent(
    *,
    node_name: str,
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
) -> None:
    """Run the node agent: keep this node's routes, CNI config and egress rules equal to the
    cluster's Node objects, repair what others break, never flush. Runs until SIGTERM."""
    from nosdn.agent.config import AgentConfig, ConfigError
    from nosdn.agent.logs import setup_logging
    from nosdn.sources.errors import ApiError
    from nosdn.sources.kubernetes import KubeSettings

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
    "--controller",
    is_flag=True,
    help="Print the cloud route controller's Deployment and RBAC instead of the agent's.",
    panel=CONTROLLER,
)
@option(
    "--cloud", type=click.Choice(["aws", "gce"]), help="The controller's cloud.", panel=CONTROLLER
)
@option(
    "--cluster-name",
    default="kubernetes",
    help="Tag/name of the cluster in the cloud.",
    panel=CONTROLLER,
)
@option("--replicas", type=int, default=2, help="Controller replicas.", panel=CONTROLLER)
@option("--route-table", multiple=True, help="AWS: manage these tables.", panel=CONTROLLER)
@option("--capacity", type=int, help="Routes a table may hold.", panel=CONTROLLER)
@option("--aws-region", help="AWS region.", panel=CONTROLLER)
@option("--gce-project", help="GCE project.", panel=CONTROLLER)
@option("--gce-network", default="default", help="GCE VPC network.", panel=CONTROLLER)
@option("--gce-zone", help="Zone of instances named without one.", panel=CONTROLLER)
def manifests(
    *,
    image: str,
    cluster_cidr: tuple[str, ...],
    allocate: bool,
    namespace: str,
    masquerade: bool,
    controller: bool,
    cloud: str | None,
    cluster_name: str,
    replicas: int,
    route_table: tuple[str, ...],
    capacity: int | None,
    aws_region: str | None,
    gce_project: str | None,
    gce_network: str,
    gce_zone: str | None,
) -> None:
    """Print the objects that deploy the agent (ServiceAccount, RBAC, DaemonSet) as YAML:
    `nosdn manifests --cluster-cidr 10.244.0.0/16 | kubectl apply -f -`.

    With --controller --cloud aws|gce: the cloud route controller's instead (ServiceAccount,
    RBAC, Lease Role, a Deployment of --replicas, one of which leads)."""
    import yaml

    from nosdn.agent.manifests import DEFAULT_IMAGE
    from nosdn.agent.manifests import manifests as agent_objects

    ctx = click.get_current_context()
    controller_only = [
        p.name
        for p in ctx.command.params
        if getattr(p, "panel", None) == CONTROLLER
        and p.name not in ("controller", "cloud")
        and ctx.get_parameter_source(p.name or "") is click.core.ParameterSource.COMMANDLINE
    ]
    try:
        if controller:
            if cloud is None:
                fail("--controller needs --cloud aws|gce")
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
            )
        else:
            if cloud is not None or controller_only:
                first = "cloud" if cloud is not None else controller_only[0]
                fail(f"--{first.replace('_', '-')} needs --controller")
            docs = agent_objects(
                image=image or DEFAULT_IMAGE,
                namespace=namespace,
                cluster_cidrs=nets(cluster_cidr, "--cluster-cidr"),
                allocate=allocate,
                masquerade=masquerade,
            )
    except ValueError as e:
        fail(str(e))
    if controller and cloud is not None:
        from nosdn.agent.manifests import cloud_access_note
        from nosdn.backends.cloud import Cloud

        sys.stdout.write("".join(f"# {line}\n" for line in cloud_access_note(Cloud(cloud))))
    sys.stdout.write(yaml.safe_dump_all(docs, sort_keys=False, default_flow_style=False))


def _controller_objects(cloud: str, **kw: Any) -> list[dict[str, Any]]:
    """The controller's objects; refuses cloud options the other cloud's controller would
    refuse at start (`nosdn.backends.cloud.build_provider` checks the rest when it runs)."""
    from nosdn.agent.manifests import controller_manifests
    from nosdn.backends.cloud import Cloud, CloudOptions

    opts = CloudOptions(
        Cloud(cloud),
        route_tables=tuple(kw.pop("route_tables")),
        capacity=kw.pop("capacity"),
        aws_region=kw.pop("aws_region"),
        gce_project=kw.pop("gce_project"),
        gce_network=kw.pop("gce_network"),
        gce_zone=kw.pop("gce_zone"),
    )
    other = {
        Cloud.aws: (("--gce-project", opts.gce_project), ("--gce-zone", opts.gce_zone)),
        Cloud.gce: (("--aws-region", opts.aws_region), ("--route-table", opts.route_tables)),
    }[opts.cloud]
    for flag, value in other:
        if value:
            fail(f"{flag} is not for --cloud {cloud}")
    if opts.cloud is Cloud.gce and not opts.gce_project:
        fail("--cloud gce needs --gce-project (the project whose network holds the routes)")
    return controller_manifests(opts, **kw)
