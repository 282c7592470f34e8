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

This backend keeps nothing from one pass to the next: each read dumps the table, each
`adjacency` asks the kernel. The one state it holds is the pass in progress (the last read and
the last lookups, which ``apply`` plans from). What a long-running caller may keep between
passes is the agent's `nosdn.backends.kernel.cache.KernelCache`, which hands it in.
"""

from __future__ import annotations

import errno
import os
import socket
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from ipaddress import IPv4Network, IPv6Network

from nosdn.backends.base import ApplyResult, WriteError
from nosdn.backends.kernel import _netlink as nl
from nosdn.backends.kernel._lookup_sharing import default_rules, shared_lookups
from nosdn.backends.kernel._nexthops import NexthopTable
from nosdn.backends.kernel._plan import Plan, plan_nexthops, plan_plain
from nosdn.backends.kernel._protos import protocol_names
from nosdn.backends.kernel._read import (
    RELEVANT_TYPES,
    TYPE_NAMES,
    Context,
    Entry,
    ReadMemo,
    describe,
    gateways_of,
    never_routed,
    scan,
    to_addr,
)
from nosdn.model import (
    DEFAULT_PROTOCOL,
    Diff,
    InstalledRoute,
    IPAddress,
    IPNetwork,
    Route,
)
from nosdn.names import RESERVED_PROTOCOLS

AF4 = socket.AF_INET
AF6 = socket.AF_INET6
MAIN_TABLE = 254
LOCAL_TABLE = 255
#: From this many next hops to look up, those on one connected network share a lookup.
_SHARE_FROM = 64
_NO_NEXTHOPS = {errno.EOPNOTSUPP, errno.EINVAL, errno.EPROTONOSUPPORT}
#: Next-hop lookups by packed address: what ``apply`` needs to know of each gateway.
Lookups = dict[bytes, nl.Lookup]
#: How many routes of the other tables use each nexthop id (deleting a nexthop deletes them).
OtherRefs = Callable[[], Counter[int]]


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
class TableRead:
    """What one read of the table found beyond its routes: enough to plan writes without
    reading again."""

    links: dict[int, str]
    nexthops: NexthopTable
    #: How many routes of our table refer to each nexthop id directly (any protocol, any type).
    table_refs: Counter[int] = field(default_factory=Counter)


@dataclass(slots=True)
class Echo:
    """What the kernel echoed of one apply's writes (`_netlink.Netlink.write` with ``echo``),
    for a caller that keeps a view of the table (the agent's cache): the messages, in the
    order the kernel acted, and whether every write succeeded and was echoed (not when replies
    were lost, a write failed, or one found its route already there: the view must then be
    read again)."""

    messages: list[tuple[int, bytes]] = field(default_factory=list)
    complete: bool = True


def _to_net(family: int, dst: bytes, plen: int) -> IPNetwork:
    if family == AF4:
        return IPv4Network((dst or bytes(4), plen))
    return IPv6Network((dst or bytes(16), plen))


class KernelBackend:
    """Routes of one kernel table (main by default) owned by one protocol number (157).

    ``use_nexthops``: None detects nexthop-object support, False forces plain gateway routes.
    ``netns``: a named network namespace to work in (tests, the lab); None is this one.
    """

    name = "kernel"

    def __init__(
        self,
        table: int = MAIN_TABLE,
        protocol: int = DEFAULT_PROTOCOL,
        use_nexthops: bool | None = None,
        netns: str | None = None,
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
        self.nl = nl.Netlink(netns)
        self.notes: list[str] = []
        self._names = protocol_names()
        #: the pass in progress: the last complete read, and the last lookups (`apply`'s)
        self.last_read: TableRead | None = None
        self._lookups: Lookups = {}
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

    def context(self, links: dict[int, str]) -> Context:
        """What entries of this table are built with, given its devices (`_read.Context`)."""
        return Context(links, self._names, self.table, self.protocol)

    def _nexthop_table(self, memo: ReadMemo | None = None) -> dict[int, nl.NexthopMsg]:
        """Every nexthop object by id (the dump made at start, to detect support, if unused)."""
        if not self.nexthops_supported:
            return {}
        found = self._nh_first if self._nh_first is not None else self.nl.nexthop_payloads()
        self._nh_first = None
        if memo is not None:
            return memo.nexthops(found)
        table: dict[int, nl.NexthopMsg] = {}
        for p in found:
            one = nl.parse_nexthop(p)
            table[one.id] = one
        return table

    def entries(self, memo: ReadMemo | None = None) -> list[Entry]:
        """Every unicast-space route of the table (ours and others'), as `plan.diff` takes them,
        minus others' routes to link-local and multicast destinations (`_read.never_routed`:
        nosdn never writes there); local/broadcast routes live in the local table and are
        never read. Each builds its `InstalledRoute` only if asked; `last_read` is then what
        ``apply`` plans from (a list, read whole: the snapshot is complete when it returns).

        ``memo``: the decode cache of a caller that reads again and again (the agent)."""
        self.last_read = None
        links = self.nl.links()
        ctx = self.context(links)
        nhs = self._nexthop_table(memo)
        payloads = self.nl.route_payloads(AF4, self.table) + self.nl.route_payloads(AF6, self.table)
        if memo is not None:
            found = memo.routes(payloads, nhs, memo.context(links, ctx))
        else:
            found = [scan(p, nhs, ctx) for p in payloads]
        del payloads
        refs = Counter([f.nh_id for f in found if f.nh_id])
        self.last_read = TableRead(links, NexthopTable(self.protocol, nhs), refs)
        return [f for f in found if isinstance(f, Entry)]

    def routes(self) -> list[InstalledRoute]:
        """`entries`, each built in full."""
        return [e.installed() for e in self.entries()]

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
        return describe(r, self.context(self.nl.links()), gateways_of(r, nhs)), r.table

    def table_routes(self, table: int) -> list[InstalledRoute]:
        """Every unicast-space route of another table, both families (for doctor: the tables
        policy rules send traffic to). Never ours to change: ``owned`` is always False."""
        ctx = self.context(self.nl.links())
        nhs: dict[int, nl.NexthopMsg] | None = None
        out: list[InstalledRoute] = []
        for fam in (AF4, AF6):
            for r in self.nl.routes(fam, table):
                if r.table != table or r.type not in RELEVANT_TYPES:
                    continue
                if r.nh_id and nhs is None:
                    nhs = self._nexthop_table()
                out.append(describe(r, ctx, gateways_of(r, nhs or {})))
        return out

    def nexthops(self) -> list[nl.NexthopMsg]:
        """The nexthop objects carrying our protocol (empty without kernel support)."""
        return [nh for nh in self._nexthop_table().values() if nh.protocol == self.protocol]

    def local_addresses(self) -> list[IPAddress]:
        """Every address configured on this host (both families, all interfaces)."""
        return [to_addr(a.address) for a in self.nl.addresses() if len(a.address) in (4, 16)]

    def count_other_refs(self) -> Counter[int]:
        """How many routes of every other table use each nexthop id."""
        return self.nl.count_nexthop_refs(exclude_table=self.table)

    # --- next hops -------------------------------------------------------------------------
    def adjacency(
        self, gateways: Sequence[IPAddress], *, lookups: Lookups | None = None
    ) -> dict[IPAddress, Adjacency]:
        """For each gateway: is it on a directly connected network (a route lookup finds no
        gateway), and if not, which gateway the kernel would use instead.

        Asks the kernel for every gateway not in ``lookups`` (a fresh set of lookups when
        None; ``apply`` reuses them for the interface of each new nexthop, so one pass looks
        every next hop up at most once)."""
        if lookups is None:
            lookups = {}
        self._lookups = lookups
        packed = [g.packed for g in gateways]
        self._lookup_many(packed, lookups)
        links = self.nl.links()
        unicast = nl.RTN_UNICAST
        out: dict[IPAddress, Adjacency] = {}
        on_link: dict[int, Adjacency] = {}  # one verdict object per device, shared
        for gw, pk in zip(gateways, packed, strict=True):
            res = lookups[pk]
            if res.gateway is None and res.type == unicast and not res.error:  # on-link
                shared = on_link.get(res.oif)
                if shared is None:
                    dev = links.get(res.oif) if res.oif else None
                    shared = on_link[res.oif] = Adjacency(True, dev)
                out[gw] = shared
            else:
                out[gw] = _verdict(res, links)
        return out

    def _lookup_many(self, gws: Iterable[bytes], lookups: Lookups) -> None:
        """Fill ``lookups`` for every gateway it lacks."""
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

    # --- writing ---------------------------------------------------------------------------
    def apply(
        self,
        diff: Diff,
        *,
        read: TableRead | None = None,
        lookups: Lookups | None = None,
        other_refs: OtherRefs | None = None,
        echo: Echo | None = None,
    ) -> ApplyResult:
        """Make the table match ``diff``: adds, changes, removes; every error reported with
        the node its route belongs to. Nexthops no longer used by any route are deleted.
        A route to a link-local or multicast destination is refused (an error, nothing
        written): the reader would not see it as ours (`_read.never_routed`).

        Plans from ``read`` (else the last complete read, else a read now) and ``lookups``
        (else the last `adjacency`'s); ``other_refs`` counts other tables' use of our
        nexthops (else counted now, if a nexthop is to be replaced). ``echo``: every write
        (garbage collection's too) is sent asking the kernel to echo it, into ``echo``."""
        diff, refused = _refuse_never_routed(diff)
        snap = read or self.last_read
        if snap is None:
            self.routes()
            snap = self.last_read
        assert snap is not None
        self.last_read = None  # what we read is stale once we write
        if lookups is None:
            lookups = self._lookups
        self._lookup_many((gw.packed for r in _wanted(diff) for gw in r.via), lookups)
        count_others = other_refs or self.count_other_refs
        if self.use_nexthops:
            plan = plan_nexthops(
                diff,
                lookups,
                snap.nexthops,
                lambda ids: _refs_before_writes(snap, count_others(), ids),
                table=self.table,
                protocol=self.protocol,
            )
        else:
            plan = plan_plain(diff, lookups, table=self.table, protocol=self.protocol)
        batch = self._write(plan.reqs, echo) if plan.reqs else nl.BatchResult()
        errors, failed = plan.explain(batch.errors)
        result = ApplyResult(len(plan.reqs) - len(failed), [*refused, *plan.errors, *errors])
        if batch.lost:
            self.notes.append(
                "the kernel dropped some replies (ENOBUFS); the table was read back to find "
                "every write that did not happen"
            )
            self._verify(diff, result)
        elif self.nexthops_supported:
            self._collect_garbage(snap, plan, failed, result, echo)
        self.last_read = None
        return result

    def _write(self, reqs: Sequence[nl.Request], echo: Echo | None) -> nl.BatchResult:
        """``self.nl.write``, with the kernel's echoes collected into ``echo`` if given."""
        if echo is None:
            return self.nl.write(reqs)
        batch = self.nl.write(reqs, echo=True)
        echo.messages += batch.echoes
        if batch.lost or batch.errors or batch.echoed != len(reqs):
            echo.complete = False  # the table was not as read, or a write changed nothing
        return batch

    def _collect_garbage(
        self,
        snap: TableRead,
        plan: Plan,
        failed: set[int],
        result: ApplyResult,
        echo: Echo | None = None,
    ) -> None:
        """Delete our nexthops that no route refers to any more (groups before members).

        The estimate from what we know (our table as read, the nexthops we created, the route
        writes that succeeded) finds the candidates without reading anything; only if there
        are any are the nexthops and every table read again, after the writes, to make sure no
        route anywhere still uses them: deleting a nexthop deletes its routes.
        """
        owned = set(snap.nexthops.owned())
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
            groups: dict[int, Sequence[int]] = dict(snap.nexthops.groups())
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
            echo=echo,
        )

    def _delete_unused(
        self,
        owned: dict[int, nl.NexthopMsg],
        nexthops: dict[int, nl.NexthopMsg],
        result: ApplyResult,
        keep_note: bool = False,
        echo: Echo | None = None,
    ) -> None:
        refs = self.nl.count_nexthop_refs()
        unused = self._unused(owned, nexthops, refs)
        for i in sorted(set(owned) - unused):
            if keep_note:
                self.notes.append(f"nexthop {i} kept: a route (of another table?) still uses it")
        order = sorted(unused, key=lambda i: (not owned[i].group, i))
        if not order:
            return
        reqs = [(nl.RTM_DELNEXTHOP, 0, nl.nexthop_del_msg(i)) for i in order]
        batch = self._write(reqs, echo)
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
        self.last_read = None
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
    return replace(diff, add=add, change=change), refused


def _wanted(diff: Diff) -> list[Route]:
    return [*diff.add, *(c.new for c in diff.change)]


def _wanted_with_old(diff: Diff) -> list[tuple[Route, InstalledRoute | None]]:
    return [*((r, None) for r in diff.add), *((c.new, c.old) for c in diff.change)]


def _refs_before_writes(snap: TableRead, other: Counter[int], ids: Iterable[int]) -> dict[int, int]:
    """How many routes of every table use each of ``ids`` before this apply's writes: our
    table as read for the diff, and the others."""
    return {i: snap.table_refs[i] + other[i] for i in ids}


def _verdict(res: nl.Lookup, links: dict[int, str] | None) -> Adjacency:
    dev = (links or {}).get(res.oif) if res.oif else None
    if res.error:
        return Adjacency(False, error=f"no route to it ({os.strerror(res.error)})")
    if res.type == nl.RTN_LOCAL:
        return Adjacency(False, dev, error="it is an address of this host")
    if res.type != nl.RTN_UNICAST:
        kind = TYPE_NAMES.get(res.type, str(res.type))
        return Adjacency(False, dev, error=f"the kernel has a {kind} route for it")
    if res.gateway:
        return Adjacency(False, dev, via=to_addr(res.gateway))
    return Adjacency(True, dev)
