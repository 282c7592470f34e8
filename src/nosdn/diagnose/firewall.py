"""Reading firewall rules well enough to answer two questions, and answering them.

Does the FORWARD path drop pod packets (Docker sets the iptables FORWARD policy to DROP, and a
node then silently stops forwarding between pods of different nodes)? Is pod egress
masqueraded, and only egress (a rule that also NATs pod-to-pod traffic hides pod addresses)?

Rules come from ``nft -j list ruleset`` (native nftables and iptables-nft alike) and from
``iptables-legacy-save`` when legacy tables exist; both are reduced to `Rule` values: address
matches, a verdict, and whether the rule also matches on anything else. The evaluator walks a
chain for one concrete packet (source, destination) the way the kernel would, following jumps,
and only trusts rules whose every match it understands: a rule that also matches an interface
or a conntrack state might not apply, so it never counts as passing a pod packet.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from ipaddress import ip_address, ip_network, summarize_address_range
from typing import Any, Literal

from nosdn.diagnose.facts import Chain, Firewall, Match, Rule
from nosdn.model import IPAddress, IPNetwork

_VERDICTS = ("accept", "drop", "reject", "return", "masquerade", "snat", "dnat", "redirect")
_NEUTRAL = ("counter", "comment", "log", "limit", "quota", "notrack", "meta set", "mangle")
_FINAL = {"accept", "drop", "reject", "masquerade", "snat", "dnat", "redirect"}


# --- nftables JSON -------------------------------------------------------------------------
def _net(text: str, plen: int | None = None) -> IPNetwork:
    return ip_network(f"{text}/{plen}" if plen is not None else text, strict=False)


Sets = Mapping[str, list[Any]]


def _prefixes(right: Any, sets: Sets) -> tuple[IPNetwork, ...] | None:
    """The networks of a match's right-hand side (an address, a prefix, a range, an anonymous
    or named set of those), or None if it is anything else."""
    if isinstance(right, str):
        if right.startswith("@"):
            elems = sets.get(right[1:])
            return _prefixes({"set": elems}, sets) if elems is not None else None
        try:
            return (_net(right),)
        except ValueError:
            return None
    if not isinstance(right, dict):
        return None
    if "prefix" in right:
        p = right["prefix"]
        try:
            return (_net(str(p["addr"]), int(p["len"])),)
        except (KeyError, ValueError, TypeError):
            return None
    if "range" in right:
        try:
            lo, hi = (ip_address(str(a)) for a in right["range"])
            return tuple(summarize_address_range(lo, hi))
        except (ValueError, TypeError):
            return None
    if "elem" in right and isinstance(right["elem"], dict):
        return _prefixes(right["elem"].get("val"), sets)
    if "set" in right and isinstance(right["set"], list):
        out: list[IPNetwork] = []
        for item in right["set"]:
            nets = _prefixes(item, sets)
            if nets is None:
                return None
            out.extend(nets)
        return tuple(out)
    return None


def _nft_rule(expr: list[Any], sets: Sets) -> Rule:
    matches: list[Match] = []
    other = False
    verdict: str | None = None
    target: str | None = None
    words: list[str] = []
    for stmt in expr:
        if not isinstance(stmt, dict) or len(stmt) != 1:
            other = True
            continue
        ((key, value),) = stmt.items()
        if key == "match" and isinstance(value, dict):
            left = value.get("left")
            payload = left.get("payload") if isinstance(left, dict) else None
            op = value.get("op")
            nets = _prefixes(value.get("right"), sets)
            if (
                isinstance(payload, dict)
                and payload.get("protocol") in ("ip", "ip6")
                and payload.get("field") in ("saddr", "daddr")
                and op in ("==", "!=", "in")
                and nets is not None
            ):
                field: Literal["saddr", "daddr"] = (
                    "saddr" if payload["field"] == "saddr" else "daddr"
                )
                fam = 4 if payload["protocol"] == "ip" else 6
                matches.append(Match(field, op == "!=", nets, fam))
                sign = "!= " if op == "!=" else ""
                words.append(
                    f"{payload['protocol']} {field} {sign}{', '.join(str(n) for n in nets)}"
                )
            else:
                other = True
                words.append("(other match)")
        elif key in ("jump", "goto") and isinstance(value, dict):
            verdict, target = key, str(value.get("target"))
            words.append(f"{key} {target}")
        elif key in _VERDICTS:
            verdict = key
            words.append(key)
        elif key == "xt" and isinstance(value, dict):
            if value.get("type") == "target":
                name = str(value.get("name", "")).lower()
                verdict = name if name in _VERDICTS else "xt:" + name
                words.append(name)
            else:
                other = True
                words.append(f"(-m {value.get('name')})")
        elif key in _NEUTRAL:
            continue
        else:
            other = True
            words.append(f"({key})")
    return Rule(verdict, tuple(matches), other, target, " ".join(words))


def _devices(dev: Any) -> tuple[str, ...]:
    """A netdev chain's ``dev`` (one name or a list; older nft does not print it)."""
    if isinstance(dev, str):
        return (dev,)
    if isinstance(dev, list):
        return tuple(str(d) for d in dev)
    return ()


def parse_nft_json(data: Mapping[str, Any]) -> Firewall:
    """Chains and rules from ``nft -j list ruleset``."""
    chains: dict[tuple[str, str, str], dict[str, Any]] = {}
    rules: dict[tuple[str, str, str], list[Rule]] = {}
    tables: list[tuple[str, str]] = []
    sets: dict[tuple[str, str], dict[str, list[Any]]] = {}
    items = [i for i in data.get("nftables", []) if isinstance(i, dict)]
    for item in items:
        if "set" in item and isinstance(item["set"], dict):
            st = item["set"]
            elems = st.get("elem", [])
            table_sets = sets.setdefault((str(st.get("family")), str(st.get("table"))), {})
            table_sets[str(st.get("name"))] = elems if isinstance(elems, list) else [elems]
    for item in items:
        if "table" in item:
            t = item["table"]
            tables.append((str(t.get("family")), str(t.get("name"))))
        elif "chain" in item:
            c = item["chain"]
            chains[(str(c.get("family")), str(c.get("table")), str(c.get("name")))] = c
        elif "rule" in item:
            r = item["rule"]
            key = (str(r.get("family")), str(r.get("table")), str(r.get("chain")))
            named = sets.get((key[0], key[1]), {})
            rules.setdefault(key, []).append(_nft_rule(list(r.get("expr", [])), named))
    out = [
        Chain(
            "nftables",
            fam,
            table,
            name,
            hook=c.get("hook"),
            policy=c.get("policy"),
            type=c.get("type"),
            rules=tuple(rules.get((fam, table, name), [])),
            devices=_devices(c.get("dev")),
        )
        for (fam, table, name), c in chains.items()
    ]
    return Firewall(tuple(out), tuple(tables))


# --- iptables-legacy-save ------------------------------------------------------------------
_HOOKS = {
    "INPUT": "input",
    "FORWARD": "forward",
    "OUTPUT": "output",
    "PREROUTING": "prerouting",
    "POSTROUTING": "postrouting",
}


def _legacy_rule(argv: list[str], family: int) -> tuple[str, Rule]:
    chain = ""
    matches: list[Match] = []
    other = False
    verdict: str | None = None
    target: str | None = None
    negate = False
    i = 0
    while i < len(argv):
        a = argv[i]
        nxt = argv[i + 1] if i + 1 < len(argv) else ""
        if a == "!":
            negate = True
            i += 1
            continue
        if a == "-A":
            chain = nxt
        elif a in ("-s", "--source", "-d", "--destination"):
            field: Literal["saddr", "daddr"] = "saddr" if a in ("-s", "--source") else "daddr"
            try:
                nets = tuple(_net(x) for x in nxt.split(","))
                matches.append(Match(field, negate, nets, family))
            except ValueError:
                other = True
        elif a in ("-j", "--jump", "-g", "--goto"):
            name = nxt
            if name.lower() in _VERDICTS:
                verdict = name.lower()
            elif a in ("-g", "--goto"):
                verdict, target = "goto", name
            else:
                verdict, target = "jump", name
            i += 2
            break  # target options follow; they do not change who the rule matches
        elif a in ("-m", "--match") and nxt == "comment":
            i += 4 if i + 2 < len(argv) and argv[i + 2] == "--comment" else 2
            negate = False
            continue
        else:
            other = True
        negate = False
        i += 2 if nxt and not nxt.startswith("-") else 1
    return chain, Rule(verdict, tuple(matches), other, target, " ".join(argv))


def parse_iptables_save(text: str, family: int) -> list[Chain]:
    """Chains of the filter and nat tables from ``iptables-legacy-save`` output."""
    fam = "ip" if family == 4 else "ip6"
    table = ""
    policies: dict[tuple[str, str], str | None] = {}
    rules: dict[tuple[str, str], list[Rule]] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("*"):
            table = line[1:]
        elif line.startswith(":"):
            name, policy = [*line[1:].split(), "-"][:2]
            policies[(table, name)] = policy.lower() if policy != "-" else None
        elif line.startswith("-A "):
            chain, rule = _legacy_rule(shlex.split(line), family)
            rules.setdefault((table, chain), []).append(rule)
    return [
        Chain(
            "iptables-legacy",
            fam,
            table,
            name,
            hook=_HOOKS.get(name) if policy is not None else None,
            policy=policy,
            type="nat" if table == "nat" else "filter",
            rules=tuple(rules.get((table, name), [])),
        )
        for (table, name), policy in policies.items()
    ]


# --- evaluation ----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Verdict:
    """What happened to a packet in a chain: the final verdict (None if no rule decided and
    the chain has no policy), and the rule that decided it."""

    verdict: str | None
    rule: Rule | None
    chain: Chain


def _matches(rule: Rule, src: IPAddress, dst: IPAddress) -> bool:
    for m in rule.matches:
        if m.family != src.version:
            return False
        addr = src if m.field == "saddr" else dst
        inside = any(addr in p for p in m.prefixes if p.version == addr.version)
        if inside == m.negated:
            return False
    return True


def _walk(fw: Firewall, chain: Chain, src: IPAddress, dst: IPAddress, depth: int) -> Verdict | None:
    if depth > 16:
        return None
    for rule in chain.rules:
        if rule.other or not _matches(rule, src, dst):
            continue
        if rule.verdict in _FINAL:
            return Verdict(rule.verdict, rule, chain)
        if rule.verdict == "return":
            return None
        if rule.verdict in ("jump", "goto") and rule.target:
            sub = fw.chain(chain.source, chain.family, chain.table, rule.target)
            found = _walk(fw, sub, src, dst, depth + 1) if sub is not None else None
            if found is not None or rule.verdict == "goto":
                return found
    return None


def maybe_drops(fw: Firewall, chain: Chain, src: IPAddress, dst: IPAddress) -> list[Rule]:
    """Rules of ``chain`` (and the chains it jumps to) that drop or reject a packet from
    ``src`` to ``dst`` by its addresses but also match on something else (an interface, a
    conntrack state): `evaluate` cannot count them, and they may well drop it."""
    out: list[Rule] = []
    seen: set[str] = set()
    todo = [chain]
    while todo:
        c = todo.pop()
        if c.name in seen:
            continue
        seen.add(c.name)
        for rule in c.rules:
            if rule.verdict in ("jump", "goto") and rule.target:
                sub = fw.chain(c.source, c.family, c.table, rule.target)
                if sub is not None:
                    todo.append(sub)
            elif (
                rule.other
                and rule.verdict in ("drop", "reject")
                and rule.matches
                and _matches(rule, src, dst)
            ):
                out.append(rule)
    return out


def evaluate(fw: Firewall, chain: Chain, src: IPAddress, dst: IPAddress) -> Verdict:
    """Where a packet from ``src`` to ``dst`` ends in base chain ``chain``."""
    found = _walk(fw, chain, src, dst, 0)
    if found is not None:
        return found
    return Verdict(chain.policy or "accept", None, chain)


def base_chains(fw: Firewall, hook: str, family: int, kind: str | None = None) -> Iterable[Chain]:
    for c in fw.chains:
        if c.hook == hook and c.covers(family) and (kind is None or c.type == kind):
            yield c
