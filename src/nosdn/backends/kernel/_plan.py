"""Turning a diff into netlink requests, in dependency order, without any I/O.

Nexthop mode: nexthop replaces (a node's address change), nexthop creations (one per new peer
gateway, one group per new ECMP set), then route adds/changes pointing at them, then route
deletions. Plain mode: gateway routes only.

The bookkeeping is deliberately flat (parallel lists of ints, no object per request): a
50,000-route apply makes 100,000 requests, and one small object each cost more time and memory
than the rest of the plan. Who a failed request belongs to is worked out only when something
fails (``explain``), from the request's index.
"""

from __future__ import annotations

import errno
import os
from array import array
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from ipaddress import IPv4Address, IPv6Address
from socket import AF_INET, AF_INET6
from typing import overload

from nosdn.backends.base import WriteError
from nosdn.backends.kernel import _netlink as nl
from nosdn.model import Diff, InstalledRoute, IPAddress, Route

_NEW = nl.NLM_F_CREATE | nl.NLM_F_EXCL
_REPLACE = nl.NLM_F_CREATE | nl.NLM_F_REPLACE
_NONE = -1


def parse_ref(ref: str) -> tuple[int, int]:
    """(nexthop id, metric) from an ``InstalledRoute.ref`` written by the kernel backend."""
    nhid = metric = 0
    for part in ref.split():
        key, _, value = part.partition("=")
        if key == "nhid":
            nhid = int(value)
        elif key == "metric":
            metric = int(value)
    return nhid, metric


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
    """Nexthop id -> index of the request creating it.

    Every creation takes the next free id, so the ids a plan creates run on from the first
    one without a gap: an array of request indexes from that id holds the map in 4 bytes an
    entry (a dict of 50,000 ints was 4 MB). Reads like a dict of exactly those entries.
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


class Moves:
    """(request index, old nexthop id, new nexthop id) of each route write, as three arrays."""

    __slots__ = ("new", "old", "req")

    def __init__(self) -> None:
        self.req = array("i")
        self.old = array("I")
        self.new = array("I")

    def append(self, move: tuple[int, int, int]) -> None:
        self.req.append(move[0])
        self.old.append(move[1])
        self.new.append(move[2])

    def extend_from(self, start: int, old: array[int], new: array[int]) -> None:
        """Moves of requests ``start``, ``start + 1``, ... (one per pair of ``old``/``new``)."""
        self.req.extend(range(start, start + len(old)))
        self.old.extend(old)
        self.new.extend(new)

    def __iter__(self) -> Iterator[tuple[int, int, int]]:
        return zip(self.req, self.old, self.new, strict=True)

    def __len__(self) -> int:
        return len(self.req)


class Wanted(Sequence[tuple[Route, "InstalledRoute | None"]]):
    """The routes to write, as (route, the installed route it replaces or None): the diff's
    adds, then its changes, read from the diff itself (50,000 pairs made up front cost 3 MB
    at the busiest moment of a first apply)."""

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
    """The requests of one apply and, per request, what it is for.

    ``owner[i]`` is the index in ``wanted`` of the route request ``i`` is for (for a nexthop
    creation: the first route that needed it), or ``-1 - k`` for ``diff.remove[k]``.
    ``dep[i]`` is the index of the nexthop creation a route request needs (-1: none); ECMP
    routes list theirs in ``multi_deps``. ``moves`` holds (request index, old nexthop id, new
    nexthop id) of every route write, for garbage collection. Requests and the per-request
    columns are compact (`nl.Requests`, arrays of ints): 100,000 of them at 50,000 routes.
    """

    __slots__ = (
        "created",
        "dep",
        "errors",
        "groups",
        "moves",
        "multi_deps",
        "owner",
        "removes",
        "reqs",
        "retargets",
        "wanted",
    )

    def __init__(self, diff: Diff) -> None:
        self.reqs = nl.Requests()
        self.wanted = Wanted(diff)
        self.removes: tuple[InstalledRoute, ...] = diff.remove
        self.owner = array("i")
        self.dep = array("i")
        self.multi_deps: dict[int, tuple[int, ...]] = {}
        self.retargets: dict[int, list[int]] = {}
        self.moves = Moves()
        #: nexthop id -> index of the request creating it
        self.created = Created()
        #: members of the groups created
        self.groups: dict[int, tuple[int, ...]] = {}
        #: routes that could not even be planned (no usable next hop)
        self.errors: list[WriteError] = []

    def add(self, req: nl.Request, owner: int, dep: int = _NONE) -> int:
        self.owner.append(owner)
        self.dep.append(dep)
        return self.reqs.append(req)

    def plan_removes(self, table: int, protocol: int) -> None:
        for k, old in enumerate(self.removes):
            nhid, metric = parse_ref(old.ref)
            payload = nl.route_msg(
                old.dst.network_address.packed,
                old.dst.prefixlen,
                table=table,
                protocol=protocol,
                priority=metric,
            )
            i = self.add((nl.RTM_DELROUTE, 0, payload), -1 - k)
            if nhid:
                self.moves.append((i, nhid, 0))

    def explain(self, errors: Mapping[int, tuple[int, str]]) -> tuple[list[WriteError], set[int]]:
        """WriteErrors for the failed requests (each with its route's node), and the indexes
        of the requests that really failed (deleting an already deleted route did not)."""
        out: list[WriteError] = []
        failed = set(errors)
        dependents: dict[int, list[int]] | None = None
        for i, (code, text) in sorted(errors.items()):
            mtype, _flags, payload = self.reqs[i]
            if mtype == nl.RTM_DELROUTE:
                if code == errno.ESRCH:
                    failed.discard(i)  # already gone: the table is as we want it
                    continue
                gone = self.removes[-1 - self.owner[i]]
                out.append(WriteError(gone.dst, None, "remove", text))
            elif mtype == nl.RTM_NEWNEXTHOP:
                if i in self.retargets:
                    routes = self.retargets[i]
                else:
                    if dependents is None:
                        dependents = self._dependents()
                    routes = dependents.get(i, [self.owner[i]])
                label = _nexthop_label(payload)
                for w in routes:
                    route, old = self.wanted[w]
                    action = "add" if old is None else "change"
                    out.append(WriteError(route.dst, route.node, action, f"{label}: {text}"))
            else:
                deps = self.multi_deps.get(i) or ((self.dep[i],) if self.dep[i] >= 0 else ())
                if any(d in failed for d in deps):
                    continue  # reported with the nexthop's own error
                route, old = self.wanted[self.owner[i]]
                action = "add" if old is None else "change"
                out.append(WriteError(route.dst, route.node, action, text))
        return out, failed

    def _dependents(self) -> dict[int, list[int]]:
        """Nexthop creation request -> the routes (indexes in ``wanted``) that need it."""
        out: dict[int, list[int]] = {}
        for i, (mtype, _f, _p) in enumerate(self.reqs):
            if mtype != nl.RTM_NEWROUTE:
                continue
            deps = self.multi_deps.get(i) or ((self.dep[i],) if self.dep[i] >= 0 else ())
            for d in deps:
                out.setdefault(d, []).append(self.owner[i])
        return out


def _nexthop_label(payload: bytes) -> str:
    """ "nexthop via GW" / "nexthop group" from a RTM_NEWNEXTHOP payload (only on failure)."""
    a = 8
    nhid = 0
    while a + 4 <= len(payload):
        alen, atype = nl._RTA.unpack_from(payload, a)
        if alen < 4:
            break
        if atype == nl.NHA_ID:
            nhid = nl._U32.unpack_from(payload, a + 4)[0]
        elif atype == nl.NHA_GATEWAY:
            return f"nexthop {nhid} via {_addr(payload[a + 4 : a + alen])}"
        elif atype == nl.NHA_GROUP:
            return f"nexthop group {nhid}"
        a += (alen + 3) & ~3
    return f"nexthop {nhid}"


def plan_plain(
    diff: Diff, lookups: Mapping[bytes, nl.Lookup], *, table: int, protocol: int
) -> Plan:
    """Plain gateway routes (kernels without nexthop objects, or by choice)."""
    plan = Plan(diff)
    for w, (route, old) in enumerate(plan.wanted):
        gws = [(gw.packed, oif_for(lookups, gw.packed)[0]) for gw in route.via]
        nhid, metric = parse_ref(old.ref) if old is not None else (0, 0)
        payload = nl.route_msg(
            route.dst.network_address.packed,
            route.dst.prefixlen,
            table=table,
            protocol=protocol,
            priority=metric,
            gateways=gws,
        )
        i = plan.add((nl.RTM_NEWROUTE, _NEW if old is None else _REPLACE, payload), w)
        if nhid:
            plan.moves.append((i, nhid, 0))
    plan.plan_removes(table, protocol)
    return plan


def plan_nexthops(
    diff: Diff,
    lookups: Mapping[bytes, nl.Lookup],
    nexthops: Mapping[int, nl.NexthopMsg],
    count_refs: Callable[[Collection[int]], Mapping[int, int]],
    *,
    table: int,
    protocol: int,
) -> Plan:
    """Requests in dependency order: nexthop replaces and creations, then routes, then route
    deletions (unused nexthops are collected after the writes, once nothing refers to them).

    ``lookups`` must hold a route lookup for every gateway the diff wants; ``count_refs``
    says how many routes of every table use each of some nexthop ids (asked only if an
    in-place replace is possible).
    """
    plan = Plan(diff)
    wanted_gws: set[bytes] = set()
    ecmp = False
    if any(nh.protocol == protocol for nh in nexthops.values()):  # some may be reused
        for route, _old in plan.wanted:
            if len(route.via) == 1:
                wanted_gws.add(route.via[0].packed)
            else:
                ecmp = True
                wanted_gws.update(gw.packed for gw in route.via)
    by_gw, by_group = _reusable(nexthops, protocol, wanted_gws, ecmp)
    next_id = max(nexthops, default=0) + 1
    created = plan.created = Created(next_id)

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
        payload = nl.nexthop_msg(nhid, protocol=protocol, gateway=new_gw, oif=oif)
        i = plan.add((nl.RTM_NEWNEXTHOP, _REPLACE, payload), ws[0])
        plan.retargets[i] = ws

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
        created[i] = plan.add(
            (nl.RTM_NEWNEXTHOP, _NEW, nl.nexthop_msg(i, protocol=protocol, gateway=gw, oif=oif)),
            w,
        )
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
        created[g] = plan.add(
            (nl.RTM_NEWNEXTHOP, _NEW, nl.nexthop_group_msg(g, protocol=protocol, members=key)),
            w,
        )
        return g

    # 2. routes to add or change, each pointing at its nexthop. The single-gateway case is
    #    written out inline: it runs once per route, 50,000 times for a large cluster. Route
    #    requests are queued and appended after every nexthop they may need.
    # Two passes over the wanted routes, so that every route request follows every nexthop
    # it may need without a second buffer: the first makes the nexthops and notes, per
    # route, the nexthop it points at and the request creating it; the second writes routes.
    nexthop_msg = nl.nexthop_msg
    # the bulk case (IPv4, a main-range table, no metric) packed here, header and all, in one
    # call each, straight into the request buffer
    pack_nh4 = nl.NEXTHOP_MSG[4].pack
    nh4_len = nl.NEXTHOP_MSG[4].size
    reqs, owner, dep = plan.reqs, plan.owner, plan.dep
    add_msg = reqs.append_message
    unicast = nl.RTN_UNICAST
    rtm_newnh = nl.RTM_NEWNEXTHOP
    request = nl.NLM_F_REQUEST
    #: per wanted route: the nexthop id it points at (0: nothing to write) and the index of
    #: the request creating that nexthop (-1: none)
    route_nh = array("I", bytes(4 * len(plan.wanted)))
    route_dep = array("i", [_NONE]) * len(plan.wanted)
    route_multi: dict[int, tuple[int, ...]] = {}
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
                    owner.append(w)
                    dep.append(_NONE)
                    if len(gw) == 4:
                        at = add_msg(pack_nh4(
                            nh4_len, rtm_newnh, request | _NEW, 0, 0,
                            AF_INET, 0, protocol, 0, 0,
                            8, nl.NHA_ID, got, 8, nl.NHA_GATEWAY, gw, 8, nl.NHA_OIF, res.oif,
                        ))  # fmt: skip
                    else:
                        msg = nexthop_msg(got, protocol=protocol, gateway=gw, oif=res.oif)
                        at = reqs.append((rtm_newnh, _NEW, msg))
                    created[got] = route_dep[w] = at
                    route_nh[w] = got
                    continue
                want = single(gw, w)  # says why there is no nexthop
            else:
                want = got
            if isinstance(want, int):
                route_dep[w] = created.get(want, _NONE)
        else:
            want = group(route, w)
            if isinstance(want, int):
                members = [by_gw[gw.packed] for gw in via]
                deps = tuple(created[i] for i in (want, *members) if i in created)
                if deps:
                    route_multi[w] = deps
        if isinstance(want, str):
            action = "add" if old is None else "change"
            plan.errors.append(WriteError(route.dst, route.node, action, want))
            continue
        route_nh[w] = want
    _route_requests(plan, route_nh, route_dep, route_multi, table=table, protocol=protocol)
    plan.plan_removes(table, protocol)
    return plan


def _route_requests(
    plan: Plan,
    route_nh: array[int],
    route_dep: array[int],
    route_multi: dict[int, tuple[int, ...]],
    *,
    table: int,
    protocol: int,
) -> None:
    """The second pass of `plan_nexthops`: a route request for each wanted route that has a
    nexthop (``route_nh``) other than the one it already points at."""
    route_msg = nl.route_msg
    pack_route = {n: (st.pack, st.size) for n, st in nl.ROUTE_NH_MSG.items()}
    af = {4: AF_INET, 16: AF_INET6}
    short_table = table < 256
    reqs, owner, dep, moves = plan.reqs, plan.owner, plan.dep, plan.moves
    add_msg = reqs.append_message
    unicast = nl.RTN_UNICAST
    rtm_newroute = nl.RTM_NEWROUTE
    request = nl.NLM_F_REQUEST
    start = len(reqs)
    route_old = array("I")
    route_new = array("I")
    for w, (route, old) in enumerate(plan.wanted):
        want = route_nh[w]
        if not want:
            continue  # could not be planned: reported in plan.errors
        old_nh, metric = parse_ref(old.ref) if old is not None else (0, 0)
        if old_nh == want:
            continue  # its nexthop was replaced in place: already right
        multi = route_multi.get(w) if route_multi else None
        if multi is not None:
            plan.multi_deps[len(reqs)] = multi
        dst = route.dst
        raw = dst.network_address.packed
        flags = _NEW if old is None else _REPLACE
        if short_table and not metric:
            n = len(raw)
            pack, size = pack_route[n]
            add_msg(pack(
                size, rtm_newroute, request | flags, 0, 0,
                af[n], dst.prefixlen, 0, 0, table, protocol, 0, unicast, 0,
                4 + n, nl.RTA_DST, raw, 8, nl.RTA_NH_ID, want,
            ))  # fmt: skip
        else:
            msg = route_msg(
                raw, dst.prefixlen, table=table, protocol=protocol, priority=metric, nh_id=want
            )
            reqs.append((rtm_newroute, flags, msg))
        owner.append(w)
        dep.append(route_dep[w])
        route_old.append(old_nh)
        route_new.append(want)
    moves.extend_from(start, route_old, route_new)


def _reusable(
    nexthops: Mapping[int, nl.NexthopMsg], protocol: int, gateways: set[bytes], groups: bool
) -> tuple[dict[bytes, int], dict[tuple[int, ...], int]]:
    """Our nexthops a new route may point at: by gateway (only the ``gateways`` the diff
    wants: a pass that changes one route need not index 5,000 nexthops) and, if ``groups``,
    by sorted members. The lowest id wins when there are several."""
    by_gw: dict[bytes, int] = {}
    by_group: dict[tuple[int, ...], int] = {}
    if not gateways:
        return by_gw, by_group
    for i, nh in nexthops.items():
        if nh.protocol != protocol:
            continue
        if nh.group:
            if groups:
                key = tuple(sorted(nh.group))
                g = by_group.get(key)
                if g is None or i < g:
                    by_group[key] = i
        elif nh.gateway in gateways and not nh.blackhole:
            j = by_gw.get(nh.gateway)
            if j is None or i < j:
                by_gw[nh.gateway] = i
    return by_gw, by_group


def _retargets(
    plan: Plan,
    *,
    protocol: int,
    by_gw: Mapping[bytes, int],
    lookups: Mapping[bytes, nl.Lookup],
    nexthops: Mapping[int, nl.NexthopMsg],
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
        nhid, _m = parse_ref(old.ref)
        nh = nexthops.get(nhid)
        if nh is None or nh.protocol != protocol or nh.group or nh.gateway is None:
            continue
        moving.setdefault(nhid, []).append(route.via[0].packed)
        routes.setdefault(nhid, []).append(w)
    if not moving:
        return []
    in_groups = {m for nh in nexthops.values() for m in nh.group}
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
