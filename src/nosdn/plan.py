"""Route planning: pure functions from a cluster to the routes a target needs, and the diff
between those and what a backend found.

Like a flannel backend, this is a plain ``node -> route`` function with no I/O; every backend
and renderer consumes its output, so the kernel, the cloud and the rendered script can never
disagree about which routes a cluster needs. ``diff`` is where ownership is enforced: a route
someone else owns is a conflict, never something to change or remove.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol

from nosdn.model import (
    Change,
    Cluster,
    Conflict,
    Diff,
    InstalledRoute,
    IPAddress,
    IPNetwork,
    Route,
    RouteKey,
    Shadow,
    Target,
)


class UnknownNodeError(ValueError):
    """The target names a node the cluster does not have."""


def _pod_routes(cluster: Cluster, skip: str | None, families: set[int] | None) -> list[Route]:
    routes: list[Route] = []
    for node in cluster.nodes:
        if node.name == skip:
            continue
        for cidr in node.pod_cidrs:
            if families is not None and cidr.version not in families:
                continue
            gw = node.ip_for(cidr.version)
            if gw is None:
                continue  # refused by the checks; a route needs a next hop of its family
            routes.append(Route(cidr, (gw,), node.name))
    return routes


def _service_routes(cluster: Cluster) -> list[Route]:
    routes: list[Route] = []
    for cidr in cluster.service_cidrs:
        gws: list[IPAddress] = []
        for name in cluster.service_via:
            node = cluster.node(name)
            gw = node.ip_for(cidr.version) if node else None
            if gw is not None:
                gws.append(gw)
        if gws:
            routes.append(Route(cidr, tuple(sorted(set(gws))), None))
    return routes


def _sort_key(r: Route) -> int:
    """`route_sort_key` (family, address, length) packed into one int: ints sort faster than
    tuples, and an agent pass sorts every route."""
    d = r.dst
    return (d.version << 136) | (int(d.network_address) << 8) | d.prefixlen


def desired_routes(cluster: Cluster, target: Target) -> list[Route]:
    """Every route ``target`` needs, sorted by family then destination.

    A node gets every other node's pod subnets via that node's address of the same family (only
    for families it has an address in itself), never a route to its own subnets. An external
    host also gets the service CIDRs via the ``serviceVia`` nodes (one ECMP route if several).
    A router gets every pod subnet.
    """
    if target.kind == "node":
        me = cluster.node(target.node or "")
        if me is None:
            raise UnknownNodeError(target.node)
        routes = _pod_routes(cluster, me.name, {ip.version for ip in me.ips})
    elif target.kind == "external":
        routes = _pod_routes(cluster, None, None) + _service_routes(cluster)
    else:
        routes = _pod_routes(cluster, None, None)
    routes.sort(key=_sort_key)
    return routes


class Found(Protocol):
    """A route read from a table, as `diff` needs it: its key, its gateways packed and sorted,
    whether it is ours, and the full `InstalledRoute`, built only for what is not kept (a
    kernel table of 5,000 routes is read every agent pass; `InstalledRoute` is its own)."""

    @property
    def key(self) -> RouteKey: ...

    @property
    def gateways(self) -> tuple[bytes, ...]: ...

    @property
    def owned(self) -> bool: ...

    def installed(self) -> InstalledRoute: ...


def _packed(via: tuple[IPAddress, ...]) -> tuple[bytes, ...]:
    return (via[0].packed,) if len(via) == 1 else tuple(g.packed for g in via)


def diff(desired: Sequence[Route], actual: Iterable[Found]) -> Diff:
    """Compare the routes wanted with the routes found.

    - wanted and owned with the same next hops: keep; owned with other next hops: change;
    - wanted but owned by someone else: conflict (and nothing is written for that prefix);
    - owned but no longer wanted: remove. Foreign routes that nobody wants are not our business.
    Extra owned routes to one prefix (left by a crash, say) are removed; of several, the first
    with the wanted next hops is kept, or else the first is changed.

    ``actual`` is read once, in order: a route of ours that is exactly as wanted costs a key
    lookup and is not kept; only the others are kept and built in full. This is the one diff:
    every backend, the agent and ``apply`` use it.
    """
    found = actual if isinstance(actual, list) else list(actual)
    # a wanted prefix of a length nothing found has is an add, whatever else: it needs no key
    # (a first apply's table holds a few routes, and packing 10,000 keys is its own cost)
    lengths = {e.key[1] for e in found}
    wants: dict[RouteKey, tuple[bytes, ...]] = {}
    keys: list[RouteKey | None] = []
    for w in desired:
        d = w.dst
        if d.prefixlen not in lengths:
            keys.append(None)
            continue
        k = (d.network_address.packed, d.prefixlen)
        keys.append(k)
        wants.setdefault(k, _packed(w.via))
    twice: set[RouteKey] = set()
    if len(wants) != len(keys) - keys.count(None):  # a prefix wanted twice (no checks ran)
        seen: set[RouteKey] = set()
        for key in keys:
            if key is not None:
                if key in seen:
                    twice.add(key)
                seen.add(key)
    kept: set[RouteKey] = set()  # the first route of ours on the key, with the wanted next hops
    kept_twice: dict[RouteKey, Found] = {}  # the same, for keys wanted twice (compared again)
    ours: dict[RouteKey, list[Found]] = {}  # every other route of ours on a wanted key
    theirs: dict[RouteKey, Found] = {}  # the first route of someone else's on a wanted key
    stray: dict[RouteKey, list[Found]] = {}  # routes of ours on keys nobody wants
    owned = 0
    for e in found:
        k = e.key
        want = wants.get(k)
        if not e.owned:
            if want is not None and k not in theirs:
                theirs[k] = e
            continue
        owned += 1
        if want is None:
            stray.setdefault(k, []).append(e)
        elif k not in kept and k not in ours and e.gateways == want:
            kept.add(k)
            if twice and k in twice:
                kept_twice[k] = e
        else:
            ours.setdefault(k, []).append(e)
    if not owned and not theirs:  # nothing of ours, nothing in the way: everything is an add
        return Diff(tuple(desired))
    special = ours.keys() | theirs.keys() | twice if ours or theirs or twice else None
    if special is None:  # each wanted prefix is kept or added: the usual pass
        keep_all = len(kept) == len(keys)
        return Diff(
            ()
            if keep_all
            else tuple(w for k, w in zip(keys, desired, strict=True) if k not in kept),
            (),
            tuple(o.installed() for group in stray.values() for o in group),
            tuple(desired)
            if keep_all
            else tuple(w for k, w in zip(keys, desired, strict=True) if k in kept),
            (),
            owned,
        )
    add: list[Route] = []
    change: list[Change] = []
    keep: list[Route] = []
    conflicts: list[Conflict] = []
    remove: list[InstalledRoute] = []
    for key, w in zip(keys, desired, strict=True):
        if key is None or key not in special:  # kept or added, as above
            (keep if key in kept else add).append(w)
            continue
        k = key
        t = theirs.get(k)
        if t is not None:
            conflicts.append(Conflict(w, t.installed()))
        more = ours.get(k)
        first = kept_twice.get(k)
        mine = [*([first] if first is not None else []), *(more or ())]
        if k in kept and first is None:  # kept, and not needed again: the rest goes
            keep.append(w)
            remove.extend(o.installed() for o in mine)
            continue
        if not mine:
            if t is None:
                add.append(w)
            continue
        via = _packed(w.via)
        match = next((o for o in mine if o.gateways == via), None)
        if match is not None:
            keep.append(w)
            remove.extend(o.installed() for o in mine if o is not match)
        else:
            change.append(Change(mine[0].installed(), w))
            remove.extend(o.installed() for o in mine[1:])
    for group in stray.values():
        remove.extend(o.installed() for o in group)
    return Diff(tuple(add), tuple(change), tuple(remove), tuple(keep), tuple(conflicts), owned)


def apply_diff(actual: Iterable[InstalledRoute], d: Diff) -> list[InstalledRoute]:
    """What a table holds after a backend applied ``d`` faithfully (used by the fake backend
    and by property tests: ``apply_diff(actual, diff(desired, actual))`` owns ``desired``)."""
    gone = {id(r) for r in d.remove} | {id(c.old) for c in d.change}
    result = [r for r in actual if id(r) not in gone]
    result.extend(InstalledRoute(r.dst, r.via, True) for r in d.add)
    result.extend(InstalledRoute(c.new.dst, c.new.via, True) for c in d.change)
    return result


def shadows(wanted: Iterable[Route], installed: Iterable[InstalledRoute]) -> tuple[Shadow, ...]:
    """Every route of someone else's strictly inside a wanted prefix, with the wanted route
    it shadows (the most specific one, when wanted prefixes nest), most specific wanted first.

    The kernel picks the longest matching prefix, so such a route carries part of the wanted
    prefix's traffic wherever it leads (a blackhole, another host) and ``diff`` cannot see it:
    it keys routes by their exact prefix. Routes of ours inside a wanted prefix are ``diff``'s
    stale routes, and a route on a wanted prefix is ``diff``'s conflict: neither is a shadow.
    """
    by_len: dict[int, dict[IPNetwork, Route]] = {}
    for w in wanted:
        by_len.setdefault(w.dst.prefixlen, {}).setdefault(w.dst, w)
    lengths = sorted(by_len, reverse=True)
    out: list[Shadow] = []
    for r in installed:
        if r.owned or r.dst in by_len.get(r.dst.prefixlen, ()):
            continue  # ours (stale, for diff), or on a wanted prefix itself (a conflict)
        for plen in lengths:
            if plen >= r.dst.prefixlen:
                continue
            hit = by_len[plen].get(r.dst.supernet(new_prefix=plen))
            if hit is not None and hit.dst.version == r.dst.version:
                out.append(Shadow(hit, r))
                break
    out.sort(key=lambda s: (s.wanted.dst.version, s.wanted.dst, s.found.dst))
    return tuple(out)


#: The share of the routes it owns that one pass may remove at once: the agent's and the
#: controller's ``--max-delete-share`` default, and ``apply``'s and the rendered script's.
DEFAULT_MAX_DELETE_SHARE = 0.5
#: Removals that are never a mass deletion, whatever the share: a node or two leaving a small
#: cluster is not one.
ALWAYS_ALLOWED_REMOVALS = 2


def mass_removal(removes: int, owned: int, share: float) -> bool:
    """Removing ``removes`` of the ``owned`` routes at once is more than ``share`` of them (and
    more than `ALWAYS_ALLOWED_REMOVALS`): the one rule of the deletion guard, everywhere.

    An empty or wrong node list (another cluster's inventory, a node list cut short, a host
    of another cluster with the same address) looks like "every route is stale"."""
    return removes > max(share * owned, ALWAYS_ALLOWED_REMOVALS)
