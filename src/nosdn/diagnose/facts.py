"""What `nosdn doctor` and `nosdn trace` know about a host: plain values, gathered once.

Every check is a pure function of a `Facts` value, so tests can hand a check the exact situation
they want (a kernel without nexthop objects, a Docker FORWARD policy) without building it, and
the one gatherer (`nosdn.diagnose.gather`) is the only code that reads the host. Nothing here
reads or writes anything; the dataclasses only say which facts exist and what shape they have.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Interface, IPv6Interface
from typing import Any, Literal, TypeAlias

from nosdn.backends.birdc import Session
from nosdn.model import DEFAULT_PROTOCOL, Cluster, InstalledRoute, IPAddress, IPNetwork, Target
from nosdn.reconcile import PassResult

Masquerade: TypeAlias = Literal["auto", "yes", "no"]
IPInterface: TypeAlias = IPv4Interface | IPv6Interface


@dataclass(frozen=True, slots=True)
class Link:
    """One network interface: ``up`` is the administrative flag, ``carrier`` the link state."""

    name: str
    mtu: int
    up: bool
    carrier: bool = True
    kind: str = ""  # bridge, veth, ... ("" for a plain device)
    addresses: tuple[IPInterface, ...] = ()


@dataclass(frozen=True, slots=True)
class Neighbour:
    """One ARP/NDP entry (``ip neigh``): state is the kernel's, upper case (REACHABLE, ...)."""

    ip: IPAddress
    dev: str
    state: str
    lladdr: str | None = None


@dataclass(frozen=True, slots=True)
class RouteLookup:
    """The kernel's answer to ``ip route get DST``: how a packet to ``dst`` leaves this host."""

    dst: IPAddress
    error: str | None = None  # "Network is unreachable", ...
    #: unicast, local, blackhole, unreachable, ... (with an error: the type of route whose
    #: answer the error is, when it tells: EINVAL blackhole, EHOSTUNREACH unreachable, ...)
    kind: str = "unicast"
    dev: str | None = None
    gateway: IPAddress | None = None
    src: IPAddress | None = None
    #: the route the kernel picked (``ip route get fibmatch``), asked for traced addresses
    #: only; None when not asked, or when the kernel names none (an error)
    matched: InstalledRoute | None = None
    matched_table: int | None = None

    @property
    def routed(self) -> bool:
        """A packet to ``dst`` leaves this host on some interface."""
        return self.error is None and self.kind in ("unicast", "local")

    def describe(self) -> str:
        if self.error is not None:
            kind = f" (a {self.kind} route)" if self.kind != "unicast" else ""
            return f"{self.dst}: {self.error}{kind}"
        parts = [str(self.dst)] if self.kind == "unicast" else [self.kind, str(self.dst)]
        if self.gateway is not None:
            parts.append(f"via {self.gateway}")
        if self.dev:
            parts.append(f"dev {self.dev}")
        if self.src is not None:
            parts.append(f"src {self.src}")
        return " ".join(parts)


@dataclass(frozen=True, slots=True)
class Match:
    """One address match of a firewall rule: ``ip saddr != { 10.0.0.0/8, ... }``."""

    field: Literal["saddr", "daddr"]
    negated: bool
    prefixes: tuple[IPNetwork, ...]
    family: int = 4  # the header it reads: an ``ip saddr`` match never matches IPv6 packets


@dataclass(frozen=True, slots=True)
class Rule:
    """One firewall rule, reduced to what the checks need.

    ``verdict`` is accept, drop, reject, jump, goto, return, masquerade, snat or None;
    ``other`` says the rule also matches on something else (an interface, conntrack state...),
    so it cannot be relied on to pass every pod packet.
    """

    verdict: str | None
    matches: tuple[Match, ...] = ()
    other: bool = False
    target: str | None = None  # chain of a jump/goto
    text: str = ""


@dataclass(frozen=True, slots=True)
class Chain:
    """A firewall chain. ``source``: nftables (this includes iptables-nft) or iptables-legacy."""

    source: str
    family: str  # ip, ip6, inet (nftables families; legacy iptables maps to ip/ip6)
    table: str
    name: str
    hook: str | None = None
    policy: str | None = None
    type: str | None = None
    rules: tuple[Rule, ...] = ()
    #: the devices of a netdev/ingress chain, when nft names them (older nft -j does not)
    devices: tuple[str, ...] = ()

    def covers(self, family: int) -> bool:
        """Whether packets of this IP family pass this chain (netdev chains see them all)."""
        return self.family in ("inet", "netdev", "ip" if family == 4 else "ip6")


@dataclass(frozen=True, slots=True)
class Firewall:
    """Every chain found, and whether reading them worked (``error`` says why not)."""

    chains: tuple[Chain, ...] = ()
    tables: tuple[tuple[str, str], ...] = ()  # (family, name) of every nftables table
    error: str | None = None

    def chain(self, source: str, family: str, table: str, name: str) -> Chain | None:
        for c in self.chains:
            if (c.source, c.family, c.table, c.name) == (source, family, table, name):
                return c
        return None


@dataclass(frozen=True, slots=True)
class PolicyRule:
    """One policy routing rule (``ip rule``), reduced to what decides where pod traffic goes.

    ``action`` is lookup, blackhole, unreachable, prohibit, goto or nop; ``src``/``dst`` None
    mean "all"; ``iif`` the input interface it selects; ``other`` the selectors doctor does
    not evaluate (fwmark, uidrange, ipproto, ports, tos, oif, l3mdev), as ``ip rule`` shows
    them: a rule with any may or may not select pod traffic.
    """

    priority: int
    family: int
    action: str = "lookup"
    table: int | None = None
    src: IPNetwork | None = None
    dst: IPNetwork | None = None
    invert: bool = False
    iif: str | None = None
    goto: int | None = None
    suppress_prefixlen: int | None = None
    other: tuple[str, ...] = ()
    text: str = ""

    @property
    def default(self) -> bool:
        """One of the kernel's own rules: 0 lookup local, 32766 main, 32767 default."""
        plain = self.action == "lookup" and not (
            self.src or self.dst or self.invert or self.iif or self.other
        )
        return plain and (self.priority, self.table) in ((0, 255), (32766, 254), (32767, 253))


@dataclass(frozen=True, slots=True)
class CniFile:
    """The CNI conflist as found on disk (``text`` None when missing or unreadable)."""

    path: str
    text: str | None = None
    error: str | None = None
    #: the other network configs in the same directory (kubelet uses the first by name)
    others: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Facts:
    """Everything the checks look at. Defaults describe an empty host with no inventory."""

    cluster: Cluster | None = None
    target: Target | None = None
    #: the inventory path as the user gave it (for the fix commands), absolute
    inventory: str | None = None
    #: how to run nosdn in a fix command, as it was run (``/usr/local/bin/nosdn``,
    #: ``/venv/bin/python -m nosdn``): ``nosdn`` may not be on the PATH where it is pasted
    program: tuple[str, ...] = ("nosdn",)
    table: int = 254
    protocol: int = DEFAULT_PROTOCOL
    #: ``net.ipv4.ip_forward`` -> "1", ``net.ipv4.conf.eth0.rp_filter`` -> "2", ...
    sysctl: Mapping[str, str] = field(default_factory=dict)
    links: Mapping[str, Link] = field(default_factory=dict)
    neighbours: tuple[Neighbour, ...] = ()
    #: the kernel's lookups for every address a check asks about (next hops, pod subnets)
    lookups: Mapping[IPAddress, RouteLookup] = field(default_factory=dict)
    #: one dry-run reconcile pass: desired routes, the diff against the table, off-link nodes
    routes: PassResult | None = None
    routes_error: str | None = None
    #: every route of the table as the backend read it (ours and others'), for trace
    installed: tuple[InstalledRoute, ...] = ()
    nexthops_supported: bool | None = None
    firewall: Firewall = field(default_factory=Firewall)
    #: the policy rules of both families (``ip rule``), and why they could not be read
    rules: tuple[PolicyRule, ...] = ()
    rules_error: str | None = None
    #: the routes of every other table a rule looks up (not ours, local or default)
    rule_tables: Mapping[int, tuple[InstalledRoute, ...]] = field(default_factory=dict)
    cni: CniFile | None = None
    masquerade: Masquerade = "auto"
    #: BGP mode: the sessions of the agent's BIRD (None: no BIRD control socket found), and
    #: why they could not be read
    bgp: tuple[Session, ...] | None = None
    bgp_error: str | None = None
    #: the agent's datapath probes (its ``/probes``: counts and the unreachable peers with
    #: their likely cause); None: no agent answered on this host
    probes: Mapping[str, Any] | None = None

    @property
    def bgp_up(self) -> bool:
        """Whether this node announces its pods over BGP now (one session Established)."""
        return any(s.established for s in self.bgp or ())

    @property
    def node_name(self) -> str | None:
        return self.target.node if self.target is not None and self.target.kind == "node" else None

    @property
    def families(self) -> tuple[int, ...]:
        """The IP families pods use here: those of this node's addresses and pod subnets (or
        of the whole cluster for an external host), else whatever this host has addresses in."""
        if self.cluster is not None:
            me = self.cluster.node(self.node_name) if self.node_name else None
            nets = (
                me.pod_cidrs
                if me is not None
                else tuple(c for n in self.cluster.nodes for c in n.pod_cidrs)
            )
            fams = {c.version for c in nets}
            if me is not None:
                fams &= {ip.version for ip in me.ips}
            if fams:
                return tuple(sorted(fams))
        return (4,)

    def neighbour(self, ip: IPAddress) -> Neighbour | None:
        for n in self.neighbours:
            if n.ip == ip:
                return n
        return None

    def link_of(self, ip: IPAddress) -> Link | None:
        """The interface that has ``ip`` as one of its own addresses."""
        for link in self.links.values():
            if any(a.ip == ip for a in link.addresses):
                return link
        return None


def nosdn_command(facts: Facts, *args: str) -> str:
    """A nosdn command line for a fix, shell-quoted, that runs as printed."""
    return shlex.join([*facts.program, *args])


def probe_address(net: IPNetwork) -> IPAddress:
    """An address inside ``net`` to ask the kernel about (its first host, as a pod gets)."""
    if net.num_addresses > 2:
        return net.network_address + 1
    return net.network_address


def conflist_json(cni: CniFile | None) -> dict[str, object] | None:
    """The conflist as JSON, or None when it is missing or not JSON."""
    if cni is None or cni.text is None:
        return None
    try:
        data = json.loads(cni.text)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def bridge_plugin(conflist: Mapping[str, object] | None) -> dict[str, object] | None:
    if conflist is None:
        return None
    plugins = conflist.get("plugins")
    if not isinstance(plugins, list):
        return None
    for p in plugins:
        if isinstance(p, dict) and p.get("type") == "bridge":
            return p
    return None


def pod_bridge(facts: Facts, default: str = "cni0") -> str:
    """The pods' bridge: named in the conflist's bridge plugin, else CNI's default ``cni0``."""
    plugin = bridge_plugin(conflist_json(facts.cni))
    name = plugin.get("bridge") if plugin is not None else None
    return name if isinstance(name, str) and name else default
