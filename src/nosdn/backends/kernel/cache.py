"""What the node agent keeps of its kernel table between passes, around the stateless backend.

Why: the agent runs a pass per node change, and most of what a pass would ask the kernel is
what the previous pass was told: the same table (when nothing but our own writes changed it),
the same next-hop lookups (one per peer), the same count of other tables' routes through our
nexthops. Only a kernel change can alter those, and the agent's netlink monitor reports every
such change; the agent then calls `invalidate` from its own loop, at the start of the pass the
report wakes. Nothing here is touched from another thread.

Why the view is kept from the kernel's echoes: a pass that changes one route must not cost a
dump and decode of the whole table. Every write of `apply` is sent with ``NLM_F_ECHO`` (but a
bulk write's, which is read back instead: one echo per message costs more than a read), and
the kernel answers each with the very message it multicasts (the route or nexthop as it now
is, or as it was when deleted), in dump format. Those are decoded by the reader's own
functions (`_netlink.parse_route`, `_read.read_route`, `_netlink.parse_nexthop`) and folded
into the last read: a route message replaces the entry of the same identity in the table
(prefix, length, metric) or adds one, a deletion removes it, a nexthop replace derives again
the entries that use the nexthop (whether or not the kernel also echoes their routes, which
depends on nexthop_compat_mode), and the nexthops garbage collection deletes leave. The
entries by prefix (`entries_on`) and by nexthop are indexed lazily and kept with the view.

Whenever the view could be wrong it is dropped instead, and the table read again at next use:
replies lost (ENOBUFS), a write that failed (the table was not as read) or that succeeded
without an echo, an echo that does not decode or that the view cannot place (a route it does
not hold, one held under another protocol, one through a nexthop it does not hold, a type or
destination the reader does not report, a table whose read holds two routes of one
identity), multipath routes, changes under nexthop groups, a deleted nexthop that routes of
ours still used. A wrong view would make the agent write wrong routes; a re-read only costs
time.

What is kept, and what drops it:
- the view of the table (the last read, kept current with the echoes of our own writes): any
  `invalidate`, and the cases above;
- each route and nexthop message's decoded entry (`_read.ReadMemo`): never wrong, kept;
- next-hop lookups and adjacency verdicts, and other tables' use of our nexthops:
  ``invalidate()``, not ``invalidate(lookups=False)`` (a change of our own table's routes).
What the monitor cannot report (someone writing with our own protocol number) waits for the
periodic resync, which invalidates everything.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from types import MappingProxyType

from nosdn.backends.base import ApplyResult
from nosdn.backends.kernel import _netlink as nl
from nosdn.backends.kernel._codec import RTMSG
from nosdn.backends.kernel._read import Context, Entry, ReadMemo, read_route
from nosdn.backends.kernel.backend import Adjacency, Echo, KernelBackend, Lookups, TableRead
from nosdn.model import Diff, InstalledRoute, IPAddress, RouteKey

#: After a write of at least this many routes, other tables' use of our nexthops is counted
#: right away, off the next change's critical path (a bulk install is followed by changes).
_WARM_AFTER = 1000
#: A write of at least this many routes (a bulk install) is not echoed: the table is read back
#: right away instead, which costs less than receiving and folding one echo per message.
_READ_BACK_FROM = 1000

#: A route's identity in our table: its key (packed prefix, length) and its metric. The kernel
#: also keys routes by TOS (IPv4) and source prefix (IPv6): an echo with either is not folded.
Ident = tuple[RouteKey, int]


class _Unsure(Exception):
    """An echo the view cannot take for certain: the view is dropped instead."""


def _ident(e: Entry) -> Ident:
    return (e.key, e.msg.priority)


class KernelCache:
    """A `KernelBackend` (``table``) with the agent's memory of it: the `Backend` surface plus
    `entries`, `entries_on`, `adjacency` and `invalidate`."""

    name = "kernel"

    def __init__(self, table: KernelBackend) -> None:
        self.table = table
        self._memo = ReadMemo()
        #: the view is current while this is set (the read, kept with our writes' echoes)
        self._read: TableRead | None = None
        #: the view as `entries` returns it (None: to be listed again from ``_view``)
        self._found: list[Entry] | None = None
        #: the view by identity, in table order (None: to be built from ``_found``)
        self._view: dict[Ident, Entry] | None = None
        #: whether no two routes of the read share an identity (else echoes are not folded)
        self._exact = True
        #: lazily: the identities of each key, each identity's rank in table order
        self._by_key: dict[RouteKey, list[Ident]] | None = None
        self._rank: dict[Ident, int] = {}
        self._next_rank = 0
        #: lazily: the identities of the entries using each nexthop id directly
        self._users: dict[int, tuple[Ident, ...]] | None = None
        self._lookups: Lookups = {}
        self._verdicts: dict[IPAddress, Adjacency] = {}
        self._other_refs: Counter[int] | None = None

    def invalidate(self, *, lookups: bool = True) -> None:
        """The kernel changed: read the table again at the next pass, and (``lookups``) ask
        again where every next hop goes and which other routes use our nexthops."""
        self._drop_view()
        if lookups:
            self._lookups = {}
            self._verdicts = {}
            self._other_refs = None

    def _drop_view(self) -> None:
        self._read = None
        self._found = None
        self._view = None
        self._by_key = None
        self._rank = {}
        self._users = None

    def entries(self) -> list[Entry]:
        """Every entry of the table (`KernelBackend.entries`): the view when it is current,
        else a read of the table."""
        if self._read is None:
            self._drop_view()
            found = self.table.entries(self._memo)
            self._read = self.table.last_read
            self._found = found
            return found
        if self._found is None:
            assert self._view is not None
            self._found = list(self._view.values())
        return self._found

    def entries_on(self, keys: Iterable[RouteKey]) -> list[Entry]:
        """The entries whose key is one of ``keys``, in the order of `entries`: from the
        view's index by key when the view is current (no walk of the table), else after a
        read of the table."""
        if self._read is None:
            self.entries()
        view = self._ensure_view()
        if not self._exact:  # the view by identity lacks some (and is never folded into)
            wanted = set(keys)
            return [e for e in self.entries() if e.key in wanted]
        by_key = self._ensure_index()
        hits = [i for k in set(keys) for i in by_key.get(k, ())]
        if len(hits) > 1:
            hits.sort(key=self._rank.__getitem__)
        return [view[i] for i in hits]

    def routes(self) -> list[InstalledRoute]:
        return [e.installed() for e in self.entries()]

    def adjacency(self, gateways: Sequence[IPAddress]) -> Mapping[IPAddress, Adjacency]:
        """A verdict for each of ``gateways``, asked of the kernel only for those it has not
        answered since the last `invalidate`. The mapping may hold other gateways too (it is
        the cache itself, read-only: copying 5,000 verdicts a pass would be a copy's cost)."""
        verdicts = self._verdicts
        missing = [g for g in gateways if g not in verdicts]
        if missing:
            verdicts.update(self.table.adjacency(missing, lookups=self._lookups))
        return MappingProxyType(verdicts)

    def _count_other_refs(self) -> Counter[int]:
        if self._other_refs is None:
            self._other_refs = self.table.count_other_refs()
        return self._other_refs

    def apply(self, diff: Diff) -> ApplyResult:
        if self._read is None:
            self.entries()
        echo = Echo() if diff.writes < _READ_BACK_FROM else None
        try:
            result = self.table.apply(
                diff,
                read=self._read,
                lookups=self._lookups,
                other_refs=self._count_other_refs,
                echo=echo,
            )
        except BaseException:
            self.invalidate(lookups=False)  # some writes may have happened: read again
            raise
        if echo is None:
            if diff.writes or result.writes:
                # Read the bulk write back now: the next pass (the next node change) starts
                # from this read instead of dumping the table itself.
                self.invalidate(lookups=False)
                self.entries()
        elif echo.messages or not echo.complete:
            # The next pass starts from the view the kernel's echoes keep, without a dump;
            # if they cannot be trusted, from a read at its start.
            try:
                self._fold(echo)
            except Exception:  # _Unsure, an echo that does not decode, or a bug: read again
                self.invalidate(lookups=False)
        if diff.writes >= _WARM_AFTER and self.table.use_nexthops:
            self._count_other_refs()
        return result

    # --- the view, kept with the echoes ---------------------------------------------------
    def _ensure_view(self) -> dict[Ident, Entry]:
        if self._view is None:
            assert self._found is not None
            view = {_ident(e): e for e in self._found}
            self._exact = len(view) == len(self._found)
            self._view = view
        return self._view

    def _ensure_index(self) -> dict[RouteKey, list[Ident]]:
        if self._by_key is None:
            by_key: dict[RouteKey, list[Ident]] = {}
            rank: dict[Ident, int] = {}
            for n, i in enumerate(self._ensure_view()):
                by_key.setdefault(i[0], []).append(i)
                rank[i] = n
            self._by_key, self._rank, self._next_rank = by_key, rank, len(rank)
        return self._by_key

    def _ensure_users(self) -> dict[int, tuple[Ident, ...]]:
        """Each nexthop id -> the entries using it (tuples: one route per nexthop is the
        rule, and a set of one costs four times its memory)."""
        if self._users is None:
            users: dict[int, tuple[Ident, ...]] = {}
            for i, e in self._ensure_view().items():
                if e.nh_id:
                    users[e.nh_id] = (*users.get(e.nh_id, ()), i)
            self._users = users
        return self._users

    def _fold(self, echo: Echo) -> None:
        """Fold the echoes of our writes into the view (raises `_Unsure` where it cannot)."""
        read = self._read
        if not echo.complete or read is None:
            raise _Unsure("replies were lost")
        view = self._ensure_view()
        if not self._exact:
            raise _Unsure("two routes of the read share an identity")
        ctx = self._memo.context(read.links, self.table.context(read.links))
        for t, p in echo.messages:
            if t in (nl.RTM_NEWROUTE, nl.RTM_DELROUTE):
                self._fold_route(t == nl.RTM_NEWROUTE, p, view, read, ctx)
            elif t == nl.RTM_NEWNEXTHOP:
                nh = nl.parse_nexthop(p)
                self._fold_nexthop(nh, view, read, ctx)
                self._memo.remember(p, nh)
            elif t == nl.RTM_DELNEXTHOP:
                self._drop_nexthop(nl.parse_nexthop(p).id, read)
            else:
                raise _Unsure(f"message type {t}")
        self._found = None

    def _fold_route(
        self, new: bool, p: bytes, view: dict[Ident, Entry], read: TableRead, ctx: Context
    ) -> None:
        r = nl.parse_route(p)
        if r is None:
            raise _Unsure("a cached clone")
        if r.table != ctx.table:
            return  # another table's route on a nexthop we replaced: not in the view
        _family, _dst_len, src_len, tos, *_rest = RTMSG.unpack_from(p)
        if src_len or tos:
            raise _Unsure("a route keyed by source or TOS")
        f = read_route(r, read.nexthops, ctx)
        if not isinstance(f, Entry):
            raise _Unsure("a message of our table the reader does not report")
        if f.nh_id and f.nh_id not in read.nexthops:
            raise _Unsure("a route through a nexthop the view does not hold")
        i = _ident(f)
        old = view.get(i)
        if old is not None and old.msg.protocol != r.protocol:
            raise _Unsure("a route of the same identity under another protocol")
        if r.multipath or (old is not None and old.msg.multipath):
            raise _Unsure("a multipath route (IPv6 may echo it hop by hop)")
        if old is not None:
            self._unref(old.nh_id, i, read)
        if new:
            view[i] = f
            self._memo.remember(p, f)
            if f.nh_id:
                read.table_refs[f.nh_id] += 1
                users = self._users
                if users is not None and i not in users.get(f.nh_id, ()):
                    users[f.nh_id] = (*users.get(f.nh_id, ()), i)
            if old is None and self._by_key is not None:
                self._by_key.setdefault(i[0], []).append(i)
                self._rank[i] = self._next_rank
                self._next_rank += 1
        else:
            if old is None:
                raise _Unsure("the deletion of a route the view does not hold")
            del view[i]
            if self._by_key is not None:
                same = self._by_key[i[0]]
                same.remove(i)
                if not same:
                    del self._by_key[i[0]]
                del self._rank[i]

    def _unref(self, nh_id: int, i: Ident, read: TableRead) -> None:
        if not nh_id:
            return
        refs = read.table_refs
        refs[nh_id] -= 1
        if refs[nh_id] <= 0:
            del refs[nh_id]  # every count in it stays positive (`_collect_garbage`)
        users = self._users
        if users is not None and nh_id in users:
            rest = tuple(j for j in users[nh_id] if j != i)
            if rest:
                users[nh_id] = rest
            else:
                del users[nh_id]

    def _fold_nexthop(
        self, nh: nl.NexthopMsg, view: dict[Ident, Entry], read: TableRead, ctx: Context
    ) -> None:
        nhs = read.nexthops
        old = nhs.get(nh.id)
        if old is None:  # a new nexthop (or group of them)
            if any(m not in nhs for m in nh.group):
                raise _Unsure("a group of nexthops the view does not hold")
            nhs.put(nh)
            return
        if old.group or nh.group or nh.id in nhs.in_groups():
            raise _Unsure("a nexthop group changed")
        nhs.put(nh)
        # replaced in place: the entries on it go where it goes now (the kernel may echo
        # their routes too, with nexthop_compat_mode: folding those again is the same)
        for i in self._ensure_users().get(nh.id, ()):
            f = read_route(view[i].msg, nhs, ctx)
            if not isinstance(f, Entry):
                raise _Unsure("an entry is no longer one")
            view[i] = f

    def _drop_nexthop(self, nh_id: int, read: TableRead) -> None:
        nhs = read.nexthops
        old = nhs.get(nh_id)
        if old is None or nh_id in read.table_refs:
            raise _Unsure("a nexthop deleted under routes, or one the read did not have")
        if nh_id in nhs.in_groups():
            raise _Unsure("a member of a group deleted")
        nhs.drop(nh_id)
