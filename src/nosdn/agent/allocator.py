"""Pod subnet allocation from inside the cluster, for clusters whose controller manager does not
(``--allocate-node-cidrs`` off there, or a cluster built by hand).

One agent at a time (the holder of a Lease, `nosdn.sources.leader`) gives every Node without
``spec.podCIDRs`` one subnet per family it has an address in, with the same stable allocator as
the inventory (`nosdn.ipam.allocate`): existing subnets never move, new nodes get the lowest
free ones. It writes ``spec.podCIDR`` and ``spec.podCIDRs`` with a patch; the API server accepts
that only while they are empty, so a second writer can never move a subnet either.

Assignments just written are remembered until the watch shows them, so a pass that runs before
the echo arrives does not hand the same subnet to another node.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from nosdn.agent.config import AgentConfig
from nosdn.agent.metrics import AgentMetrics
from nosdn.ipam import allocate
from nosdn.model import Cluster, IPNetwork, Node
from nosdn.sources.cache import NodeCache
from nosdn.sources.errors import ApiError
from nosdn.sources.leader import LeaderElector, LeaseApi

log = logging.getLogger("nosdn.agent.allocator")


class NodePatchApi(Protocol):
    def patch_node(self, name: str, patch: Mapping[str, Any]) -> None: ...


class AllocatorApi(NodePatchApi, LeaseApi, Protocol):
    pass


class Allocator:
    def __init__(
        self,
        cfg: AgentConfig,
        api: NodePatchApi,
        cache: NodeCache,
        may_write: Callable[[], bool] = lambda: True,
    ) -> None:
        """``may_write`` is asked right before every write: a leader that lost its Lease (or
        could not renew it in time) between the election and the write must not write."""
        self.may_write = may_write
        self.cfg = cfg
        self.api = api
        self.cache = cache
        self.pending: dict[str, tuple[IPNetwork, ...]] = {}
        self.assigned_total = 0

    def once(self) -> dict[str, tuple[IPNetwork, ...]]:
        """Allocate for every node that lacks a subnet; returns what was written."""
        nodes: list[Node] = []
        for info in self.cache.infos():
            if any("spec.podCIDRs" in p for p in info.problems):
                continue  # it has a subnet, just not a valid one: never overwrite it
            node = info.node
            if node.pod_cidrs:
                self.pending.pop(node.name, None)
            elif node.name in self.pending:
                node = Node(node.name, node.ips, self.pending[node.name])
            nodes.append(node)
        cluster = Cluster(
            tuple(nodes),
            cluster_cidrs=self.cfg.cluster_cidrs,
            node_cidr_mask_size_v4=self.cfg.node_cidr_mask_v4,
            node_cidr_mask_size_v6=self.cfg.node_cidr_mask_v6,
        )
        result = allocate(cluster)
        for p in result.problems:
            log.error("allocation: %s", p)
        written: dict[str, tuple[IPNetwork, ...]] = {}
        for name, _new in sorted(result.assigned.items()):
            got = result.cluster.node(name)
            assert got is not None
            cidrs = got.pod_cidrs
            patch = {"spec": {"podCIDR": str(cidrs[0]), "podCIDRs": [str(c) for c in cidrs]}}
            if not self.may_write():
                log.warning(
                    "no longer the allocator's leader: %d node(s) left",
                    len(result.assigned) - len(written),
                )
                break
            try:
                self.api.patch_node(name, patch)
            except ApiError as e:
                log.error("cannot set spec.podCIDRs of node %s: %s", name, e)
                continue
            self.pending[name] = cidrs
            written[name] = cidrs
            self.assigned_total += 1
            log.info(
                "node %s: podCIDRs %s",
                name,
                ", ".join(map(str, cidrs)),
                extra={"node": name, "pod_cidrs": ",".join(map(str, cidrs))},
            )
        return written


def start_allocator(
    cfg: AgentConfig, api: AllocatorApi, cache: NodeCache, metrics: AgentMetrics
) -> Callable[[], None]:
    """Campaign for the Lease in a thread; allocate while leading. Returns a stopper."""
    identity = f"{cfg.node_name}_{uuid.uuid4().hex[:8]}"
    elector = LeaderElector(api, cfg.lease_namespace, cfg.lease_name, identity)
    allocator = Allocator(cfg, api, cache, may_write=elector.holds)
    stop = threading.Event()

    def lead(lost: threading.Event) -> None:
        metrics.is_leader.set(1)
        seen = -1
        last = 0.0
        while not lost.is_set():
            if cache.snapshot().synced and (
                cache.generation != seen or time.monotonic() - last > 30
            ):
                seen = cache.generation
                last = time.monotonic()
                before = allocator.assigned_total
                allocator.once()
                metrics.allocations.inc(allocator.assigned_total - before)
            lost.wait(0.5)

    def stopped() -> None:
        metrics.is_leader.set(0)

    thread = threading.Thread(
        target=elector.run, args=(stop, lead, stopped), name="nosdn-elector", daemon=True
    )
    thread.start()

    def stopper() -> None:
        stop.set()
        thread.join(timeout=5)

    return stopper
