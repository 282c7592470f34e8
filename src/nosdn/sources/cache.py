"""The last known state of the cluster's nodes, shared by the watch thread and the agent loop.

Why a cache of fingerprints: in a big cluster Node objects change every few seconds for reasons
routing does not care about (conditions, heartbeats, images). Each event is reduced to its
`fingerprint` and compared with the stored one; only a difference builds a new `NodeInfo`,
bumps ``generation`` and nudges the loop. An unchanged fingerprint costs a dict lookup and a
tuple comparison, and causes no kernel work at all.

Each generation remembers the names it changed (`changes_since`), so a reader that keeps its own
state per node (the agent's view) applies only those. The log is bounded: a reader that fell
further behind gets None and rebuilds from the whole snapshot.

A relist replaces the whole content (nodes missing from the list are gone) and counts
``relists``; the deletion guard uses that count to know the list was read again. While the API
is away the content simply stays: the loop keeps serving the last known state.

A controller that writes one condition on every Node (the cloud route controller sets
``NetworkUnavailable``) must know each node's current value to avoid writing it again, yet a
condition change is no routing change. With ``condition=TYPE`` the cache keeps that condition's
(status, reason) per node beside the fingerprints, read from every event, without touching the
generation or nudging anyone.
"""

from __future__ import annotations

import logging
import threading
from bisect import bisect_right
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from nosdn.sources.nodes import (
    AddressPolicy,
    Fingerprint,
    NodeInfo,
    created_at,
    fingerprint,
    node_info,
    node_name,
)

log = logging.getLogger("nosdn.sources.cache")

#: Generations whose changed names are kept (a reader further behind rebuilds in full).
_LOG_SIZE = 4096


def condition_of(obj: Mapping[str, Any], ctype: str) -> tuple[str, str] | None:
    """(status, reason) of the Node condition ``ctype``, if the object has one (None too when
    ``status.conditions`` has another shape than a list of objects)."""
    status = obj.get("status") if isinstance(obj, Mapping) else None
    conds = status.get("conditions") if isinstance(status, Mapping) else None
    for c in conds if isinstance(conds, list) else ():
        if isinstance(c, Mapping) and c.get("type") == ctype:
            return str(c.get("status", "")), str(c.get("reason", ""))
    return None


class Snapshot:
    """A consistent view of the cache. ``nodes`` (sorted by name) is sorted when first asked:
    a Node event makes a new snapshot, and the event pass only looks up the names it touched."""

    __slots__ = ("_infos", "_nodes", "connected", "generation", "relists", "synced")

    def __init__(
        self,
        generation: int,
        infos: Mapping[str, NodeInfo] | Iterable[NodeInfo],
        synced: bool,
        relists: int,
        connected: bool,
    ) -> None:
        self.generation = generation
        self._infos: Mapping[str, NodeInfo] = (
            infos if isinstance(infos, Mapping) else {i.name: i for i in infos}
        )
        self._nodes: tuple[NodeInfo, ...] | None = None
        #: True once the first list succeeded (before that nothing is known, nothing may change).
        self.synced = synced
        #: How many complete lists have been applied since start.
        self.relists = relists
        #: Whether the watch is currently connected.
        self.connected = connected

    @property
    def nodes(self) -> tuple[NodeInfo, ...]:
        if self._nodes is None:
            infos = self._infos
            self._nodes = tuple(infos[n] for n in sorted(infos))
        return self._nodes

    def __len__(self) -> int:
        """How many nodes."""
        return len(self._infos)

    def node(self, name: str) -> NodeInfo | None:
        return self._infos.get(name)


class NodeCache:
    """Node name -> `NodeInfo`, fed by lists and watch events, read as `Snapshot`s.

    ``on_change(reason)`` is called (outside the lock) whenever the routing-relevant content
    changed, or the connection state did.
    """

    def __init__(
        self,
        policy: AddressPolicy | None = None,
        on_change: Callable[[str], None] | None = None,
        self_name: str | None = None,
        condition: str | None = None,
    ) -> None:
        self.policy = policy or AddressPolicy()
        self.condition_type = condition
        #: node -> (status, reason) of its ``condition`` (only when one was asked for).
        self.conditions: dict[str, tuple[str, str]] = {}
        self._on_change = on_change
        self.self_name = self_name
        self._lock = threading.Lock()
        self._fps: dict[str, Fingerprint] = {}
        self._infos: dict[str, NodeInfo] = {}
        self._generation = 0
        #: The generations since ``_log_floor``, each with the names it changed.
        self._log_gens: list[int] = []
        self._log_names: list[Sequence[str]] = []
        self._log_floor = 0
        self._relists = 0
        self._synced = False
        self._connected = False
        self._snap: Snapshot | None = None
        #: The latest raw object of this node (its conditions are read from it).
        self.self_object: Mapping[str, Any] | None = None
        #: Events seen, by type, and (``ignored``) how many changed nothing routing uses.
        self.events: Counter[str] = Counter()
        self.ignored: Counter[str] = Counter()

    def set_listener(self, on_change: Callable[[str], None]) -> None:
        self._on_change = on_change

    # --- writers (the watch thread) -------------------------------------------------------
    def _changed(self, names: Sequence[str]) -> None:
        """One new generation that changed ``names`` (called with the lock held)."""
        self._generation += 1
        self._snap = None
        self._log_gens.append(self._generation)
        self._log_names.append(names)
        if len(self._log_gens) > _LOG_SIZE:
            half = _LOG_SIZE // 2
            self._log_floor = self._log_gens[half - 1]
            del self._log_gens[:half]
            del self._log_names[:half]

    def _store(self, name: str, fp: Fingerprint, created: str) -> None:
        self._fps[name] = fp
        self._infos[name] = node_info(fp, name, self.policy, created)

    def replace(self, objects: Iterable[Mapping[str, Any]]) -> bool:
        """Apply a complete list; returns whether anything routing uses changed.

        ``objects`` may be decoded lazily (and fail half-way, raising): it is read to the end
        before anything in the cache changes, so a broken list leaves the cache as it was."""
        fps: dict[str, Fingerprint] = {}
        created: dict[str, str] = {}
        self_obj: Mapping[str, Any] | None = None
        conds: dict[str, tuple[str, str]] = {}
        ctype = self.condition_type
        for obj in objects:
            name = node_name(obj)
            if not name:
                continue
            try:
                fp = fingerprint(obj)
                created[name] = created_at(obj)
                if ctype is not None and (c := condition_of(obj, ctype)) is not None:
                    conds[name] = c
            except Exception:  # a shape nobody foresaw: this node keeps what it had
                log.exception("node %s: cannot read the listed object; kept as it was", name)
                if name in self._fps:
                    fps[name] = self._fps[name]
                    created[name] = self._infos[name].created
                continue
            fps[name] = fp
            if name == self.self_name:
                self_obj = obj
        with self._lock:
            names = [n for n, fp in fps.items() if self._fps.get(n) != fp]
            for name in names:
                self._store(name, fps[name], created[name])
            gone = [n for n in self._fps if n not in fps]
            for name in gone:
                del self._fps[name]
                del self._infos[name]
            changed = bool(names or gone)
            if changed:
                self._changed(names + gone)
            self._relists += 1
            first = not self._synced
            self._synced = True
            self._snap = None
            self.self_object = self_obj
            if ctype is not None:
                self.conditions = conds
        if self._on_change is not None:
            self._on_change("list" if changed or first else "relist")
        return changed

    def apply(self, etype: str, obj: Mapping[str, Any]) -> bool:
        """Apply one watch event (ADDED, MODIFIED, DELETED); returns whether routing input
        changed. The common case, a status-only MODIFIED, returns False after one lookup. An
        object that cannot be read at all is logged and ignored: the watch goes on for every
        other node."""
        try:
            return self._apply(etype, obj)
        except Exception:  # a shape nobody foresaw (fingerprint itself never raises)
            log.exception("node %s: cannot read a %s event; ignored", node_name(obj), etype)
            return False

    def _apply(self, etype: str, obj: Mapping[str, Any]) -> bool:
        name = node_name(obj)
        self.events[etype] += 1
        if not name:
            return False
        if name == self.self_name:
            self.self_object = obj if etype != "DELETED" else None
        if self.condition_type is not None:
            c = condition_of(obj, self.condition_type) if etype != "DELETED" else None
            if c is None:
                self.conditions.pop(name, None)
            else:
                self.conditions[name] = c
        if etype == "DELETED":
            with self._lock:
                if name not in self._fps:
                    self.ignored[etype] += 1
                    return False
                del self._fps[name]
                del self._infos[name]
                self._changed((name,))
        else:
            fp = fingerprint(obj)
            if self._fps.get(name) == fp:  # read without the lock: only this thread writes
                self.ignored[etype] += 1
                return False
            with self._lock:
                self._store(name, fp, created_at(obj))
                self._changed((name,))
        if self._on_change is not None:
            self._on_change("node")
        return True

    def set_connected(self, connected: bool) -> None:
        with self._lock:
            if connected == self._connected:
                return
            self._connected = connected
            self._snap = None
        if self._on_change is not None:
            self._on_change("connected" if connected else "disconnected")

    # --- readers (the loop) ---------------------------------------------------------------
    @property
    def generation(self) -> int:
        return self._generation

    def changes_since(self, since: int, until: int) -> set[str] | None:
        """The names of the nodes changed after generation ``since`` up to ``until`` (None:
        the log no longer reaches back that far; read the whole snapshot)."""
        with self._lock:
            if since < self._log_floor:
                return None
            i = bisect_right(self._log_gens, since)
            j = bisect_right(self._log_gens, until)
            return {name for names in self._log_names[i:j] for name in names}

    def snapshot(self) -> Snapshot:
        with self._lock:
            snap = self._snap
            if snap is None:
                snap = self._snap = Snapshot(
                    self._generation,
                    dict(self._infos),
                    self._synced,
                    self._relists,
                    self._connected,
                )
            return snap

    def condition(self, name: str) -> tuple[str, str] | None:
        """(status, reason) of node ``name``'s tracked condition, if it has one."""
        return self.conditions.get(name)

    def infos(self) -> list[NodeInfo]:
        with self._lock:
            return list(self._infos.values())
