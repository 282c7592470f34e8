"""Renderers: the cluster's routes as text artifacts people already use (a shell script, systemd
units, cloud-init, router configs, cloud CLI commands, the CNI config).

Every renderer is a pure function of the cluster and `RenderOptions` and takes its routes from
`nosdn.plan.desired_routes`, so the script, the router config, the cloud commands and
``nosdn apply`` can never disagree about which routes a cluster needs. A registry (`FORMATS`)
maps each format name to its function, the targets it accepts and the one-line description the
CLI's help shows. Output is a list of `RenderedFile`; `render` joins it into the text printed on
stdout (one file as is; several, each after a ``# ==> PATH <==`` line, like ``head`` does).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from nosdn.model import Cluster, Target
from nosdn.names import gce_route_name
from nosdn.render._base import RenderedFile, RenderError, RenderOptions, Secret
from nosdn.render.bgp import (
    ROUTER_BGP,
    bird_node_files,
    bird_node_systemd_files,
    read_passwords,
)
from nosdn.render.cloud import aws_files, az_files, gcloud_files
from nosdn.render.routers import bird_config, bird_files, cisco_files, frr_files, junos_files
from nosdn.render.script import script_files
from nosdn.render.units import cloud_init_files, systemd_files

Renderer = Callable[[Cluster, RenderOptions], list[RenderedFile]]


@dataclass(frozen=True, slots=True)
class Format:
    name: str
    summary: str
    #: target kinds the format accepts besides its default (None): "node", "external", "router"
    targets: frozenset[str]
    files: Renderer
    #: the node must be given (per-node artifacts such as the CNI config)
    needs_node: bool = False


def _cni_files(cluster: Cluster, options: RenderOptions) -> list[RenderedFile]:
    # Imported here: the CNI renderer is its own module, written alongside this one.
    from nosdn.render.cni import CONFLIST_PATH, render_cni

    assert options.target is not None
    assert options.target.node is not None
    text = render_cni(cluster, options.target.node, mtu=options.mtu, bridge=options.bridge)
    return [RenderedFile(CONFLIST_PATH.rsplit("/", 1)[-1], text)]


_HOST = frozenset({"node", "external"})
_ROUTER = frozenset({"node", "external", "router"})
_CLOUD = frozenset({"router"})

FORMATS: dict[str, Format] = {
    f.name: f
    for f in (
        Format(
            "script",
            "one POSIX sh script for every node and external host: finds which node it runs "
            "on, installs the other nodes' pod routes (proto 157), removes stale ones",
            _HOST,
            script_files,
        ),
        Format(
            "systemd",
            "the script plus a oneshot service and a timer that re-applies it every minute "
            "(files at their install paths: --out / installs them)",
            _HOST,
            systemd_files,
        ),
        Format(
            "cloud-init",
            "a #cloud-config that installs the systemd files on first boot and runs them",
            _HOST,
            cloud_init_files,
        ),
        Format(
            "frr",
            "FRR static routes (ip route / ipv6 route, tagged) for the network's router",
            _ROUTER,
            frr_files,
        ),
        Format(
            "bird",
            "BIRD 2 static protocols, one per family, to include from bird.conf",
            _ROUTER,
            bird_files,
        ),
        Format(
            "cisco",
            "Cisco IOS static routes (ip route A MASK GW name nosdn-NODE, ipv6 route)",
            _ROUTER,
            cisco_files,
        ),
        Format(
            "junos",
            "Junos set commands in their own group (reloading also removes old routes)",
            _ROUTER,
            junos_files,
        ),
        Format(
            "bird-node",
            "one node's BIRD 2 config announcing exactly its own pod subnets over BGP to the "
            "inventory's bgp.peers; needs --node",
            frozenset({"node"}),
            bird_node_files,
            needs_node=True,
        ),
        Format(
            "bird-node-systemd",
            "bird-node at its install path plus a systemd service running that BIRD; needs --node",
            frozenset({"node"}),
            bird_node_systemd_files,
            needs_node=True,
        ),
        Format(
            "aws-cli",
            "aws ec2 create-route commands for a VPC route table (Kubernetes the hard way)",
            _CLOUD,
            aws_files,
        ),
        Format(
            "gcloud",
            "gcloud compute routes create commands for a GCE network (the hard way)",
            _CLOUD,
            gcloud_files,
        ),
        Format(
            "az-cli",
            "az network route-table route create commands for an Azure route table",
            _CLOUD,
            az_files,
        ),
        Format(
            "cni",
            "the CNI conflist of one node (bridge + host-local from its pod subnets); needs --node",
            frozenset({"node"}),
            _cni_files,
            needs_node=True,
        ),
    )
}


_FLAG = {"node": "--node NAME", "external": "--external", "router": "--router"}


def _check_target(f: Format, target: Target | None) -> None:
    if target is None:
        if f.needs_node:
            raise RenderError(f"--format {f.name} is per node: give --node NAME")
        return
    if target.kind not in f.targets:
        allowed = [_FLAG[k] for k in sorted(f.targets)]
        takes = f"it takes {' or '.join(allowed)}" if allowed else "it takes neither"
        raise RenderError(f"--format {f.name} does not take {_FLAG[target.kind]}: {takes}")


def render_files(
    cluster: Cluster, fmt: str, options: RenderOptions | None = None
) -> list[RenderedFile]:
    """The files of format ``fmt``. Raises `RenderError` (a ValueError) on bad options."""
    f = FORMATS.get(fmt)
    if f is None:
        raise RenderError(f"unknown format {fmt!r}: choose one of {', '.join(FORMATS)}")
    options = options or RenderOptions()
    if options.bgp:
        if fmt not in ROUTER_BGP:
            raise RenderError(
                f"--bgp is for the router formats ({', '.join(ROUTER_BGP)}), not --format {fmt}"
            )
        from nosdn.render.bgp import router_bgp_files

        return router_bgp_files(fmt, cluster, options)
    _check_target(f, options.target)
    node = options.target.node if options.target is not None else None
    if node is not None and cluster.node(node) is None:
        raise RenderError(
            f"--node {node}: no such node in the inventory (nodes: "
            f"{', '.join(n.name for n in cluster.nodes[:10])}"
            f"{', ...' if len(cluster.nodes) > 10 else ''})"
        )
    return f.files(cluster, options)


def join_files(files: list[RenderedFile]) -> str:
    """The stdout form: one file as is; several, each after a ``# ==> PATH <==`` line."""
    if len(files) == 1:
        return files[0].content
    return "\n".join(f"# ==> {f.path} <==\n{f.content}" for f in files)


def render(cluster: Cluster, fmt: str, options: RenderOptions | None = None) -> str:
    """Format ``fmt`` of ``cluster`` as the text ``nosdn render`` prints."""
    return join_files(render_files(cluster, fmt, options))


__all__ = [
    "FORMATS",
    "Format",
    "RenderError",
    "RenderOptions",
    "RenderedFile",
    "Secret",
    "bird_config",
    "gce_route_name",
    "join_files",
    "read_passwords",
    "render",
    "render_files",
]
