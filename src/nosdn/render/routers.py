"""Router configs: the post's first option, "update the router's routing table with a next hop
for the subnet", as static routes in the syntax of FRR, BIRD 2, Cisco IOS and Junos.

The routes are `desired_routes` for the router target (every pod subnet via its node) unless the
caller asks for another target (``--external`` adds the service CIDRs, as ECMP where several
kube-proxy nodes carry them). Each config says which node each route belongs to, and marks the
routes as nosdn's the way that platform allows, so an operator can find, match or replace them:
FRR tags them (``tag 157``, for route-maps), Cisco names them (``name nosdn-node1``), BIRD keeps
them in their own ``protocol static`` per family (``birdc configure`` drops routes that left the
file), Junos keeps them in their own configuration group that the file first deletes, so loading
a new rendering also removes routes of nodes that are gone.

Router configs have no quoting, so they take no strange value: every address and prefix is
printed from its ``ipaddress`` object by `addr`/`net` (a zone id is refused), every name is
checked whole by `name`, every symbol derived from one by `token`, and every comment goes
through `comment` (`nosdn.render._quote`).

The BIRD output is a fragment to ``include`` from bird.conf and parses on its own with
``bird -p``; `bird_config(..., standalone=True)` wraps it into a whole config (device + kernel
protocols exporting the routes) for a router that runs nothing else, as the lab's router does.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from ipaddress import IPv4Network, ip_address

from nosdn.model import ROUTER, Cluster, IPAddress, Route, Target
from nosdn.plan import UnknownNodeError, desired_routes
from nosdn.render._base import (
    RenderedFile,
    RenderError,
    RenderOptions,
    check_protocol,
    describe,
    generated_by,
    node_of_ip,
)
from nosdn.render._quote import addr, check_cluster, comment, name, net, token


def router_routes(cluster: Cluster, target: Target | None) -> list[Route]:
    try:
        return desired_routes(cluster, target or ROUTER)
    except UnknownNodeError as e:
        raise RenderError(f"--node {e}: no such node in the inventory") from e


def _what(target: Target | None) -> str:
    if target is None or target.kind == "router":
        return "every pod subnet via its node (router target)"
    if target.kind == "external":
        return "every pod subnet via its node, and the service CIDRs via the kube-proxy nodes"
    return f"the routes node {comment(target.node or '')} needs (every other node's pod subnets)"


#: BIRD refuses a symbol longer than 64 characters: the cluster's part of ``nosdn_X_kernel_v4``.
_SYMBOL_MAX = 64 - len("nosdn__kernel_v4")


def _symbol(text: str) -> str:
    return token(re.sub(r"[^A-Za-z0-9_]", "_", text)[:_SYMBOL_MAX])


def _note(route: Route, names: dict[IPAddress, str]) -> str:
    """Whose route it is, as comment text."""
    return comment(describe(route, names))


def _context(
    cluster: Cluster, options: RenderOptions
) -> tuple[list[Route], dict[IPAddress, str], str]:
    check_protocol(options.protocol)
    check_cluster(cluster)
    return router_routes(cluster, options.target), node_of_ip(cluster), comment(cluster.name)


def render_frr(cluster: Cluster, options: RenderOptions) -> str:
    routes, names, cluster_name = _context(cluster, options)
    tag = options.protocol
    lines = [
        f'! nosdn: static routes for Kubernetes cluster "{cluster_name}":',
        f"! {_what(options.target)}.",
        f"! {generated_by()}",
        "! Load with `vtysh -f FILE` or paste into `configure terminal` (FRR staticd).",
        f"! Every route is tagged {tag}: `match tag {tag}` in a route-map selects nosdn's routes.",
        "! Routes of removed nodes stay until deleted (`no ip route ...`) or until",
        "! frr-reload.py syncs a whole config.",
        "!",
    ]
    for r in routes:
        lines.append(f"! {_note(r, names)}")
        cmd = "ip route" if r.family == 4 else "ipv6 route"
        lines.extend(f"{cmd} {net(r.dst, r.node)} {addr(gw, r.node)} tag {tag}" for gw in r.via)
    if not routes:
        lines.append("! (no routes: the inventory has no pod subnets yet)")
    return "\n".join(lines) + "\n"


def bird_config(
    routes: list[Route],
    *,
    cluster: str = "kubernetes",
    names: dict[IPAddress, str] | None = None,
    standalone: bool = False,
    router_id: str | None = None,
) -> str:
    """BIRD 2 static protocols (one per family) for ``routes``.

    ``standalone`` adds what a router running only this needs: a router id (``router_id``, or
    the first IPv4 next hop), ``protocol device`` and a kernel protocol per family that exports
    the routes to the kernel table (they show there as ``proto bird``).
    """
    names = names or {}
    sym = _symbol(cluster)
    out = [
        f'# nosdn: static routes for Kubernetes cluster "{comment(cluster)}" (BIRD 2).',
        f"# {generated_by()}",
    ]
    if standalone:
        rid = router_id or next((addr(v) for r in routes for v in r.via if v.version == 4), None)
        if rid is not None:
            addr(ip_address(rid), None, "router id")
        out += [
            "# A whole config: the router runs only these routes and exports them to its kernel.",
            "",
            f"router id {rid or '192.0.2.1'};",
            "",
            "protocol device {",
            "}",
        ]
        for fam in ("ipv4", "ipv6"):
            out += ["", f"protocol kernel nosdn_{sym}_kernel_{fam[-2:]} {{", f"    {fam} {{"]
            out += ["        export all;", "    };", "}"]
    else:
        out += [
            '# Include it from bird.conf:   include "/etc/bird/nosdn.conf";',
            "# and export the routes where they belong, e.g. to the kernel table:",
            "#     protocol kernel { ipv4 { export all; }; }",
            "# `birdc configure` loads a new rendering and withdraws routes that left the file.",
        ]
    for fam, version in (("ipv4", 4), ("ipv6", 6)):
        rs = [r for r in routes if r.family == version]
        if not rs:
            continue
        out += ["", f"protocol static nosdn_{sym}_v{version} {{", f"    {fam};"]
        for r in rs:
            hops = " ".join(f"via {addr(v, r.node)}" for v in r.via)
            out.append(f"    route {net(r.dst, r.node)} {hops};    # {_note(r, names)}")
        out.append("}")
    if not routes:
        out += ["", "# (no routes: the inventory has no pod subnets yet)"]
    return "\n".join(out) + "\n"


def render_bird(cluster: Cluster, options: RenderOptions) -> str:
    routes, names, cluster_name = _context(cluster, options)
    return bird_config(routes, cluster=cluster_name, names=names)


def _cisco_name(text: str) -> str:
    return token("nosdn-" + name(text))


def render_cisco(cluster: Cluster, options: RenderOptions) -> str:
    routes, names, cluster_name = _context(cluster, options)
    lines = [
        f'! nosdn: static routes for Kubernetes cluster "{cluster_name}" (Cisco IOS / IOS XE):',
        f"! {_what(options.target)}.",
        f"! {generated_by()}",
        "! Paste into `configure terminal`. Each route is named after its node (name nosdn-NODE);",
        "! routes of removed nodes stay until deleted with `no ip route ...`.",
        "!",
    ]
    for r in routes:
        label = _cisco_name(r.node or "services")
        lines.append(f"! {_note(r, names)}")
        for gw in r.via:
            if isinstance(r.dst, IPv4Network):
                net(r.dst, r.node)
                dst = f"{addr(r.dst.network_address)} {addr(r.dst.netmask)}"
                lines.append(f"ip route {dst} {addr(gw, r.node)} name {label}")
            else:
                lines.append(f"ipv6 route {net(r.dst, r.node)} {addr(gw, r.node)} name {label}")
    if not routes:
        lines.append("! (no routes: the inventory has no pod subnets yet)")
    return "\n".join(lines) + "\n"


def junos_group(cluster_name: str) -> str:
    return token("nosdn-" + re.sub(r"[^A-Za-z0-9_-]", "-", cluster_name)[:64])


def render_junos(cluster: Cluster, options: RenderOptions) -> str:
    routes, names, cluster_name = _context(cluster, options)
    group = junos_group(cluster_name)
    lines = [
        f'# nosdn: static routes for Kubernetes cluster "{cluster_name}" (Junos set commands):',
        f"# {_what(options.target)}.",
        f"# {generated_by()}",
        f"# The routes live in configuration group {group}, which this file deletes first, so",
        "# loading a new rendering also removes the routes of nodes that are gone. Load with:",
        "#     configure; load set terminal (paste, then Ctrl-D); show | compare; commit",
        "# ECMP routes (several next hops) need a load-balance policy exported to the forwarding",
        "# table to use more than one next hop.",
        f"delete groups {group}",
    ]
    for r in routes:
        rib = "" if r.family == 4 else "rib inet6.0 "
        lines.append(f"# {_note(r, names)}")
        dst = net(r.dst, r.node)
        lines.extend(
            f"set groups {group} routing-options {rib}static route {dst} next-hop "
            f"{addr(gw, r.node)}"
            for gw in r.via
        )
    if routes:
        lines.append(f"set apply-groups {group}")
    else:
        lines += [
            "# (no routes: the inventory has no pod subnets yet)",
            f"delete apply-groups {group}",
        ]
    return "\n".join(lines) + "\n"


def _single(
    name: str, fn: Callable[[Cluster, RenderOptions], str]
) -> Callable[[Cluster, RenderOptions], list[RenderedFile]]:
    def files(cluster: Cluster, options: RenderOptions) -> list[RenderedFile]:
        return [RenderedFile(name, fn(cluster, options))]

    return files


frr_files = _single("nosdn-frr.conf", render_frr)
bird_files = _single("nosdn-bird.conf", render_bird)
cisco_files = _single("nosdn-cisco-ios.txt", render_cisco)
junos_files = _single("nosdn-junos.set", render_junos)
