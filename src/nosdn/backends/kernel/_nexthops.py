"""The nexthop objects of one read of the kernel, by id, with the indexes a write asks of them.

Why a module of its own: planning a write asks which of our nexthops already goes to a
gateway (or holds a set of members), which nexthops groups hold, which ids are ours and which
id is free; scanning every nexthop for each answer made an apply that changes one route cost
the whole table. The agent's cache keeps one read alive between passes, folding the echoes of
its own writes into it, so the indexes are built when first asked and kept by `put` and `drop`,
the only ways a table changes; a one-shot command that never asks builds none.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TypeVar

from nosdn.backends.kernel import _netlink as nl

_K = TypeVar("_K", bytes, tuple[int, ...], int)


class _Index:
    """What the scans found, kept current (see `NexthopTable`)."""

    __slots__ = ("by_gateway", "by_members", "groups", "member_of", "owned")

    def __init__(self, protocol: int, nexthops: Mapping[int, nl.NexthopMsg]) -> None:
        #: our single nexthops by gateway (not blackholes, not device-only), ids sorted (a
        #: tuple: one per gateway is the rule, and a set of one costs four times its memory)
        self.by_gateway: dict[bytes, tuple[int, ...]] = {}
        #: our groups by their sorted members, ids sorted
        self.by_members: dict[tuple[int, ...], tuple[int, ...]] = {}
        #: every group (anyone's) with its members
        self.groups: dict[int, tuple[int, ...]] = {}
        #: every nexthop in some group -> the groups holding it
        self.member_of: dict[int, set[int]] = {}
        self.owned: set[int] = set()
        for nh in nexthops.values():
            self.add(protocol, nh)

    def add(self, protocol: int, nh: nl.NexthopMsg) -> None:
        i = nh.id
        if nh.group:
            members = tuple(nh.group)
            self.groups[i] = members
            for m in members:
                self.member_of.setdefault(m, set()).add(i)
        if nh.protocol != protocol:
            return
        self.owned.add(i)
        if nh.group:
            _insert(self.by_members, tuple(sorted(nh.group)), i)
        elif nh.gateway is not None and not nh.blackhole:
            _insert(self.by_gateway, nh.gateway, i)

    def remove(self, protocol: int, nh: nl.NexthopMsg) -> None:
        i = nh.id
        if nh.group:
            del self.groups[i]
            for m in nh.group:
                _discard(self.member_of, m, i)
        if nh.protocol != protocol:
            return
        self.owned.discard(i)
        if nh.group:
            _remove(self.by_members, tuple(sorted(nh.group)), i)
        elif nh.gateway is not None and not nh.blackhole:
            _remove(self.by_gateway, nh.gateway, i)


def _discard(index: dict[_K, set[int]], key: _K, i: int) -> None:
    ids = index.get(key)
    if ids is not None:
        ids.discard(i)
        if not ids:
            del index[key]


def _insert(index: dict[_K, tuple[int, ...]], key: _K, i: int) -> None:
    had: tuple[int, ...] | None = index.get(key)
    index[key] = (i,) if had is None else tuple(sorted(set(had) | {i}))


def _remove(index: dict[_K, tuple[int, ...]], key: _K, i: int) -> None:
    rest = tuple(j for j in index.get(key, ()) if j != i)
    if rest:
        index[key] = rest
    else:
        index.pop(key, None)


class NexthopTable(Mapping[int, nl.NexthopMsg]):
    """Every nexthop object of a read by id (a read-only mapping), ``protocol``'s ours."""

    __slots__ = ("_index", "_max", "_nhs", "protocol")

    def __init__(self, protocol: int, nexthops: dict[int, nl.NexthopMsg] | None = None) -> None:
        self.protocol = protocol
        self._nhs: dict[int, nl.NexthopMsg] = nexthops if nexthops is not None else {}
        self._index: _Index | None = None
        self._max: int | None = None

    def __getitem__(self, i: int) -> nl.NexthopMsg:
        return self._nhs[i]

    def get(self, i: int, default: nl.NexthopMsg | None = None) -> nl.NexthopMsg | None:  # type: ignore[override]
        return self._nhs.get(i, default)

    def __contains__(self, i: object) -> bool:
        return i in self._nhs

    def __iter__(self) -> Iterator[int]:
        return iter(self._nhs)

    def __len__(self) -> int:
        return len(self._nhs)

    # --- changes ----------------------------------------------------------------------------
    def put(self, nh: nl.NexthopMsg) -> None:
        """``nh`` is now the nexthop of its id (new or replaced)."""
        old = self._nhs.get(nh.id)
        ix = self._index
        if ix is not None:
            if old is not None:
                ix.remove(self.protocol, old)
            ix.add(self.protocol, nh)
        self._nhs[nh.id] = nh
        if self._max is not None and nh.id > self._max:
            self._max = nh.id

    def drop(self, i: int) -> None:
        """Nexthop ``i`` is gone."""
        old = self._nhs.pop(i)
        if self._index is not None:
            self._index.remove(self.protocol, old)
        if i == self._max:
            self._max = None

    # --- what planning asks -----------------------------------------------------------------
    def _ix(self) -> _Index:
        if self._index is None:
            self._index = _Index(self.protocol, self._nhs)
        return self._index

    def owned(self) -> set[int]:
        """The ids of our nexthops (the index's own set: copy it to change it)."""
        return self._ix().owned

    def reusable(
        self, gateways: set[bytes], groups: bool
    ) -> tuple[dict[bytes, int], dict[tuple[int, ...], int]]:
        """Our nexthops a new route may point at: by gateway, for ``gateways``, and, if
        ``groups``, by sorted members. The lowest id wins when there are several."""
        ix = self._ix()
        by_gw = {g: ids[0] for g in gateways if (ids := ix.by_gateway.get(g))}
        by_group = {k: ids[0] for k, ids in ix.by_members.items()} if groups else {}
        return by_gw, by_group

    def in_groups(self) -> Mapping[int, set[int]]:
        """Every nexthop some group holds -> the groups holding it (never empty)."""
        return self._ix().member_of

    def groups(self) -> Mapping[int, tuple[int, ...]]:
        """Every group (anyone's) -> its members."""
        return self._ix().groups

    def next_id(self) -> int:
        """An id above every id here."""
        if self._max is None:
            self._max = max(self._nhs, default=0)
        return self._max + 1
