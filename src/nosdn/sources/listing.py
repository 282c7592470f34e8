"""One complete list of the cluster's Nodes as a checked `Cluster`: the source of the one-shot
commands (``nosdn status/plan/doctor/trace/routes/graph --kubeconfig ...``).

Why not the agent's cache: a command that runs once needs no watch, no fingerprints and no
generations, only the freshest complete list. But it must judge each Node exactly as the agent
does, so a paged person sees what the agent acts on: the same `nodes.node_info` (address
policy, ``spec.podCIDRs`` or the older ``spec.podCIDR``, ``spec.providerID``), the same
`nosdn.checks`. Where the agent skips a bad node and keeps routing the rest, a command refuses
like a bad inventory does (every problem at once, each naming the node, field and value):
someone is looking, and a half-true answer would mislead them.

Nodes without ``spec.podCIDRs`` yet stay in the cluster when they have an address: nobody
routes to them, but the host that is such a node still finds itself and its routes to the
others (the agent keeps itself the same way). They are listed in ``without_subnet`` to be said.
No subnet is allocated here: on a live cluster that is the API's (kube-controller-manager, or
``nosdn agent --allocate-node-cidrs``), and a guess here could differ from what it will set.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from nosdn.addr import parse_net
from nosdn.checks import check_cluster
from nosdn.model import Cluster, IPNetwork, Node
from nosdn.problems import Problem
from nosdn.sources.nodes import (
    AddressPolicy,
    Fingerprint,
    NodeInfo,
    created_at,
    fingerprint,
    node_info,
    node_name,
    seniority,
)


class NodeLister(Protocol):
    def list_nodes(self) -> tuple[Iterable[Mapping[str, Any]], str]:
        """Every Node object (possibly decoded lazily, page by page), and the resourceVersion."""


@dataclass(frozen=True, slots=True)
class NodeList:
    """The cluster as listed, and what a person should be told about it."""

    cluster: Cluster
    #: How many Node objects the list held.
    listed: int
    #: Nodes with no ``spec.podCIDRs`` yet: no routes go to them (the agent counts them too).
    without_subnet: tuple[str, ...] = ()
    #: Values ignored without harm (an address that is not an IP, where another one is).
    notes: tuple[str, ...] = ()
    #: Nodes that cannot be routed and what the checks refuse: the answer would be wrong.
    problems: tuple[Problem, ...] = field(default=())


def _refusal(info: NodeInfo, fp: Fingerprint, policy: AddressPolicy) -> Problem | None:
    """Why a node with pod subnets cannot be routed, if it cannot."""
    cidr_texts, addresses, _, bad = fp
    for where, kind, what in bad:
        if where.startswith("spec.podCIDR"):  # pod subnets claimed in a shape nobody can use
            return Problem(
                info.name,
                where,
                kind,
                what,
                "make spec.podCIDRs a list of CIDR strings; its pods get no routes until then",
            )
    if cidr_texts and not info.has_subnet:  # one of them did not parse
        for text in cidr_texts:
            try:
                parse_net(text)
            except ValueError as e:
                return Problem(
                    info.name,
                    "spec.podCIDRs",
                    text,
                    f"is not a network ({e})",
                    "fix the Node's spec.podCIDRs; its pods get no routes until then",
                )
    if info.has_subnet and not info.node.ips:
        where = f" inside {', '.join(map(str, policy.cidrs))}" if policy.cidrs else ""
        seen = ", ".join(f"{t} {a}" for t, a in addresses) or "(none)"
        return Problem(
            info.name,
            "status.addresses",
            seen,
            f"has no address of type {', '.join(policy.types)}{where}",
            "no route can point at its pods: give the node such an address, or pick others "
            "with --node-address-types / --node-address-cidr (as the agent is run)",
        )
    return None


def _mask(nodes: Iterable[Node], cidrs: tuple[IPNetwork, ...], family: int, default: int) -> int:
    """The node mask the cluster uses, as its nodes show it: the most common subnet size (one
    Node wider than the rest cannot move it), else one that fits the cluster CIDRs."""
    sizes = Counter(c.prefixlen for n in nodes for c in n.pod_cidrs if c.version == family)
    if sizes:
        return sizes.most_common(1)[0][0]
    return max([default, *(c.prefixlen for c in cidrs if c.version == family)])


def cluster_from_nodes(
    objects: Iterable[Mapping[str, Any]],
    *,
    policy: AddressPolicy | None = None,
    cluster_cidrs: tuple[IPNetwork, ...] = (),
) -> NodeList:
    """The checked cluster of one list of Node objects (plain JSON, read to the end)."""
    policy = policy or AddressPolicy()
    infos: list[tuple[NodeInfo, Fingerprint]] = []
    listed = 0
    for obj in objects:
        listed += 1
        name = node_name(obj)
        if name:
            fp = fingerprint(obj)
            infos.append((node_info(fp, name, policy, created_at(obj)), fp))
    infos.sort(key=lambda pair: pair[0].name)
    nodes: list[Node] = []
    without: list[str] = []
    notes: list[str] = []
    problems: list[Problem] = []
    for info, fp in infos:
        refused = _refusal(info, fp, policy)
        if refused is not None:
            problems.append(refused)
            continue
        notes.extend(info.problems)
        if not info.has_subnet:
            without.append(info.name)
        if info.node.ips:
            nodes.append(info.node)
    # Nothing is allocated here, so the node mask is not a flag: it is read off the nodes
    cluster = Cluster(
        tuple(nodes),
        cluster_cidrs=cluster_cidrs,
        node_cidr_mask_size_v4=_mask(nodes, cluster_cidrs, 4, 24),
        node_cidr_mask_size_v6=_mask(nodes, cluster_cidrs, 6, 64),
    )
    problems.extend(check_cluster(cluster, seniority=seniority(i for i, _ in infos)))
    return NodeList(cluster, listed, tuple(without), tuple(notes), tuple(problems))


def list_cluster(
    api: NodeLister,
    *,
    policy: AddressPolicy | None = None,
    cluster_cidrs: tuple[IPNetwork, ...] = (),
) -> NodeList:
    """List every Node once (paged, if ``api`` pages) and build the checked cluster.

    Raises the lister's errors (`nosdn.sources.errors.ApiError` for the real one), also from a
    later page: nothing is returned from half a list."""
    items, _ = api.list_nodes()
    return cluster_from_nodes(items, policy=policy, cluster_cidrs=cluster_cidrs)
