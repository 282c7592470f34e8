"""`nosdn doctor`, `nosdn trace IP` and `nosdn graph`: the commands for whoever is paged.

They parse, call `nosdn.diagnose` (or `nosdn.render.graph`) and print: one line per check with
what it saw and the command that fixes it, or a path read top to bottom. Output is plain text
through rich `Text` objects (never markup: addresses and rules contain brackets and colons).

The cluster comes from the inventory or from the cluster's Node objects
(`nosdn.cli._click.source_options`): on a cluster run by ``nosdn agent`` there is no
inventory, and the person who is paged should not have to write one. Doctor read from the API
adds a ``nodes`` line (how many Nodes, which have no pod subnet yet); when the API cannot be
read, that line fails and the host's own checks still run, because a host whose pod network is
broken is also one that may not reach the API, and what doctor can still see is what helps.
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import click
from click.core import ParameterSource
from rich.text import Text

from nosdn.cli._click import (
    SOURCE_FILE_HELP,
    BgpDirOpt,
    OutputOpt,
    argument,
    command,
    load_source,
    option,
    read_api,
    report_nodes,
    source_options,
)
from nosdn.cli._output import EXIT_FAILURE, Output, dump, err, fail, out
from nosdn.cli._params import TABLE, reexec_in_netns
from nosdn.invocation import self_command
from nosdn.model import DEFAULT_PROTOCOL, Cluster
from nosdn.sources.select import ClusterSource, SourceError

if TYPE_CHECKING:
    from nosdn.diagnose import CheckResult
    from nosdn.sources.listing import NodeList

OptionalSourceOpts = source_options(
    required=False,
    file_help=SOURCE_FILE_HELP + " With neither, only the host's own settings are checked.",
)
NodeOpt = option(
    "--node",
    help="This host is this cluster node (default: found from this host's addresses).",
)
ExternalOpt = option(
    "--external", is_flag=True, help="This host is not a node (routes only, no pods)."
)
TableOpt = option(
    "--table", type=TABLE, default="main", help="Kernel routing table nosdn manages (main = 254)."
)
NetnsOpt = option(
    "--netns",
    help="Look at this named network namespace (runs as `ip netns exec NETNS nosdn ...`).",
)
ProtocolOpt = option(
    "--protocol",
    type=int,
    default=DEFAULT_PROTOCOL,
    help="Route protocol number that marks nosdn's routes.",
)
PathType = click.Path(path_type=Path)
DEFAULT_CNI_CONF = Path("/etc/cni/net.d/10-nosdn.conflist")

#: doctor's --masquerade (the agent's true|false, or auto) as `nosdn.diagnose.gather` takes it.
_MASQUERADE: dict[str, Literal["auto", "yes", "no"]] = {
    "auto": "auto",
    "true": "yes",
    "false": "no",
}
_STYLE = {"ok": "green", "warn": "yellow", "fail": "bold red", "skip": "dim"}


def _lab_defaults(
    source: ClusterSource, node: str | None, cni_conf: Path
) -> tuple[ClusterSource, str | None, Path]:
    """In a lab node's namespace (``ip netns exec LAB.NODE nosdn doctor``), what was not
    given comes from the lab: its inventory, the node's name and the node's own conflist, so
    no check reads, and no fix writes, the machine's /etc/cni/net.d."""
    ctx = click.get_current_context()
    if ctx.get_parameter_source("cni_conf") is not ParameterSource.DEFAULT:
        return source, node, cni_conf
    from nosdn.lab.state import lab_node_here

    here = lab_node_here()
    if here is None:
        return source, node, cni_conf
    if source.kind is None:
        source = replace(source, kind="file", file=here.paths.inventory)
    err.print(
        f"nosdn: in node {here.node} of lab {here.lab}: its conflist {here.conflist}"
        + (f", the lab's inventory {source.file}" if source.file == here.paths.inventory else ""),
        markup=False,
    )
    return source, node or here.node, here.conflist


def _load_optional(source: ClusterSource) -> Cluster | None:
    return load_source(source) if source.kind is not None else None


def _nodes_line(listing: NodeList | None, origin: str, error: str | None) -> CheckResult:
    """Doctor's first line when the nodes come from the Kubernetes API."""
    from nosdn.diagnose import result as r

    if listing is None:
        return r.fail(
            "nodes",
            error or "the Kubernetes API could not be read",
            "check the API server and the kubeconfig (kubectl get nodes), or give the "
            "inventory with -f FILE; the host's own checks follow",
        )
    n = len(listing.cluster.nodes)
    without = listing.without_subnet
    if without:
        return r.warn(
            "nodes",
            f"{len(without)} of {listing.listed} Nodes from {origin} have no spec.podCIDRs "
            "yet: nothing routes to their pods",
            "give them pod subnets: kube-controller-manager --allocate-node-cidrs, or "
            "nosdn agent --allocate-node-cidrs --cluster-cidr CIDR",
            tuple(without),
        )
    return r.ok("nodes", f"{n} Nodes from {origin}, each with its pod subnets")


def _fixes_for(source: ClusterSource, results: list[CheckResult]) -> list[CheckResult]:
    """Fix commands that name the source the nodes came from.

    The checks write ``nosdn apply -f INVENTORY ...`` when they know no inventory path; with
    the nodes read from the API the same command takes the API options instead (apply and
    render read them too). Stopgap: `nosdn.diagnose` should be handed the source's options."""
    if source.kind != "kube":
        return results
    import shlex
    from dataclasses import replace

    args = shlex.join(source.argv())
    again = f" {args}" if args else ""
    return [
        replace(r, fix=r.fix.replace(" -f INVENTORY", again))
        if r.fix and " -f INVENTORY" in r.fix
        else r
        for r in results
    ]


#: First words of a fix that is a command (the rest are said in words).
_COMMAND_WORDS = ("sysctl", "ip", "nft", "iptables", "ip6tables", "modprobe", "birdc", "sh")


def in_netns(fix: str, netns: str) -> str:
    """``fix`` as it runs from the machine's own shell when doctor looked at ``netns``
    (``ip netns exec NETNS ...``; through ``sh -c`` when it redirects or chains commands);
    a fix in words is left as it is. A person reads doctor from the machine's own shell,
    also when it ran inside a namespace (--netns, a lab node); ``-o json`` keeps each fix as
    it runs inside, and says the namespace (``netns``)."""
    import shlex

    program = shlex.join(self_command())
    first = fix.split(maxsplit=1)[0] if fix.strip() else ""
    if first not in _COMMAND_WORDS and not fix.startswith(program):
        return fix
    if any(c in fix for c in (">", "|", ";", "&&")):
        return f"ip netns exec {shlex.quote(netns)} sh -c {shlex.quote(fix)}"
    return f"ip netns exec {shlex.quote(netns)} {fix}"


@command("doctor")
@OptionalSourceOpts
@NodeOpt
@ExternalOpt
@TableOpt
@ProtocolOpt
@option(
    "--cni-conf",
    type=PathType,
    default=DEFAULT_CNI_CONF,
    help="The CNI conflist this node's pods are made with.",
)
@option(
    "--masquerade",
    type=click.Choice(["auto", "true", "false"]),
    default="auto",
    help="Is pod egress masqueraded here (the agent's --masquerade)? auto: check it if a "
    "nosdn nftables table exists (the agent's); true: it must be; false: do not check.",
)
@option("-v", "--verbose", is_flag=True, help="Show the details under every check.")
@NetnsOpt
@BgpDirOpt
@OutputOpt
def doctor(
    *,
    source: ClusterSource,
    node: str | None,
    external: bool,
    netns: str | None,
    table: int,
    protocol: int,
    cni_conf: Path,
    masquerade: Literal["auto", "true", "false"],
    verbose: bool,
    bgp_dir: Path,
    output: Output,
) -> None:
    """Check this host for everything that silently breaks pod traffic (read-only).

    One line per check: ok / warn / fail / skip, what it saw, and the exact command that fixes
    it. Checks: IP forwarding, rp_filter, the firewall's FORWARD path and drops before it
    (prerouting, ingress), nosdn's routes (missing, wrong, stale), conflicts and shadowing
    routes, ip rules, off-link nodes, next-hop neighbours, MTU, the CNI conflist, the pod
    bridge, masquerading and kernel nexthop support; the last line says what is not checked.
    Exit 1 if any check fails.
    """
    from nosdn.diagnose import TargetError, gather, healthy, run_checks

    reexec_in_netns(netns)
    source, node, cni_conf = _lab_defaults(source, node, cni_conf)
    first: list[CheckResult] = []
    cluster: Cluster | None = None
    if source.kind == "kube":
        try:
            listing, origin = read_api(source)
        except SourceError as e:
            first.append(_nodes_line(None, "", str(e)))
        else:
            cluster = report_nodes(listing, origin)
            first.append(_nodes_line(listing, origin, None))
    else:
        cluster = _load_optional(source)
    try:
        facts = gather(
            cluster,
            inventory=source.file,
            node=node,
            external=external,
            table=table,
            protocol=protocol,
            cni_conf=cni_conf,
            masquerade=_MASQUERADE[masquerade],
            program=self_command(),
            bgp_dir=bgp_dir,
        )
    except TargetError as e:
        fail(str(e))
    results = [*first, *_fixes_for(source, run_checks(facts))]
    ok = healthy(results)
    from nosdn.lab.netns import current_netns

    here = current_netns()  # a fix runs there: the table's fix lines enter it
    if output is not Output.table:
        dump(
            {
                "target": str(facts.target) if facts.target is not None else None,
                "netns": here,
                "ok": ok,
                "checks": [r.as_dict() for r in results],
            },
            output,
        )
    else:
        width = max(len(r.id) for r in results)
        for r in results:
            line = Text()
            line.append(f"{r.status:<4}", style=_STYLE[r.status])
            line.append(f"  {r.id:<{width}}  {r.saw}")
            out.print(line)
            if r.fix and r.status in ("fail", "warn"):
                fix = in_netns(r.fix, here) if here else r.fix
                out.print(Text(f"      {'':<{width}}fix: {fix}", style="cyan"))
            if r.details and (verbose or r.status == "fail"):
                shown = r.details if verbose else r.details[:10]
                for d in shown:
                    out.print(Text(f"      {'':<{width}}- {d}"))
                if len(r.details) > len(shown):
                    out.print(
                        Text(f"      {'':<{width}}  ... {len(r.details) - len(shown)} more (-v)")
                    )
        counts = {s: sum(r.status == s for r in results) for s in ("ok", "warn", "fail", "skip")}
        summary = Text(f"{facts.target or 'this host'}: ")
        summary.append(
            ", ".join(f"{n} {s}" for s, n in counts.items() if n),
            style="bold red" if not ok else "green",
        )
        out.print(summary)
    if not ok:
        raise SystemExit(EXIT_FAILURE)


@command("trace")
@argument("ip", doc="A pod, service or node address.")
@OptionalSourceOpts
@NodeOpt
@ExternalOpt
@TableOpt
@ProtocolOpt
@option(
    "--cni-conf",
    type=PathType,
    default=DEFAULT_CNI_CONF,
    help="This node's CNI conflist (names the pod bridge).",
)
@NetnsOpt
@BgpDirOpt
@OutputOpt
def trace(
    ip: str,
    *,
    source: ClusterSource,
    node: str | None,
    external: bool,
    netns: str | None,
    table: int,
    protocol: int,
    cni_conf: Path,
    bgp_dir: Path,
    output: Output,
) -> None:
    """Where a packet to IP goes from this host, and whether nosdn wants it so (read-only).

    Whose address it is (pod subnet and node, service, node), the kernel's own route lookup
    and the route that gave it, the next hop and its ARP/NDP state, what nosdn wants, and the
    path top to bottom. Exit 1 when the path is not what nosdn wants.
    """
    from ipaddress import ip_address

    from nosdn.diagnose import TargetError, gather
    from nosdn.diagnose.trace import explain

    try:
        addr = ip_address(ip)
    except ValueError:
        fail(f"{ip!r} is not an IP address — give one like 10.244.2.5 or fd00:244:0:2::5")
    reexec_in_netns(netns)
    source, node, cni_conf = _lab_defaults(source, node, cni_conf)
    cluster = _load_optional(source)
    try:
        facts = gather(
            cluster,
            inventory=source.file,
            node=node,
            external=external,
            table=table,
            protocol=protocol,
            cni_conf=cni_conf,
            addresses=[addr],
            firewall=False,
            bgp_dir=bgp_dir,
            agent=None,
        )
    except TargetError as e:
        fail(str(e))
    result = explain(facts, addr)
    if output is not Output.table:
        dump({"from": str(facts.target) if facts.target else None, **result.as_dict()}, output)
    else:
        out.print(Text(f"trace {addr} from {facts.target or 'this host'}", style="bold"))
        for step in result.steps:
            line = Text(f"  {step.label:<9} ")
            line.append(step.text, style=_STYLE[step.status] if step.status == "fail" else "")
            out.print(line)
        out.print(Text(f"  {'path':<9} {' '.join(result.path)}"))
        verdict = Text(f"{result.status}", style=_STYLE[result.status])
        verdict.append(f": {result.verdict}")
        out.print(verdict)
    if result.status == "fail":
        raise SystemExit(EXIT_FAILURE)


def _unpinned(source: ClusterSource) -> frozenset[str]:
    """Nodes of the inventory whose pod subnets exist only in memory (not in the file)."""
    if source.kind != "file" or source.file is None:
        return frozenset()
    from nosdn.sources.inventory import InventoryError, load_cluster

    try:
        raw = load_cluster(source.file, allocate_missing=False, warn=False)
    except InventoryError:
        return frozenset()
    return frozenset(n.name for n in raw.nodes if not n.pod_cidrs)


@command("graph")
@source_options()
@option(
    "--format",
    "-F",
    "fmt",
    type=click.Choice(["svg", "png", "dot", "mermaid"]),
    default="svg",
    help="svg or png (drawn by Graphviz), dot or mermaid.",
)
@option(
    "--segment",
    multiple=True,
    help="An L2 network the nodes sit on (repeat for each); nodes are grouped by it. "
    "Default: all nodes on one segment.",
)
@option(
    "--router-address",
    "router",
    help="The router's addresses, comma-separated: it joins every segment it has an "
    "address in and carries every pod subnet.",
)
@option("--out", "out_file", type=PathType, help="Write to this file instead of stdout.")
def graph(
    *,
    source: ClusterSource,
    fmt: str,
    segment: tuple[str, ...],
    router: str | None,
    out_file: Path | None,
) -> None:
    """Draw the cluster: segments, nodes, addresses, pod subnets, the router, and which routes
    go where (host routes per segment, the router's table, service routes).

    \b
    Examples:
      nosdn graph -f inv.yaml > cluster.svg
      nosdn graph -f inv.yaml --format mermaid
      nosdn graph -f inv.yaml --segment 10.10.0.0/24 --segment 10.10.1.0/24 \\
          --router-address 10.10.0.253,10.10.1.253 --format png --out cluster.png
    """
    from nosdn.addr import parse_ip, parse_net
    from nosdn.render.graph import FORMATS, GraphError, picture, render_graph

    if fmt not in FORMATS:
        fail(f"--format {fmt}: choose one of {', '.join(FORMATS)}")
    try:
        nets = [parse_net(s) for s in segment]
    except ValueError as e:
        fail(f"--segment: {e} — give a network such as 10.10.0.0/24")
    try:
        ips = [parse_ip(s.strip()) for s in router.split(",")] if router else []
    except ValueError as e:
        fail(f"--router-address: {e} — give the router's addresses, e.g. 10.10.0.253,10.10.1.253")
    cluster = load_source(source)
    try:
        data = render_graph(picture(cluster, nets, ips, unpinned=_unpinned(source)), fmt)
    except GraphError as e:
        fail(str(e), EXIT_FAILURE)
    if out_file is not None:
        out_file.write_bytes(data)
        return
    if fmt == "png" and sys.stdout.isatty():
        fail("a PNG is binary: write it with --out FILE or redirect stdout")
    sys.stdout.buffer.write(data)
    sys.stdout.flush()
