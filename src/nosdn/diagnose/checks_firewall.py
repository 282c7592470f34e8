"""Doctor checks of the firewall: is forwarded pod traffic dropped (in the forward chain, or
earlier: prerouting and ingress), is pod egress masqueraded?

Both are answered by walking the real chains (`nosdn.diagnose.firewall`) for concrete pod
packets: one from a pod of this node to a pod of another node, one back, and one from a pod to
an address outside the cluster. A node forwards only packets that have one of its own pods at
one end, so the fix for a dropping FORWARD chain accepts exactly this node's pod subnets.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address

from nosdn.diagnose.checks_host import arrival_link
from nosdn.diagnose.facts import Chain, Facts, nosdn_command, pod_bridge, probe_address
from nosdn.diagnose.firewall import base_chains, evaluate, maybe_drops
from nosdn.diagnose.result import CheckResult, fail, ok, skip, warn
from nosdn.model import IPAddress, IPNetwork

#: An address outside any cluster (documentation ranges): where egress is tested to.
OUTSIDE: dict[int, IPAddress] = {4: IPv4Address("192.0.2.1"), 6: IPv6Address("2001:db8::1")}


def _mine(facts: Facts, family: int) -> list[IPNetwork]:
    if facts.cluster is None or facts.node_name is None:
        return []
    me = facts.cluster.node(facts.node_name)
    return [c for c in me.pod_cidrs if c.version == family] if me is not None else []


def _peer_address(facts: Facts, family: int, mine: list[IPNetwork]) -> IPAddress:
    """A pod address on another node (or at least in the cluster, but not here)."""
    if facts.cluster is not None:
        for n in facts.cluster.nodes:
            for c in n.pod_cidrs:
                if c.version == family and c not in mine:
                    return probe_address(c)
        for c in facts.cluster.cluster_cidrs:
            if c.version == family:
                candidate = c.broadcast_address - 1
                if not any(candidate in m for m in mine):
                    return candidate
    return OUTSIDE[family]


def mine_and_peer_pods(facts: Facts, family: int) -> tuple[list[IPAddress], list[IPAddress]]:
    """A pod address of each of this node's pod subnets of ``family``, and one of each pod
    subnet nosdn routes to from here (the other nodes')."""
    mine = [probe_address(c) for c in _mine(facts, family)]
    res = facts.routes
    wanted = [*res.desired, *res.skipped] if res is not None else []
    peers = [probe_address(r.dst) for r in wanted if r.node is not None and r.family == family]
    return mine, list(dict.fromkeys(peers))


def _fam(family: int) -> str:
    return "ip" if family == 4 else "ip6"


def _accept_fix(chain: Chain, family: int, nets: list[IPNetwork]) -> str:
    cmds: list[str] = []
    for net in nets:
        for flag, field in (("-s", "saddr"), ("-d", "daddr")):
            if chain.source == "iptables-legacy":
                tool = "iptables-legacy" if family == 4 else "ip6tables-legacy"
                cmds.append(f"{tool} -I {chain.name} {flag} {net} -j ACCEPT")
            elif chain.table == "filter" and chain.name == "FORWARD" and chain.family != "inet":
                tool = "iptables" if family == 4 else "ip6tables"
                cmds.append(f"{tool} -I FORWARD {flag} {net} -j ACCEPT")
            else:
                cmds.append(
                    f"nft insert rule {chain.family} {chain.table} {chain.name} "
                    f"{_fam(family)} {field} {net} accept"
                )
    return " && ".join(cmds)


def check_forward_policy(facts: Facts) -> list[CheckResult]:
    out: list[CheckResult] = []
    for family in facts.families:
        check = f"firewall.forward.ipv{family}"
        if facts.target is not None and facts.target.kind != "node":
            out.append(skip(check, "not needed: this host is not a node, it forwards no pods"))
            continue
        if facts.firewall.error is not None:
            out.append(
                warn(
                    check,
                    f"could not read the firewall: {facts.firewall.error}",
                    f"run the doctor as root (sudo {nosdn_command(facts, 'doctor')} ...)",
                )
            )
            continue
        chains = list(base_chains(facts.firewall, "forward", family))
        mine = _mine(facts, family)
        if not mine:
            dropping = [c for c in chains if c.policy == "drop"]
            if dropping:
                names = ", ".join(_chain_name(c) for c in dropping)
                out.append(
                    warn(
                        check,
                        f"{names} drops by default; give the inventory (-f) to check pod traffic",
                    )
                )
            else:
                out.append(ok(check, _summary(chains)))
            continue
        peer = _peer_address(facts, family, mine)
        blocked: dict[Chain, list[tuple[str, str]]] = {}
        for chain in chains:
            for src, dst, what in (
                (probe_address(mine[0]), peer, "from"),
                (peer, probe_address(mine[0]), "to"),
            ):
                v = evaluate(facts.firewall, chain, src, dst)
                if v.verdict in ("drop", "reject"):
                    by = f"rule '{v.rule.text}'" if v.rule is not None else f"policy {v.verdict}"
                    blocked.setdefault(chain, []).append((what, f"{src} -> {dst}: {by}"))
        if blocked:
            first, whys = next(iter(blocked.items()))
            ways = " and ".join(w for w, _ in whys)
            out.append(
                fail(
                    check,
                    f"{_chain_name(first)} drops pod packets forwarded {ways} this node's pods "
                    f"({whys[0][1].split(': ', 1)[1]})",
                    _accept_fix(first, family, mine),
                    tuple(f"{_chain_name(c)}: {d}" for c, ws in blocked.items() for _, d in ws),
                )
            )
        else:
            out.append(ok(check, _summary(chains, "forwarded pod packets pass")))
    return out


#: The hooks before routing that doctor reads, with their check name: a drop there never
#: reaches the FORWARD chain, so the forward check alone would say ok.
_EARLY_HOOKS = (("prerouting", "prerouting"), ("ingress", "ingress"))


def _early_packets(facts: Facts, family: int) -> list[tuple[IPAddress, IPAddress, str | None]]:
    """(source, destination, input interface) of the pod packets this node forwards: from
    a pod of its own to each other node's pods (in on the pod bridge), and back (in where
    this node's address is)."""
    mine, peers = mine_and_peer_pods(facts, family)
    if not mine:
        return []
    bridge = pod_bridge(facts)
    home = arrival_link(facts, family)
    if not peers:
        peers = [_peer_address(facts, family, _mine(facts, family))]
    out: list[tuple[IPAddress, IPAddress, str | None]] = []
    for peer in peers[:1]:  # address matches: one peer stands for all (their subnets differ
        out.append((mine[0], peer, bridge))  # only in what rules rarely name one by one)
        out.append((peer, mine[0], home[0] if home is not None else None))
    return out


def check_early_drops(facts: Facts) -> list[CheckResult]:
    """Drops before routing: nftables ``prerouting`` chains of type filter (raw, mangle and
    filter priorities; iptables-nft's raw and mangle PREROUTING) and ``ingress`` chains
    (netdev, and inet on Linux 5.10+), walked for the pod packets this node forwards."""
    out: list[CheckResult] = []
    for hook, name in _EARLY_HOOKS:
        for family in facts.families:
            check = f"firewall.{name}.ipv{family}"
            if facts.target is not None and facts.target.kind != "node":
                out.append(skip(check, "not needed: this host is not a node, it forwards no pods"))
                continue
            if facts.firewall.error is not None:
                out.append(skip(check, f"could not read the firewall: {facts.firewall.error}"))
                continue
            chains = [
                c for c in base_chains(facts.firewall, hook, family) if c.type in (None, "filter")
            ]
            packets = _early_packets(facts, family)
            if not chains:
                out.append(ok(check, f"no {hook} chains: nothing filters pod packets there"))
                continue
            if not packets:
                out.append(
                    skip(check, f"needs the inventory (-f) to check {len(chains)} {hook} chain(s)")
                )
                continue
            out.append(_early_verdict(facts, family, check, chains, packets))
    return out


def _early_verdict(
    facts: Facts,
    family: int,
    check: str,
    chains: list[Chain],
    packets: list[tuple[IPAddress, IPAddress, str | None]],
) -> CheckResult:
    dropped: list[tuple[Chain, str]] = []
    maybe: list[tuple[Chain, str]] = []
    for chain in chains:
        for src, dst, iif in packets:
            if chain.devices and iif is not None and iif not in chain.devices:
                continue  # an ingress chain of another device
            v = evaluate(facts.firewall, chain, src, dst)
            if v.verdict in ("drop", "reject"):
                by = f"rule '{v.rule.text}'" if v.rule is not None else f"policy {v.verdict}"
                dropped.append((chain, f"{src} -> {dst}: {by}"))
            for rule in maybe_drops(facts.firewall, chain, src, dst):
                maybe.append((chain, f"{src} -> {dst}: rule '{rule.text}'"))
    on = " (device " + ", ".join(chains[0].devices) + ")" if chains[0].devices else ""
    if dropped:
        first = dropped[0][0]
        return fail(
            check,
            f"{_chain_name(first)}{on} drops pod packets before routing ({dropped[0][1]}): the "
            "forward chain never sees them",
            _accept_fix(first, family, _mine(facts, family)),
            tuple(f"{_chain_name(c)}: {d}" for c, d in dropped),
        )
    if maybe:
        return warn(
            check,
            f"{len(maybe)} rule(s) may drop pod packets before routing (they match pod "
            f"addresses and something doctor does not evaluate: {maybe[0][1]})",
            None,
            tuple(f"{_chain_name(c)}: {d}" for c, d in maybe),
        )
    return ok(check, _summary(chains, "pod packets pass"))


def check_scope(facts: Facts) -> list[CheckResult]:
    """What doctor does not look at, said plainly (a skip line: never a verdict)."""
    gaps = [
        "tc filters and qdiscs",
        "XDP and other eBPF programs (Cilium-style datapaths)",
        "iptables-legacy raw and mangle tables",
        "the INPUT and OUTPUT chains",
        "conntrack state and limits",
        "what routers and cloud route tables do beyond the next hop",
    ]
    if any(c.family == "netdev" and not c.devices for c in facts.firewall.chains):
        gaps.append("which device a netdev chain is on (this nft does not say: all are walked)")
    if any(r.other for r in facts.rules):
        gaps.append("ip rule selectors other than from, to and iif (fwmark, uid, ports, ...)")
    return [skip("not-checked", "doctor does not check " + "; ".join(gaps))]


def _chain_name(c: Chain) -> str:
    if c.source == "iptables-legacy":
        return f"iptables-legacy {c.table} {c.name}"
    return f"nft {c.family} {c.table} {c.name}"


def _summary(chains: list[Chain], verdict: str = "") -> str:
    if not chains:
        return "no forward chains: nothing filters forwarded packets"
    policies = ", ".join(f"{_chain_name(c)} (policy {c.policy or 'accept'})" for c in chains)
    return f"{verdict}: {policies}" if verdict else policies


def _nosdn_chains(facts: Facts, family: int) -> list[Chain]:
    return [
        c
        for c in base_chains(facts.firewall, "postrouting", family, "nat")
        if c.source == "nftables" and "nosdn" in c.table
    ]


def _masq_fix(facts: Facts, family: int, mine: list[IPNetwork], replace: str = "") -> str:
    keep = [
        c for c in (facts.cluster.cluster_cidrs if facts.cluster else ()) if c.version == family
    ]
    if not keep and facts.cluster is not None:
        keep = [c for n in facts.cluster.nodes for c in n.pod_cidrs if c.version == family]
    fam = _fam(family)
    src = mine[0] if len(mine) == 1 else "{ " + ", ".join(map(str, mine)) + " }"
    dst = "{ " + ", ".join(map(str, keep)) + " }" if len(keep) != 1 else str(keep[0])
    return (
        f"nft '{replace}add table inet nosdn; "
        "add chain inet nosdn postrouting { type nat hook postrouting priority srcnat; }; "
        f"add rule inet nosdn postrouting {fam} saddr {src} {fam} daddr != {dst} masquerade'"
    )


def check_masquerade(facts: Facts) -> list[CheckResult]:
    out: list[CheckResult] = []
    tables = [f"{f} {n}" for f, n in facts.firewall.tables if "nosdn" in n]
    for family in facts.families:
        check = f"masquerade.ipv{family}"
        if facts.target is not None and facts.target.kind != "node":
            out.append(skip(check, "not needed: this host is not a node"))
            continue
        if facts.masquerade == "no":
            out.append(skip(check, "not expected (--masquerade false)"))
            continue
        if facts.firewall.error is not None:
            out.append(
                warn(
                    check,
                    f"could not read nftables: {facts.firewall.error}",
                    f"run the doctor as root (sudo {nosdn_command(facts, 'doctor')} ...)",
                )
            )
            continue
        if facts.masquerade == "auto" and not tables:
            out.append(
                skip(
                    check,
                    "no nosdn nftables table: pod egress is not masqueraded here "
                    "(--masquerade true if pods must reach outside the cluster through this node)",
                )
            )
            continue
        mine = _mine(facts, family)
        if not mine:
            out.append(skip(check, "needs the inventory (-f) to know this node's pod subnets"))
            continue
        chains = _nosdn_chains(facts, family)
        src = probe_address(mine[0])
        outside = OUTSIDE[family]
        peer = _peer_address(facts, family, mine)
        egress = [evaluate(facts.firewall, c, src, outside) for c in chains]
        internal = [evaluate(facts.firewall, c, src, peer) for c in chains]
        nat = ("masquerade", "snat")
        where = ", ".join(tables) or "no nosdn table"
        if not any(v.verdict in nat for v in egress):
            out.append(
                fail(
                    check,
                    f"pod egress from {mine[0]} to {outside} is not masqueraded ({where})",
                    _masq_fix(facts, family, mine),
                )
            )
        elif peer != outside and any(v.verdict in nat for v in internal):
            v = next(v for v in internal if v.verdict in nat)
            rule = v.rule.text if v.rule is not None else "?"
            out.append(
                fail(
                    check,
                    f"traffic between pods ({src} -> {peer}) is masqueraded too "
                    f"(rule '{rule}' in {_chain_name(v.chain)}): other nodes see the node's "
                    "address instead of the pod's",
                    _masq_fix(
                        facts, family, mine, f"delete table {v.chain.family} {v.chain.table}; "
                    ),
                )
            )
        else:
            out.append(ok(check, f"pod egress masqueraded, pod-to-pod traffic not ({where})"))
    return out
