"""Commands that read or write this host's kernel routing table: plan, apply, status, flush.

They parse options, open the kernel backend, run one reconcile pass and print. Which node this
host is comes from ``--node``/``--external`` or, by default, from its own addresses, so the
same command line (and the same inventory) works unchanged on every node.

The nodes come from the inventory or from one list of the cluster's Node objects
(`nosdn.cli._click.source_options`). ``apply`` takes the API too, not only ``plan`` and
``status``: on a cluster run by ``nosdn agent`` it is how a person restores a node's routes by
hand while its agent is down, and what doctor's fix says. It computes what the agent computes
(same Node objects, same checks, same protocol number), so with the agent's node-address
options the two write the same routes and never fight.

Long listings are written straight to stdout rather than through rich: ``plan`` of 50,000 routes
would otherwise spend longer printing than the kernel spends installing them.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click

from nosdn.cli._click import (
    BgpDirOpt,
    OutputOpt,
    command,
    load_source,
    option,
    require_net_admin,
    source_options,
)
from nosdn.cli._cloud import cloud_command  # adds --cloud aws|gce|azure (the route table)
from nosdn.cli._output import EXIT_FAILURE, Column, Output, dump, err, fail
from nosdn.cli._params import NETNS_HELP, TABLE, netns_exists
from nosdn.model import DEFAULT_PROTOCOL, EXTERNAL, Cluster, IPAddress, Route, Shadow, Target
from nosdn.plan import DEFAULT_MAX_DELETE_SHARE, desired_routes
from nosdn.plan import shadows as find_shadows
from nosdn.problems import did_you_mean
from nosdn.reconcile import (
    MassRemovalError,
    OffLinkError,
    PassResult,
    nodes_with_addresses,
    reconcile_routes,
)
from nosdn.sources.select import ClusterSource

if TYPE_CHECKING:  # the backend is imported when a command runs, not for `nosdn --help`
    from nosdn.backends.base import WriteError
    from nosdn.backends.birdc import Session
    from nosdn.backends.kernel import KernelBackend

#: Failed writes listed one per line; the rest are counted (with their likely cause).
MAX_FAILURE_LINES = 20
RT_PROTOS_D = Path(os.environ.get("NOSDN_RT_PROTOS_D", "/etc/iproute2/rt_protos.d"))

NodeOpt = option(
    "--node",
    help="This host is this cluster node (default: found from this host's own addresses).",
)
ExternalOpt = option(
    "--external",
    is_flag=True,
    help="This host is not a node: route to every pod, and to the service CIDRs via the "
    "serviceVia nodes (ECMP).",
)
TableOpt = option(
    "--table", type=TABLE, default="main", help="Kernel routing table to manage (main = 254)."
)
ProtocolOpt = option(
    "--protocol",
    type=int,
    default=DEFAULT_PROTOCOL,
    help="Route protocol number that marks nosdn's routes and nexthops; "
    "routes with any other number are never touched.",
)
NetnsOpt = option("--netns", callback=netns_exists, help=NETNS_HELP)


@contextmanager
def _backend(table: int, protocol: int, netns: str | None) -> Iterator[KernelBackend]:
    from nosdn.backends.kernel import KernelBackend

    try:
        backend = KernelBackend(table=table, protocol=protocol, netns=netns)
    except ValueError as e:
        fail(str(e))
    except OSError as e:
        fail(f"cannot open the kernel's routing table: {e}", EXIT_FAILURE)
    try:
        yield backend
    finally:
        backend.close()


def _target(
    cluster: Cluster, backend: KernelBackend, node: str | None, external: bool, where: str
) -> Target:
    if external:
        return EXTERNAL
    addrs = backend.local_addresses()
    names = nodes_with_addresses(cluster, addrs)
    if node is not None:
        if cluster.node(node) is None:
            names_all = [n.name for n in cluster.nodes]
            fail(f"--node {node}: no such node in {where}. {did_you_mean(node, names_all)}")
        if names and node not in names:
            _refuse_other_node(cluster, node, names[0], addrs)
        return Target.for_node(node)
    if len(names) == 1:
        return Target.for_node(names[0])
    seen = ", ".join(str(a) for a in addrs if not a.is_loopback and not a.is_link_local)
    if not names:
        fail(
            f"this host is none of the nodes in {where}: none of its addresses "
            f"({seen or 'none'}) is a node address. Pass --node NAME, or --external "
            f"for a machine outside the cluster."
        )
    return fail(f"this host's addresses ({seen}) belong to several nodes: {', '.join(names)}")


def _refuse_other_node(
    cluster: Cluster, node: str, here: str, addrs: Sequence[IPAddress]
) -> NoReturn:
    """``--node NODE`` on the host of another node: its plan would remove the routes to
    ``here``'s own pods (they are "stale" for NODE) and add one to NODE's pods via itself."""
    mine = set(addrs)
    found = next(ip for n in cluster.nodes if n.name == here for ip in n.ips if ip in mine)
    fail(
        f"--node {node}: this host has the address {found} of node {here}, so it is {here}, "
        f"not {node}; its routes for {node} would remove the routes to {here}'s own pods. "
        f"Run it on {node}, or leave out --node (this host is found as {here})"
    )


def _run(
    *,
    source: ClusterSource,
    node: str | None,
    external: bool,
    table: int,
    protocol: int,
    netns: str | None,
    dry_run: bool,
    strict: bool = False,
    shadows: bool = False,
    max_delete_share: float | None = None,
) -> tuple[PassResult, list[str], str, tuple[Shadow, ...]]:
    if node is not None and external:  # before reading any node
        fail("--node and --external exclude each other: a host is either a node or not")
    cluster = load_source(source)
    with _backend(table, protocol, netns) as backend:
        target = _target(cluster, backend, node, external, source.what)
        desired = desired_routes(cluster, target)
        del cluster  # the routes are all that is needed now: let the nodes go before writing
        try:
            result = reconcile_routes(
                desired,
                target,
                backend,
                adjacency=backend.adjacency,
                dry_run=dry_run,
                strict=strict,
                max_delete_share=max_delete_share,
            )
        except MassRemovalError as e:
            _print_plan(e.result, " (refused: nothing written)", full=True)
            fail(
                f"{e}: is this the right inventory, cluster and node? Nothing was written. "
                "If the plan above is what you want, run again with --force (or a higher "
                "--max-delete-share)",
                EXIT_FAILURE,
            )
        except OffLinkError as e:
            for o in e.offlink:
                err.print(f"  - node {o.node or '?'} ({o.gateway}): {o.reason}", markup=False)
            fail(f"{e}; nothing was written (--strict)", EXIT_FAILURE)
        mode = "nexthop objects" if backend.use_nexthops else "plain gateway routes"
        # others' routes more specific than a wanted prefix: the diff keys routes by their
        # exact prefix and cannot see them (one more read of the table, for status only)
        shadowed = find_shadows(result.desired, backend.routes()) if shadows else ()
        return result, list(backend.notes), mode, shadowed


# --- rendering ---------------------------------------------------------------------------
def _route(r: Route) -> dict[str, Any]:
    return {"dst": str(r.dst), "via": [str(v) for v in r.via], "node": r.node}


def _via(r: Route) -> str:
    node = f" ({r.node})" if r.node else " (services)"
    return f"{r.dst} via {', '.join(map(str, r.via))}{node}"


def _report(
    result: PassResult, notes: list[str], mode: str, table: int, protocol: int
) -> dict[str, Any]:
    d = result.diff
    data: dict[str, Any] = {
        "target": str(result.target),
        "table": table,
        "protocol": protocol,
        "mode": mode,
        "add": [_route(r) for r in d.add],
        "change": [{**_route(c.new), "was": c.old.detail} for c in d.change],
        "remove": [{"dst": str(r.dst), "was": r.detail} for r in d.remove],
        "inSync": len(d.keep),
        "conflicts": [
            {
                "dst": str(c.wanted.dst),
                "wanted": _route(c.wanted),
                "found": c.found.detail,
                "owner": c.found.owner,
            }
            for c in d.conflicts
        ],
        "offlink": [
            {
                "node": o.node,
                "gateway": str(o.gateway),
                "reason": o.reason,
                "kernelVia": str(o.kernel_via) if o.kernel_via else None,
            }
            for o in result.offlink
        ],
        "notes": notes,
    }
    if result.applied is not None:
        data["writes"] = result.writes
        data["errors"] = [
            {"dst": str(e.dst), "node": e.node, "action": e.action, "message": e.message}
            for e in result.errors
        ]
        if result.errors:
            from nosdn.backends.kernel import summarize_failures

            summary = summarize_failures(result.errors)
            data["failed"] = summary.total
            data["likelyCause"] = summary.cause
    return data


def _print_problems(result: PassResult, notes: list[str], *, via_router: bool = False) -> None:
    w = sys.stdout.write
    for c in result.conflicts:
        w(f"! conflict {c.wanted.dst}: owned by {c.found.owner}, left alone\n")
        w(f"    wanted: {_via(c.wanted)}\n    found:  {c.found.detail}\n")
    for o in result.offlink:
        if via_router:
            pods = ", ".join(str(r.dst) for r in result.skipped if o.gateway in r.via)
            w(
                f"  via the router: {pods or 'pods'} of node {o.node or '?'} ({o.gateway}), "
                f"announced by {o.node or '?'} over BGP (no host route: another segment)\n"
            )
            continue
        w(f"? off-link node {o.node or '?'} ({o.gateway}): {o.reason}; its routes are skipped\n")
    for n in notes:
        w(f"note: {n}\n")


def _print_plan(result: PassResult, verb: str, full: bool) -> None:
    d = result.diff
    w = sys.stdout.write
    if full:
        for r in d.add:
            w(f"+ {_via(r)}\n")
        for c in d.change:
            w(f"~ {_via(c.new)}\n    was: {c.old.detail}\n")
        for old in d.remove:
            w(f"- {old.detail}\n")
    w(
        f"{result.target}: {len(d.add)} to add, {len(d.change)} to change, "
        f"{len(d.remove)} to remove, {len(d.keep)} in sync, {len(d.conflicts)} conflict(s)"
        f"{verb}\n"
    )


def failure_lines(errors: Sequence[WriteError], limit: int = MAX_FAILURE_LINES) -> list[str]:
    """The first ``limit`` failed writes, one line each, then the total, the kernel's reasons
    and the likely cause: 15,000 failures (another writer, a link gone down) are a few lines."""
    if not errors:
        return []
    from nosdn.backends.kernel import summarize_failures

    lines = []
    for e in errors[:limit]:
        who = f"node {e.node}" if e.node else "stale route"
        lines.append(f"x failed to {e.action} {e.dst} ({who}): {e.message}\n")
    if len(errors) > limit:
        lines.append(f"  ... and {len(errors) - limit} more (-o json lists every one)\n")
    lines.append(f"x {summarize_failures(errors).line()}\n")
    return lines


# --- commands ----------------------------------------------------------------------------
@command("plan")
@source_options()
@NodeOpt
@ExternalOpt
@TableOpt
@ProtocolOpt
@NetnsOpt
@option(
    "--exit-code",
    is_flag=True,
    help="Exit 1 when apply would change anything or a conflict blocks a route, 0 when in "
    "sync (a drift check, like `git diff --exit-code`); 2 stays bad input.",
)
@OutputOpt
def _plan(
    *,
    source: ClusterSource,
    node: str | None,
    external: bool,
    table: int,
    protocol: int,
    netns: str | None,
    exit_code: bool,
    output: Output,
) -> None:
    """Show what `apply` would change in this host's kernel table (read-only, no root needed).

    + add, ~ change (next hop is wrong), - remove (ours, no longer wanted). A route to the
    same prefix owned by anyone else is a conflict: shown with both routes, never touched.
    Exit 0 (with --exit-code: 1 if there is anything to change).
    """
    result, notes, mode, _ = _run(
        source=source,
        node=node,
        external=external,
        table=table,
        protocol=protocol,
        netns=netns,
        dry_run=True,
    )
    if output is not Output.table:
        dump(_report(result, notes, mode, table, protocol), output)
    else:
        _print_plan(result, "", full=True)
        _print_problems(result, notes)
    d = result.diff
    if exit_code and (d.add or d.change or d.remove or d.conflicts):
        raise SystemExit(EXIT_FAILURE)


@command("apply")
@source_options()
@NodeOpt
@ExternalOpt
@TableOpt
@ProtocolOpt
@NetnsOpt
@option("--dry-run", is_flag=True, help="Compute and print the changes; write nothing.")
@option(
    "--strict",
    is_flag=True,
    help="Refuse (exit 1, nothing written) when a node is not on a directly connected "
    "network, instead of skipping its routes.",
)
@option("-v", "--verbose", is_flag=True, help="List every route added/changed/removed.")
@option(
    "--max-delete-share",
    type=click.FloatRange(0, 1, min_open=True),
    default=DEFAULT_MAX_DELETE_SHARE,
    help="Refuse (exit 1, nothing written, the plan printed) to remove more than this share "
    "of the routes nosdn owns here at once (more than 2): the agent's deletion guard.",
)
@option("--force", is_flag=True, help="Remove them anyway, whatever --max-delete-share says.")
@OutputOpt
def _apply(
    *,
    source: ClusterSource,
    node: str | None,
    external: bool,
    table: int,
    protocol: int,
    netns: str | None,
    dry_run: bool,
    strict: bool,
    verbose: bool,
    max_delete_share: float,
    force: bool,
    output: Output,
) -> None:
    """Make this host's kernel table hold exactly the routes it needs (root).

    Adds what is missing, fixes wrong next hops, removes stale nosdn routes, using one kernel
    nexthop object per peer node so a node's address change is a single replace. Routes owned
    by others are never touched. Exit 1 if any write failed OR a conflict blocks a route, so
    whoever runs it (or pages on it) sees the problem; exit 2 for bad input.
    """
    if not dry_run:
        require_net_admin("apply writes this host's routes: it")
    if not dry_run and protocol == DEFAULT_PROTOCOL:
        _install_protocol_name()
    result, notes, mode, _ = _run(
        source=source,
        node=node,
        external=external,
        table=table,
        protocol=protocol,
        netns=netns,
        dry_run=dry_run,
        strict=strict,
        max_delete_share=None if force else max_delete_share,
    )
    if output is not Output.table:
        dump(_report(result, notes, mode, table, protocol), output)
    else:
        verb = " (dry run: nothing written)" if dry_run else f"; {result.writes} write(s)"
        _print_plan(result, verb, full=verbose or dry_run)
        _print_problems(result, notes)
        sys.stdout.writelines(failure_lines(result.errors))
        if any("not permitted" in e.message for e in result.errors):
            err.print("writing routes needs root (CAP_NET_ADMIN)", markup=False)
    if result.errors or result.conflicts:
        raise SystemExit(EXIT_FAILURE)


@command("status")
@source_options()
@NodeOpt
@ExternalOpt
@TableOpt
@ProtocolOpt
@NetnsOpt
@BgpDirOpt
@option(
    "--cluster",
    is_flag=True,
    help="The whole cluster from the Kubernetes API instead of this host: every node's agent "
    "ready or not and why, conflicts and off-link nodes its agent reported.",
)
@option("-w", "--watch", is_flag=True, help="With --cluster: print it again when it changes.")
@option(
    "--interval",
    type=int,
    default=2,
    help="With --watch: seconds between two reads of the API.",
)
@OutputOpt
def status(
    *,
    source: ClusterSource,
    node: str | None,
    external: bool,
    table: int,
    protocol: int,
    netns: str | None,
    bgp_dir: Path,
    cluster: bool,
    watch: bool,
    interval: int,
    output: Output,
) -> None:
    """Desired vs actual routes on this host: ok, missing, wrong, stale, conflict, shadowed,
    off-link. With --cluster: every node of the cluster, from the Kubernetes API.

    In --bgp mode (the agent's BIRD found in --bgp-dir) every BGP session is shown too, and
    off-link nodes are reached via the router, which learned their subnets over BGP.

    Shadowed: someone else's more specific route takes part of a wanted prefix (longest prefix
    wins), though nosdn's route is right; it is shown with the command that would remove it.

    --cluster (as `cilium status`): one line per Node — its agent ready, not ready (the
    NetworkUnavailable reason and message it wrote) or absent, and how many conflicts and
    off-link peers its agent reported (Events of the last 15 minutes) — then one line per
    problem, "agents ready: N/M" and what to run next. --watch prints it again on change.

    Exit 0 when every wanted route is installed as wanted (--cluster: every agent ready, no
    conflict, no off-link node), 1 otherwise (for monitoring).
    """
    if watch and not cluster:
        fail("--watch goes with --cluster (this host's routes: watch -n 2 nosdn status ...)")
    if interval < 1:
        fail(f"--interval {interval}: give a number of seconds, at least 1")
    if cluster:
        if node is not None or external or netns is not None:
            fail("--cluster shows every node: it takes no --node, --external or --netns")
        from nosdn.cli._cluster_status import run_cluster_status

        run_cluster_status(source, output, watch=watch, interval=interval)
        return
    result, notes, mode, shadowed = _run(
        source=source,
        node=node,
        external=external,
        table=table,
        protocol=protocol,
        netns=netns,
        dry_run=True,
        shadows=True,
    )
    rows = _status_rows(result, shadowed)
    sessions = _bgp_sessions(bgp_dir)
    bgp_up = any(x.established for x in sessions or ())
    healthy = all(r["state"] in ("ok", *(("off-link",) if bgp_up else ())) for r in rows) and (
        not result.offlink or bgp_up
    )
    if sessions is not None:
        healthy = healthy and bgp_up
    probes = _agent_probes() if netns is None else None
    if output is not Output.table:
        dump(
            {
                "target": str(result.target),
                "table": table,
                "protocol": protocol,
                "mode": mode,
                "ok": healthy,
                "routes": rows,
                "offlink": _report(result, notes, mode, table, protocol)["offlink"],
                "notes": notes,
                **({"bgp": [_session_dict(x) for x in sessions]} if sessions is not None else {}),
                **({"probes": probes} if probes is not None else {}),
            },
            output,
        )
    else:
        from nosdn.cli._output import table as print_table

        style = {"ok": "green", "conflict": "red", "off-link": "yellow"}
        print_table(
            STATUS_COLUMNS,
            (
                (
                    (r["state"], style.get(r["state"], "red")),
                    r["dst"],
                    ",".join(r["via"]) if r["via"] else "-",
                    r["node"] or "-",
                    ",".join(r.get("offlinkVia", [])) or "-",
                    ",".join(s["dst"] for s in r.get("shadowedBy", [])) or "-",
                    r["found"] or "-",
                )
                for r in rows
            ),
            title=f"{result.target}: kernel table {table}, {mode}",
        )
        _print_problems(result, notes, via_router=bgp_up)
        _print_shadows(shadowed, table)
        _print_bgp(sessions)
        _print_probes(probes)
    if not healthy:
        raise SystemExit(EXIT_FAILURE)


def _bgp_sessions(directory: Path) -> list[Session] | None:
    """The agent's BIRD sessions (None: no BIRD of the agent here, not in --bgp mode)."""
    from nosdn.backends.bird import BirdError, BirdSupervisor

    bird = BirdSupervisor(directory)
    if not bird.socket.exists():
        return None
    try:
        return bird.sessions()
    except BirdError:
        return []


def _session_dict(s: Session) -> dict[str, Any]:
    return {
        "peer": s.neighbor or s.name,
        "peerAS": s.neighbor_as,
        "localAS": s.local_as,
        "state": s.bgp_state,
        "since": s.since,
        "announced": s.exported,
        "lastError": s.last_error or None,
        "fix": s.fix() or None,
    }


def _agent_probes() -> dict[str, Any] | None:
    """What this node's agent's datapath probes saw (its ``/probes``), if an agent answers."""
    from nosdn.diagnose.gather import AGENT_ADDRESS, read_probes

    return read_probes(AGENT_ADDRESS, timeout=0.5)


def _print_probes(probes: dict[str, Any] | None) -> None:
    """One line for the peers that answer over the pod path, one per peer that does not."""
    if probes is None:
        return
    w = sys.stdout.write
    bad = probes.get("unreachable", [])
    w(f"  probes: {probes.get('reachable', 0)} of {probes.get('peers', 0)} peers answer over ")
    w(f"the pod path ({probes.get('unknown', 0)} not probed yet)\n")
    for b in bad:
        w(
            f"! probes: {b.get('peer')} does not answer over the pod path "
            f"({b.get('src')} -> {b.get('dst')}): {b.get('cause') or 'cause unknown'}\n"
        )


def _print_bgp(sessions: list[Session] | None) -> None:
    if sessions is None:
        return
    w = sys.stdout.write
    if not sessions:
        w("! bgp: the agent's BIRD does not answer (the agent restarts it; read its log)\n")
    for s in sessions:
        peer = f"bgp peer {s.neighbor or s.name} AS {s.neighbor_as}"
        if s.established:
            w(f"  {peer}: Established since {s.since}, announces {s.exported} prefix(es)\n")
        else:
            err = f" ({s.last_error})" if s.last_error else ""
            w(f"! {peer}: {s.bgp_state} since {s.since}{err}\n    fix: {s.fix()}\n")


#: ``status``'s columns; ``-o wide`` adds the next hops that are off-link and the routes that
#: shadow a wanted prefix. "found" (the kernel's words, with spaces) comes last.
STATUS_COLUMNS = (
    Column("state"),
    Column("destination"),
    Column("wanted"),
    Column("node"),
    Column("offlink-via", wide=True),
    Column("shadowed-by", wide=True),
    Column("found"),
)


def _print_shadows(shadowed: Sequence[Shadow], table: int) -> None:
    from nosdn.diagnose.checks_routes import route_del_command

    w = sys.stdout.write
    for sh in shadowed:
        f = sh.found
        w(
            f"! conflict {f.dst} shadows {_via(sh.wanted)}: {f.kind} route of {f.owner}, more "
            "specific, so it takes those addresses; left alone\n"
            f"    found:  {f.detail}\n"
            f"    remove it only if it is wrong: {route_del_command(f, table)}\n"
        )


def _status_rows(result: PassResult, shadowed: Sequence[Shadow] = ()) -> list[dict[str, Any]]:
    d = result.diff
    shadows_of: dict[object, list[Shadow]] = {}
    for sh in shadowed:
        shadows_of.setdefault(sh.wanted.dst, []).append(sh)
    conflicts = {c.wanted.dst: c for c in d.conflicts}
    changes = {c.new.dst: c for c in d.change}
    adds = {r.dst for r in d.add}
    offlink = {o.gateway: o for o in result.offlink}
    skipped = {r.dst: r for r in result.skipped}
    rows: list[dict[str, Any]] = []
    for want in result.desired:
        row: dict[str, Any] = {**_route(want), "found": None, "state": "ok"}
        if want.dst in conflicts:
            row["state"] = "conflict"
            row["found"] = conflicts[want.dst].found.detail
        elif want.dst in changes:
            row["state"] = "wrong"
            row["found"] = changes[want.dst].old.detail
        elif want.dst in adds:
            row["state"] = "missing"
        if want.dst in skipped:  # an ECMP route that lost some of its next hops
            row["offlinkVia"] = [str(g) for g in skipped[want.dst].via if g in offlink]
        over = shadows_of.get(want.dst)
        if over:  # installed or not, part of its addresses go where someone else's route says
            row["shadowedBy"] = [
                {"dst": str(sh.found.dst), "type": sh.found.kind, "owner": sh.found.owner}
                for sh in over
            ]
            if row["state"] == "ok":
                row["state"] = "shadowed"
                row["found"] = "; ".join(sh.found.detail for sh in over)
        rows.append(row)
    routed = {r.dst for r in result.desired}
    for want in result.skipped:
        if want.dst not in routed:
            reasons = "; ".join(offlink[g].reason for g in want.via if g in offlink)
            rows.append({**_route(want), "found": reasons, "state": "off-link"})
    for r in d.remove:
        rows.append(
            {
                "dst": str(r.dst),
                "via": [str(v) for v in r.via],
                "node": None,
                "found": r.detail,
                "state": "stale",
            }
        )
    return rows


@command("flush")
@TableOpt
@ProtocolOpt
@NetnsOpt
@OutputOpt
def flush(*, table: int, protocol: int, netns: str | None, output: Output) -> None:
    """Remove every route and nexthop nosdn owns (its protocol number) from this host (root).

    Routes of every other protocol stay. Pods on other nodes become unreachable from here until
    the next `nosdn apply`. Nexthops still used by a route of another table are kept.
    """
    require_net_admin("flush removes routes: it")
    with _backend(table, protocol, netns) as backend:
        res = backend.flush()
        notes = list(backend.notes)
    if output is not Output.table:
        dump(
            {
                "writes": res.writes,
                "errors": [{"dst": str(e.dst), "message": e.message} for e in res.errors],
                "notes": notes,
            },
            output,
        )
    else:
        sys.stdout.write(f"flushed: {res.writes} route(s) and nexthop(s) removed\n")
        for e in res.errors:
            sys.stdout.write(f"x failed to remove {e.dst}: {e.message}\n")
        for n in notes:
            sys.stdout.write(f"note: {n}\n")
    if res.errors:
        raise SystemExit(EXIT_FAILURE)


def _install_protocol_name(directory: Path = RT_PROTOS_D) -> None:
    """Name protocol 157 "nosdn" for iproute2 (``proto nosdn`` in ``ip route``), once, as root."""
    target = directory / "nosdn.conf"
    if os.geteuid() != 0 or target.exists():
        return
    from importlib import resources

    text = resources.files("nosdn").joinpath("data/rt_protos.nosdn.conf").read_text()
    try:
        directory.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    except OSError as e:  # a read-only /etc is no reason not to route
        err.print(f"note: could not write {target} ({e}); ip route will show proto 157")


plan = cloud_command(_plan, always_dry_run=True)
apply = cloud_command(_apply, always_dry_run=False)
