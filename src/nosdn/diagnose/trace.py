"""`nosdn trace IP`: where a packet to one address goes from this host, and whether that is
what nosdn wants — told top to bottom, the way a person follows it by hand.

1. whose address it is: a pod subnet of some node (this one or another), a service CIDR, a
   node's own address, or nothing of the cluster's;
2. the kernel's own answer (a route lookup, as ``ip route get``), and the route the kernel
   picked for it (``ip route get fibmatch``: after the policy rules and the longest prefix, so
   a more specific route of someone else's, or another table, is named as what is used). For
   a blackhole, unreachable or prohibit route the kernel names none, only its error: then the
   longest route of that type in the table is the one;
3. the next hop and its neighbour (ARP/NDP) state: a route that looks right still goes
   nowhere when its next hop does not answer;
4. what nosdn wants for it (the same dry-run pass ``nosdn plan`` shows), and the verdict.

Like the doctor checks, `explain` is a pure function of `Facts`; only `gather` reads the host.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from nosdn.diagnose.facts import Facts, Neighbour, RouteLookup, pod_bridge
from nosdn.diagnose.result import Status
from nosdn.model import Cluster, InstalledRoute, IPAddress, Node, Route


@dataclass(frozen=True, slots=True)
class Step:
    """One line of the trace: ``label`` (address, kernel, route, next hop, nosdn), the text."""

    label: str
    text: str
    status: Status | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"step": self.label, "text": self.text, "status": self.status}


@dataclass(frozen=True, slots=True)
class Trace:
    ip: IPAddress
    kind: str  # local-pod, pod, offlink-pod, service, node, unallocated, outside
    node: str | None  # the node the address belongs to
    steps: tuple[Step, ...]
    path: tuple[str, ...]  # as the table prints it
    status: Status
    verdict: str
    lookup: RouteLookup | None = None
    route: InstalledRoute | None = None
    neighbour: Neighbour | None = None
    wanted: Route | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    #: the path as data: where it starts, then each hop (to, dev, what; node; error)
    start: str = ""
    hops: tuple[dict[str, Any], ...] = ()

    def as_dict(self) -> dict[str, Any]:
        """Data for ``-o json|yaml``: the path as hops (no arrows), the address's kind as
        ``addressKind`` (``kind`` is the document's, Trace)."""
        look = self.lookup
        return {
            "ip": str(self.ip),
            "addressKind": self.kind,
            "node": self.node,
            "status": self.status,
            "verdict": self.verdict,
            "kernel": None
            if look is None
            else {
                "error": look.error,
                "type": look.kind,
                "dev": look.dev,
                "gateway": str(look.gateway) if look.gateway else None,
                "src": str(look.src) if look.src else None,
            },
            "route": self.route.detail if self.route is not None else None,
            "routeOwner": self.route.owner if self.route is not None else None,
            "routeType": self.route.kind if self.route is not None else None,
            "neighbour": None
            if self.neighbour is None
            else {
                "ip": str(self.neighbour.ip),
                "dev": self.neighbour.dev,
                "state": self.neighbour.state,
                "lladdr": self.neighbour.lladdr,
            },
            "wanted": None
            if self.wanted is None
            else {"dst": str(self.wanted.dst), "via": [str(v) for v in self.wanted.via]},
            "steps": [s.as_dict() for s in self.steps],
            "hops": [dict(h) for h in self.hops],
        }


def _owner(cluster: Cluster | None, ip: IPAddress) -> tuple[str, Node | None, str]:
    """(kind, node, description) of whose address ``ip`` is."""
    if cluster is None:
        return "outside", None, f"{ip}: no inventory given (-f), so whose address it is is unknown"
    for n in cluster.nodes:
        for c in n.pod_cidrs:
            if ip in c:
                addr = n.ip_for(ip.version) or ", ".join(map(str, n.ips))
                return "pod", n, f"{ip} is in pod subnet {c} of {n.name} ({addr})"
    for n in cluster.nodes:
        if ip in n.ips:
            return "node", n, f"{ip} is the address of node {n.name}"
    for c in cluster.service_cidrs:
        if ip in c:
            return "service", None, f"{ip} is in service CIDR {c}"
    for c in cluster.cluster_cidrs:
        if ip in c:
            return (
                "unallocated",
                None,
                f"{ip} is in cluster CIDR {c}, but in no node's pod subnet (not allocated)",
            )
    return "outside", None, f"{ip} is in no pod subnet or service CIDR of cluster {cluster.name}"


def _longest(
    installed: tuple[InstalledRoute, ...], ip: IPAddress, kind: str | None = None
) -> InstalledRoute | None:
    best: InstalledRoute | None = None
    for r in installed:
        if (
            r.dst.version == ip.version
            and ip in r.dst
            and (kind is None or r.kind == kind)
            and (best is None or r.dst.prefixlen > best.dst.prefixlen)
        ):
            best = r
    return best


def _used(
    facts: Facts, ip: IPAddress, look: RouteLookup | None
) -> tuple[InstalledRoute | None, int]:
    """The route the kernel used for ``ip`` and its table: the one it named (fibmatch), as
    read from our table when it is there; for a lookup that failed with the error of a
    blackhole/unreachable/prohibit route, the longest route of that type in our table (the
    kernel names none then); without the kernel's answer, the longest prefix of our table."""
    if look is not None and look.matched is not None:
        m = look.matched
        table = look.matched_table if look.matched_table is not None else facts.table
        if table == facts.table:
            for r in facts.installed:
                if r.dst == m.dst and r.owner == m.owner and r.kind == m.kind:
                    return r, table
        return m, table
    if look is not None and look.error is not None and look.kind != "unicast":
        return _longest(facts.installed, ip, look.kind), facts.table
    return _longest(facts.installed, ip), facts.table


def _name_of(cluster: Cluster | None, ip: IPAddress | None) -> str | None:
    if cluster is None or ip is None:
        return None
    for n in cluster.nodes:
        if ip in n.ips:
            return n.name
    return None


def _neighbour(facts: Facts, ip: IPAddress, dev: str | None) -> Neighbour | None:
    for n in facts.neighbours:
        if n.ip == ip and (dev is None or n.dev == dev):
            return n
    return None


def explain(facts: Facts, ip: IPAddress) -> Trace:
    cluster = facts.cluster
    kind, node, owner_text = _owner(cluster, ip)
    me = facts.node_name
    if kind == "pod" and node is not None and node.name == me:
        kind = "local-pod"
    here = str(facts.target) if facts.target is not None else "this host"
    steps: list[Step] = [Step("address", owner_text)]

    look = facts.lookups.get(ip)
    route, table = _used(facts, ip, look)
    steps.append(Step("kernel", look.describe() if look is not None else "no lookup made"))
    if route is not None:
        where = f"table {table}" if table == facts.table else "chosen by the policy rules"
        steps.append(Step("route", f"{route.detail} ({where})"))
    else:
        steps.append(Step("route", f"no route in table {facts.table} covers {ip}"))

    neigh: Neighbour | None = None
    if look is not None and look.routed and look.kind == "unicast":
        hop = look.gateway or ip
        neigh = _neighbour(facts, hop, look.dev)
        who = _name_of(cluster, hop)
        label = f"{hop}{f' ({who})' if who else ''} on {look.dev}"
        if neigh is None:
            steps.append(Step("next hop", f"{label}: no neighbour entry yet (nothing sent lately)"))
        else:
            mac = f" {neigh.lladdr}" if neigh.lladdr else ""
            bad = neigh.state in ("FAILED", "INCOMPLETE")
            steps.append(Step("next hop", f"{label}: {neigh.state}{mac}", "fail" if bad else "ok"))

    wanted = _wanted(facts, ip)
    seen = _Seen(facts, ip, kind, node, look, route, table, wanted, neigh)
    status, verdict, nosdn_text = _verdict(seen)
    steps.append(Step("nosdn", f"wants {nosdn_text}" if nosdn_text[0].isdigit() else nosdn_text))
    start, hops = _path(seen, here)
    path = _path_text(start, hops)
    if kind == "pod" and _offlink(facts, node, ip.version) is not None:
        kind = "offlink-pod"
    return Trace(
        ip,
        kind,
        node.name if node is not None else None,
        tuple(steps),
        tuple(path),
        status,
        verdict,
        look,
        route,
        neigh,
        wanted,
        start=start,
        hops=tuple(hops),
    )


def _wanted(facts: Facts, ip: IPAddress) -> Route | None:
    if facts.routes is None:
        return None
    for r in (*facts.routes.desired, *facts.routes.skipped):
        if ip in r.dst:
            return r
    return None


def _offlink(facts: Facts, node: Node | None, family: int) -> str | None:
    """Why ``node``'s address of ``family`` is off-link from here (None if it is not)."""
    if facts.routes is None or node is None:
        return None
    gw = node.ip_for(family)
    for o in facts.routes.offlink:
        if o.gateway == gw:
            return o.reason
    return None


@dataclass(frozen=True, slots=True)
class _Seen:
    """Everything found about one address, handed to the verdict and the path."""

    facts: Facts
    ip: IPAddress
    kind: str
    node: Node | None
    look: RouteLookup | None
    #: the route the kernel used, and its table
    route: InstalledRoute | None
    table: int
    wanted: Route | None
    neigh: Neighbour | None


def _verdict(seen: _Seen) -> tuple[Status, str, str]:
    """(status, verdict, what nosdn wants) for the address."""
    facts, kind, node, look, route = seen.facts, seen.kind, seen.node, seen.look, seen.route
    wanted, neigh = seen.wanted, seen.neigh
    unrouted = look is None or not look.routed
    dead = neigh is not None and neigh.state in ("FAILED", "INCOMPLETE")
    why = look.error if look is not None and look.error else "no route"
    if kind == "local-pod":
        bridge = pod_bridge(facts)
        want = f"a pod of this node: delivered on the pod bridge {bridge}, no nosdn route"
        if unrouted:
            return "fail", f"unreachable from here ({why}): is {bridge} up?", want
        assert look is not None
        if look.dev != bridge or look.gateway is not None:
            return (
                "fail",
                f"the kernel sends it {look.describe()} instead of onto {bridge}",
                want,
            )
        if dead:
            return "fail", f"the pod does not answer ARP/NDP on {bridge}: is it running?", want
        return "ok", f"delivered locally on {bridge}", want
    if kind in ("pod", "service") and wanted is not None:
        via = ", ".join(map(str, wanted.via))
        offlink = _offlink(facts, node, seen.ip.version)
        if offlink is not None:
            name = node.name if node else "?"
            if facts.bgp_up:  # --bgp: the router learned the subnet from the node itself
                want = (
                    f"no host route: {name} ({via}) is on another segment; its pods are "
                    f"reached via the router, announced by {name} over BGP"
                )
            else:
                want = (
                    f"no host route: {name} ({via}) is off-link ({offlink}); "
                    "its pods are left to the router"
                )
            if unrouted:
                return "fail", f"unreachable: nothing routes it ({why})", want
            assert look is not None
            gw = f"via {look.gateway}" if look.gateway else f"on {look.dev}"
            if facts.bgp_up:
                return "ok", f"via the router ({gw}), announced by {name} over BGP", want
            return "ok", f"left to the router: the kernel sends it {gw}", want
        want = f"{wanted.dst} via {via} ({'services' if wanted.node is None else wanted.node})"
        at = [r for r in facts.installed if r.dst == wanted.dst]
        mine = next((r for r in at if r.owned), None)
        theirs = next((r for r in at if not r.owned), None)
        if route is not None and route.dst == wanted.dst and not route.owned:
            theirs = route
        if theirs is not None and (mine is None or route is theirs):
            return (
                "fail",
                f"conflict: {theirs.owner} routes {wanted.dst} ({theirs.detail}); nosdn leaves it",
                want,
            )
        if mine is None:
            if route is not None:
                found = route.detail
            else:
                found = "nothing" if unrouted else (look.describe() if look else "?")
            return "fail", f"nosdn's route is missing: the kernel uses {found}", want
        if tuple(sorted(mine.via)) != wanted.via:
            return "fail", f"nosdn's route is wrong: it has {mine.detail}", want
        if route is not None and route != mine:
            return "fail", _not_ours(seen, route, wanted), want
        if unrouted:
            return "fail", f"the route is there but the kernel cannot use it ({why})", want
        if dead:
            return "fail", "the route is right but its next hop does not answer ARP/NDP", want
        return "ok", f"routed as nosdn wants, via {via}", want
    if kind == "pod":  # a pod subnet this target has no route for (another family, ...)
        return "warn", "nosdn wants no route for it from here", "no route wanted from here"
    if kind == "service":
        want = "a service address: kube-proxy on this node translates it, no route needed"
        return "ok", want, want
    if kind == "node":
        if unrouted:
            return "fail", f"node unreachable from here ({why})", "nothing (a node address)"
        return "ok", "a node address, reached by the host's own routes", "nothing (a node address)"
    if kind == "unallocated":
        return "warn", "no node has this subnet: nothing answers there", "nothing"
    if unrouted:
        return "ok", f"not a cluster address, and unreachable from here ({why})", "nothing"
    return "ok", "not a cluster address: nosdn has no say in it", "nothing"


def _not_ours(seen: _Seen, used: InstalledRoute, wanted: Route) -> str:
    """Why nosdn's right route is not the one the kernel used."""
    if seen.table != seen.facts.table:
        return (
            f"a policy rule (ip rule) sends it to table {seen.table}: the kernel uses "
            f"{used.detail}, not nosdn's route in table {seen.facts.table}"
        )
    if used.dst.prefixlen > wanted.dst.prefixlen:
        return (
            f"shadowed: the kernel uses {used.detail}, a {used.kind} route of {used.owner} more "
            f"specific than nosdn's {wanted.dst}; nosdn leaves it alone (remove it only if it "
            "is wrong)"
        )
    return f"the kernel uses {used.detail}, not nosdn's route to {wanted.dst}"


def _hop(to: object, dev: str | None = None, what: str | None = None) -> dict[str, Any]:
    """One hop of the path as data (``-o json``): where to, out of which device, what it is."""
    return {"to": str(to), "dev": dev, "what": what}


def _path_text(start: str, hops: Sequence[dict[str, Any]]) -> list[str]:
    """The path as the table prints it (``node1 ─eth0→ 10.10.0.3 (node3) ─→ pod``)."""
    out = [start]
    for h in hops:
        if h.get("error"):
            out.append(f"✗ {h['to']} ({h['error']})")
        elif h["what"] == "this host":
            out.append(f"{h['to']} (this host)")
        elif h["what"] == "pod":
            out.append(f"─{h['dev'] or ''}→ pod {h['to']}")
        elif h["what"] == "node":
            out.append(f"─→ {h['node']} ({h['to']})")
        else:
            out.append(f"─{h['dev'] or ''}→ {h['to']}" + (f" ({h['what']})" if h["what"] else ""))
    return out


def _path(seen: _Seen, here: str) -> tuple[str, list[dict[str, Any]]]:
    """Where the packet starts, and each hop it takes from there."""
    facts, ip, kind, node, look = seen.facts, seen.ip, seen.kind, seen.node, seen.look
    me = facts.node_name or here
    if look is None or not look.routed:
        error = look.error if look and look.error else "no route"
        return me, [{**_hop(ip), "error": error}]
    if look.kind == "local":
        return me, [_hop(ip, what="this host")]
    hops = []
    if look.gateway is not None:
        who = _name_of(facts.cluster, look.gateway)
        role = who or ("router" if kind in ("offlink-pod", "pod") else "gateway")
        hops.append(_hop(look.gateway, look.dev, role))
        if kind == "pod" and node is not None and who != node.name:
            hops.append({**_hop(node.ip_for(ip.version), None, "node"), "node": node.name})
    if kind in ("pod", "local-pod") and node is not None:
        dev = look.dev if kind == "local-pod" else "pod bridge"
        hops.append(_hop(ip, dev, "pod"))
    elif look.gateway is None:
        hops.append(_hop(ip, look.dev))
    else:
        hops.append(_hop(ip))
    return me, hops
