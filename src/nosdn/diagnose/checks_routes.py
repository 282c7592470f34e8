"""Doctor checks of the routes themselves: as nosdn wants them, not blocked, reachable.

They read one dry-run reconcile pass (the same pass ``nosdn plan`` prints), so doctor and
apply can never disagree about what is missing: ``routes`` is the diff (missing, wrong, stale),
``conflicts`` the prefixes someone else routes, ``offlink`` the nodes host routes cannot reach
(and whether anything else still routes their pods), ``neighbours`` whether each next hop
answers ARP/NDP on its link, which is where a route that looks right still goes nowhere.
"""

from __future__ import annotations

import shlex

from nosdn.diagnose.facts import Facts, nosdn_command, probe_address
from nosdn.diagnose.result import CheckResult, fail, ok, skip, warn
from nosdn.model import DEFAULT_PROTOCOL, InstalledRoute, IPAddress, Route, Shadow
from nosdn.plan import shadows

#: Neighbour states in which the next hop answered (or is configured) recently enough.
GOOD_NEIGH = {"REACHABLE", "STALE", "DELAY", "PROBE", "PERMANENT", "NOARP"}
BAD_NEIGH = {"FAILED", "INCOMPLETE"}


def apply_command(facts: Facts) -> str:
    """The ``nosdn apply`` command line that makes this host's routes right."""
    argv = ["apply", "-f", facts.inventory or "INVENTORY"]
    if facts.target is not None and facts.target.kind == "external":
        argv.append("--external")
    elif facts.node_name is not None:
        argv += ["--node", facts.node_name]
    if facts.table != 254:
        argv += ["--table", str(facts.table)]
    if facts.protocol != DEFAULT_PROTOCOL:
        argv += ["--protocol", str(facts.protocol)]
    return nosdn_command(facts, *argv)


def route_del_command(found: InstalledRoute, table: int = 254) -> str:
    """The ``ip route del`` that removes exactly this route of someone else's (its type,
    prefix, protocol and table): for a person who decided it is wrong; nosdn never runs it."""
    argv = ["ip", "route", "del"]
    if found.kind != "unicast":
        argv.append(found.kind)
    argv += [str(found.dst), "proto", found.owner]
    if table != 254:
        argv += ["table", str(table)]
    return shlex.join(argv)


def _via(r: Route) -> str:
    who = f" ({r.node})" if r.node else " (services)"
    return f"{r.dst} via {', '.join(map(str, r.via))}{who}"


def _no_routes(facts: Facts, check: str) -> CheckResult:
    if facts.routes_error is not None:
        return warn(check, f"could not read the routing table: {facts.routes_error}")
    return skip(check, "needs the inventory (-f) to know which routes this host needs")


def check_routes(facts: Facts) -> list[CheckResult]:
    check = "routes"
    res = facts.routes
    if res is None:
        return [_no_routes(facts, check)]
    d = res.diff
    total = len(res.desired)
    details = (
        *(f"missing {_via(r)}" for r in d.add),
        *(
            f"wrong {c.new.dst}: wants via {', '.join(map(str, c.new.via))}, has {c.old.detail}"
            for c in d.change
        ),
        *(f"stale {r.detail}" for r in d.remove),
    )
    if d.in_sync:
        extra = f", {len(d.conflicts)} blocked by conflicts" if d.conflicts else ""
        return [
            ok(
                check,
                f"{len(d.keep)} of {total} wanted routes installed as wanted{extra} "
                f"({res.target}, table {facts.table})",
            )
        ]
    return [
        fail(
            check,
            f"{len(d.add)} missing, {len(d.change)} wrong, {len(d.remove)} stale "
            f"(of {total} wanted; {res.target}, table {facts.table})",
            apply_command(facts),
            details,
        )
    ]


def _shadow_targets(facts: Facts) -> list[Route]:
    """The prefixes a more specific route of someone else's would shadow: every route nosdn
    wants here, and this node's own pod subnets (its pods' traffic is forwarded by this very
    table)."""
    res = facts.routes
    wanted = list(res.desired) if res is not None else []
    me = facts.cluster.node(facts.node_name) if facts.cluster and facts.node_name else None
    if me is not None:
        wanted += [Route(c, (), me.name) for c in me.pod_cidrs]
    return wanted


def shadowing(facts: Facts) -> list[Shadow]:
    """Others' routes more specific than a prefix nosdn wants (or this node's own pods'
    subnet). Inside the node's own subnet only what sends pods' addresses elsewhere counts:
    a blackhole-like route, or one via a gateway (a device route there may be a CNI's)."""
    found = shadows(_shadow_targets(facts), facts.installed)
    return [
        s
        for s in found
        if s.wanted.via or s.found.kind != "unicast" or s.found.via  # see the docstring
    ]


def _shadow_line(s: Shadow) -> str:
    f = s.found
    whose = f"{s.wanted.node}'s pods" if s.wanted.node else "services"
    over = _via(s.wanted) if s.wanted.via else f"{s.wanted.dst} ({whose}, this node)"
    return f"{f.dst} ({f.kind}, proto {f.owner}) shadows {over}: found {f.detail}"


def check_conflicts(facts: Facts) -> list[CheckResult]:
    """Someone else routes a prefix nosdn needs: the same prefix (nosdn cannot install its
    route), or a more specific one inside it (it takes those addresses although nosdn's own
    route is there: longest prefix wins)."""
    check = "conflicts"
    res = facts.routes
    if res is None:
        return [_no_routes(facts, check)]
    shadowed = shadowing(facts)
    if not res.conflicts and not shadowed:
        return [ok(check, "no route of anyone else to a prefix nosdn needs, or inside one")]
    saw: list[str] = []
    if res.conflicts:
        owners = ", ".join(sorted({c.found.owner for c in res.conflicts}))
        saw.append(
            f"{len(res.conflicts)} prefix(es) nosdn needs are routed by someone else ({owners})"
        )
    if shadowed:
        shown = ", ".join(
            f"{s.found.kind} {s.found.dst} proto {s.found.owner}" for s in shadowed[:3]
        )
        more = f", {len(shadowed) - 3} more" if len(shadowed) > 3 else ""
        saw.append(
            f"{len(shadowed)} more specific route(s) of someone else shadow pod subnets "
            f"({shown}{more}): the kernel sends those addresses there, not by nosdn's route"
        )
    deletes = [route_del_command(c.found, facts.table) for c in res.conflicts]
    deletes += [route_del_command(s.found, facts.table) for s in shadowed]
    fix = [*deletes, apply_command(facts)] if res.conflicts else deletes
    return [
        fail(
            check,
            "; ".join(saw) + "; nosdn leaves them alone: remove them only if they are wrong",
            " && ".join(dict.fromkeys(fix)),
            (
                *(f"{_via(c.wanted)}; found {c.found.detail}" for c in res.conflicts),
                *(_shadow_line(s) for s in shadowed),
            ),
        )
    ]


def check_offlink(facts: Facts) -> list[CheckResult]:
    check = "offlink"
    res = facts.routes
    if res is None:
        return [_no_routes(facts, check)]
    if not res.offlink:
        gws = {gw for r in res.desired for gw in r.via}
        return [ok(check, f"all {len(gws)} next hop(s) are on directly connected networks")]
    stranded: list[str] = []
    elsewhere: list[str] = []
    for o in res.offlink:
        for r in res.skipped:
            if o.gateway not in r.via:
                continue
            look = facts.lookups.get(probe_address(r.dst))
            line = f"{o.node or '?'} ({o.gateway}): {o.reason}"
            if look is not None and look.routed:
                elsewhere.append(f"{line}; its pods {r.dst} go {look.describe()}")
            else:
                why = look.error if look is not None and look.error else "no route"
                stranded.append(f"{line}; its pods {r.dst} are unreachable ({why})")
    names = sorted({o.node or str(o.gateway) for o in res.offlink})
    if facts.bgp_up and not stranded:
        return [
            ok(
                check,
                f"{len(names)} node(s) on other segments ({', '.join(names)}): reached via the "
                "router, announced by them over BGP (this node's BGP session is up)",
                tuple(elsewhere),
            )
        ]
    if stranded:
        return [
            fail(
                check,
                f"{len(names)} node(s) not on a directly connected network ({', '.join(names)}) "
                "and nothing else routes their pods",
                "put them on this node's network, or route their pod subnets through a router "
                "(its config: "
                + nosdn_command(facts, "render", "-f", facts.inventory or "INVENTORY", "--format")
                + " bird|frr|cisco|junos) and give this host a route to it",
                tuple(stranded + elsewhere),
            )
        ]
    return [
        warn(
            check,
            f"{len(names)} node(s) not on a directly connected network ({', '.join(names)}): "
            "no host routes to them; their pods are left to the router/default route",
            None,
            tuple(elsewhere),
        )
    ]


def check_neighbours(facts: Facts) -> list[CheckResult]:
    check = "neighbours"
    res = facts.routes
    if res is None:
        return [_no_routes(facts, check)]
    owners: dict[IPAddress, str] = {}
    for r in res.desired:
        for gw in r.via:
            owners.setdefault(gw, r.node or "service node")
    if not owners:
        return [ok(check, "no next hops to check")]
    bad: list[str] = []
    fix: list[str] = []
    counts: dict[str, int] = {}
    for gw, node in owners.items():
        look = facts.lookups.get(gw)
        dev = look.dev if look is not None else None
        entry = next(
            (n for n in facts.neighbours if n.ip == gw and (dev is None or n.dev == dev)), None
        )
        state = entry.state if entry is not None else "none"
        counts[state] = counts.get(state, 0) + 1
        if state in BAD_NEIGH:
            bad.append(f"{gw} ({node}) on {entry.dev if entry else dev}: {state}")
            fix.append(f"ping -c 1 -W 1 {gw}")
    summary = ", ".join(
        f"{n} {'not resolved yet' if s == 'none' else s}" for s, n in sorted(counts.items())
    )
    if bad:
        return [
            fail(
                check,
                f"{len(bad)} next hop(s) do not answer ARP/NDP ({summary}): their pods are "
                "unreachable though the routes look right; is the node down or off the link? "
                "Once it is back, a ping re-resolves it",
                " && ".join(fix),
                tuple(bad),
            )
        ]
    return [ok(check, f"{len(owners)} next hop(s): {summary}")]
