"""A Kubernetes Node object (plain JSON) as nosdn sees it: a name, one address per family and
the pod subnets.

Only a few fields of a Node matter to routing: ``metadata.name``, ``spec.podCIDRs`` (or the
older single ``spec.podCIDR``), ``status.addresses`` and, for cloud route tables,
``spec.providerID`` (the instance a route points at: ``aws:///ZONE/i-...``,
``gce://PROJECT/ZONE/NAME``). Everything else in a Node changes all the time (conditions,
images, heartbeats), so `fingerprint` reduces an object to those fields as cheap tuples of
strings: the cache compares fingerprints and parses addresses only when one differs, which
keeps the cost of a status-only event to a few dict lookups.

Node objects are untrusted input of any shape: the API server does not validate
``status.addresses`` (the kubelet writes it) and an emulator stores anything. `fingerprint` never
raises: a field of the wrong shape (addresses that are a string, an entry that is a number or
has no ``address``, podCIDRs that are no list of strings) is left out and named in the
fingerprint's shape problems, which `node_info` reports for that node alone; its other nodes are
read as usual.

Which address is "the node's" is a policy: by address type in a configured order (default
InternalIP, then ExternalIP), optionally only inside given networks (multi-homed nodes whose
first InternalIP is not on the pod-routing network).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from nosdn.addr import parse_ip, parse_net
from nosdn.checks import Seniority
from nosdn.echo import cut, echo, quoted
from nosdn.model import IPAddress, IPNetwork, Node

DEFAULT_ADDRESS_TYPES = ("InternalIP", "ExternalIP")

#: A field of the wrong shape: (field, what it is, what is wrong), e.g. ("status.addresses",
#: "(a string)", "is not a list"). Never the value itself: it is untrusted text.
Shape = tuple[str, str, str]
#: (pod CIDR strings, ((address type, address), ...), providerID, shape problems) - what
#: routing depends on, unparsed.
Fingerprint = tuple[tuple[str, ...], tuple[tuple[str, str], ...], str, tuple[Shape, ...]]


@dataclass(frozen=True, slots=True)
class AddressPolicy:
    """How to pick a node's address from ``status.addresses``."""

    types: tuple[str, ...] = DEFAULT_ADDRESS_TYPES
    #: If given, an address must lie inside one of these (per family: a family with no
    #: network here is not restricted).
    cidrs: tuple[IPNetwork, ...] = ()

    def __post_init__(self) -> None:
        if not self.types:
            raise ValueError(
                "address types: give at least one, e.g. InternalIP,ExternalIP "
                "(the Node status.addresses types to use, in order)"
            )


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """One Node as nosdn uses it. ``node.pod_cidrs`` is empty when it has no subnet yet;
    ``problems`` lists values that could not be used (each names the field and value)."""

    name: str
    node: Node
    problems: tuple[str, ...] = field(default=())
    #: ``metadata.creationTimestamp`` as the API wrote it ("" if none): of two Nodes that
    #: conflict, the one created later is skipped (RFC 3339 in UTC sorts as text).
    created: str = ""
    #: The object names pod subnets (``spec.podCIDRs`` or ``podCIDR``), usable or not: a peer
    #: this node should route to.
    claims_subnet: bool = False

    @property
    def has_subnet(self) -> bool:
        return bool(self.node.pod_cidrs)


def _kind(value: Any) -> str:
    """What a JSON value is, for a message (never the value itself: it is untrusted)."""
    if value is None:
        return "(null)"
    for t, name in ((bool, "a boolean"), (int, "a number"), (float, "a number"),
                    (str, "a string"), (Mapping, "an object"), (list, "a list")):  # fmt: skip
        if isinstance(value, t):
            return f"({name})"
    return f"({type(value).__name__})"


def _object(value: Any, field: str, bad: list[Shape]) -> Mapping[str, Any]:
    if value is None or isinstance(value, Mapping):
        return value or {}
    bad.append((field, _kind(value), "is not an object"))
    return {}


def _cidr_texts(spec: Mapping[str, Any], bad: list[Shape]) -> tuple[str, ...]:
    field, cidrs = "spec.podCIDRs", spec.get("podCIDRs")
    if not cidrs:
        field, one = "spec.podCIDR", spec.get("podCIDR")
        if not one:
            return ()
        cidrs = [one]
    if not isinstance(cidrs, list):
        bad.append((field, _kind(cidrs), "is not a list"))
        return ()
    texts = []
    for i, c in enumerate(cidrs):
        if not isinstance(c, str):
            bad.append((f"{field}[{i}]", _kind(c), "is not a string"))
            return ()
        texts.append(c)
    return tuple(texts)


def _address_pairs(status: Mapping[str, Any], bad: list[Shape]) -> tuple[tuple[str, str], ...]:
    addrs = status.get("addresses")
    if not addrs:
        return ()
    if not isinstance(addrs, list):
        bad.append(("status.addresses", _kind(addrs), "is not a list"))
        return ()
    pairs = []
    for i, a in enumerate(addrs):
        field = f"status.addresses[{i}]"
        if not isinstance(a, Mapping):
            bad.append((field, _kind(a), "is not an object"))
            continue
        atype, text = a.get("type", ""), a.get("address")
        if text is None:
            bad.append((field, "(an object)", "has no address"))
        elif not isinstance(atype, str):
            bad.append((f"{field}.type", _kind(atype), "is not a string"))
        elif not isinstance(text, str):
            bad.append((f"{field}.address", _kind(text), "is not a string"))
        else:
            pairs.append((atype, text))
    return tuple(pairs)


def fingerprint(obj: Mapping[str, Any]) -> Fingerprint:
    """The routing-relevant fields of a Node object, as plain tuples (no parsing). Never
    raises: fields of the wrong shape are left out and named in the last element."""
    bad: list[Shape] = []
    if not isinstance(obj, Mapping):
        return (), (), "", (("the object", _kind(obj), "is not an object"),)
    spec = _object(obj.get("spec"), "spec", bad)
    status = _object(obj.get("status"), "status", bad)
    cidrs = _cidr_texts(spec, bad)
    addrs = _address_pairs(status, bad)
    provider = spec.get("providerID") or ""
    if not isinstance(provider, str):
        bad.append(("spec.providerID", _kind(provider), "is not a string"))
        provider = ""
    return cidrs, addrs, provider, tuple(bad)


def node_name(obj: Mapping[str, Any]) -> str:
    """``metadata.name`` ("" when there is none, or the object has no such shape)."""
    meta = obj.get("metadata") if isinstance(obj, Mapping) else None
    name = meta.get("name") if isinstance(meta, Mapping) else None
    return name if isinstance(name, str) else ""


def created_at(obj: Mapping[str, Any]) -> str:
    meta = obj.get("metadata") if isinstance(obj, Mapping) else None
    created = meta.get("creationTimestamp") if isinstance(meta, Mapping) else None
    return created if isinstance(created, str) else ""


def _inside(ip: IPAddress, cidrs: Sequence[IPNetwork]) -> bool:
    same = [c for c in cidrs if c.version == ip.version]
    return not same or any(ip in c for c in same)


def choose_addresses(
    name: str, addresses: Sequence[tuple[str, str]], policy: AddressPolicy
) -> tuple[tuple[IPAddress, ...], list[str]]:
    """At most one address per family, by type order then list order."""
    rank = {t: i for i, t in enumerate(policy.types)}
    best: dict[int, tuple[int, int, IPAddress]] = {}
    problems: list[str] = []
    for pos, (atype, text) in enumerate(addresses):
        r = rank.get(atype)
        if r is None:
            continue
        try:
            ip = parse_ip(text)
        except ValueError:
            problems.append(
                f"node {name}: status.addresses {echo(atype)} {quoted(text)} is not an IP address; "
                "ignored"
            )
            continue
        if not _inside(ip, policy.cidrs):
            continue
        cur = best.get(ip.version)
        if cur is None or (r, pos) < cur[:2]:
            best[ip.version] = (r, pos, ip)
    return tuple(best[f][2] for f in sorted(best)), problems


def node_info(fp: Fingerprint, name: str, policy: AddressPolicy, created: str = "") -> NodeInfo:
    """Build a `NodeInfo` from a fingerprint. A pod CIDR that does not parse makes the node
    unusable for routing (no subnets) and is reported; bad addresses are skipped. The
    providerID, if any, becomes the node's ``instance_id`` (the cloud backends read both forms)."""
    cidr_texts, addresses, provider_id, bad = fp
    ips, problems = choose_addresses(name, addresses, policy)
    claims = bool(cidr_texts)
    for where, kind, what in bad:
        unusable = where.startswith("spec.podCIDR")
        claims = claims or unusable
        problems.append(
            f"node {name}: {where} {kind} {what}; "
            + ("its pod subnet is ignored until it is fixed" if unusable else "ignored")
        )
    cidrs: list[IPNetwork] = []
    for text in cidr_texts:
        try:
            cidrs.append(parse_net(text))
        except ValueError as e:
            problems.append(
                f"node {name}: spec.podCIDRs {quoted(text)} is not a network ({cut(str(e), 200)}); "
                "its pod subnet is ignored until it is fixed"
            )
            cidrs = []
            break
    if cidrs and not ips:
        types = ", ".join(policy.types)
        where = f" inside {', '.join(map(str, policy.cidrs))}" if policy.cidrs else ""
        problems.append(
            f"node {name}: status.addresses has no address of type {types}{where}; "
            "no route can point at it"
        )
    cidrs.sort(key=lambda c: c.version)
    node = Node(name, ips, tuple(cidrs), provider_id or None)
    return NodeInfo(name, node, tuple(problems), created, claims)


def seniority(
    infos: Iterable[NodeInfo], *, routed: frozenset[Node] = frozenset(), me: str | None = None
) -> Seniority:
    """Who keeps its routes when two Node objects conflict (see `nosdn.checks`).

    This node (``me``) first: nothing may take its own subnet. Then the nodes ``routed`` by the
    last pass exactly as they are now (a node whose address or subnet changed is a newcomer in
    its new conflicts), then by ``creationTimestamp``. Equal keys are a tie, and a tie skips
    every party: a Node of unknown age never wins against one of the same standing."""
    created = {i.name: i.created for i in infos}

    def key(node: Node) -> tuple[int, str]:
        return rank(node.name == me, node in routed, created.get(node.name, ""))

    return key


def rank(me: bool, routed: bool, created: str) -> tuple[int, str]:
    """The seniority key of one node (lower keeps its routes): this node, then the routed
    ones, then by creation time (see `seniority`)."""
    return 0 if me else 1 if routed else 2, created
