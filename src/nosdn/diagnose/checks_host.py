"""Doctor checks of the host's own settings: IP forwarding, reverse-path filtering, nexthops.

These are the settings that break pod traffic without any error anywhere: a node that does not
forward drops every packet between its pods and the rest of the cluster; strict reverse-path
filtering drops packets that arrive on one interface (where the node's own address is) while
the route back leaves by another (multi-homed nodes, routes not installed yet); a kernel
without nexthop objects still works, only slower at scale, so that one is a warning.
"""

from __future__ import annotations

from nosdn.diagnose.facts import Facts, pod_bridge, probe_address
from nosdn.diagnose.result import CheckResult, fail, ok, skip, warn
from nosdn.model import Route

FORWARDING_KEY = {4: "net.ipv4.ip_forward", 6: "net.ipv6.conf.all.forwarding"}
RP_NAMES = {0: "off", 1: "strict", 2: "loose"}


def sysctl_name(iface: str) -> str:
    """An interface name as it appears in a sysctl key (``eth0.100`` is ``eth0/100``)."""
    return iface.replace(".", "/")


def check_forwarding(facts: Facts) -> list[CheckResult]:
    out: list[CheckResult] = []
    for family in facts.families:
        check = f"forwarding.ipv{family}"
        key = FORWARDING_KEY[family]
        if facts.target is not None and facts.target.kind != "node":
            out.append(skip(check, "not needed: this host is not a node, it forwards no pods"))
            continue
        value = facts.sysctl.get(key)
        if value is None:
            out.append(warn(check, f"could not read {key}"))
        elif value.strip() == "1":
            out.append(ok(check, f"{key} = 1"))
        else:
            out.append(
                fail(
                    check,
                    f"{key} = {value}: this node drops every packet between its pods and "
                    "other nodes",
                    f"sysctl -w {key}=1",
                    ("make it permanent in /etc/sysctl.d/ (the agent sets it at start)",),
                )
            )
    return out


def _effective_rp(facts: Facts, iface: str) -> int | None:
    """The rp_filter the kernel applies on ``iface``: the larger of ``all`` and its own."""
    values = []
    for key in ("net.ipv4.conf.all.rp_filter", f"net.ipv4.conf.{sysctl_name(iface)}.rp_filter"):
        raw = facts.sysctl.get(key)
        if raw is not None and raw.strip().isdigit():
            values.append(int(raw))
    return max(values) if values else None


def _pod_routes(facts: Facts) -> list[Route]:
    if facts.routes is None:
        return []
    seen: dict[object, Route] = {}
    for r in (*facts.routes.desired, *facts.routes.skipped):
        if r.node is not None and r.family == 4:
            seen.setdefault(r.dst, r)
    return list(seen.values())


def arrival_link(facts: Facts, family: int = 4) -> tuple[str, str] | None:
    """The interface that holds this node's own address of ``family``, and that address:
    other nodes send their pods' packets to it, so on a multi-homed node they arrive there,
    whatever interface the route to the sending node leaves by."""
    if facts.cluster is None or facts.node_name is None:
        return None
    me = facts.cluster.node(facts.node_name)
    addr = me.ip_for(family) if me is not None else None
    link = facts.link_of(addr) if addr is not None else None
    return (link.name, str(addr)) if link is not None else None


def check_rp_filter(facts: Facts) -> list[CheckResult]:
    """Strict mode (1) drops a packet unless the route back to its source leaves by the
    interface it came in on. Other nodes' pods' packets come in where this node's own address
    is (they are routed to it); the route back is the one to their pod subnet. Where this
    node's address is not found (an external host, no inventory), they are taken to come in
    where the route to the sending node leaves."""
    check = "rp_filter"
    if 4 not in facts.families:
        return [skip(check, "no IPv4 pod traffic (IPv6 has no rp_filter)")]
    if not any(k.endswith(".rp_filter") for k in facts.sysctl):
        return [warn(check, "could not read net.ipv4.conf.*.rp_filter")]
    ifaces: dict[str, None] = {}
    bridge = pod_bridge(facts)
    if bridge in facts.links:
        ifaces[bridge] = None
    home = arrival_link(facts)
    if home is not None:
        ifaces[home[0]] = None
    mismatches: list[tuple[Route, str, str]] = []
    for r in _pod_routes(facts):
        back = facts.lookups.get(probe_address(r.dst))
        if home is not None:
            arrive_dev = home[0]
        else:
            arrive = facts.lookups.get(r.via[0])
            if arrive is None or not arrive.routed or not arrive.dev:
                continue
            arrive_dev = arrive.dev
        ifaces[arrive_dev] = None
        if back is not None and back.routed and back.dev and back.dev != arrive_dev:
            ifaces[back.dev] = None
            mismatches.append((r, arrive_dev, back.dev))
    if not ifaces:
        ifaces.update((name, None) for name, link in facts.links.items() if name != "lo")
    modes = {i: _effective_rp(facts, i) for i in ifaces}
    shown = ", ".join(
        f"{i} {RP_NAMES.get(m, m) if m is not None else '?'}" for i, m in modes.items()
    )
    bad = [(r, a, b) for r, a, b in mismatches if modes.get(a) == 1]
    if bad:
        devs = sorted({a for _, a, _ in bad})
        where = f" (where this node's address {home[1]} is)" if home is not None else ""
        details = tuple(
            f"{r.node}'s pods ({r.dst}) arrive on {a}{where}, but the route back leaves via {b}"
            for r, a, b in bad
        )
        return [
            fail(
                check,
                f"strict reverse-path filtering on {', '.join(devs)} drops packets from "
                f"{len(bad)} pod subnet(s) whose route back leaves by another interface",
                "sysctl -w "
                + " ".join(f"net.ipv4.conf.{sysctl_name(d)}.rp_filter=2" for d in devs),
                details,
            )
        ]
    strict = [i for i, m in modes.items() if m == 1]
    if strict:
        return [
            ok(
                check,
                f"strict on {', '.join(strict)}, but every pod subnet's route back leaves where "
                f"its packets arrive ({shown})",
            )
        ]
    return [ok(check, shown or "off")]


def check_nexthops(facts: Facts) -> list[CheckResult]:
    check = "nexthops"
    if facts.nexthops_supported is None:
        return [skip(check, "the routing table could not be read")]
    if facts.nexthops_supported:
        return [ok(check, "the kernel has nexthop objects (Linux 5.3+): bulk changes stay linear")]
    return [
        warn(
            check,
            "the kernel has no nexthop objects (Linux < 5.3): nosdn uses plain gateway routes, "
            "which the kernel installs in quadratic time (fine up to a few thousand)",
            "upgrade to Linux 5.3 or later",
        )
    ]
