"""`nosdn doctor`, `nosdn trace IP` and `nosdn graph`: the commands for whoever is paged.

They parse, call `nosdn.diagnose` (or `nosdn.render.graph`) and print: one line per check with
what it saw and the command that fixes it, or a path read top to bottom. Output is plain text
through rich `Text` objects (never markup: addresses and rules contain brackets and colons).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Literal

import click
from rich.text import Text

from nosdn.cli._common import (
    EXIT_FAILURE,
    Output,
    OutputOpt,
    argument,
    command,
    dump,
    fail,
    file_option,
    load,
    option,
    out,
)
from nosdn.model import DEFAULT_PROTOCOL, Cluster

OptionalFileOpt = file_option(
    "Inventory YAML. Without it only the host's own settings are checked.", required=False
)
NodeOpt = option(
    "--node",
    help="This host is this cluster node (default: found from this host's addresses).",
)
ExternalOpt = option(
    "--external", is_flag=True, help="This host is not a node (routes only, no pods)."
)
TableOpt = option("--table", type=int, default=254, help="Kernel routing table nosdn manages.")
ProtocolOpt = option(
    "--protocol",
    type=int,
    default=DEFAULT_PROTOCOL,
    help="Route protocol number that marks nosdn's routes.",
)
PathType = click.Path(path_type=Path)
DEFAULT_CNI_CONF = Path("/etc/cni/net.d/10-nosdn.conflist")

_STYLE = {"ok": "green", "warn": "yellow", "fail": "bold red", "skip": "dim"}


def _load_optional(path: Path | None) -> Cluster | None:
    return load(path) if path is not None else None


@command("doctor")
@OptionalFileOpt
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
    type=click.Choice(["auto", "yes", "no"]),
    default="auto",
    help="Is pod egress masqueraded here? auto: check it if a nosdn nftables table "
    "exists (the agent's); yes: it must be; no: do not check.",
)
@option("-v", "--verbose", is_flag=True, help="Show the details under every check.")
@OutputOpt
def doctor(
    *,
    file: Path | None,
    node: str | None,
    external: bool,
    table: int,
    protocol: int,
    cni_conf: Path,
    masquerade: Literal["auto", "yes", "no"],
    verbose: bool,
    output: Output,
) -> None:
    """Check this host for everything that silently breaks pod traffic (read-only).

    One line per check: ok / warn / fail / skip, what it saw, and the exact command that fixes
    it. Checks: IP forwarding, rp_filter, the firewall's FORWARD path, nosdn's routes (missing,
    wrong, stale), conflicts, off-link nodes, next-hop neighbours, MTU, the CNI conflist, the
    pod bridge, masquerading and kernel nexthop support. Exit 1 if any check fails.
    """
    from nosdn.diagnose import TargetError, gather, healthy, run_checks

    cluster = _load_optional(file)
    try:
        facts = gather(
            cluster,
            inventory=file,
            node=node,
            external=external,
            table=table,
            protocol=protocol,
            cni_conf=cni_conf,
            masquerade=masquerade,
        )
    except TargetError as e:
        fail(str(e))
    results = run_checks(facts)
    ok = healthy(results)
    if output is not Output.table:
        dump(
            {
                "target": str(facts.target) if facts.target is not None else None,
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
                out.print(Text(f"      {'':<{width}}fix: {r.fix}", style="cyan"))
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
@OptionalFileOpt
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
@OutputOpt
def trace(
    ip: str,
    *,
    file: Path | None,
    node: str | None,
    external: bool,
    table: int,
    protocol: int,
    cni_conf: Path,
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
    cluster = _load_optional(file)
    try:
        facts = gather(
            cluster,
            inventory=file,
            node=node,
            external=external,
            table=table,
            protocol=protocol,
            cni_conf=cni_conf,
            addresses=[addr],
            firewall=False,
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


@command("graph")
@option(
    "-f", "--file", type=PathType, required=True, envvar="NOSDN_INVENTORY", help="Inventory YAML."
)
@option(
    "--format",
    "-F",
    "fmt",
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
    "--router",
    help="The router's addresses, comma-separated: it joins every segment it has an "
    "address in and carries every pod subnet.",
)
@option("--out", "out_file", type=PathType, help="Write to this file instead of stdout.")
def graph(
    *,
    file: Path,
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
          --router 10.10.0.253,10.10.1.253 --format png --out cluster.png
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
        fail(f"--router: {e} — give the router's addresses, e.g. 10.10.0.253,10.10.1.253")
    cluster = load(file)
    try:
        data = render_graph(picture(cluster, nets, ips), fmt)
    except GraphError as e:
        fail(str(e), EXIT_FAILURE)
    if out_file is not None:
        out_file.write_bytes(data)
        return
    if fmt == "png" and sys.stdout.isatty():
        fail("a PNG is binary: write it with --out FILE or redirect stdout")
    sys.stdout.buffer.write(data)
    sys.stdout.flush()
