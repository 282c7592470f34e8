"""The Linux kernel backend: reads one routing table, applies a diff with nexthop objects.

Why nexthop objects: plain gateway routes are quadratic in the kernel when their gateways differ
(every host-gw route lands in one hash bucket), and a node's address change would rewrite every
route through it. With one nexthop object per peer gateway (and a nexthop group per ECMP set),
bulk installs stay linear and an address change is ONE atomic ``nexthop replace``: when every
route that uses a nexthop moves to the same new gateway, the nexthop itself is replaced and the
routes are not touched. Kernels without nexthop objects (before 5.3) are detected at run time
and get plain ``via`` routes instead; ``notes`` says so.

Ownership is the protocol number: every route and nexthop written carries it, and only those
are ever replaced or deleted. Additions use ``NLM_F_EXCL``, so a route someone else installs
between our read and our write fails with EEXIST instead of being taken over; deletions name our
protocol, which the kernel matches. A nexthop is only garbage-collected once no route in any
table (ours or anyone's) refers to it, because deleting a nexthop deletes its routes.

Every write is batched through :mod:`._netlink` and every error is matched to its route and
node; when the kernel drops replies (ENOBUFS) the table is re-read to find what did not happen.

Reading is the agent's hot path: events only nudge, and every pass reads the whole table and
diffs it (5,000 routes per node change). So what is decoded from each route and nexthop message
is kept and reused while the message comes back byte for byte; `read_diff` builds nothing for
a route that is already as wanted; and a ``watched`` backend (the agent's, whose netlink monitor
reports every change that matters) keeps next-hop lookups and other tables' use of our nexthops
between passes. The table itself is still read in full every time.
"""

from __future__ import annotations

import errno
import os
import socket
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from itertools import chain, compress

from nosdn.backends.base import ApplyResult, WriteError
from nosdn.backends.kernel import _netlink as nl
from nosdn.backends.kernel._lookup_sharing import default_rules, shared_lookups
from nosdn.backends.kernel._plan import Plan, plan_nexthops, plan_plain
from nosdn.backends.kernel._protos import protocol_names
from nosdn.backends.kernel._steady import (
    RELEVANT_TYPES,
    ignored,
    never_routed,
    nexthop_index,
    steady,
)
from nosdn.backends.kernel._steps import NO_REF, KernelRef
from nosdn.model import (
    DEFAULT_PROTOCOL,
    Conflict,
    Diff,
    InstalledRoute,
    IPAddress,
    IPNetwork,
    Route,
)
from nosdn.names import RESERVED_PROTOCOLS
from nosdn.plan import diff

AF4 = socket.AF_INET
AF6 = socket.AF_INET6
MAIN_TABLE = 254
LOCAL_TABLE = 255
#: From this many next hops to look up, those on one connected network share a lookup.
_SHARE_FROM = 64

_TYPE_NAMES = {
    nl.RTN_LOCAL: "local",
    nl.RTN_BROADCAST: "broadcast",
    nl.RTN_MULTICAST: "multicast",
    nl.RTN_BLACKHOLE: "blackhole",
    nl.RTN_UNREACHABLE: "unreachable",
    nl.RTN_PROHIBIT: "prohibit",
    nl.RTN_THROW: "throw",
}
#: The `InstalledRoute.kind` of each route type the reader reports.
_KINDS = {t: (prefix.strip() or "unicast") for t, prefix in RELEVANT_TYPES.items()}
_NO_NEXTHOPS = {errno.EOPNOTSUPP, errno.EINVAL, errno.EPROTONOSUPPORT}
#: After a write of at least this many messages, a watched backend also counts the routes of
#: other tables that use its nexthops (it reads its own table back after every write).
_WARM_AFTER = 1000


class NexthopsUnsupportedError(RuntimeError):
    """``use_nexthops=True`` on a kernel without nexthop objects."""


@dataclass(frozen=True, slots=True)
class Adjacency:
    """Whether a next hop sits on a directly connected network of this host (L2 adjacent).

    When it does not, ``via`` is the gateway the kernel would use instead (or ``error`` says
    why there is no way at all); a host route through it would silently take that detour.
    """

    on_link: bool
    dev: str | None = None
    via: IPAddress | None = None
    error: str | None = None

    @property
    def reason(self) -> str | None:
        if self.on_link:
            return None
        if self.error:
            return self.error
        dev = f" dev {self.dev}" if self.dev else ""
        return f"not on a directly connected network; the kernel would route it via {self.via}{dev}"


@dataclass(slots=True)
class _Snapshot:
    """What the last read found: enough to plan writes without reading again."""

    links: dict[int, str]
    nexthops: dict[int, nl.NexthopMsg]
    #: How many routes of our table refer to each nexthop id directly (any protocol, any type).
    table_refs: Counter[int] = field(default_factory=Counter)


@dataclass(slots=True)
class _Found:
    """What one route message of our table says, kept from one read to the next (the agent
    reads the whole table every pass; an unchanged message is not decoded again)."""

    #: the decoded message, None if it is not a route to report (another table, a cached
    #: clone, a local/broadcast/multicast/link-local route)
    msg: nl.RouteMsg | None
    #: (destination, prefix length) of a route to report, as the diff keys it
    key: tuple[bytes, int] | None = None
    owned: bool = False
    #: its gateways, and the one gateway of a route of ours that has exactly one
    gws: list[bytes] = field(default_factory=list)
    gw: bytes | None = None
    nh_id: int = 0
    #: the nexthop it was read through: the entry is reused only while that is still the
    #: current nexthop object of that id (`_UNCACHED`: never)
    nh: nl.NexthopMsg | None = None
    #: built on first need (`KernelBackend._route`)
    route: InstalledRoute | None = None


#: The nexthop of an entry that is decoded again at every read (a group: its members may
#: change while the route message stays the same).
_UNCACHED = nl.NexthopMsg(0, 0, 0)


def _to_addr(b: bytes) -> IPAddress:
    return IPv4Address(b) if len(b) == 4 else IPv6Address(b)


def _to_net(family: int, dst: bytes, plen: int) -> IPNetwork:
    if family == AF4:
        return IPv4Network((dst or bytes(4), plen))
    return IPv6Network((dst or bytes(16), plen))


class KernelBackend:
    """Routes of one kernel table (main by default) owned by one protocol number (157).

    ``use_nexthops``: None detects nexthop-object support, False forces plain gateway routes.
    ``netns``: a named network namespace to work in (tests, the lab); None is this one.
    ``watched``: the caller watches the kernel's notifications and calls `forget_lookups` on
    every link or address change and every route or nexthop change that is not the echo of
    its own writes (the agent's netlink monitor does), and `table_changed` on any other route or
    nexthop change it reports. The backend then keeps, from one pass to the next, what only
    such changes can alter: the next-hop lookups behind `adjacency`, how many routes of other
    tables use our nexthops, and its last read of the table (read back right after each of
    its own writes). Unwatched, all of it is read every time.
    """

    name = "kernel"

    def __init__(
        self,
        table: int = MAIN_TABLE,
        protocol: int = DEFAULT_PROTOCOL,
        use_nexthops: bool | None = None,
        netns: str | None = None,
        watched: bool = False,
    ) -> None:
        if not 0 < protocol < 256:
            raise ValueError(f"--protocol {protocol}: must be 1..255 (nosdn's default is 157)")
        if protocol in RESERVED_PROTOCOLS:
            raise ValueError(
                f"--protocol {protocol} is {RESERVED_PROTOCOLS[protocol]!r}'s: nosdn would take "
                "(and delete) its routes as its own; pick an unused number such as 157"
            )
        if not 0 < table < 2**32 or table in (253, 255):
            raise ValueError(f"table {table} cannot hold nosdn routes")
        self.table = table
        self.protocol = protocol
        self.watched = watched
        self.nl = nl.Netlink(netns)
        self.notes: list[str] = []
        self._names = protocol_names()
        self._lookups: dict[bytes, nl.Lookup] = {}
        self._verdicts: dict[IPAddress, Adjacency] = {}
        #: the gateway objects adjacency() was asked about, by packed address
        self._gw_objects: dict[bytes, IPAddress] = {}
        #: (packed, objects) of adjacency() calls not yet merged into ``_gw_objects``: most
        #: passes never need the map (100,000 entries' worth of memory at 50,000 routes)
        self._asked: list[tuple[list[bytes], list[IPAddress]]] = []
        self._memo: dict[bytes, _Found] = {}
        #: the last read of a watched backend and whether it may be stale (see `_read`)
        self._last_read: (
            tuple[list[_Found], dict[int, str], dict[int, nl.NexthopMsg], Counter[int]] | None
        ) = None
        self._table_dirty = True
        self._memo_links: dict[int, str] = {}
        self._nh_memo: dict[bytes, nl.NexthopMsg] = {}
        #: routes of other tables that use each nexthop id (kept only when ``watched``)
        self._other_refs: Counter[int] | None = None
        self._stale = False
        self._snap: _Snapshot | None = None
        try:
            self._nh_first: list[bytes] | None = self.nl.nexthop_payloads()
            self.nexthops_supported = True
        except nl.NetlinkError as e:
            if e.errno not in _NO_NEXTHOPS:
                raise
            self._nh_first = None
            self.nexthops_supported = False
        if use_nexthops and not self.nexthops_supported:
            raise NexthopsUnsupportedError(
                "this kernel has no nexthop objects (needs Linux 5.3+); "
                "use plain gateway routes instead"
            )
        self.use_nexthops = self.nexthops_supported if use_nexthops is None else use_nexthops
        if not self.nexthops_supported:
            self.notes.append(
                "kernel has no nexthop objects (Linux < 5.3): using plain gateway routes, "
                "which the kernel installs in quadratic time and changes route by route"
            )

    def close(self) -> None:
        self.nl.close()

    def __enter__(self) -> KernelBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- reading ---------------------------------------------------------------------------
    def protocol_name(self, number: int) -> str:
        return self._names.get(number, str(number))

    def _take_nexthop_payloads(self) -> list[bytes]:
        """The nexthop dump: the one made at start (to detect support) if not yet used."""
        found = self._nh_first if self._nh_first is not None else self.nl.nexthop_payloads()
        self._nh_first = None
        return found

    def _nexthop_table(self) -> dict[int, nl.NexthopMsg]:
        """Every nexthop object by id; an unchanged nexthop is the same object as last time
        (the route cache below relies on that)."""
        if not self.nexthops_supported:
            return {}
        found = self._take_nexthop_payloads()
        table: dict[int, nl.NexthopMsg] = {}
        if not self.watched:  # read once: nothing to keep for next time
            for p in found:
                one = nl.parse_nexthop(p)
                table[one.id] = one
            return table
        memo = self._nh_memo
        for p in found:
            nh = memo.get(p)
            if nh is None:
                nh = memo[p] = nl.parse_nexthop(p)
            table[nh.id] = nh
        if len(memo) > len(found) + 64 + len(found) // 4:  # drop what is gone
            self._nh_memo = {p: memo[p] for p in found}
        return table

    def routes(self) -> list[InstalledRoute]:
        """Every unicast-space route of the table (ours and others'), minus others' routes to
        link-local and multicast destinations (`_steady.never_routed`: nosdn never writes
        there); local/broadcast routes live in the local table and are never read.

        The whole table is read every time. What is built from each route message is kept
        until the next read: a message that comes back byte for byte (and whose nexthop is the
        same) gives the same `InstalledRoute` without decoding anything, so a long-running
        caller (the agent: one read per pass) pays for the routes that changed only.
        """
        found, links = self._read()
        addrs: dict[bytes, tuple[IPAddress, str]] = {}
        return [self._route(f, links, addrs) for f in found if f.key is not None]

    def read_diff(self, desired: Sequence[Route]) -> tuple[Diff, int]:
        """``plan.diff(desired, self.routes())`` and how many of our routes the table holds,
        read now, without building an `InstalledRoute` for a route that is exactly as wanted.

        A route of ours whose prefix is wanted once, with the one gateway it has, and that no
        other route of the table shares, is a "keep" by any reading of the diff; only the other
        routes (changes, strays, conflicts, ECMP) go through ``plan.diff``. At 10,000 routes a
        no-op read and diff cost 80 ms this way instead of 25.
        """
        if not self.watched:  # one read: first see, cheaply, whether anything is to be done
            owned = self._read_steady(desired)
            if owned is not None:
                return Diff(keep=tuple(desired)), owned
        found, links = self._read()
        keys = [f.key for f in found if f.key is not None]
        if not any(f.owned for f in found):  # a first apply: adds, and conflicts if any
            return self._diff_unowned(desired, found, links), 0
        index: dict[tuple[bytes, int], tuple[int, bytes] | None] = {}
        for i, w in enumerate(desired):
            d = w.dst
            k = (d.network_address.packed, d.prefixlen)
            if k in index or len(w.via) != 1:
                index[k] = None  # wanted twice, or ECMP: plan.diff decides
            else:
                index[k] = (i, w.via[0].packed)
        shared: set[tuple[bytes, int]] = set()
        if len(set(keys)) != len(keys):  # some prefix has several routes: never a plain keep
            seen: set[tuple[bytes, int]] = set()
            for k in keys:
                if k in seen:
                    shared.add(k)
                seen.add(k)
        kept = [False] * len(desired)
        actual: list[InstalledRoute] = []
        owned = 0
        addrs: dict[bytes, tuple[IPAddress, str]] = {}
        get = index.get
        for f in found:
            fk = f.key
            if fk is None:
                continue
            if f.owned:
                owned += 1
                if f.gw is not None:
                    hit = get(fk)
                    if hit is not None and hit[1] == f.gw and fk not in shared:
                        kept[hit[0]] = True
                        continue
            actual.append(self._route(f, links, addrs))
        slow = [i for i, k in enumerate(kept) if not k]
        if len(slow) == len(desired):
            return diff(desired, actual), owned
        rest = diff([desired[i] for i in slow], actual)
        if rest.keep:  # back to their places in desired (one route may be wanted twice)
            at: dict[int, list[int]] = {}
            for i in reversed(slow):
                at.setdefault(id(desired[i]), []).append(i)
            for w in rest.keep:
                kept[at[id(w)].pop()] = True
        keep = tuple(compress(desired, kept))
        return Diff(rest.add, rest.change, rest.remove, keep, rest.conflicts), owned

    def _read_steady(self, desired: Sequence[Route]) -> int | None:
        """`_steady.steady` of the table as it is now; when it is steady, the snapshot
        ``apply`` plans from says so (nothing to reuse, nothing to collect). The nexthop dump
        is let go once indexed, and the route dump is read as it comes, keeping nothing."""
        if self.nexthops_supported:
            nexthops = self._take_nexthop_payloads()
            index = nexthop_index(nexthops, self.protocol)
            if index is None or (desired and self.use_nexthops and not index[1]):
                self._nh_first = nexthops  # not steady (a first apply, say): the full read
                return None
            del nexthops
        else:
            index = {}, set()
        streams = [self.nl.route_stream(AF4, self.table), self.nl.route_stream(AF6, self.table)]
        try:
            owned = steady(
                desired, chain(*streams), *index, table=self.table, protocol=self.protocol
            )
        except nl.DumpInterruptedError:
            return None
        finally:
            for s in streams:
                s.close()  # one left early reads its dump to the end
        if owned is None:
            return None
        self._snap = _Snapshot(self.nl.links(), {})
        return owned

    def _diff_unowned(
        self, desired: Sequence[Route], found: list[_Found], links: dict[int, str]
    ) -> Diff:
        """`read_diff` of a table with no route of ours: every wanted route is an add, but
        for one whose prefix someone else holds (a conflict). Only wanted routes with the
        prefix length of some route found are looked up."""
        first: dict[tuple[bytes, int], _Found] = {}
        for f in found:
            if f.key is not None and f.key not in first:
                first[f.key] = f
        plens = {k[1] for k in first}
        add: list[Route] = []
        conflicts: list[Conflict] = []
        addrs: dict[bytes, tuple[IPAddress, str]] = {}
        for w in desired:
            d = w.dst
            if d.prefixlen in plens:
                hit = first.get((d.network_address.packed, d.prefixlen))
                if hit is not None:
                    conflicts.append(Conflict(w, self._route(hit, links, addrs)))
                    continue
            add.append(w)
        return Diff(tuple(add), (), (), (), tuple(conflicts))

    def _read(self) -> tuple[list[_Found], dict[int, str]]:
        """Every route message of our table, as `_Found` (kept between reads, see `routes`),
        and the interface names; the snapshot ``apply`` plans from is taken here.

        A watched backend whose table nothing has changed since its last read (no
        `table_changed`, no `forget_lookups`, no write of its own) reuses that read: the
        dumps were a fifth of an agent pass at 5,000 nodes. What the monitor does not report
        (someone writing with our own protocol number) waits for the periodic resync, which
        calls `forget_lookups`, as the monitor's design already says."""
        last = self._last_read
        if self.watched and last is not None and not self._table_dirty:
            self._snap = _Snapshot(last[1], last[2], Counter(last[3]))
            return last[0], last[1]
        self._table_dirty = False  # before the dumps: a change during them dirties it again
        links = self.nl.links()
        if links != self._memo_links:
            self._memo = {}  # ``detail`` names devices
            self._memo_links = links
        nhs = self._nexthop_table()
        memo = self._memo
        payloads = self.nl.route_payloads(AF4, self.table) + self.nl.route_payloads(AF6, self.table)
        found: list[_Found] = []
        nh_ids: list[int] = []
        if not self.watched:  # read once: nothing to keep for next time
            scan = self._scan
            found = [scan(p, nhs) for p in payloads]
            del payloads
            nh_ids = [f.nh_id for f in found if f.nh_id]
            self._snap = _Snapshot(links, nhs, Counter(nh_ids))
            return found, links
        for p in payloads:
            f = memo.get(p)
            if f is None or (f.nh is not None and nhs.get(f.nh_id) is not f.nh):
                f = memo[p] = self._scan(p, nhs)
            found.append(f)
            if f.nh_id:
                nh_ids.append(f.nh_id)
        if len(memo) > len(payloads) + 64 + len(payloads) // 4:  # drop what is gone
            self._memo = dict(zip(payloads, found, strict=True))
        refs = Counter(nh_ids)
        self._snap = _Snapshot(links, nhs, refs)
        self._last_read = (found, links, nhs, Counter(refs))
        return found, links

    def _scan(self, p: bytes, nhs: dict[int, nl.NexthopMsg]) -> _Found:
        """What one route message says, without building anything for it yet."""
        r = nl.parse_route(p)
        if r is None or r.table != self.table:
            return _Found(None)
        if r.type not in RELEVANT_TYPES or ignored(r, self.protocol):
            return _Found(None, nh_id=r.nh_id)  # not reported, but its nexthop is in use
        nh_id = r.nh_id
        nh = nhs.get(nh_id) if nh_id else None
        if nh is not None and nh.gateway and not nh.group:
            gws = [nh.gateway]
        else:
            gws = self._gateways(r, nhs)
        owned = r.protocol == self.protocol and r.type == nl.RTN_UNICAST
        key = (r.dst or bytes(4 if r.family == AF4 else 16), r.dst_len)
        if nh_id and (nh is None or nh.group):
            nh = _UNCACHED  # group members may change under the same message
        elif r.gateway is not None:
            nh = None  # the message names the gateway (nexthop_compat_mode): it changes with it
        gw = gws[0] if owned and len(gws) == 1 else None
        return _Found(r, key, owned, gws, gw, nh_id, nh)

    def _route(
        self, f: _Found, links: dict[int, str], addrs: dict[bytes, tuple[IPAddress, str]]
    ) -> InstalledRoute:
        """The `InstalledRoute` of a reported route message (built once, then kept)."""
        if f.route is not None:
            return f.route
        r = f.msg
        assert r is not None
        fam = r.family
        ntop = socket.inet_ntop
        via: list[IPAddress] = []
        texts: list[str] = []
        for g in f.gws:
            hit = addrs.get(g)
            if hit is None:
                # the objects adjacency() was given: diff then compares them by identity
                a = self._gw_object(g) or _to_addr(g)
                hit = addrs[g] = (a, ntop(AF4 if len(g) == 4 else AF6, g))
            via.append(hit[0])
            texts.append(hit[1])
        if len(via) > 1:
            pairs = sorted(zip(via, texts, strict=True), key=lambda q: q[0])
            via = [q[0] for q in pairs]
            texts = [q[1] for q in pairs]
        raw_dst = r.dst or bytes(4 if fam == AF4 else 16)
        plen = r.dst_len
        dst = IPv4Network((raw_dst, plen)) if fam == AF4 else IPv6Network((raw_dst, plen))
        owner = self._names.get(r.protocol) or str(r.protocol)
        # one f-string: this runs once per route of a table read for the first time
        nh_id = r.nh_id
        nhid_text = f" nhid {nh_id}" if nh_id else ""
        if len(texts) == 1:
            via_text = f" via {texts[0]}"
        else:
            via_text = "".join(f" nexthop via {t}" for t in texts)
        dev_text = f" dev {links.get(r.oif, r.oif)}" if r.oif else ""
        metric_text = f" metric {r.priority}" if r.priority else ""
        f.route = InstalledRoute(
            dst,
            tuple(via),
            f.owned,
            owner,
            f"{RELEVANT_TYPES[r.type]}{ntop(fam, raw_dst)}/{plen}{nhid_text}{via_text}{dev_text}"
            f" proto {owner}{metric_text}",
            "",
            _KINDS[r.type],
            KernelRef(nh_id, r.priority) if nh_id or r.priority else NO_REF,
        )
        return f.route

    @staticmethod
    def _gateways(r: nl.RouteMsg, nhs: dict[int, nl.NexthopMsg]) -> list[bytes]:
        if r.nh_id:
            nh = nhs.get(r.nh_id)
            if nh is not None:
                if nh.group:
                    return [g for m in nh.group if (g := _nh_gateway(nhs.get(m)))]
                if nh.gateway:
                    return [nh.gateway]
        if r.gateway:
            return [r.gateway]
        return [g for g, _ in r.multipath if g]

    def route_used(self, dst: IPAddress) -> tuple[InstalledRoute, int] | int:
        """The route the kernel picks for a packet to ``dst`` from this host, and its table
        (``ip route get fibmatch``: policy rules and longest prefix applied by the kernel
        itself), or the lookup's errno: EINVAL, EHOSTUNREACH, EACCES for a blackhole,
        unreachable or prohibit route (the kernel names no route then), ENETUNREACH for none.
        Its ``detail`` reads like the routes of `routes`, plus ``table N`` when not ours."""
        r = self.nl.fib_match(dst.packed)
        if isinstance(r, int):
            return r
        nhs: dict[int, nl.NexthopMsg] = {}
        nh = self.nl.nexthop(r.nh_id) if r.nh_id and self.nexthops_supported else None
        if nh is not None:  # only the route's nexthop (and a group's members), not all of them
            nhs[nh.id] = nh
            for m in nh.group:
                if (member := self.nl.nexthop(m)) is not None:
                    nhs[m] = member
        return self._describe(r, self.nl.links(), nhs), r.table

    def table_routes(self, table: int) -> list[InstalledRoute]:
        """Every unicast-space route of another table, both families (for doctor: the tables
        policy rules send traffic to). Never ours to change: ``owned`` is always False."""
        links = self.nl.links()
        nhs: dict[int, nl.NexthopMsg] | None = None
        out: list[InstalledRoute] = []
        for fam in (AF4, AF6):
            for r in self.nl.routes(fam, table):
                if r.table != table or r.type not in RELEVANT_TYPES:
                    continue
                if r.nh_id and nhs is None:
                    nhs = self._nexthop_table()
                out.append(self._describe(r, links, nhs or {}))
        return out

    def _describe(
        self, r: nl.RouteMsg, links: dict[int, str], nhs: dict[int, nl.NexthopMsg]
    ) -> InstalledRoute:
        """An `InstalledRoute` for a route message of any table, worded like `routes`' own,
        with ``table N`` when it is not ours."""
        gws = self._gateways(r, nhs)
        fam = r.family
        raw = r.dst or bytes(4 if fam == AF4 else 16)
        net = _to_net(fam, raw, r.dst_len)
        owner = self._names.get(r.protocol) or str(r.protocol)
        kind = _KINDS.get(r.type) or _TYPE_NAMES.get(r.type, str(r.type))
        via = tuple(sorted(_to_addr(g) for g in gws))
        words = [] if kind == "unicast" else [kind]
        words.append(f"{socket.inet_ntop(fam, raw)}/{r.dst_len}")
        if r.nh_id:
            words.append(f"nhid {r.nh_id}")
        words += [f"via {g}" for g in via] if len(via) == 1 else [f"nexthop via {g}" for g in via]
        if r.oif:
            words.append(f"dev {links.get(r.oif, r.oif)}")
        words.append(f"proto {owner}")
        if r.priority:
            words.append(f"metric {r.priority}")
        if r.table != self.table:
            words.append(f"table {r.table}")
        owned = r.protocol == self.protocol and r.type == nl.RTN_UNICAST and r.table == self.table
        ref = KernelRef(r.nh_id, r.priority) if r.nh_id or r.priority else NO_REF
        return InstalledRoute(net, via, owned, owner, " ".join(words), "", kind, ref)

    def nexthops(self) -> list[nl.NexthopMsg]:
        """The nexthop objects carrying our protocol (empty without kernel support)."""
        return [nh for nh in self._nexthop_table().values() if nh.protocol == self.protocol]

    def local_addresses(self) -> list[IPAddress]:
        """Every address configured on this host (both families, all interfaces)."""
        return [_to_addr(a.address) for a in self.nl.addresses() if len(a.address) in (4, 16)]

    def forget_lookups(self) -> None:
        """Forget what was learned about the kernel beyond our own routes (next-hop lookups,
        other tables' use of our nexthops): the next pass asks again. Cheap and safe from
        another thread (a monitor): it only sets a flag, so a pass that is running keeps the
        answers it started with. The table is read again too (`table_changed`)."""
        self._stale = True
        self._table_dirty = True

    def table_changed(self) -> None:
        """The kernel's routes or nexthops may have changed (a monitor saw a notification that
        is not the echo of our own writes): a watched backend reads its table again at the
        next read instead of reusing the last one. Safe from another thread (a flag)."""
        self._table_dirty = True

    def _forget_now(self) -> None:
        self._stale = False
        self._lookups = {}
        self._verdicts = {}
        self._gw_objects = {}
        self._asked = []
        self._other_refs = None

    def _lookup_many(self, gws: Iterable[bytes]) -> None:
        lookups = self._lookups
        if lookups:
            missing = list(dict.fromkeys(g for g in gws if g not in lookups))
        else:
            missing = list(dict.fromkeys(gws))
        if not missing:
            return
        leaders = self._shared_lookups(missing) if len(missing) >= _SHARE_FROM else None
        if leaders is None:
            ask = missing
        else:
            ask = [g for g, a in zip(missing, leaders, strict=True) if a is None]
        for g, res in zip(ask, self.nl.lookup(ask), strict=True):
            lookups[g] = res
        if leaders is None:
            return
        again: list[bytes] = []
        unicast = nl.RTN_UNICAST
        for g, leader in zip(missing, leaders, strict=True):
            if leader is None:
                continue
            res = lookups[leader]
            if res.gateway is None and res.type == unicast and not res.error:  # on-link
                lookups[g] = res
            else:
                again.append(g)
        for g, res in zip(again, self.nl.lookup(again), strict=True):
            lookups[g] = res

    def _shared_lookups(self, gws: list[bytes]) -> list[bytes | None]:
        """For each gateway, the one whose lookup answers it too (`_lookup_sharing`), or None."""
        out: list[bytes | None] = [None] * len(gws)
        for family, width in ((AF4, 4), (AF6, 16)):
            at = [i for i, g in enumerate(gws) if len(g) == width]
            if len(at) < _SHARE_FROM or not default_rules(self.nl.rule_payloads(family)):
                continue
            main = self.nl.route_payloads(family, MAIN_TABLE)
            local = self.nl.route_payloads(family, LOCAL_TABLE)
            mine = shared_lookups([gws[i] for i in at], main, local)
            for i, leader in zip(at, mine, strict=True):
                out[i] = leader
        return out

    def adjacency(self, gateways: Sequence[IPAddress]) -> dict[IPAddress, Adjacency]:
        """For each gateway: is it on a directly connected network (a route lookup finds no
        gateway), and if not, which gateway the kernel would use instead.

        Asks the kernel afresh, unless the backend is ``watched``: then the answers of earlier
        calls stand until `forget_lookups` (at 5,000 peers, one lookup each cost a sixth of a
        pass). ``apply`` reuses these answers (the interface of each new nexthop), so one pass
        looks every next hop up at most once.
        """
        if not self.watched or self._stale:
            self._forget_now()
        verdicts = self._verdicts
        out: dict[IPAddress, Adjacency] = {}
        if verdicts:
            known = verdicts.get
            missing: list[IPAddress] = []
            for gw in gateways:  # one hash per gateway and dict: they are hashed in Python
                v = known(gw)
                if v is None:
                    missing.append(gw)
                else:
                    out[gw] = v
        else:
            missing = list(gateways)
        if not missing:
            return out
        packed = [g.packed for g in missing]
        self._lookup_many(packed)
        links = self.nl.links()
        lookups = self._lookups
        self._asked.append((packed, missing))
        unicast = nl.RTN_UNICAST
        keep = self.watched
        on_link: dict[int, Adjacency] = {}  # one verdict object per device, shared
        for gw, pk in zip(missing, packed, strict=True):
            res = lookups[pk]
            if res.gateway is None and res.type == unicast and not res.error:  # on-link
                shared = on_link.get(res.oif)
                if shared is None:
                    dev = links.get(res.oif) if res.oif else None
                    shared = on_link[res.oif] = Adjacency(True, dev)
                v = shared
            else:
                v = self._verdict(res, links)
            out[gw] = v
            if keep:
                verdicts[gw] = v
        return out

    def _gw_object(self, packed: bytes) -> IPAddress | None:
        """The gateway object adjacency() was given for ``packed``, if any (diff then
        compares the routes read with the routes wanted by identity)."""
        if self._asked:
            for pks, objs in self._asked:
                self._gw_objects.update(zip(pks, objs, strict=True))
            self._asked = []
        return self._gw_objects.get(packed)

    @staticmethod
    def _verdict(res: nl.Lookup, links: dict[int, str] | None) -> Adjacency:
        dev = (links or {}).get(res.oif) if res.oif else None
        if res.error:
            return Adjacency(False, error=f"no route to it ({os.strerror(res.error)})")
        if res.type == nl.RTN_LOCAL:
            return Adjacency(False, dev, error="it is an address of this host")
        if res.type != nl.RTN_UNICAST:
            kind = _TYPE_NAMES.get(res.type, str(res.type))
            return Adjacency(False, dev, error=f"the kernel has a {kind} route for it")
        if res.gateway:
            return Adjacency(False, dev, via=_to_addr(res.gateway))
        return Adjacency(True, dev)

    # --- writing ---------------------------------------------------------------------------
    def apply(self, diff: Diff) -> ApplyResult:
        """Make the table match ``diff``: adds, changes, removes; every error reported with
        the node its route belongs to. Nexthops no longer used by any route are deleted.
        A route to a link-local or multicast destination is refused (an error, nothing
        written): the reader would not see it as ours (`_steady.never_routed`)."""
        diff, refused = _refuse_never_routed(diff)
        snap = self._snap
        if snap is None:
            self.routes()
            snap = self._snap
        assert snap is not None
        self._snap = None  # what we read is stale once we write
        if self._stale:
            self._forget_now()
        self._lookup_many(gw.packed for r in _wanted(diff) for gw in r.via)
        if self.use_nexthops:
            plan = plan_nexthops(
                diff,
                self._lookups,
                snap.nexthops,
                lambda ids: self._refs_before_writes(snap, ids),
                table=self.table,
                protocol=self.protocol,
            )
        else:
            plan = plan_plain(diff, self._lookups, table=self.table, protocol=self.protocol)
        batch = self.nl.write(plan.reqs) if plan.reqs else nl.BatchResult()
        errors, failed = plan.explain(batch.errors)
        result = ApplyResult(len(plan.reqs) - len(failed), [*refused, *plan.errors, *errors])
        if batch.lost:
            self.notes.append(
                "the kernel dropped some replies (ENOBUFS); the table was read back to find "
                "every write that did not happen"
            )
            self._verify(diff, result)
        elif self.nexthops_supported:
            self._collect_garbage(snap, plan, failed, result)
        wrote = bool(plan.reqs or result.writes)
        if wrote:
            self._table_dirty = True  # our own writes: the next read dumps the table again
        if self.watched and wrote:
            # Read the table back now, once the kernel has what was wanted: the next pass (the
            # next node change) then starts from this read instead of dumping and decoding the
            # table on its own critical path; after a bulk write, nor does it count every
            # table's routes before replacing a nexthop.
            self._read()
            self._snap = None
            if len(plan.reqs) >= _WARM_AFTER and self.use_nexthops and self._other_refs is None:
                self._other_refs = self.nl.count_nexthop_refs(exclude_table=self.table)
        return result

    def _all_refs(self) -> Counter[int]:
        """How many routes in every table refer to each nexthop id directly."""
        return self.nl.count_nexthop_refs()

    def _refs_before_writes(self, snap: _Snapshot, ids: Iterable[int]) -> dict[int, int]:
        """How many routes of every table use each of ``ids`` before this apply's writes: our
        table as read for the diff, the others counted now, or (``watched``) as counted last
        time: a route change outside our own writes calls `forget_lookups`."""
        other = self._other_refs
        if other is None:
            other = self.nl.count_nexthop_refs(exclude_table=self.table)
            if self.watched:
                self._other_refs = other
        return {i: snap.table_refs[i] + other[i] for i in ids}

    def _collect_garbage(
        self, snap: _Snapshot, plan: Plan, failed: set[int], result: ApplyResult
    ) -> None:
        """Delete our nexthops that no route refers to any more (groups before members).

        The estimate from what we know (our table as read, the nexthops we created, the route
        writes that succeeded) finds the candidates without reading anything; only if there
        are any are the nexthops and every table read again, after the writes, to make sure no
        route anywhere still uses them: deleting a nexthop deletes its routes.
        """
        ours = self.protocol
        owned = {i for i, nh in snap.nexthops.items() if nh.protocol == ours}
        # With no failed write and no route left unplanned, every nexthop created was created
        # for a route (or group) that was then written: in use. Only the nexthops that were
        # there before need counting (a first apply of 50,000 routes skips 50,000 of them).
        everything_written = not failed and not plan.errors
        if not everything_written:
            owned.update(i for i, k in plan.created.items() if k not in failed)
        delta: Counter[int] = Counter()
        for i, old, new in plan.moves:
            if everything_written:
                if old:
                    delta[old] -= 1
                if new in owned:
                    delta[new] += 1
                continue
            if i in failed:
                continue
            if old:
                delta[old] -= 1
            if new:
                delta[new] += 1
        refs = snap.table_refs  # every count in it is positive

        def used(i: int) -> bool:
            return refs[i] + delta[i] > 0 if i in delta else i in refs

        unused = owned - refs.keys()  # the set difference runs in C: 5,000 nexthops a pass
        for i in delta:
            if i in owned and not used(i):
                unused.add(i)
            else:
                unused.discard(i)
        if unused:  # members of a group that is in use are in use
            groups = {i: nh.group for i, nh in snap.nexthops.items() if nh.group}
            groups.update({g: list(m) for g, m in plan.groups.items()})
            for g, members in groups.items():
                if used(g):
                    unused.difference_update(members)
        if not unused:
            return
        nexthops = self._nexthop_table()
        self._delete_unused(
            {i: nh for i, nh in nexthops.items() if nh.protocol == self.protocol},
            nexthops,
            result,
        )

    def _delete_unused(
        self,
        owned: dict[int, nl.NexthopMsg],
        nexthops: dict[int, nl.NexthopMsg],
        result: ApplyResult,
        keep_note: bool = False,
    ) -> None:
        refs = self._all_refs()
        unused = self._unused(owned, nexthops, refs)
        for i in sorted(set(owned) - unused):
            if keep_note:
                self.notes.append(f"nexthop {i} kept: a route (of another table?) still uses it")
        order = sorted(unused, key=lambda i: (not owned[i].group, i))
        if not order:
            return
        reqs = [(nl.RTM_DELNEXTHOP, 0, nl.nexthop_del_msg(i)) for i in order]
        batch = self.nl.write(reqs)
        result.writes += len(reqs) - len(batch.errors)
        for k, (code, text) in sorted(batch.errors.items()):
            if code != errno.ENOENT:
                self.notes.append(f"could not delete unused nexthop {order[k]}: {text}")

    @staticmethod
    def _unused(
        owned: dict[int, nl.NexthopMsg], nexthops: dict[int, nl.NexthopMsg], refs: Counter[int]
    ) -> set[int]:
        used = {i for i, n in refs.items() if n > 0}
        for i in list(used):
            nh = nexthops.get(i)
            if nh is not None:
                used.update(nh.group)
        return {i for i in owned if i not in used}

    def _verify(self, diff: Diff, result: ApplyResult) -> None:
        """Replies were lost (ENOBUFS): read the table back and report every write that did
        not take effect, so nothing failed silently. The next pass converges."""
        found: dict[IPNetwork, list[InstalledRoute]] = {}
        for r in self.routes():
            found.setdefault(r.dst, []).append(r)
        reported = {(e.dst, e.action) for e in result.errors}
        for route, old in _wanted_with_old(diff):
            action = "add" if old is None else "change"
            ok = any(r.owned and r.via == route.via for r in found.get(route.dst, []))
            if not ok and (route.dst, action) not in reported:
                msg = "the kernel dropped the reply (ENOBUFS) and the route is not in the table"
                result.errors.append(WriteError(route.dst, route.node, action, msg))
        for old in diff.remove:
            if any(r.owned for r in found.get(old.dst, [])) and (old.dst, "remove") not in reported:
                msg = "the kernel dropped the reply (ENOBUFS) and the route is still there"
                result.errors.append(WriteError(old.dst, None, "remove", msg))

    def flush(self) -> ApplyResult:
        """Remove every route of our protocol from the table (both families), then every
        nexthop of our protocol that no route in any table still uses."""
        result = ApplyResult()
        self._table_dirty = True
        for _attempt in range(3):
            reqs: list[nl.Request] = []
            dsts: list[IPNetwork] = []
            for fam in (AF4, AF6):
                for r in self.nl.routes(fam, self.table, protocol=self.protocol):
                    if r.type != nl.RTN_UNICAST:
                        continue
                    dst = _to_net(fam, r.dst, r.dst_len)
                    payload = nl.route_msg(
                        dst.network_address.packed,
                        r.dst_len,
                        table=self.table,
                        protocol=self.protocol,
                        priority=r.priority,
                    )
                    reqs.append((nl.RTM_DELROUTE, 0, payload))
                    dsts.append(dst)
            result.errors = []
            if not reqs:
                break
            batch = self.nl.write(reqs)
            result.writes += len(reqs) - len(batch.errors)
            result.errors = [
                WriteError(dsts[i], None, "remove", text)
                for i, (code, text) in sorted(batch.errors.items())
                if code != errno.ESRCH
            ]
        if self.nexthops_supported:
            nexthops = self._nexthop_table()
            owned = {i: nh for i, nh in nexthops.items() if nh.protocol == self.protocol}
            if owned:
                self._delete_unused(owned, nexthops, result, keep_note=True)
        self._snap = None
        return result


def _refuse_never_routed(diff: Diff) -> tuple[Diff, list[WriteError]]:
    """The diff without the adds and changes to destinations nosdn never routes, and an
    error for each (`nosdn.checks` refuses such pod subnets before anything runs)."""
    refused: list[WriteError] = []

    def keep(route: Route, action: str) -> bool:
        d = route.dst
        if not never_routed(AF4 if d.version == 4 else AF6, d.network_address.packed, d.prefixlen):
            return True
        why = "a link-local or multicast destination: nosdn never routes it"
        refused.append(WriteError(d, route.node, action, why))
        return False

    add = tuple(r for r in diff.add if keep(r, "add"))
    change = tuple(c for c in diff.change if keep(c.new, "change"))
    if not refused:
        return diff, refused
    return Diff(add, change, diff.remove, diff.keep, diff.conflicts), refused


def _nh_gateway(nh: nl.NexthopMsg | None) -> bytes | None:
    return nh.gateway if nh is not None else None


def _wanted(diff: Diff) -> list[Route]:
    return [*diff.add, *(c.new for c in diff.change)]


def _wanted_with_old(diff: Diff) -> list[tuple[Route, InstalledRoute | None]]:
    return [*((r, None) for r in diff.add), *((c.new, c.old) for c in diff.change)]
