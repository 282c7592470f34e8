"""The checks of a live cluster, kept up to date one changed Node at a time.

Why it exists: every agent sees every Node change, and `check_cluster` over the whole cluster on
each change made the cluster's total cost of one change grow with the square of its size. This
keeps, between changes, what the checks need: each node's own problems (stage 1) and an index
of every address, pod subnet and cloud instance, so one changed Node costs its own checks, a few
dict lookups and bisections, and the blame of the conflicts there are (none, in a sound cluster).

The rules are `nosdn.checks`' own (`node_problems`, one function per kind of conflict,
`blame`); this module only finds the pairs differently. `check_cluster` stays the definition of
right: a property test drives random changes through both and expects the same problems, and
the agent's resync runs the full checks.

Pod subnets are CIDR blocks, so two of them overlap exactly when one contains the other: the
blocks containing a subnet (or an address) are found by looking up its supernet at each prefix
length the index holds (usually one: the node mask), and the blocks inside it by bisecting the
sorted block starts.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import TypeVar

from nosdn.checks import (
    NodeConflict,
    Ranges,
    address_in_subnet,
    blame,
    cluster_problems,
    node_problems,
    overlapping_subnets,
    ranges_holding,
    same_address,
    same_instance,
)
from nosdn.model import Cluster, IPAddress, IPNetwork, Node
from nosdn.problems import Problem

#: A pod subnet in the index: (family, first address, prefix length).
_Block = tuple[int, int, int]
_K = TypeVar("_K", _Block, IPAddress, str)
_E = TypeVar("_E", tuple[int, int, str], tuple[int, str, IPAddress])


def _block(net: IPNetwork) -> _Block:
    return net.version, int(net.network_address), net.prefixlen


def _bits(version: int) -> int:
    return 32 if version == 4 else 128


class LiveChecks:
    """`check_cluster` for a cluster whose nodes change one at a time (the agent's view).

    Built from a cluster (its ranges and masks are fixed from then on; its nodes are the first
    content), then told each change with `set`. `problems` gives what `check_cluster` would.
    Clusters with ``serviceVia`` or a ``bgp`` section are not live clusters and are refused."""

    def __init__(self, cluster: Cluster) -> None:
        if cluster.service_via or cluster.bgp is not None:
            raise ValueError("live checks are for a cluster of nodes only (no serviceVia, no bgp)")
        self._base = replace(cluster, nodes=())
        self._ranges = Ranges.of(self._base)
        self._cluster_problems = cluster_problems(self._base)
        self.nodes: dict[str, Node] = {}
        #: node -> its stage-1 problems, and the cluster problems its addresses cause (only
        #: nodes that have any)
        self._own: dict[str, list[Problem]] = {}
        self._held: dict[str, list[Problem]] = {}
        self._blocks: dict[_Block, tuple[str, ...]] = {}
        self._lengths: dict[int, Counter[int]] = {4: Counter(), 6: Counter()}
        self._starts: dict[int, list[tuple[int, int, str]]] = {4: [], 6: []}
        self._ips: dict[IPAddress, tuple[str, ...]] = {}
        self._ip_keys: dict[int, list[tuple[int, str, IPAddress]]] = {4: [], 6: []}
        self._instances: dict[str, tuple[str, ...]] = {}
        #: node -> other node -> their conflicts (both sides hold the same list)
        self._pairs: dict[str, dict[str, list[NodeConflict]]] = {}
        self._bulk(cluster.nodes)

    # --- the index ------------------------------------------------------------------------
    def _bulk(self, nodes: Iterable[Node]) -> None:
        for n in nodes:
            self._forget(n.name)
            self._index(n, sort=False)
        for starts in self._starts.values():
            starts.sort()
        for keys in self._ip_keys.values():
            keys.sort()
        for n in self.nodes.values():  # each pair once: found from the side of the later name
            self._pair_up(n, only_before=n.name)

    def _index(self, n: Node, *, sort: bool) -> None:
        name = n.name
        self.nodes[name] = n
        own = node_problems(n, self._ranges)
        if own:
            self._own[name] = own
        held = list(ranges_holding(n, self._base))
        if held:
            self._held[name] = held
        for c in n.pod_cidrs:
            b = _block(c)
            self._add(self._blocks, b, name)
            self._lengths[c.version][c.prefixlen] += 1
            entry = (b[1], b[2], name)
            if sort:
                insort(self._starts[c.version], entry)
            else:
                self._starts[c.version].append(entry)
        for ip in n.ips:
            self._add(self._ips, ip, name)
            key = (int(ip), name, ip)
            if sort:
                insort(self._ip_keys[ip.version], key)
            else:
                self._ip_keys[ip.version].append(key)
        if n.instance_id:
            self._add(self._instances, n.instance_id, name)

    def _forget(self, name: str) -> None:
        old = self.nodes.pop(name, None)
        if old is None:
            return
        self._own.pop(name, None)
        self._held.pop(name, None)
        for c in old.pod_cidrs:
            b = _block(c)
            self._discard(self._blocks, b, name)
            lengths = self._lengths[c.version]
            lengths[c.prefixlen] -= 1
            if not lengths[c.prefixlen]:
                del lengths[c.prefixlen]
            self._remove(self._starts[c.version], (b[1], b[2], name))
        for ip in old.ips:
            self._discard(self._ips, ip, name)
            self._remove(self._ip_keys[ip.version], (int(ip), name, ip))
        if old.instance_id:
            self._discard(self._instances, old.instance_id, name)
        for other in self._pairs.pop(name, {}):
            theirs = self._pairs[other]
            del theirs[name]
            if not theirs:
                del self._pairs[other]

    @staticmethod
    def _add(index: dict[_K, tuple[str, ...]], key: _K, name: str) -> None:
        had: tuple[str, ...] = index.get(key, ())
        if name not in had:
            index[key] = (*had, name)

    @staticmethod
    def _discard(index: dict[_K, tuple[str, ...]], key: _K, name: str) -> None:
        had: tuple[str, ...] | None = index.get(key)
        if had is not None:
            rest = tuple(n for n in had if n != name)
            if rest:
                index[key] = rest
            else:
                del index[key]

    @staticmethod
    def _remove(entries: list[_E], entry: _E) -> None:
        i = bisect_left(entries, entry)
        if i < len(entries) and entries[i] == entry:
            del entries[i]

    # --- finding one node's conflicts -----------------------------------------------------
    def _containing(self, version: int, value: int, longest: int) -> Iterable[tuple[_Block, str]]:
        """Blocks of the index holding ``value``, up to prefix length ``longest``."""
        bits = _bits(version)
        for plen in self._lengths[version]:
            if plen <= longest:
                start = value >> (bits - plen) << (bits - plen) if plen else 0
                for name in self._blocks.get((version, start, plen), ()):
                    yield (version, start, plen), name

    def _conflicts_of(self, n: Node) -> Iterable[tuple[str, NodeConflict]]:
        name = n.name
        for ip in n.ips:
            for other in self._ips.get(ip, ()):
                if other != name:
                    yield other, same_address(other, name, ip)
            for (v, start, plen), other in self._containing(ip.version, int(ip), _bits(ip.version)):
                if other != name:
                    yield (
                        other,
                        address_in_subnet(other, self._net(other, v, start, plen), name, ip),
                    )
        for c in n.pod_cidrs:
            v, lo, plen = _block(c)
            hi = lo + (1 << (_bits(v) - plen)) - 1
            for b, other in self._containing(v, lo, plen):
                if other != name:
                    yield other, overlapping_subnets(other, self._net(other, *b), name, c)
            starts = self._starts[v]
            i, j = bisect_left(starts, (lo,)), bisect_left(starts, (hi + 1,))
            for start, olen, other in starts[i:j]:
                if olen > plen and other != name:  # strictly inside (equal: found above)
                    yield (
                        other,
                        overlapping_subnets(name, c, other, self._net(other, v, start, olen)),
                    )
            keys = self._ip_keys[v]
            i, j = bisect_left(keys, (lo,)), bisect_left(keys, (hi + 1,))
            for _, other, ip in keys[i:j]:
                if other != name:
                    yield other, address_in_subnet(name, c, other, ip)
        if n.instance_id:
            for other in self._instances.get(n.instance_id, ()):
                if other != name:
                    yield other, same_instance(other, name, n.instance_id)

    def _net(self, name: str, version: int, start: int, plen: int) -> IPNetwork:
        for c in self.nodes[name].pod_cidrs:
            if _block(c) == (version, start, plen):
                return c
        raise KeyError((name, version, start, plen))  # the index and the nodes disagree

    def _pair_up(self, n: Node, *, only_before: str | None = None) -> None:
        for other, c in self._conflicts_of(n):
            if only_before is not None and other >= only_before:
                continue
            mine = self._pairs.setdefault(n.name, {})
            shared = mine.get(other)
            if shared is None:
                shared = mine[other] = []
                self._pairs.setdefault(other, {})[n.name] = shared
            shared.append(c)

    # --- the public surface ---------------------------------------------------------------
    def set(self, name: str, node: Node | None) -> None:
        """Node ``name`` is now ``node`` (None: it is gone, or not part of the cluster)."""
        if self.nodes.get(name) is node and node is not None:
            return
        self._forget(name)
        if node is not None:
            self._index(node, sort=True)
            self._pair_up(node)

    def problems(self, seniority: Callable[[str], tuple[int, str]]) -> list[Problem]:
        """What `check_cluster` says of the cluster now, given each node's seniority (called
        only for the parties of conflicts)."""
        out = [p for ps in self._own.values() for p in ps]
        if self._pairs:
            conflicts: list[NodeConflict] = []
            for name, others in self._pairs.items():
                for other, shared in others.items():
                    if name < other:
                        conflicts.extend(shared)
            rank = {name: seniority(name) for name in self._pairs}
            out.extend(blame(conflicts, self._own, rank))
        out.extend(self._cluster_problems)
        out.extend(p for ps in self._held.values() for p in ps)
        return out
