"""Turning a diff into typed steps (`._steps`), in dependency order, without any I/O.

Nexthop mode: nexthop replaces (a node's address change), nexthop creations (one per new peer
gateway, one group per new ECMP set), then route puts pointing at them, then route deletions.
Plain mode: gateway routes only, then deletions. Step ``i`` is request ``i`` of `Plan.reqs`
(`._steps.encode`); a failed request is traced to its routes and nodes from its step
(`Plan.explain`).
"""

from __future__ import annotations

import errno
import os
from array import array
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from ipaddress import IPv4Address, IPv6Address
from typing import overload

from nosdn.backends.base import WriteError
from nosdn.backends.kernel import _netlink as nl
from nosdn.backends.kernel._nexthops import NexthopTable
from nosdn.backends.kernel._steps import (
    DeleteRoute,
    NewGroup,
    NewNexthop,
    PutRoute,
    ReplaceNexthop,
    Step,
    encode,
    kernel_ref,
)
from nosdn.model import Diff, InstalledRoute, IPAddress, Route

_NONE = -1


def _addr(b: bytes) -> IPAddress:
    return IPv4Address(b) if len(b) == 4 else IPv6Address(b)


def oif_for(lookups: Mapping[bytes, nl.Lookup], gw: bytes) -> tuple[int, str | None]:
    """The interface a nexthop via ``gw`` must name, or why there is none."""
    res = lookups.get(gw)
    if res is None:
        return 0, f"next hop {_addr(gw)} was not looked up"
    if res.error:
        return 0, f"no route to next hop {_addr(gw)} ({os.strerror(res.error)})"
    if res.type != nl.RTN_UNICAST or res.gateway is not None:
        return 0, f"next hop {_addr(gw)} is not on a directly connected network"
    return res.oif, None


class Created:
    """Nexthop id -> index of the step (and request) creating it.

    Every creation takes the next free id, so the ids a plan creates run on from the first
    one without a gap: an array of step indexes from that id holds the map in 4 bytes an
    entry (a dict of ints is many times that). Reads like a dict of exactly those entries.
    """

    __slots__ = ("at", "first")

    def __init__(self, first: int = 1) -> None:
        self.first = first
        self.at = array("i")

    def __setitem__(self, nh_id: int, request: int) -> None:
        if nh_id != self.first + len(self.at):
            raise ValueError(f"nexthop {nh_id} created out of turn")
        self.at.append(request)

    def __getitem__(self, nh_id: int) -> int:
        k = nh_id - self.first
        if not 0 <= k < len(self.at):
            raise KeyError(nh_id)
        return self.at[k]

    def get(self, nh_id: int, default: int = _NONE) -> int:
        k = nh_id - self.first
        return self.at[k] if 0 <= k < len(self.at) else default

    def __contains__(self, nh_id: object) -> bool:
        return isinstance(nh_id, int) and 0 <= nh_id - self.first < len(self.at)

    def __len__(self) -> int:
        return len(self.at)

    def items(self) -> Iterator[tuple[int, int]]:
        return zip(range(self.first, self.first + len(self.at)), self.at, strict=True)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Mapping):
            return dict(self.items()) == dict(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]


class Wanted(Sequence[tuple[Route, "InstalledRoute | None"]]):
    """The routes to write, as (route, the installed route it replaces or None): the diff's
    adds, then its changes, read from the diff itself (pairs made up front were memory at the
    busiest moment of a first apply: bench/README.md, "Kernel apply")."""

    __slots__ = ("add", "change")

    def __init__(self, diff: Diff) -> None:
        self.add = diff.add
        self.change = diff.change

    def __len__(self) -> int:
        return len(self.add) + len(self.change)

    @overload
    def __getitem__(self, i: int) -> tuple[Route, InstalledRoute | None]: ...

    @overload
    def __getitem__(self, i: slice) -> list[tuple[Route, InstalledRoute | None]]: ...

    def __getitem__(
        self, i: int | slice
    ) -> tuple[Route, InstalledRoute | None] | list[tuple[Route, InstalledRoute | None]]:
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(len(self)))]
        n = len(self.add)
        k = i + len(self) if i < 0 else i
        if not 0 <= k < len(self):
            raise IndexError(i)
        if k < n:
            return self.add[k], None
        c = self.change[k - n]
        return c.new, c.old

    def __iter__(self) -> Iterator[tuple[Route, InstalledRoute | None]]:
        for r in self.add:
            yield r, None
        for c in self.change:
            yield c.new, c.old


class Plan:
    """The steps of one apply (`._steps`), their requests, and what could not be planned.

    ``created`` maps each nexthop id the plan creates to its step; ``groups`` holds the
    members of the groups created. ``reqs`` is set by `encode` once the steps are complete.
    """

    __slots__ = ("created", "errors", "groups", "removes", "reqs", "steps", "wanted")

    def __init__(self, diff: Diff) -> None:
        self.steps: list[Step] = []
        self.wanted = Wanted(diff)
        self.removes: tuple[InstalledRoute, ...] = diff.remove
        #: nexthop id -> index of the step creating it
        self.created = Created()
        #: members of the groups created
        self.groups: dict[int, tuple[int, ...]] = {}
        #: routes that could not even be planned (no usable next hop)
        self.errors: list[WriteError] = []
        self.reqs = nl.Requests()

    def encode(self, *, table: int, protocol: int) -> None:
        self.reqs = encode(self.steps, table=table, protocol=protocol)

    @property
    def moves(self) -> Iterator[tuple[int, int, int]]:
        """(step index, old nexthop id, new nexthop id) of every route write that changes
        which nexthop a route of ours uses, for garbage collection."""
        for i, s in enumerate(self.steps):
            if isinstance(s, PutRoute):
                old = s.replaces.nhid if s.replaces is not None else 0
                if old or s.nexthop:
                    yield i, old, s.nexthop
            elif isinstance(s, DeleteRoute) and s.ref.nhid:
                yield i, s.ref.nhid, 0

    def plan_removes(self) -> None:
        append = self.steps.append
        for k, old in enumerate(self.removes):
            append(DeleteRoute(k, old.dst, kernel_ref(old)))

    def needs(self, put: PutRoute) -> tuple[int, ...]:
        """The steps creating the nexthops ``put`` points at (its nexthop, a group's members)."""
        nh = put.nexthop
        created = self.created
        if not nh or not created:
            return ()
        ids = (nh, *self.groups[nh]) if nh in self.groups else (nh,)
        return tuple(created[i] for i in ids if i in created)

    def served(self) -> dict[int, list[int]]:
        """Nexthop creation step -> the wanted routes whose puts need it (worked out only when
        a creation failed)."""
        out: dict[int, list[int]] = {}
        for s in self.steps:
            if isinstance(s, PutRoute):
                for d in self.needs(s):
                    out.setdefault(d, []).append(s.route)
        return out

    def explain(self, errors: Mapping[int, tuple[int, str]]) -> tuple[list[WriteError], set[int]]:
        """WriteErrors for the failed requests (each with its route's node), and the indexes
        of the requests that really failed (deleting an already deleted route did not)."""
        out: list[WriteError] = []
        failed = set(errors)
        steps = self.steps
        served: dict[int, list[int]] | None = None
        for i, (code, text) in sorted(errors.items()):
            s = steps[i]
            if isinstance(s, DeleteRoute):
                if code == errno.ESRCH:
                    failed.discard(i)  # already gone: the table is as we want it
                    continue
                out.append(WriteError(s.dst, None, "remove", text))
            elif isinstance(s, PutRoute):
                if any(d in failed for d in self.needs(s)):
                    continue  # reported with the nexthop's own error
                route, old = self.wanted[s.route]
                action = "add" if old is None else "change"
                out.append(WriteError(route.dst, route.node, action, text))
            else:
                # a replace serves exactly its routes; a creation the routes whose puts need
                # it, or the one it was made for if that route's put was never planned
                if isinstance(s, ReplaceNexthop):
                    routes = s.routes
                else:
                    if served is None:
                        served = self.served()
                    routes = served.get(i, [s.made_for])
                label = s.label
                for w in routes:
                    route, old = self.wanted[w]
                    action = "add" if old is None else "change"
                    out.append(WriteError(route.dst, route.node, action, f"{label}: {text}"))
        return out, failed


def plan_plain(
    diff: Diff, lookups: Mapping[bytes, nl.Lookup], *, table: int, protocol: int
) -> Plan:
    """Plain gateway routes (kernels without nexthop objects, or by choice)."""
    plan = Plan(diff)
    append = plan.steps.append
    for w, (route, old) in enumerate(plan.wanted):
        gws = tuple((gw.packed, oif_for(lookups, gw.packed)[0]) for gw in route.via)
        append(PutRoute(w, route.dst, None if old is None else kernel_ref(old), 0, gws))
    plan.plan_removes()
    plan.encode(table=table, protocol=protocol)
    return plan


def plan_nexthops(
    diff: Diff,
    lookups: Mapping[bytes, nl.Lookup],
    nexthops: NexthopTable,
    count_refs: Callable[[Collection[int]], Mapping[int, int]],
    *,
    table: int,
    protocol: int,
) -> Plan:
    """Steps in dependency order: nexthop replaces and creations, then route puts, then route
    deletions (unused nexthops are collected after the writes, once nothing refers to them).

    ``lookups`` must hold a route lookup for every gateway the diff wants; ``count_refs``
    says how many routes of every table use each of some nexthop ids (asked only if an
    in-place replace is possible).
    """
    plan = Plan(diff)
    wanted_gws: set[bytes] = set()
    ecmp = False
    if nexthops.owned():  # some may be reused
        for route, _old in plan.wanted:
            if len(route.via) == 1:
                wanted_gws.add(route.via[0].packed)
            else:
                ecmp = True
                wanted_gws.update(gw.packed for gw in route.via)
    by_gw, by_group = nexthops.reusable(wanted_gws, ecmp) if wanted_gws else ({}, {})
    next_id = nexthops.next_id()
    created = plan.created = Created(next_id)
    steps = plan.steps
    append = steps.append

    # 1. a node changed address: replace its nexthop in place when every route on it moves to
    #    the same new gateway (one write instead of one per route)
    for nhid, new_gw, ws in _retargets(
        plan,
        protocol=protocol,
        by_gw=by_gw,
        lookups=lookups,
        nexthops=nexthops,
        count_refs=count_refs,
    ):
        oif, _err = oif_for(lookups, new_gw)
        old_gw = nexthops[nhid].gateway
        if old_gw is not None and by_gw.get(old_gw) == nhid:
            del by_gw[old_gw]
        by_gw[new_gw] = nhid
        append(ReplaceNexthop(nhid, new_gw, oif, ws))

    def single(gw: bytes, w: int) -> int | str:
        """The nexthop id for one gateway (created if needed), or why there is none."""
        nonlocal next_id
        i = by_gw.get(gw)
        if i is not None:
            return i
        oif, err = oif_for(lookups, gw)
        if err:
            return err
        i = by_gw[gw] = next_id
        next_id += 1
        created[i] = len(steps)
        append(NewNexthop(i, gw, oif, w))
        return i

    def group(route: Route, w: int) -> int | str:
        nonlocal next_id
        members: list[int] = []
        for gw in route.via:
            i = single(gw.packed, w)
            if isinstance(i, str):
                return i
            members.append(i)
        key = tuple(sorted(set(members)))
        g = by_group.get(key)
        if g is not None:
            return g
        g = by_group[key] = next_id
        next_id += 1
        plan.groups[g] = key
        created[g] = len(steps)
        append(NewGroup(g, key, w))
        return g

    # 2. routes to add or change, each pointing at its nexthop: the nexthops are made as the
    #    routes need them, the puts kept aside and appended after every nexthop step. The
    #    single-gateway case is written out inline: it runs once per route, 50,000 times for
    #    a large cluster.
    puts: list[PutRoute] = []
    put = puts.append
    unicast = nl.RTN_UNICAST
    for w, (route, old) in enumerate(plan.wanted):
        via = route.via
        want: int | str
        if len(via) == 1:
            gw = via[0].packed
            got = by_gw.get(gw)
            if got is None:
                res = lookups.get(gw)
                if (
                    res is not None
                    and res.gateway is None
                    and res.type == unicast
                    and not res.error
                ):
                    got = by_gw[gw] = next_id
                    next_id += 1
                    created[got] = len(steps)
                    append(NewNexthop(got, gw, res.oif, w))
                    # a fresh id: never the one the route points at already
                    put(PutRoute(w, route.dst, None if old is None else kernel_ref(old), got))
                    continue
                want = single(gw, w)  # says why there is no nexthop
            else:
                want = got
        else:
            want = group(route, w)
        if isinstance(want, str):
            action = "add" if old is None else "change"
            plan.errors.append(WriteError(route.dst, route.node, action, want))
            continue
        ref = None if old is None else kernel_ref(old)
        if ref is not None and ref.nhid == want:
            continue  # its nexthop was replaced in place: already right
        put(PutRoute(w, route.dst, ref, want))
    steps += puts
    plan.plan_removes()
    plan.encode(table=table, protocol=protocol)
    return plan


def _retargets(
    plan: Plan,
    *,
    protocol: int,
    by_gw: Mapping[bytes, int],
    lookups: Mapping[bytes, nl.Lookup],
    nexthops: NexthopTable,
    count_refs: Callable[[Collection[int]], Mapping[int, int]],
) -> list[tuple[int, bytes, list[int]]]:
    """Nexthops to replace in place: single, ours, not in any group, and every route using it
    (in any table, ours or not) is a change of ours to the same one new gateway, which has no
    nexthop yet and is directly reachable."""
    moving: dict[int, list[bytes]] = {}
    routes: dict[int, list[int]] = {}
    for w, (route, old) in enumerate(plan.wanted):
        if old is None or len(route.via) != 1:
            continue
        nhid = kernel_ref(old).nhid
        nh = nexthops.get(nhid)
        if nh is None or nh.protocol != protocol or nh.group or nh.gateway is None:
            continue
        moving.setdefault(nhid, []).append(route.via[0].packed)
        routes.setdefault(nhid, []).append(w)
    if not moving:
        return []
    in_groups = nexthops.in_groups()
    refs = count_refs(moving.keys())
    out: list[tuple[int, bytes, list[int]]] = []
    taken: set[bytes] = set()
    for nhid, targets in moving.items():
        new = targets[0]
        if any(t != new for t in targets) or new in by_gw or new in taken:
            continue
        if nhid in in_groups or refs.get(nhid, 0) != len(targets):
            continue
        if oif_for(lookups, new)[1] is not None:
            continue  # the normal path reports why
        taken.add(new)
        out.append((nhid, new, routes[nhid]))
    return out
