"""Doctor check of policy routing: does an ``ip rule`` send pod traffic away from nosdn's table?

Why: the kernel consults the rules before any table. A rule that selects pod traffic and looks
up another table (a VPN's, a cloud agent's, a second uplink's) takes that traffic wherever
that table says, or drops it (``blackhole``, ``unreachable``, ``prohibit``), while nosdn's
routes in the main table look perfect and every other check passes.

The rules are walked the way the kernel walks them, for concrete pod packets: from a pod of
this node to a pod of each other node (coming in on the pod bridge), and back (coming in where
this node's address is); from an external host, to each pod subnet. A ``lookup`` rule only
takes a packet if its table has a route for the destination (else the kernel goes on to the
next rule), so the tables those rules name are read too. What a rule selects by that doctor
does not evaluate (fwmark, uid, ports, ...) makes it a warning when it would misdirect pod
traffic if it matched, never a failure.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from nosdn.diagnose.checks_firewall import mine_and_peer_pods
from nosdn.diagnose.checks_host import arrival_link
from nosdn.diagnose.facts import Facts, PolicyRule, pod_bridge, probe_address
from nosdn.diagnose.result import CheckResult, fail, ok, skip, warn
from nosdn.model import InstalledRoute, IPAddress, Route

MAIN, LOCAL = 254, 255


@dataclass(frozen=True, slots=True)
class Packet:
    src: IPAddress | None  # None: this host's own (an external host's traffic)
    dst: IPAddress
    iif: str | None  # None: unknown; "lo" for this host's own


@dataclass(frozen=True, slots=True)
class Taken:
    """Where a rule sends a packet instead of nosdn's table: ``route`` (of ``rule.table``),
    or the rule's own action (blackhole, ...) when ``route`` is None."""

    packet: Packet
    rule: PolicyRule
    route: InstalledRoute | None
    certain: bool  # False: the rule also selects by something doctor does not evaluate


def _selects(rule: PolicyRule, p: Packet) -> bool | None:
    """Whether ``rule`` selects ``p``: True, False, or None (it also selects by something
    doctor cannot tell, and matches on everything it can)."""
    hit = True
    if rule.src is not None:
        hit = hit and (
            p.src is not None and p.src.version == rule.src.version and p.src in rule.src
        )
    if rule.dst is not None:
        hit = hit and p.dst.version == rule.dst.version and p.dst in rule.dst
    if rule.iif is not None:
        hit = hit and (p.iif is None or p.iif == rule.iif)
    if rule.invert:
        hit = not hit
    if not hit:
        return False
    unknown = bool(rule.other) or (rule.src is not None and p.src is None)
    unknown = unknown or (rule.iif is not None and p.iif is None)
    return None if unknown else True


def _route_for(
    routes: Sequence[InstalledRoute], dst: IPAddress, suppress: int | None
) -> InstalledRoute | None:
    best: InstalledRoute | None = None
    for r in routes:
        if r.dst.version != dst.version or dst not in r.dst:
            continue
        if suppress is not None and r.dst.prefixlen <= suppress:
            continue
        if best is None or r.dst.prefixlen > best.dst.prefixlen:
            best = r
    return best


def _suppressed(facts: Facts, dst: IPAddress, suppress: int | None) -> bool:
    """Whether ``suppress_prefixlength`` hides nosdn's route for ``dst`` (the kernel then
    goes on to the next rule)."""
    if suppress is None or facts.routes is None:
        return False
    for r in facts.routes.desired:
        if r.family == dst.version and dst in r.dst:
            return r.dst.prefixlen <= suppress
    return False


def _walk(facts: Facts, p: Packet) -> Taken | None:
    """The first rule that takes ``p`` somewhere other than nosdn's table, or None when the
    rules reach nosdn's table first (or nothing at all decides otherwise)."""
    rules = sorted((r for r in facts.rules if r.family == p.dst.version), key=lambda r: r.priority)
    uncertain: Taken | None = None
    at = 0
    while at < len(rules):
        rule = rules[at]
        at += 1
        sel = _selects(rule, p)
        if sel is False or rule.action == "nop":
            continue
        taken: Taken | None = None
        if rule.action == "goto" and rule.goto is not None:
            if sel:
                at = next((i for i, r in enumerate(rules) if r.priority >= rule.goto), len(rules))
            continue
        if rule.action in ("blackhole", "unreachable", "prohibit"):
            taken = Taken(p, rule, None, sel is True)
        elif rule.action == "lookup" and rule.table is not None:
            if rule.table == facts.table:
                if sel and not _suppressed(facts, p.dst, rule.suppress_prefixlen):
                    return uncertain  # nosdn's table answers (its route is checked elsewhere)
                continue
            if rule.table == LOCAL:
                continue  # pod addresses are not this host's own
            routes = facts.rule_tables.get(rule.table, ())
            route = _route_for(routes, p.dst, rule.suppress_prefixlen)
            if route is None or route.kind == "throw":
                continue  # the kernel goes on to the next rule
            taken = Taken(p, rule, route, sel is True)
        if taken is None:
            continue
        if taken.certain:
            return taken
        uncertain = uncertain or taken
    return uncertain


def _packets(facts: Facts, family: int) -> list[Packet]:
    mine, peers = mine_and_peer_pods(facts, family)
    if facts.target is not None and facts.target.kind == "external":
        return [Packet(None, probe_address(r.dst), "lo") for r in _wanted(facts, family)]
    if not mine:
        return []
    bridge = pod_bridge(facts)
    home = arrival_link(facts, family)
    out = [Packet(mine[0], peer, bridge if bridge in facts.links else None) for peer in peers]
    if peers:
        out.append(Packet(peers[0], mine[0], home[0] if home else None))
    return out


def _wanted(facts: Facts, family: int) -> list[Route]:
    res = facts.routes
    return [r for r in (res.desired if res is not None else ()) if r.family == family]


def _describe(t: Taken) -> str:
    p = t.packet
    src = str(p.src) if p.src is not None else "this host"
    where = (
        f"table {t.rule.table}: {t.route.detail}"
        if t.route is not None
        else f"{t.rule.action} (dropped)"
    )
    return f"{src} -> {p.dst}: rule '{t.rule.text}' sends it to {where}"


def check_rules(facts: Facts) -> list[CheckResult]:
    out: list[CheckResult] = []
    for family in facts.families:
        check = f"rules.ipv{family}"
        if facts.rules_error is not None:
            out.append(warn(check, f"could not read the policy rules: {facts.rules_error}"))
            continue
        extra = [r for r in facts.rules if r.family == family and not r.default]
        if not extra:
            out.append(ok(check, "only the kernel's default rules (local, main, default)"))
            continue
        packets = _packets(facts, family)
        if not packets:
            out.append(
                skip(
                    check,
                    f"{len(extra)} rule(s) beyond the kernel's defaults; give the inventory "
                    "(-f) to check whether they take pod traffic",
                )
            )
            continue
        found = [t for p in packets if (t := _walk(facts, p)) is not None]
        certain = [t for t in found if t.certain]
        if certain:
            rules = sorted({t.rule.priority for t in certain})
            first = certain[0]
            six = "-6 " if family == 6 else ""
            out.append(
                fail(
                    check,
                    f"{len(certain)} pod path(s) are taken away from nosdn's table "
                    f"{facts.table} by ip rule(s) {', '.join(map(str, rules))} "
                    f"({_describe(first)}); remove them only if they are wrong, else add a "
                    f"rule before them for pod traffic: ip {six}rule add to CLUSTER_CIDR "
                    f"lookup {facts.table} priority {max(rules[0] - 1, 1)}",
                    " && ".join(f"ip {six}rule del priority {n}" for n in rules),
                    tuple(_describe(t) for t in certain),
                )
            )
        elif found:
            rules = sorted({t.rule.priority for t in found})
            out.append(
                warn(
                    check,
                    f"ip rule(s) {', '.join(map(str, rules))} would take pod traffic away from "
                    f"nosdn's table {facts.table} if they select it by what doctor cannot tell "
                    f"({', '.join(sorted({o for t in found for o in t.rule.other}))})",
                    None,
                    tuple(_describe(t) for t in found),
                )
            )
        else:
            out.append(
                ok(
                    check,
                    f"{len(extra)} rule(s) beyond the kernel's defaults; none takes pod traffic "
                    f"away from table {facts.table}",
                )
            )
    return out
