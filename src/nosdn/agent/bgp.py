"""What the agent's BGP mode wants BIRD to say: a pure function from (this node, its peers,
the options) to BIRD 2 config text.

The text is `nosdn.render.bgp.render_bird_node`'s, the same renderer ``nosdn render --format
bird-node`` uses for static clusters: one way to write a node's BIRD config. It announces exactly
this node's own pod subnets (and the service CIDRs when the node is one of ``serviceVia``),
never another node's subnet, never a default route. Every value that reaches the text comes
from the Node object (name, addresses, subnets, the peer annotation) and is refused by the
renderer's quoting functions when it is not plain (`nosdn.render._quote`), before BIRD sees it.

A rack that differs (other routers, another ASN) says so on its Node with the annotation
`PEERS_ANNOTATION` (``ADDRESS:ASN`` comma separated) and `ASN_ANNOTATION`; `node_overrides`
parses them, refusing a bad value with node, field, value and the fix.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from nosdn.model import (
    DEFAULT_GRACEFUL_RESTART,
    Bgp,
    BgpPeer,
    Cluster,
    IPAddress,
    IPNetwork,
    Node,
    Target,
)
from nosdn.problems import Problem
from nosdn.render._base import RenderOptions, Secret
from nosdn.render.bgp import render_bird_node
from nosdn.sources.inventory import parse_asn

PEERS_ANNOTATION = "nosdn.io/bgp-peers"
ASN_ANNOTATION = "nosdn.io/bgp-asn"
#: The most peers one node may name (two top-of-rack routers, two families: far past it).
MAX_PEERS = 16


class BgpConfigError(ValueError):
    """A Node's BGP annotation (or what it leads to) cannot be turned into BIRD config."""


@dataclass(frozen=True, slots=True)
class BgpOptions:
    """The agent's ``--bgp-*`` flags: this cluster's node ASN, the routers, and the session
    options every peer shares (a peer from the Node annotation takes them too)."""

    asn: int
    #: the routers, as (address, ASN); `peers` gives them the session options
    routers: tuple[tuple[IPAddress, int], ...]
    graceful_restart_time: int = DEFAULT_GRACEFUL_RESTART
    password_file: str | None = None
    multihop: int = 0
    bfd: bool = False
    #: the service CIDRs, announced by this node when it is one of ``service_via``
    service_cidrs: tuple[IPNetwork, ...] = ()
    service_via: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        problems: list[Problem] = []
        parse_asn(self.asn, None, "--bgp-asn", problems)
        for address, asn in self.routers:
            parse_asn(asn, None, f"--bgp-peer {address}", problems)
        if problems:
            raise BgpConfigError(str(problems[0]))
        if not self.routers:
            raise BgpConfigError(
                "--bgp needs --bgp-peer ADDRESS:ASN (the top-of-rack router(s)), "
                "e.g. --bgp-peer 10.10.0.254:65000"
            )
        if not 1 <= self.graceful_restart_time <= 4095:
            raise BgpConfigError(
                f"--bgp-graceful-restart-time {self.graceful_restart_time}: use 1..4095 "
                f"seconds (default {DEFAULT_GRACEFUL_RESTART})"
            )
        if self.multihop and not 2 <= self.multihop <= 255:
            raise BgpConfigError(
                f"--bgp-multihop {self.multihop}: use 0 (directly connected) or a TTL of 2..255"
            )

    @property
    def peers(self) -> tuple[BgpPeer, ...]:
        return self.peers_of(self.routers)

    def peers_of(self, routers: tuple[tuple[IPAddress, int], ...]) -> tuple[BgpPeer, ...]:
        """``routers`` as peers with this node's session options."""
        return tuple(
            BgpPeer(
                address,
                asn,
                password_file=self.password_file,
                multihop=self.multihop,
                bfd=self.bfd,
            )
            for address, asn in routers
        )


def parse_routers(text: str, where: str) -> tuple[tuple[IPAddress, int], ...]:
    """``ADDRESS:ASN[,ADDRESS:ASN...]`` (IPv6 as ``[ADDR]:ASN``) as (address, ASN) pairs.
    Raises `BgpConfigError` naming ``where`` and the bad item."""
    peers: list[tuple[IPAddress, int]] = []
    items = [i.strip() for i in text.split(",") if i.strip()]
    if not items:
        raise BgpConfigError(
            f"{where} {text!r}: names no peer — write ADDRESS:ASN, e.g. "
            "10.10.0.254:65000 (IPv6: [fd00::fe]:65000)"
        )
    if len(items) > MAX_PEERS:
        raise BgpConfigError(f"{where}: {len(items)} peers, more than {MAX_PEERS}")
    for item in items:
        host, sep, asn_text = item.rpartition(":")
        host = host.removeprefix("[").removesuffix("]")
        try:
            addr = ipaddress.ip_address(host) if sep and "%" not in host else None
        except ValueError:
            addr = None
        if addr is None:
            raise BgpConfigError(
                f"{where} {item!r}: not ADDRESS:ASN — write e.g. 10.10.0.254:65000 "
                "(IPv6: [fd00::fe]:65000)"
            )
        problems: list[Problem] = []
        asn = parse_asn(int(asn_text) if asn_text.isdigit() else asn_text, None, where, problems)
        if asn is None:
            raise BgpConfigError(str(problems[0]))
        peers.append((addr, asn))
    return tuple(peers)


def node_overrides(
    node: str, obj: Mapping[str, Any] | None, options: BgpOptions
) -> tuple[int, tuple[BgpPeer, ...]]:
    """This node's (ASN, peers): the flags', unless its Node object's annotations say
    otherwise. Raises `BgpConfigError` naming the node, the annotation and the value."""
    meta = (obj or {}).get("metadata") or {}
    notes = meta.get("annotations") or {}
    asn, peers = options.asn, options.peers
    if not isinstance(notes, Mapping):
        return asn, peers
    if (raw := notes.get(PEERS_ANNOTATION)) is not None:
        where = f"node {node}: annotation {PEERS_ANNOTATION}"
        peers = options.peers_of(parse_routers(str(raw), where))
    if (raw := notes.get(ASN_ANNOTATION)) is not None:
        problems: list[Problem] = []
        text = str(raw).strip()
        got = parse_asn(int(text) if text.isdigit() else text, node, ASN_ANNOTATION, problems)
        if got is None:
            raise BgpConfigError(f"{problems[0]} (annotation {ASN_ANNOTATION})")
        asn = got
    return asn, peers


def bird_config(
    me: Node,
    asn: int,
    peers: tuple[BgpPeer, ...],
    options: BgpOptions,
    passwords: tuple[tuple[str, Secret], ...] = (),
    *,
    cluster_name: str = "kubernetes",
) -> str:
    """The whole BIRD config of this node (see the module docstring). Raises
    `nosdn.render.RenderError` (a ValueError) when a value is not plain."""
    cluster = Cluster(
        (me,),
        service_cidrs=options.service_cidrs,
        service_via=tuple(n for n in options.service_via if n == me.name),
        name=cluster_name,
        bgp=Bgp(
            asn=options.asn,
            peers=peers,
            graceful_restart_time=options.graceful_restart_time,
            node_asns=((me.name, asn),) if asn != options.asn else (),
        ),
    )
    ropts = RenderOptions(target=Target.for_node(me.name), passwords=passwords)
    return render_bird_node(cluster, ropts)


def announced(me: Node, options: BgpOptions, version: int) -> tuple[IPNetwork, ...]:
    """What this node announces in one family (for status lines and metrics)."""
    own = [c for c in me.pod_cidrs if c.version == version]
    if me.name in options.service_via:
        own += [c for c in options.service_cidrs if c.version == version]
    return tuple(own)
