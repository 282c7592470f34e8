"""`nosdn lab`: try nosdn on one machine, with a cluster made of network namespaces.

The commands only parse, call `nosdn.lab` and print; they print what the lab runs (``$ ip netns
exec ... nosdn apply ...``) so the demo doubles as a tutorial on what nosdn does on a node.
"""

from __future__ import annotations

import shlex
import sys
import time
from collections.abc import Callable
from pathlib import Path

import click
from rich.table import Table

from nosdn.cli._click import Group, OutputOpt, option
from nosdn.cli._lab_common import NameOpt, err, fail, help_text, lab_errors, log, out
from nosdn.cli._lab_node_cmds import node_group
from nosdn.cli._output import EXIT_FAILURE, Column, Output, color_allowed, dump, table
from nosdn.invocation import cmd
from nosdn.lab import (
    DEFAULT_NAME,
    CheckResult,
    Lab,
    LabSpec,
    apply_routes,
    check,
    down,
    open_lab,
    up,
)
from nosdn.lab.kubeapi import binaries_dir
from nosdn.lab.verdict import groups, owner

#: Above this many pods the matrix no longer fits a terminal; a per-source summary is shown.
MATRIX_MAX_COLUMNS = 12

lab_group = Group(
    "lab",
    help="""A Kubernetes-shaped cluster made of network namespaces on this machine (root).

A switch (a Linux bridge in its own namespace), N nodes on it and one external host; each node
runs pods made by the real CNI plugins (bridge, host-local, loopback, portmap) with the conflist
`nosdn render --format cni` writes, and gets its routes from `nosdn apply` run inside it.
Nothing is attached to this machine's own network, so no packet leaves the lab.

\b
Quickest start:  sudo nosdn lab demo

\b
Step by step:    sudo nosdn lab up --nodes 3 --ipv6
                 sudo ip netns exec nosdn-lab.node1 ip route   # look around
                 sudo nosdn lab check
                 sudo nosdn lab down

\b
With a router:   sudo nosdn lab up --nodes 4 --segments 2 --router-daemon bird
                 (two L2 segments; BIRD 2 in NAME.rt carries the pod subnets
                 of the other segment's nodes)

\b
A live cluster:  sudo nosdn lab up --agents        # kube-apiserver + nosdn agent
                 sudo nosdn lab node add            # watch the agents follow
                 sudo nosdn lab node readdress node2
                 sudo nosdn lab node remove node3
""",
    no_args_is_help=True,
)

NodesOpt = option("--nodes", "-n", type=int, default=3, help="How many nodes (1-200).")
Ipv6Opt = option(
    "--ipv6", is_flag=True, help="Dual-stack: IPv6 addresses, pod subnets and routes too."
)
PodsOpt = option("--pods-per-node", type=int, default=2, help="Pods (CNI attachments) per node.")
SegmentsOpt = option(
    "--segments",
    type=int,
    default=1,
    help="L2 segments to split the nodes over (10.10.0.0/24, 10.10.1.0/24, ...); more "
    "than one needs --router-daemon. Host routes then cover same-segment peers only.",
)
ROUTER_DAEMONS = ["bird", "frr"]


def RouterOpt(f: Callable[..., None]) -> Callable[..., None]:
    """``--router-daemon bird|frr``, and the hidden ``--router bird|frr`` it was called before
    (``--router`` alone is the router *target* of routes and render: one name, one meaning)."""
    f = option(
        "--router",
        "router_old",
        type=click.Choice(ROUTER_DAEMONS),
        hidden=True,
        help="The old name of --router-daemon (still read, for scripts).",
    )(f)
    return option(
        "--router-daemon",
        "router",
        type=click.Choice(ROUTER_DAEMONS),
        help="Join the segments with a router namespace running this daemon: bird (BIRD 2) "
        "or frr, configured with what `nosdn render --format bird|frr` prints.",
    )(f)


def _daemon(router: str | None, router_old: str | None) -> str | None:
    if router_old is not None:
        if router is not None and router != router_old:
            fail(f"--router {router_old} and --router-daemon {router}: give one", 2)
        err.print(f"note: --router {router_old} is now --router-daemon {router_old}", markup=False)
    return router or router_old


AgentsOpt = option(
    "--agents",
    is_flag=True,
    help="A live cluster: start an API server (NAME.api, 10.10.0.250), create a Node object "
    "per node, and run `nosdn agent` in every node instead of `nosdn apply`; "
    "`nosdn lab node add|remove|readdress` then changes the cluster through the API.",
)
BgpOpt = option(
    "--bgp",
    is_flag=True,
    help="With --agents --segments N --router-daemon bird|frr: the agents announce their pod "
    "subnets to the router over BGP (`nosdn agent --bgp`); the router runs only the peer group "
    "`nosdn render --format bird|frr --bgp` prints, no pod route.",
)
ApiOpt = option(
    "--api",
    type=click.Choice(["real", "emulator"]),
    default="real",
    help="With --agents: real = kube-apiserver on kine (TLS, RBAC; built once by `make kube`), "
    "emulator = the kmock emulator (plain HTTP, no Go needed).",
)


def _summary(lab: Lab) -> None:
    rows: list[tuple[str, str, str, str]] = []
    pods = {p.label: p for p in lab.pods()}
    segments = len(lab.topo.segments) > 1
    for node in lab.topo.nodes:
        rows.append(
            (
                f"{node.name}(segment-{node.segment})" if segments else node.name,
                node.netns,
                ",".join(str(ip) for ip in node.ips),
                ",".join(str(c) for c in node.pod_cidrs),
            )
        )
        for pod in node.pods:
            ep = pods[f"{node.name}/{pod}"]
            rows.append((ep.label, ep.netns, ",".join(str(ip) for ip in ep.ips), "-"))
    ext = lab.external()
    rows.append(("external", ext.netns, ",".join(str(ip) for ip in ext.ips), "-"))
    router = lab.topo.router
    if router is not None:
        rows.append((f"router({router.daemon})", router.netns, ",".join(map(str, router.ips)), "-"))
    if lab.topo.api_ip is not None:
        what = "kube-apiserver" if lab.topo.spec.api == "real" else "kmock"
        rows.append((f"api({what})", lab.topo.names.api, str(lab.topo.api_ip), "-"))
    table(
        (Column("machine"), Column("namespace"), Column("addresses"), Column("pod-subnets")),
        rows,
        title=f"lab {lab.name}",
    )


def _kube_hints(lab: Lab) -> None:
    """Where the kubeconfig is, and kubectl from the cache (run inside a lab namespace: the
    API server is reachable only from there)."""
    if lab.topo.spec.api is None:
        return
    name = _name_args(lab)
    out.print(f"kubeconfig: {lab.paths.kubeconfig}", markup=False)
    if lab.topo.spec.api == "real":
        kubectl = binaries_dir() / "kubectl"
        out.print(
            "  "
            + shlex.join(
                [
                    *("ip", "netns", "exec", lab.topo.names.api, str(kubectl)),
                    *("--kubeconfig", str(lab.paths.kubeconfig), "get", "nodes", "-o", "wide"),
                ]
            ),
            markup=False,
        )
    out.print(f"  agents' logs: {lab.paths.agent_log('NODE')}", markup=False)
    out.print("change the cluster:", markup=False)
    for line in (
        cmd("lab", "node", "add", *name),
        cmd("lab", "node", "readdress", lab.topo.nodes[0].name, *name),
        cmd("lab", "node", "remove", lab.topo.nodes[-1].name, *name),
    ):
        out.print(f"  {line}", markup=False)


def _name_args(lab: Lab) -> list[str]:
    return [] if lab.name == DEFAULT_NAME else ["--name", lab.name]


def hint_commands(lab: Lab) -> list[str]:
    """The commands `lab up` suggests, each a shell line that runs as printed (nosdn by the
    path it was started as: sudo and ``ip netns exec`` do not search a venv's bin)."""
    node1 = lab.topo.nodes[0]
    inv, conf = str(lab.paths.inventory), str(lab.paths.conflist(node1.name))
    in_node1 = shlex.join(["ip", "netns", "exec", node1.netns])
    lines = [
        f"{in_node1} ip route",
        cmd("routes", "-f", inv, "--node", node1.name),
        shlex.join(["cat", conf]),
        f"{in_node1} {cmd('doctor', '-f', inv, '--cni-conf', conf)}",
    ]
    last = lab.topo.nodes[-1]
    far = lab.state.pods.get(f"{last.name}/{last.pods[0]}", [""])[0]
    if far:
        lines.append(f"{in_node1} {cmd('trace', far, '-f', inv, '--cni-conf', conf)}")
    router = lab.topo.router
    graph = [f"--segment={seg.nets[0]}" for seg in lab.topo.segments if router is not None]
    if router is not None:
        graph.append(f"--router-address={','.join(map(str, router.ips))}")
    lines.append(f"{cmd('graph', '-f', inv, *graph)} > lab.svg")
    return lines


def _hints(lab: Lab) -> None:
    name = _name_args(lab)
    out.print("look around:", markup=False)
    for line in hint_commands(lab):
        out.print(f"  {line}", markup=False)
    out.print(f"then: {cmd('lab', 'check', *name)}", markup=False)
    out.print(f"  and {cmd('lab', 'down', *name)}", markup=False)


def _family_table(result: CheckResult, family: int) -> Table:
    t = Table(title=f"IPv{family}: ping from row to column", title_justify="left", show_lines=False)
    t.add_column("from ↓  to →", no_wrap=True)
    for target in result.targets:
        t.add_column(target.label.replace("/", "\n"), justify="center")
    cells = {
        (r.probe.src.label, r.probe.dst.label): r
        for r in result.results
        if r.probe.family == family
    }
    for src in result.sources:
        row = []
        for dst in result.targets:
            r = cells.get((src.label, dst.label))
            if r is None:
                row.append("[dim]·[/]")
            else:
                row.append("[green]✓[/]" if r.ok else "[bold red]✗[/]")
        t.add_row(src.label, *row)
    return t


def _family_plain(result: CheckResult, family: int) -> None:
    """The matrix as plain columns (a pipe, NO_COLOR): ok, FAIL, or - for not probed."""
    cells = {
        (r.probe.src.label, r.probe.dst.label): r
        for r in result.results
        if r.probe.family == family
    }
    rows = []
    for src in result.sources:
        row = [src.label]
        for dst in result.targets:
            r = cells.get((src.label, dst.label))
            row.append("-" if r is None else "ok" if r.ok else "FAIL")
        rows.append(row)
    table(
        [Column("from"), *(Column(t.label) for t in result.targets)],
        rows,
        title=f"IPv{family}: ping from row to column",
    )


def _print_check(result: CheckResult, lab: Lab | None) -> None:
    """The matrix (or a line per source), the failures grouped by what they share, and the
    doctor commands to run next (``lab`` None: the lab is gone, as after the demo)."""
    if len(result.targets) <= MATRIX_MAX_COLUMNS:
        for family in result.families:
            if color_allowed():  # the picture, for a person at a terminal
                out.print(_family_table(result, family))
            else:
                _family_plain(result, family)
    else:
        for src in result.sources:
            mine = [r for r in result.results if r.probe.src.label == src.label]
            ok = sum(r.ok for r in mine)
            colour = "green" if ok == len(mine) else "bold red"
            out.print(f"{src.label}: [{colour}]{ok}/{len(mine)}[/] pings answered")
    found, left = groups(result.results)
    for g in found:
        first = g.results[0]
        out.print(
            f"[bold red]✗[/] {g.text} ({len(g.results)} pings; e.g. {first.probe.src.label} → "
            f"{first.probe.dst.label} {first.probe.ip}: {first.detail})",
            highlight=False,
            markup=True,
        )
    for r in left[:SHOWN_FAILURES]:
        p = r.probe
        out.print(
            f"[bold red]✗[/] {p.src.label} → {p.dst.label} ({p.ip}): {r.detail}", highlight=False
        )
    if len(left) > SHOWN_FAILURES:
        out.print(f"  ... and {len(left) - SHOWN_FAILURES} more (-o json has every ping)")
    n, bad = len(result.results), len(result.failed)
    if bad:
        out.print(f"[bold red]{bad} of {n} pings failed[/]")
    else:
        out.print(f"[green]all {n} pings answered[/]")
    if bad and lab is not None:
        suspects = [g.suspect for g in found] or [owner(r.probe.src) for r in left]
        out.print("next, on the host the failures point at:", highlight=False)
        for s in dict.fromkeys(suspects[:3]):
            out.print(f"  {_doctor_cmd(lab, s)}", markup=False, highlight=False)


#: Single failures listed before "... and N more".
SHOWN_FAILURES = 20


def _doctor_cmd(lab: Lab, where: str) -> str:
    """The doctor command that looks at lab node (or external host) ``where``, as it runs."""
    if where == "external":
        return cmd(
            "doctor",
            "--netns",
            lab.topo.external_ns,
            "-f",
            str(lab.paths.inventory),
            "--external",
        )
    return cmd("doctor", "--netns", lab.topo.names.node(where))


class _Progress:
    """``pings: 120/450 (3 failed)`` on stderr, rewritten in place on a terminal; on a pipe
    one line at the start and every 10% (a CI log gets a handful of lines, not 450)."""

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()
        self.step = 0
        self.width = 0

    def __call__(self, done: int, failed: int, total: int) -> None:
        line = f"pings: {done}/{total}" + (f" ({failed} failed)" if failed else "")
        if self.tty:  # a carriage return and spaces: no escape sequence (NO_COLOR holds)
            self.width = max(self.width, len(line))
            end = "\r" + " " * self.width + "\r" if done == total else ""
            sys.stderr.write("\r" + line.ljust(self.width) + end)
            sys.stderr.flush()
        elif done * 10 // total > self.step or done == 1:
            self.step = done * 10 // total
            sys.stderr.write(line + "\n")
            sys.stderr.flush()


@lab_group.command(
    "up",
    help=help_text(
        "Build a lab: switch, nodes, external host, pods (real CNI plugins), and routes.",
        "With --segments 2 --router-daemon bird|frr the nodes are split over two switches "
        "joined by a router namespace whose daemon runs the config "
        "`nosdn render --format bird|frr` prints; nodes keep host routes to same-segment "
        "peers only and reach the rest through "
        "their default route to the router.",
        "Node addresses come from 10.10.0.0/24 (and fd00:10::/64 with --ipv6), pod subnets "
        "from 10.244.0.0/16 (fd00:244::/56). The inventory, each node's CNI conflist and the "
        "CNI state are kept in /run/nosdn/lab/NAME/.",
    ),
)
@NodesOpt
@Ipv6Opt
@PodsOpt
@SegmentsOpt
@RouterOpt
@AgentsOpt
@BgpOpt
@ApiOpt
@NameOpt
@option(
    "--routes/--no-routes",
    default=True,
    help="Run `nosdn apply` in every node and the external host once the pods exist. "
    "With --no-routes, pods only reach pods of their own node until `nosdn lab apply`. "
    "With --agents, --routes starts the agents (and --no-routes leaves that to `lab apply`).",
)
@option("--keep-on-error", is_flag=True, help="Leave a half-built lab to inspect.")
def up_cmd(
    *,
    nodes: int,
    ipv6: bool,
    pods_per_node: int,
    segments: int,
    router: str | None,
    router_old: str | None,
    agents: bool,
    bgp: bool,
    api: str,
    name: str,
    routes: bool,
    keep_on_error: bool,
) -> None:
    with lab_errors():
        spec = LabSpec(
            name=name,
            nodes=nodes,
            ipv6=ipv6,
            pods_per_node=pods_per_node,
            segments=segments,
            router=_daemon(router, router_old),
            api=api if agents else None,
            bgp=bgp,
        )
        start = time.monotonic()
        lab = up(spec, routes=routes, keep_on_error=keep_on_error, log=log)
        _summary(lab)
        out.print(f"lab {lab.name} is up ({time.monotonic() - start:.1f} s)")
        _hints(lab)
        _kube_hints(lab)


@lab_group.command(
    "apply",
    help=help_text(
        "Program the routes: `nosdn apply -f INVENTORY --node NAME` inside every node's "
        "namespace, `nosdn apply -f INVENTORY --external` inside the external host.",
        "Safe to repeat: apply only writes what is missing or wrong, so this also restores a "
        "route you deleted by hand.",
        "In a lab made with --agents: start `nosdn agent` in every node that runs none, run "
        "`nosdn apply --external` against the API, and wait for every node's routes.",
    ),
)
@NameOpt
def apply_cmd(name: str) -> None:
    with lab_errors():
        apply_routes(open_lab(name), log=log)


@lab_group.command(
    "check",
    help=help_text(
        "Ping every pod from every other pod, every node and the external host (each family).",
        "Prints the matrix (or -o json|yaml) and exits 1 if any ping went unanswered.",
    ),
)
@NameOpt
@OutputOpt
@option("--parallel", type=click.IntRange(1, 64), default=16, help="Pings in flight at once.")
@option(
    "--out",
    "matrix_png",
    type=click.Path(path_type=Path),
    help="Also draw the matrix into this file (PNG; SVG if it ends in .svg), with Graphviz.",
)
def check_cmd(name: str, output: Output, parallel: int, matrix_png: Path | None) -> None:
    with lab_errors():
        lab = open_lab(name)
        result = check(lab, parallel=parallel, progress=_Progress())
    if matrix_png is not None:
        from nosdn.lab.matrix import write_matrix
        from nosdn.render.graph import GraphError

        try:
            write_matrix(result, matrix_png)
        except (GraphError, OSError) as e:
            fail(f"--out {matrix_png}: {e}", EXIT_FAILURE)
        err.print(f"wrote {matrix_png}", markup=False)
    if output is Output.table:
        _print_check(result, lab)
    else:
        dump(result.as_dict(), output)
    if not result.ok:
        if not lab.state.routes:
            name_opt = "" if name == DEFAULT_NAME else f" --name {name}"
            err.print(
                "no routes were applied in this lab yet, so only pods on the same node can "
                f"reach each other — run `nosdn lab apply{name_opt}`",
                markup=False,
            )
        raise SystemExit(EXIT_FAILURE)


# `lab node add|remove|readdress`: taught after check, before down
lab_group.add_command(node_group)


@lab_group.command(
    "down",
    help=help_text(
        "Remove every namespace, process and state file of the lab.",
        "Safe to repeat, and works after a crash: namespaces are found by their names, not "
        "from the state file.",
    ),
)
@NameOpt
def down_cmd(name: str) -> None:
    with lab_errors():
        report = down(name)
    if report.removed_anything:
        out.print(
            f"lab {name}: removed {len(report.namespaces)} namespace(s)"
            + (f", killed {len(report.killed)} process(es)" if report.killed else "")
            + (", state" if report.state_removed else "")
        )
    else:
        out.print(f"lab {name}: nothing to remove")


@lab_group.command(
    "demo",
    help=help_text(
        "Up, apply, check, down: nosdn end to end in a few seconds.",
        "Builds a lab without routes, runs `nosdn apply` inside each node as an operator "
        "would, pings every pod from everywhere, and removes the lab again (also when "
        "something fails).",
    ),
)
@NodesOpt
@Ipv6Opt
@PodsOpt
@SegmentsOpt
@RouterOpt
@AgentsOpt
@BgpOpt
@ApiOpt
@NameOpt
@option("--keep", is_flag=True, help="Leave the lab up afterwards to explore it.")
def demo_cmd(
    *,
    nodes: int,
    ipv6: bool,
    pods_per_node: int,
    segments: int,
    router: str | None,
    router_old: str | None,
    agents: bool,
    bgp: bool,
    api: str,
    name: str,
    keep: bool,
) -> None:
    start = time.monotonic()
    ok = False
    lab: Lab | None = None
    with lab_errors():
        spec = LabSpec(
            name=name,
            nodes=nodes,
            ipv6=ipv6,
            pods_per_node=pods_per_node,
            segments=segments,
            router=_daemon(router, router_old),
            api=api if agents else None,
            bgp=bgp,
        )
        try:
            out.print(f"[bold]1/4 up[/]: {nodes} nodes, {pods_per_node} pods each")
            lab = up(spec, routes=False, log=log)
            _summary(lab)
            if agents:
                out.print("[bold]2/4 agents[/]: nosdn agent inside every node, from the API")
            else:
                out.print("[bold]2/4 apply[/]: nosdn apply inside every node and the external host")
            apply_routes(lab, log=log)
            out.print("[bold]3/4 check[/]: ping every pod from every pod, node and the outside")
            result = check(lab, progress=_Progress())
            _print_check(result, lab if keep else None)
            ok = result.ok
        finally:
            if keep:
                if lab is not None:
                    _kube_hints(lab)
                out.print(
                    f"lab {name} kept; remove it with: {cmd('lab', 'down', '--name', name)}",
                    markup=False,
                )
            else:
                out.print("[bold]4/4 down[/]")
                report = down(name)
                out.print(f"removed {len(report.namespaces)} namespaces")
    out.print(f"demo {'passed' if ok else 'FAILED'} in {time.monotonic() - start:.1f} s")
    if not ok:
        raise SystemExit(EXIT_FAILURE)
