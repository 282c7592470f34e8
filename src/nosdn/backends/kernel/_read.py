"""Reading our kernel table: what each route message says, as the light entries `plan.diff`
takes, and the decode cache a long-running reader keeps.

Why a module of its own: the reader and the writer must agree on what is ours and where nosdn
never routes (`never_routed`), and an entry must be cheap until the diff asks for more: the
agent reads its whole table every full pass, and most routes are exactly as wanted, so an `Entry`
holds only the key, the gateways and ownership, and builds its `InstalledRoute` (addresses,
the ``ip route``-style detail) only when `plan.diff` needs it. `ReadMemo` is the agent's: it
keeps each message's entry while the message comes back byte for byte (and its nexthop is the
same object), so a pass decodes only what changed. One-shot commands read without it.
"""

from __future__ import annotations

import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

from nosdn.backends.kernel import _netlink as nl
from nosdn.backends.kernel._steps import NO_REF, KernelRef
from nosdn.model import InstalledRoute, IPAddress, RouteKey

AF4 = socket.AF_INET
AF6 = socket.AF_INET6

#: Route types that share the unicast key space: a prefix routed by any of them is taken
#: (value: how ``ip route`` writes the type before the prefix).
RELEVANT_TYPES = {
    nl.RTN_UNICAST: "",
    nl.RTN_BLACKHOLE: "blackhole ",
    nl.RTN_UNREACHABLE: "unreachable ",
    nl.RTN_PROHIBIT: "prohibit ",
    nl.RTN_THROW: "throw ",
}
#: The `InstalledRoute.kind` of each route type the reader reports.
KINDS = {t: (prefix.strip() or "unicast") for t, prefix in RELEVANT_TYPES.items()}
#: The name of every other route type a lookup may answer with.
TYPE_NAMES = {
    nl.RTN_LOCAL: "local",
    nl.RTN_BROADCAST: "broadcast",
    nl.RTN_MULTICAST: "multicast",
    **KINDS,
}


def never_routed(family: int, dst: bytes, plen: int) -> bool:
    """Whether a destination is link-local or multicast: the one predicate of what the kernel
    backend never routes. The writer refuses a route there, and the reader leaves other
    owners' routes there out (the kernel's and zeroconf's link-local routes, multicast). Both
    must use this same test: a route the writer installs where the reader does not look makes
    every later add fail with ``File exists`` while status calls it missing."""
    if not dst:
        return False
    if family == socket.AF_INET:
        return (dst[0] == 169 and dst[1] == 254 and plen >= 16) or (
            224 <= dst[0] < 240 and plen >= 4
        )
    return (dst[0] == 0xFE and dst[1] & 0xC0 == 0x80 and plen >= 10) or (
        dst[0] == 0xFF and plen >= 8
    )


def ignored(r: nl.RouteMsg, protocol: int) -> bool:
    """A route the reader leaves out: someone else's, to where nosdn never routes. A route
    of ours there is read (an older writer's), so it is seen, and removed as stale."""
    return r.protocol != protocol and never_routed(r.family, r.dst, r.dst_len)


def to_addr(b: bytes) -> IPAddress:
    return IPv4Address(b) if len(b) == 4 else IPv6Address(b)


@dataclass(slots=True)
class Context:
    """What building an `InstalledRoute` needs beyond its message: device names (the detail
    names them), protocol names, and the table read (others' are named in the detail)."""

    links: dict[int, str]
    names: dict[int, str]
    table: int
    protocol: int
    #: packed gateway -> (address, text), shared by the entries of one read
    addrs: dict[bytes, tuple[IPAddress, str]] = field(default_factory=dict)


#: The nexthop of an entry that is decoded again at every read (a group: its members may
#: change while the route message stays the same).
UNCACHED = nl.NexthopMsg(0, 0, 0)


class Entry:
    """One route of our table to report (ours or someone else's): the `plan.Found` surface."""

    __slots__ = ("_ctx", "_route", "gateways", "key", "msg", "nh", "nh_id", "owned")

    def __init__(
        self,
        msg: nl.RouteMsg,
        ctx: Context,
        gateways: tuple[bytes, ...],
        nh: nl.NexthopMsg | None,
    ) -> None:
        self.msg = msg
        self._ctx = ctx
        self.key: RouteKey = (msg.dst or bytes(4 if msg.family == AF4 else 16), msg.dst_len)
        self.owned = msg.protocol == ctx.protocol and msg.type == nl.RTN_UNICAST
        self.gateways = gateways
        self.nh_id = msg.nh_id
        #: the nexthop it was read through: a cached entry is reused only while that is still
        #: the current nexthop object of its id (`UNCACHED`: never; None: no nexthop object)
        self.nh = nh
        self._route: InstalledRoute | None = None

    def installed(self) -> InstalledRoute:
        """The full `InstalledRoute` (built once, then kept)."""
        if self._route is None:
            self._route = describe(self.msg, self._ctx, self.gateways)
        return self._route


class Unreported:
    """A message of the dump that is not a route to report (another table's, a cached clone,
    local/broadcast/multicast, others' link-local): only the nexthop it uses counts."""

    __slots__ = ("nh", "nh_id")

    def __init__(self, nh_id: int = 0) -> None:
        self.nh_id = nh_id
        self.nh: nl.NexthopMsg | None = None


_NOTHING = Unreported()


def gateways_of(r: nl.RouteMsg, nhs: Mapping[int, nl.NexthopMsg]) -> tuple[bytes, ...]:
    """The gateways a route message sends to, packed and sorted (through its nexthop object
    or group when it has one)."""
    if r.nh_id:
        nh = nhs.get(r.nh_id)
        if nh is not None:
            if nh.group:
                out = [g for m in nh.group if (mh := nhs.get(m)) is not None and (g := mh.gateway)]
                return tuple(sorted(out))
            if nh.gateway:
                return (nh.gateway,)
    if r.gateway:
        return (r.gateway,)
    return tuple(sorted(g for g, _ in r.multipath if g))


def scan(p: bytes, nhs: dict[int, nl.NexthopMsg], ctx: Context) -> Entry | Unreported:
    """What one route message of a dump of our table says, without building anything yet."""
    r = nl.parse_route(p)
    if r is None or r.table != ctx.table:
        return _NOTHING
    return read_route(r, nhs, ctx)


def read_route(
    r: nl.RouteMsg, nhs: Mapping[int, nl.NexthopMsg], ctx: Context
) -> Entry | Unreported:
    """What one decoded route message of our table says (`scan` after decoding): the agent's
    cache derives an entry again with it when the nexthop under the message changes."""
    if r.type not in RELEVANT_TYPES or ignored(r, ctx.protocol):
        return Unreported(r.nh_id) if r.nh_id else _NOTHING
    nh_id = r.nh_id
    nh = nhs.get(nh_id) if nh_id else None
    if nh is not None and nh.gateway and not nh.group:
        gws: tuple[bytes, ...] = (nh.gateway,)
    else:
        gws = gateways_of(r, nhs)
    if nh_id and (nh is None or nh.group):
        nh = UNCACHED  # group members may change under the same message
    elif r.gateway is not None:
        nh = None  # the message names the gateway (nexthop_compat_mode): it changes with it
    return Entry(r, ctx, gws, nh)


class ReadMemo:
    """The decode cache of a reader that reads the same table again and again (the agent):
    each route message's `Entry` and each nexthop message's object, by the message's bytes.
    Pure memory of decoding: it is never wrong, only dropped when device names change (the
    details name them) or when most of it is gone from the table."""

    def __init__(self) -> None:
        self._routes: dict[bytes, Entry | Unreported] = {}
        self._nexthops: dict[bytes, nl.NexthopMsg] = {}
        self._links: dict[int, str] = {}
        self._ctx: Context | None = None

    def context(self, links: dict[int, str], ctx: Context) -> Context:
        """The context entries are built with: the one of the cached entries while the
        devices are the same, else ``ctx`` (and the cached entries go)."""
        if self._ctx is None or links != self._links:
            self._routes = {}
            self._links = links
            self._ctx = ctx
        return self._ctx

    def nexthops(self, payloads: Iterable[bytes]) -> dict[int, nl.NexthopMsg]:
        """Every nexthop by id; an unchanged nexthop is the same object as last time (a cached
        route entry is valid while its nexthop is)."""
        memo = self._nexthops
        table: dict[int, nl.NexthopMsg] = {}
        found = list(payloads)
        for p in found:
            nh = memo.get(p)
            if nh is None:
                nh = memo[p] = nl.parse_nexthop(p)
            table[nh.id] = nh
        if len(memo) > len(found) + 64 + len(found) // 4:  # drop what is gone
            self._nexthops = {p: memo[p] for p in found}
        return table

    def remember(self, p: bytes, found: Entry | nl.NexthopMsg) -> None:
        """Keep what a message the reader did not dump decodes to (the echo of a write, which
        the kernel words as its dumps): the next read finds it decoded."""
        if isinstance(found, Entry):
            self._routes[p] = found
        else:
            self._nexthops[p] = found

    def routes(
        self, payloads: list[bytes], nhs: dict[int, nl.NexthopMsg], ctx: Context
    ) -> list[Entry | Unreported]:
        memo = self._routes
        out: list[Entry | Unreported] = []
        for p in payloads:
            f = memo.get(p)
            if f is None or (f.nh is not None and nhs.get(f.nh_id) is not f.nh):
                f = memo[p] = scan(p, nhs, ctx)
            out.append(f)
        if len(memo) > len(payloads) + 64 + len(payloads) // 4:  # drop what is gone
            self._routes = dict(zip(payloads, out, strict=True))
        return out


def describe(r: nl.RouteMsg, ctx: Context, gws: tuple[bytes, ...]) -> InstalledRoute:
    """An `InstalledRoute` for a route message of any table, worded like ``ip route``, with
    ``table N`` when it is not ours (one f-string: this runs once per route the diff needs)."""
    fam = r.family
    ntop = socket.inet_ntop
    addrs = ctx.addrs
    via: list[IPAddress] = []
    texts: list[str] = []
    for g in gws:  # sorted packed: the order of the addresses within a family
        hit = addrs.get(g)
        if hit is None:
            hit = addrs[g] = (to_addr(g), ntop(AF4 if len(g) == 4 else AF6, g))
        via.append(hit[0])
        texts.append(hit[1])
    raw_dst = r.dst or bytes(4 if fam == AF4 else 16)
    plen = r.dst_len
    dst = IPv4Network((raw_dst, plen)) if fam == AF4 else IPv6Network((raw_dst, plen))
    owner = ctx.names.get(r.protocol) or str(r.protocol)
    kind = TYPE_NAMES.get(r.type, str(r.type))
    nh_id = r.nh_id
    nhid_text = f" nhid {nh_id}" if nh_id else ""
    if len(texts) == 1:
        via_text = f" via {texts[0]}"
    else:
        via_text = "".join(f" nexthop via {t}" for t in texts)
    dev_text = f" dev {ctx.links.get(r.oif, r.oif)}" if r.oif else ""
    metric_text = f" metric {r.priority}" if r.priority else ""
    table_text = f" table {r.table}" if r.table != ctx.table else ""
    owned = r.protocol == ctx.protocol and r.type == nl.RTN_UNICAST and r.table == ctx.table
    return InstalledRoute(
        dst,
        tuple(via),
        owned,
        owner,
        f"{RELEVANT_TYPES.get(r.type, kind + ' ')}{ntop(fam, raw_dst)}/{plen}{nhid_text}"
        f"{via_text}{dev_text} proto {owner}{metric_text}{table_text}",
        "",
        kind,
        KernelRef(nh_id, r.priority) if nh_id or r.priority else NO_REF,
    )
