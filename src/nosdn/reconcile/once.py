"""One reconcile pass: cluster -> desired routes -> drop off-link next hops -> diff -> apply.

This is the one shared place where I/O meets planning (flannel's lesson: backends are pure
"node -> route" functions and one loop does the work). It knows no backend in particular: it
takes anything with the ``Backend`` surface, and the L2-adjacency check comes in as a callable,
so the kernel backend, cloud backends and the future agent loop all run through this function.

Off-link next hops are dropped *before* diffing: a host route to a node that is not on a
directly connected network would silently go through some gateway, which is never what the
operator meant. They are reported (or, with ``strict``, refused before anything is written).

A backend whose table reads as light entries (`ReadsEntries`: the kernel backend) hands those
to ``plan.diff``, which builds a full route only for what is not kept; the diff is the same.

A pass may be scoped to some prefixes (`Scope`: the agent's event pass, after one Node
changed): the routes wanted there are diffed against the routes found there (`ReadsKeys`), and
nothing else of the table is read. Where the wanted routes of the scope are those a full pass
would want there, the diff is the full pass's diff restricted to the scope: `plan.diff` decides
each prefix from that prefix's routes alone.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol, runtime_checkable

from nosdn.backends.base import ApplyResult, Backend, WriteError
from nosdn.model import Cluster, Conflict, Diff, IPAddress, Route, RouteKey, Target
from nosdn.plan import Found, desired_routes, diff, mass_removal


class AdjacencyInfo(Protocol):
    """What an adjacency check says about one next hop (the kernel backend's ``Adjacency``)."""

    @property
    def on_link(self) -> bool: ...

    @property
    def reason(self) -> str | None: ...

    @property
    def via(self) -> IPAddress | None: ...


#: Given next hops, says for each whether it is on a directly connected network.
AdjacencyCheck = Callable[[Sequence[IPAddress]], Mapping[IPAddress, AdjacencyInfo]]


@runtime_checkable
class ReadsEntries(Protocol):
    """A backend whose table reads as `plan.Found` entries: ``entries()`` is ``routes()``
    with each route built only when asked (the kernel backend: the agent reads its whole
    table every full pass, and most routes are exactly as wanted)."""

    def entries(self) -> Iterable[Found]: ...


@runtime_checkable
class ReadsKeys(Protocol):
    """A backend that reads the routes on some prefixes alone (`plan.Found` entries, in table
    order), at the cost of those routes and not of the table's."""

    def entries_on(self, keys: Collection[RouteKey]) -> Iterable[Found]: ...


@dataclass(frozen=True, slots=True)
class Scope:
    """A pass over some prefixes only: ``keys``, with ``owned`` routes of ours in the whole
    table (what the last pass left: the deletion guard's denominator stays the table's)."""

    keys: Collection[RouteKey]
    owned: int


@dataclass(frozen=True, slots=True)
class OffLink:
    """A node whose address is not directly reachable from here: its routes are skipped."""

    node: str | None
    gateway: IPAddress
    reason: str
    #: The gateway the kernel would use to reach it instead, if any.
    kernel_via: IPAddress | None = None


class OffLinkError(RuntimeError):
    """``strict`` and some next hops are off-link: nothing was written."""

    def __init__(self, offlink: Sequence[OffLink]) -> None:
        self.offlink = list(offlink)
        names = ", ".join(f"{o.node or '?'} ({o.gateway})" for o in offlink)
        super().__init__(f"{len(offlink)} next hop(s) not on a directly connected network: {names}")


class MassRemovalError(RuntimeError):
    """The pass would remove more than the allowed share of the routes it owns: nothing was
    written (``nosdn.plan.mass_removal``); ``result`` is the plan, for printing."""

    def __init__(self, result: PassResult, owned: int, share: float) -> None:
        self.result = result
        self.owned = owned
        self.share = share
        removes = len(result.diff.remove)
        super().__init__(
            f"would remove {removes} of the {owned} routes nosdn owns here at once, more than "
            f"{share:g} of them"
        )


@dataclass(slots=True)
class PassResult:
    """Everything one pass found and did; ``applied`` is None for a dry run."""

    target: Target
    desired: list[Route]
    diff: Diff
    offlink: list[OffLink] = field(default_factory=list)
    #: The wanted routes, as planned, that lost an off-link next hop (dropped or reduced).
    skipped: list[Route] = field(default_factory=list)
    applied: ApplyResult | None = None

    @property
    def conflicts(self) -> tuple[Conflict, ...]:
        return self.diff.conflicts

    @property
    def errors(self) -> list[WriteError]:
        return self.applied.errors if self.applied is not None else []

    @property
    def writes(self) -> int:
        return self.applied.writes if self.applied is not None else 0

    @property
    def ok(self) -> bool:
        """No write failed and nobody else owns a prefix we need."""
        return not self.errors and not self.conflicts


def drop_offlink(
    routes: Sequence[Route], check: AdjacencyCheck
) -> tuple[list[Route], list[OffLink], list[Route]]:
    """Remove next hops that ``check`` says are off-link; a route left without any is dropped.

    Returns the routes to keep, the off-link next hops (each reported once, with the node whose pod
    route names it), and the routes as planned that lost a next hop.
    """
    unique: dict[IPAddress, None] = {}
    for r in routes:
        via = r.via
        if len(via) == 1:
            unique[via[0]] = None
        else:
            unique.update(dict.fromkeys(via))
    if not unique:
        return list(routes), [], []
    gateways = list(unique)
    verdict = check(gateways)
    if len(verdict) == len(gateways):  # one verdict each: read them without hashing again
        bad = {gw for gw, v in verdict.items() if not v.on_link}
    else:
        bad = {gw for gw in gateways if not verdict[gw].on_link}
    if not bad:
        return list(routes), [], []
    owner: dict[IPAddress, str] = {}
    for r in routes:
        if r.node is not None and len(r.via) == 1:
            owner.setdefault(r.via[0], r.node)
    kept: list[Route] = []
    skipped: list[Route] = []
    for r in routes:
        via = tuple(gw for gw in r.via if gw not in bad)
        if len(via) == len(r.via):
            kept.append(r)
            continue
        skipped.append(r)
        if via:
            kept.append(Route(r.dst, via, r.node))
    offlink = [
        OffLink(owner.get(gw), gw, verdict[gw].reason or "off-link", verdict[gw].via)
        for gw in sorted(bad, key=_addr_key)
    ]
    return kept, offlink, skipped


def _addr_key(a: IPAddress) -> tuple[int, int]:
    return (a.version, int(a))


def reconcile_once(
    cluster: Cluster,
    target: Target,
    backend: Backend,
    *,
    adjacency: AdjacencyCheck | None = None,
    dry_run: bool = False,
    strict: bool = False,
) -> PassResult:
    """One pass. Raises ``OffLinkError`` (before reading or writing routes) when ``strict``
    and a next hop is off-link; otherwise off-link next hops are skipped and reported."""
    return reconcile_routes(
        desired_routes(cluster, target),
        target,
        backend,
        adjacency=adjacency,
        dry_run=dry_run,
        strict=strict,
    )


def reconcile_routes(
    desired: list[Route],
    target: Target,
    backend: Backend,
    *,
    adjacency: AdjacencyCheck | None = None,
    dry_run: bool = False,
    strict: bool = False,
    max_delete_share: float | None = None,
    scope: Scope | None = None,
) -> PassResult:
    """`reconcile_once` from the routes ``target`` needs (``plan.desired_routes``): a one-shot
    command can let go of the cluster first (its nodes are most of its memory).

    With ``max_delete_share``, a pass that would remove more than that share of the routes it
    owns raises `MassRemovalError` before writing anything (``apply`` without ``--force``).
    With ``scope``, ``desired`` are the routes wanted on ``scope.keys`` (every one of them,
    whoever wants it) and only the routes found there are read: ``backend`` must read by key
    (`ReadsKeys`); the diff's ``owned`` is ``scope.owned``."""
    offlink: list[OffLink] = []
    skipped: list[Route] = []
    if adjacency is not None:
        desired, offlink, skipped = drop_offlink(desired, adjacency)
        if offlink and strict:
            raise OffLinkError(offlink)
    if scope is not None:
        if not isinstance(backend, ReadsKeys):
            raise TypeError(f"the {backend.name} backend cannot read routes by prefix")
        d = replace(diff(desired, backend.entries_on(scope.keys)), owned=scope.owned)
    else:
        found = backend.entries() if isinstance(backend, ReadsEntries) else backend.routes()
        d = diff(desired, found)
    owned = d.owned
    result = PassResult(target, desired, d, offlink, skipped)
    if (
        not dry_run
        and max_delete_share is not None
        and mass_removal(len(d.remove), owned, max_delete_share)
    ):
        raise MassRemovalError(result, owned, max_delete_share)
    if not dry_run:
        result.applied = backend.apply(d)
    return result


def nodes_with_addresses(cluster: Cluster, addresses: Sequence[IPAddress]) -> list[str]:
    """The names of the cluster nodes that have one of ``addresses`` (this host's own)."""
    mine = set(addresses)
    return [n.name for n in cluster.nodes if any(ip in mine for ip in n.ips)]
