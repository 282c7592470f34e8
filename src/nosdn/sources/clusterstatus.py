"""The whole cluster's network at a glance (``nosdn status --cluster``, as ``cilium status``):
from the Kubernetes API alone, every node's agent ready or not and why, and the conflicts and
off-link peers each agent reported.

Why from the API: whoever is paged may not be on a node, and reading 100 nodes' kernels one
by one is not a glance. Everything an agent knows about its node that a person needs is
already published there: the ``NetworkUnavailable`` condition (``False``/``NosdnIsUp`` when its
routes are programmed, ``True`` with the reason when not) and the Warning Events it posts about
its own Node (``RouteConflict``, ``NodeOffLink``, ``RouteDeletionsRefused``, at most one per
problem every ten minutes). An Event older than `RECENT` seconds is taken as over: the agent
repeats a problem that lasts, so a conflict that was fixed stops being shown.

No I/O here: `cluster_status` is a pure function of the listed Nodes and Events (the CLI lists
them), so tests give it objects and the kmock and kube-apiserver tiers give it the real lists.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from nosdn.problems import Problem

#: The condition the agent writes (``nosdn.daemon.condition.CONDITION``; a test keeps them equal).
CONDITION = "NetworkUnavailable"
#: Its reason when the agent's routes are programmed (``nosdn.daemon.condition.REASON_UP``).
REASON_UP = "NosdnIsUp"
#: The agent's Event source (``nosdn.daemon.events.COMPONENT``).
AGENT_COMPONENT = "nosdn-agent"
#: Event reasons shown per node, and the column they count in.
CONFLICT_REASONS = {"RouteConflict": "conflicts", "RouteDeletionsRefused": "conflicts"}
OFFLINK_REASON = "NodeOffLink"
#: Seconds an Event stays "current": the agent repeats a lasting problem every 600 s.
RECENT = 900.0


@dataclass(frozen=True, slots=True)
class NodeNetwork:
    """One node, as ``status --cluster`` shows it."""

    name: str
    #: "ready", "not ready" (the agent says why), "no agent" (no condition of nosdn's), or
    #: "other" (someone else's NetworkUnavailable: another network plugin, a cloud's routes).
    agent: str
    reason: str
    message: str
    since: str
    kubelet_ready: bool
    pod_cidrs: tuple[str, ...]
    addresses: tuple[str, ...]
    conflicts: tuple[str, ...] = ()
    offlink: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.agent == "ready" and not self.conflicts and not self.offlink

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "agent": self.agent,
            "ready": self.agent == "ready",
            "reason": self.reason or None,
            "message": self.message or None,
            "since": self.since or None,
            "kubeletReady": self.kubelet_ready,
            "podCIDRs": list(self.pod_cidrs),
            "addresses": list(self.addresses),
            "conflicts": list(self.conflicts),
            "offlink": list(self.offlink),
        }


@dataclass(frozen=True, slots=True)
class ClusterStatus:
    nodes: tuple[NodeNetwork, ...]
    #: Why the Events could not be read (RBAC, say), if they could not: then no node's
    #: conflicts or off-link peers are known, which is said rather than shown as none.
    events_error: str = ""
    problems: tuple[str, ...] = field(default=())

    @property
    def ready(self) -> int:
        return sum(n.agent == "ready" for n in self.nodes)

    @property
    def ok(self) -> bool:
        return bool(self.nodes) and all(n.ok for n in self.nodes) and not self.events_error

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "nodes": len(self.nodes),
            "ready": self.ready,
            "eventsError": self.events_error or None,
            "items": [n.as_dict() for n in self.nodes],
        }


def _time(text: Any) -> datetime | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def _list_of_text(value: Any) -> tuple[str, ...]:
    return tuple(str(v) for v in value) if isinstance(value, list) else ()


def _node(obj: Mapping[str, Any]) -> NodeNetwork | None:
    meta = obj.get("metadata")
    name = meta.get("name") if isinstance(meta, Mapping) else None
    if not isinstance(name, str) or not name:
        return None
    spec = obj.get("spec") if isinstance(obj.get("spec"), Mapping) else {}
    status = obj.get("status") if isinstance(obj.get("status"), Mapping) else {}
    assert isinstance(spec, Mapping)
    assert isinstance(status, Mapping)
    cidrs = _list_of_text(spec.get("podCIDRs")) or (
        (str(spec["podCIDR"]),) if isinstance(spec.get("podCIDR"), str) else ()
    )
    addresses = tuple(
        str(a.get("address"))
        for a in status.get("addresses") or ()
        if isinstance(a, Mapping) and a.get("type") in ("InternalIP", "ExternalIP")
    )
    conds = [c for c in status.get("conditions") or () if isinstance(c, Mapping)]
    kubelet = any(c.get("type") == "Ready" and c.get("status") == "True" for c in conds)
    net = next((c for c in conds if c.get("type") == CONDITION), None)
    agent, reason, message, since = "no agent", "", "", ""
    if net is not None:
        reason = str(net.get("reason") or "")
        message = str(net.get("message") or "")
        since = str(net.get("lastTransitionTime") or "")
        if not reason.startswith("Nosdn"):
            agent = "other"
        elif net.get("status") == "False" and reason == REASON_UP:
            agent = "ready"
        else:
            agent = "not ready"
    return NodeNetwork(name, agent, reason, message, since, kubelet, cidrs, addresses)


def _current_events(
    events: Iterable[Mapping[str, Any]], now: datetime, recent: float
) -> dict[str, dict[str, list[str]]]:
    """node -> column -> messages, of the agents' Warning Events about Nodes seen lately (the
    newest first, each message once)."""
    found: dict[str, list[tuple[datetime, str, str]]] = {}
    for e in events:
        source = e.get("source") if isinstance(e.get("source"), Mapping) else {}
        assert isinstance(source, Mapping)
        if source.get("component") != AGENT_COMPONENT and (
            e.get("reportingComponent") != AGENT_COMPONENT
        ):
            continue
        about = e.get("involvedObject")
        if not isinstance(about, Mapping) or about.get("kind") != "Node":
            continue
        reason = str(e.get("reason") or "")
        column = CONFLICT_REASONS.get(reason) or ("offlink" if reason == OFFLINK_REASON else "")
        if not column:
            continue
        when = (
            _time(e.get("lastTimestamp"))
            or _time(e.get("eventTime"))
            or _time(e.get("firstTimestamp"))
        )
        if when is None or (now - when).total_seconds() > recent:
            continue
        found.setdefault(str(about.get("name")), []).append(
            (when, column, str(e.get("message") or reason))
        )
    out: dict[str, dict[str, list[str]]] = {}
    for node, items in found.items():
        for _, column, message in sorted(items, key=lambda x: x[0], reverse=True):
            messages = out.setdefault(node, {}).setdefault(column, [])
            if message not in messages:
                messages.append(message)
    return out


def cluster_status(
    nodes: Iterable[Mapping[str, Any]],
    events: Iterable[Mapping[str, Any]] | None,
    *,
    now: datetime | None = None,
    events_error: str = "",
    recent: float = RECENT,
    refused: Iterable[Problem] = (),
) -> ClusterStatus:
    """Every Node's network state, in name order (as ``kubectl get nodes``). ``events`` None
    (with ``events_error``): the Events could not be read. ``refused``: what the checks
    (`nosdn.sources.listing`) refuse, shown as conflicts of the node each names."""
    when = now or datetime.now(UTC)
    reported = _current_events(events or (), when, recent)
    for p in refused:
        if p.node is not None:
            text = f"refused: {p.field} {p.value}: {p.message}"
            reported.setdefault(p.node, {}).setdefault("conflicts", []).append(text)
    rows: list[NodeNetwork] = []
    problems: list[str] = []
    for obj in nodes:
        n = _node(obj) if isinstance(obj, Mapping) else None
        if n is None:
            problems.append("a Node object without a name was skipped")
            continue
        mine = reported.get(n.name, {})
        rows.append(
            replace(
                n,
                conflicts=tuple(mine.get("conflicts", ())),
                offlink=tuple(mine.get("offlink", ())),
            )
        )
    rows.sort(key=lambda n: n.name)
    return ClusterStatus(tuple(rows), events_error, tuple(problems))
