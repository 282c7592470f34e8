"""`nosdn agent` (the node daemon) and `nosdn manifests` (the objects that deploy it).

Options are parsed and checked here, all before anything starts; the agent itself lives in
`nosdn.agent`. Boolean switches take a value (``--masquerade=false``) because that is how they
are written in a DaemonSet's args.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from nosdn.cli._common import EXIT_FAILURE, fail
from nosdn.model import DEFAULT_PROTOCOL, IPNetwork


def _nets(values: list[str] | None, option: str) -> tuple[IPNetwork, ...]:
    from nosdn.addr import parse_net

    out: list[IPNetwork] = []
    for text in values or []:
        for raw in text.split(","):
            part = raw.strip()
            if not part:
                continue
            try:
                out.append(parse_net(part))
            except ValueError as e:
                fail(f"{option} {part!r}: not a network ({e}) — e.g. 10.244.0.0/16")
    return tuple(out)


BoolValue: dict[str, Any] = {"metavar": "true|false", "show_default": True}


def _bool(value: str, option: str) -> bool:
    v = value.strip().lower()
    if v in ("true", "yes", "on", "1"):
        return True
    if v in ("false", "no", "off", "0"):
        return False
    return fail(f"{option} {value!r}: use true or false (e.g. {option}=false)")


def agent(
    *,
    node_name: Annotated[
        str,
        typer.Option(
            "--node-name",
            envvar="NODE_NAME",
            help="This node's Node object name (DaemonSet: env NODE_NAME from spec.nodeName).",
            show_default=False,
        ),
    ] = "",
    kubeconfig: Annotated[
        str | None,
        typer.Option(
            "--kubeconfig",
            help="Kubeconfig file (default: in-cluster account).",
            show_default=False,
        ),
    ] = None,
    kube_server: Annotated[
        str | None,
        typer.Option(
            "--kube-server", help="API server URL (overrides the kubeconfig's).", show_default=False
        ),
    ] = None,
    context: Annotated[str | None, typer.Option("--context", show_default=False)] = None,
    address_types: Annotated[
        str,
        typer.Option("--node-address-types", help="Node address types to route to, in order."),
    ] = "InternalIP,ExternalIP",
    address_cidr: Annotated[
        list[str] | None,
        typer.Option(
            "--node-address-cidr",
            help="Only use node addresses inside this network (repeatable; multi-homed nodes).",
            show_default=False,
        ),
    ] = None,
    cluster_cidr: Annotated[
        list[str] | None,
        typer.Option(
            "--cluster-cidr",
            help="Pod address range(s) of the cluster (repeatable).",
            show_default=False,
        ),
    ] = None,
    allocate: Annotated[
        bool,
        typer.Option(
            "--allocate-node-cidrs",
            help="Elect one agent (Lease) to set spec.podCIDRs on nodes that lack it.",
        ),
    ] = False,
    mask_v4: Annotated[int, typer.Option("--node-cidr-mask-size")] = 24,
    mask_v6: Annotated[int, typer.Option("--node-cidr-mask-size-ipv6")] = 64,
    lease_namespace: Annotated[str, typer.Option("--lease-namespace")] = "kube-system",
    lease_name: Annotated[str, typer.Option("--lease-name")] = "nosdn-ipam",
    resync: Annotated[float, typer.Option("--resync", help="Full pass every N seconds.")] = 30.0,
    watch_timeout: Annotated[
        int, typer.Option("--watch-timeout", help="Seconds per watch request.")
    ] = 300,
    max_delete_share: Annotated[
        float,
        typer.Option(
            "--max-delete-share",
            help="Refuse to remove more than this share of routes at once until a fresh node "
            "list confirms it.",
        ),
    ] = 0.5,
    cni_conf: Annotated[
        str, typer.Option("--cni-conf", help="Conflist to write ('' to write none).")
    ] = "/etc/cni/net.d/10-nosdn.conflist",
    cni_bridge: Annotated[str, typer.Option("--cni-bridge")] = "cni0",
    mtu: Annotated[
        int | None,
        typer.Option(
            "--mtu",
            help="Pod MTU (default: MTU of the node address's interface).",
            show_default=False,
        ),
    ] = None,
    ip_forward: Annotated[str, typer.Option("--ip-forward", **BoolValue)] = "true",
    proc_sys_net: Annotated[str, typer.Option("--proc-sys-net")] = "/proc/sys/net",
    masquerade: Annotated[
        str,
        typer.Option(
            "--masquerade", help="Masquerade pod traffic leaving the cluster.", **BoolValue
        ),
    ] = "true",
    no_masquerade_cidr: Annotated[
        list[str] | None,
        typer.Option(
            "--no-masquerade-cidr",
            help="Never masquerade to these (repeatable).",
            show_default=False,
        ),
    ] = None,
    condition: Annotated[
        str,
        typer.Option("--set-condition", help="Set NetworkUnavailable on this Node.", **BoolValue),
    ] = "true",
    events: Annotated[str, typer.Option("--events", **BoolValue)] = "true",
    event_namespace: Annotated[str, typer.Option("--event-namespace")] = "default",
    metrics_address: Annotated[
        str,
        typer.Option("--metrics-address", help="HOST:PORT for /metrics /healthz /readyz ('' off)."),
    ] = "0.0.0.0:9712",
    table: Annotated[int, typer.Option("--table")] = 254,
    protocol: Annotated[int, typer.Option("--protocol")] = DEFAULT_PROTOCOL,
    log_format: Annotated[str, typer.Option("--log-format", help="text or json.")] = "text",
    log_level: Annotated[str, typer.Option("--log-level")] = "info",
) -> None:
    """Run the node agent: keep this node's routes, CNI config and egress rules equal to the
    cluster's Node objects, repair what others break, never flush. Runs until SIGTERM."""
    from nosdn.agent.config import AgentConfig, ConfigError
    from nosdn.agent.logs import setup_logging
    from nosdn.sources.errors import ApiError
    from nosdn.sources.kubernetes import KubeSettings
    from nosdn.sources.nodes import AddressPolicy

    if log_format not in ("text", "json"):
        fail(f"--log-format {log_format!r}: use text or json")
    if log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        fail(f"--log-level {log_level!r}: use debug, info, warning or error")
    types = tuple(t.strip() for t in address_types.split(",") if t.strip())
    try:
        cfg = AgentConfig(
            node_name=node_name,
            table=table,
            protocol=protocol,
            resync=resync,
            max_delete_share=max_delete_share,
            addresses=AddressPolicy(types, _nets(address_cidr, "--node-address-cidr")),
            cluster_cidrs=_nets(cluster_cidr, "--cluster-cidr"),
            node_cidr_mask_v4=mask_v4,
            node_cidr_mask_v6=mask_v6,
            cni_conf=Path(cni_conf) if cni_conf else None,
            cni_bridge=cni_bridge,
            mtu=mtu,
            ip_forward=_bool(ip_forward, "--ip-forward"),
            proc_sys_net=Path(proc_sys_net),
            masquerade=_bool(masquerade, "--masquerade"),
            no_masquerade_cidrs=_nets(no_masquerade_cidr, "--no-masquerade-cidr"),
            set_condition=_bool(condition, "--set-condition"),
            events=_bool(events, "--events"),
            event_namespace=event_namespace,
            metrics_address=metrics_address or None,
            watch_timeout=watch_timeout,
            allocate=allocate,
            lease_namespace=lease_namespace,
            lease_name=lease_name,
        )
    except (ConfigError, ValueError) as e:
        fail(str(e))
    if os.geteuid() != 0:
        fail("the agent writes routes and needs root (CAP_NET_ADMIN)", EXIT_FAILURE)
    setup_logging(log_format, log_level)
    from nosdn.agent.run import run_agent

    try:
        run_agent(cfg, KubeSettings(server=kube_server, kubeconfig=kubeconfig, context=context))
    except ApiError as e:
        fail(str(e), EXIT_FAILURE)


def manifests(
    *,
    image: Annotated[str, typer.Option("--image", help="Container image of nosdn.")] = "",
    cluster_cidr: Annotated[
        list[str] | None,
        typer.Option(
            "--cluster-cidr",
            help="Pod range(s): exempt from masquerade (repeatable).",
            show_default=False,
        ),
    ] = None,
    allocate: Annotated[
        bool,
        typer.Option("--allocate-node-cidrs", help="Include the allocator (Lease, nodes patch)."),
    ] = False,
    namespace: Annotated[str, typer.Option("--namespace")] = "kube-system",
    masquerade: Annotated[str, typer.Option("--masquerade", **BoolValue)] = "true",
) -> None:
    """Print the objects that deploy the agent (ServiceAccount, RBAC, DaemonSet) as YAML:
    `nosdn manifests --cluster-cidr 10.244.0.0/16 | kubectl apply -f -`."""
    from nosdn.agent.manifests import DEFAULT_IMAGE
    from nosdn.agent.manifests import manifests as build

    try:
        docs = build(
            image=image or DEFAULT_IMAGE,
            namespace=namespace,
            cluster_cidrs=_nets(cluster_cidr, "--cluster-cidr"),
            allocate=allocate,
            masquerade=_bool(masquerade, "--masquerade"),
        )
    except ValueError as e:
        fail(str(e))
    sys.stdout.write(yaml.safe_dump_all(docs, sort_keys=False, default_flow_style=False))


def register(app: typer.Typer) -> None:
    app.command("agent")(agent)
    app.command("manifests")(manifests)
