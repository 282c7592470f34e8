"""Commands that only compute: check, allocate (an inventory), routes (an inventory or the
cluster's Node objects, see `nosdn.cli._click.source_options`). No root."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from nosdn.addr import ip_str, net_str
from nosdn.checks import check_cluster
from nosdn.cli._click import FileOpt, OutputOpt, command, load_source, option, source_options
from nosdn.cli._output import (
    API_VERSION,
    EXIT_BAD_INPUT,
    EXIT_FAILURE,
    Column,
    Output,
    dump,
    fail,
    out,
    print_problems,
    problem_dicts,
    table,
)
from nosdn.echo import echo
from nosdn.invocation import cmd
from nosdn.ipam import allocate
from nosdn.model import EXTERNAL, ROUTER, Cluster, Route, Target
from nosdn.plan import desired_routes
from nosdn.problems import did_you_mean
from nosdn.sources.inventory import (
    InventoryError,
    WriteError,
    parse_inventory,
    read_inventory,
    read_yaml,
    write_allocation,
)
from nosdn.sources.select import ClusterSource


def route_dict(r: Route) -> dict[str, Any]:
    return {"dst": net_str(r.dst), "via": [ip_str(v) for v in r.via], "node": r.node}


def routes_json(target: str, routes: list[Route]) -> str:
    """The routes document, one route per line, formatted directly (several times faster than
    through dicts and the json module at 50,000 routes). Addresses need no escaping."""
    dumps = json.dumps
    lines = []
    for r in routes:
        via = ", ".join('"' + ip_str(v) + '"' for v in r.via)
        lines.append(f'    {{"dst": "{net_str(r.dst)}", "via": [{via}], "node": {dumps(r.node)}}}')
    body = "[\n" + ",\n".join(lines) + "\n  ]" if lines else "[]"
    head = f'  "apiVersion": "{API_VERSION}",\n  "kind": "Routes",\n'
    return f'{{\n{head}  "target": {dumps(target)},\n  "routes": {body}\n}}\n'


ROUTE_COLUMNS = (Column("destination"), Column("via"), Column("node"), Column("family", wide=True))


def routes_table(routes: list[Route], title: str) -> None:
    table(
        ROUTE_COLUMNS,
        (
            (
                str(r.dst),
                ",".join(str(v) for v in r.via),
                r.node or "(services)",
                f"IPv{r.dst.version}",
            )
            for r in routes
        ),
        title=title,
    )


def pick_target(
    cluster: Cluster, node: str | None, external: bool, router: bool, where: str = "the inventory"
) -> Target:
    if sum([node is not None, external, router]) != 1:
        fail("choose exactly one of --node NAME, --external or --router")
    if node is not None:
        if cluster.node(node) is None:
            fail(
                f"--node {node}: no such node in {where} — "
                f"{did_you_mean(node, (n.name for n in cluster.nodes))}"
                f"(nodes: {', '.join(n.name for n in cluster.nodes[:10])}"
                f"{', ...' if len(cluster.nodes) > 10 else ''})"
            )
        return Target.for_node(node)
    return EXTERNAL if external else ROUTER


@command("check")
@FileOpt
@OutputOpt
def check(file: Path, output: Output) -> None:
    """Check an inventory and report every problem at once (exit 2 if any).

    Refuses what the kernel would wrongly accept: overlapping pod subnets, a pod subnet that
    covers a node's address, pod and service ranges that overlap, duplicate names or addresses,
    subnets outside the cluster CIDRs, and more. Each problem names the node, field and value.
    """
    try:
        cluster, problems = parse_inventory(read_yaml(file), str(file))
    except InventoryError as e:
        problems, cluster = list(e.problems), Cluster(())
    if not problems:
        alloc = allocate(cluster)
        problems = [*alloc.problems, *check_cluster(alloc.cluster)]
        pending = len(alloc.assigned)
    else:
        pending = 0
    if output is not Output.table:
        dump(
            {
                "ok": not problems,
                "nodes": len(cluster.nodes),
                "unallocated": pending,
                "problems": problem_dicts(problems),
            },
            output,
        )
    elif problems:
        print_problems(f"{echo(str(file))}: {len(problems)} problem(s)", problems)
    else:
        fix = cmd("allocate", "-f", str(file), "--write")
        note = f"; {pending} node(s) without podCIDRs (pin them: {fix})" if pending else ""
        out.print("[green]ok[/] ", end="")
        out.print(f"{file}: {len(cluster.nodes)} nodes{note}", markup=False)
    if problems:
        raise SystemExit(EXIT_BAD_INPUT)


@command("allocate")
@FileOpt
@option("--write", is_flag=True, help="Write the subnets into the file (keeps comments and order).")
@OutputOpt
def allocate_cmd(file: Path, write: bool, output: Output) -> None:
    """Give every node without a pod subnet one per family from the cluster CIDRs.

    Stable: existing subnets never move, new nodes get the lowest free ones. Without --write
    it only shows what it would assign.
    """
    text, data = read_inventory(file)
    cluster, problems = parse_inventory(data, str(file))
    if problems:
        raise InventoryError(problems)
    alloc = allocate(cluster)
    problems = [*alloc.problems, *check_cluster(alloc.cluster)]
    if problems:
        raise InventoryError(problems)
    data = {name: [str(c) for c in cidrs] for name, cidrs in alloc.assigned.items()}
    if write and alloc.assigned:
        try:
            write_allocation(file, alloc, original=text)
        except WriteError as e:
            fail(str(e), EXIT_FAILURE)
    if output is not Output.table:
        dump({"assigned": data, "written": write and bool(data)}, output)
        return
    if not data:
        out.print("every node already has its pod subnets; nothing to do")
        return
    table(
        (Column("node"), Column("podCIDRs")),
        ((name, ",".join(cidrs)) for name, cidrs in data.items()),
        title=f"{'assigned' if write else 'would assign'} ({len(data)} nodes)",
    )
    if not write:
        out.print("run again with --write to pin these in the file")


@command("routes")
@source_options()
@option("--node", help="Routes for this cluster node: every other node's pod subnets.")
@option(
    "--external",
    is_flag=True,
    help="Routes for a machine outside the cluster: all pod subnets plus the service CIDRs via "
    "the serviceVia nodes.",
)
@option(
    "--router",
    is_flag=True,
    help="The route table for the network's router or cloud: all pod subnets.",
)
@OutputOpt
def routes(
    source: ClusterSource, node: str | None, external: bool, router: bool, output: Output
) -> None:
    """Print the routes one machine needs (no root: this only computes)."""
    if sum([node is not None, external, router]) != 1:  # before reading any node
        fail("choose exactly one of --node NAME, --external or --router")
    cluster = load_source(source)
    target = pick_target(cluster, node, external, router, source.what)
    rs = desired_routes(cluster, target)
    if output is Output.json:
        sys.stdout.write(routes_json(str(target), rs))
    elif output is Output.yaml:
        dump({"target": str(target), "routes": [route_dict(r) for r in rs]}, output)
    else:
        routes_table(rs, f"routes for {target} ({len(rs)})")
