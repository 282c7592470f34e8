"""Benchmark: the cloud route controller's CPU per single-node change, by cluster size.

On the wire a single-node change is already one write per table. This measures what the
controller's own process spends on it: one real `nosdn.controller.loop.Controller` (no Lease:
it leads), fed through a real `nosdn.sources.cache.NodeCache` exactly as its watch feeds it
(``MODIFIED`` events of Node objects), one pass per change, ``time.process_time`` around each.
The pass is split into its parts (building the cluster view, the cloud pass, the node
verdicts) by timing those functions where the loop calls them.

The cloud is a route table in memory (``--cloud memory``: the controller's own work, no SDK),
or the ARM fake of tests/azure_fake.py in a child process (``--cloud azure``: the Azure SDK
reading and writing the whole table, which is what one read and one write per table cost).
The baseline is the same controller's full resync pass over the same cluster, in the same run.

    PYTHONPATH=src .venv/bin/python bench/controller.py [--sizes 500,5000] [--changes 20]
"""

from __future__ import annotations

import argparse
import ipaddress
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nosdn.backends.base import ApplyResult
from nosdn.backends.cloud.contract import CloudProvider, CloudTable
from nosdn.backends.cloud.factory import Cloud, CloudOptions
from nosdn.controller import loop as loop_mod
from nosdn.controller.config import ControllerConfig
from nosdn.controller.loop import Controller
from nosdn.controller.view import Verdicts
from nosdn.model import Cluster, Diff, InstalledRoute, IPNetwork
from nosdn.problems import Problem
from nosdn.sources.cache import NodeCache

sys.path.insert(0, str(Path(__file__).resolve().parent))
CIDR = ipaddress.ip_network("10.64.0.0/10")
CLUSTER = "bench"


class MemoryTable:
    """One route table held in memory (what a cloud's table read returns, already parsed)."""

    name = "memory"
    table_id = "mem-0"
    quota_hint = "-"
    capacity: int | None = None

    def __init__(self) -> None:
        self.table: dict[IPNetwork, InstalledRoute] = {}

    @property
    def used(self) -> int:
        return len(self.table)

    def routes(self) -> list[InstalledRoute]:
        return list(self.table.values())

    def apply(self, diff: Diff) -> ApplyResult:
        for old in diff.remove:
            self.table.pop(old.dst, None)
        for r in [*diff.add, *(c.new for c in diff.change)]:
            self.table[r.dst] = InstalledRoute(r.dst, r.via, True)
        return ApplyResult(writes=diff.writes)


class MemoryCloud:
    """A `CloudProvider` over one `MemoryTable`: every node's instance is its name."""

    name = "memory"

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.table = MemoryTable()

    def resolve(self, cluster: Cluster) -> tuple[dict[str, str], list[Problem]]:
        return {n.name: n.instance_id or n.name for n in cluster.nodes if n.pod_cidrs}, []

    def tables(self, cluster: Cluster, instances: dict[str, str]) -> list[CloudTable]:
        self.calls["read"] += 1
        return [self.table]

    def check_targets(self, targets: dict[str, str]) -> tuple[list[Problem], list[str]]:
        return [], []

    def prepare_targets(self, targets: dict[str, str]) -> list[str]:
        return []


def node_object(i: int, ip: str) -> dict[str, Any]:
    sub = ipaddress.ip_network(f"{CIDR.network_address + (i << 8)}/24")
    return {
        "metadata": {"name": f"node-{i:05d}", "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": {"podCIDRs": [str(sub)], "providerID": f"vm-{i}"},
        "status": {"addresses": [{"type": "InternalIP", "address": ip}]},
    }


def _ip(i: int, gen: int = 0) -> str:
    return str(ipaddress.ip_address("172.16.0.0") + (gen << 14) + i + 1)


class Timed:
    """Wraps the loop's view, `sync` and `verdicts` with CPU timers."""

    def __init__(self) -> None:
        self.cpu: Counter[str] = Counter()
        for name in ("sync",):
            setattr(loop_mod, name, self._wrap(name, getattr(loop_mod, name)))
        Controller.view = self._wrap("view", Controller.view)  # type: ignore[method-assign]
        Verdicts.__call__ = self._wrap("verdicts", Verdicts.__call__)  # type: ignore[method-assign]

    def _wrap(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*a: Any, **kw: Any) -> Any:
            t0 = time.process_time()
            try:
                return fn(*a, **kw)
            finally:
                self.cpu[name] += time.process_time() - t0

        return timed


def measure(size: int, changes: int, cloud: str, timed: Timed) -> dict[str, float]:
    provider: CloudProvider
    fake = None
    if cloud == "azure":
        from cloud import AZ_RG, RemoteFake
        from nosdn.backends.cloud.azure import AzureConfig, AzureRoutes

        sub = "00000000-0000-0000-0000-00000000cafe"
        fake = RemoteFake(token=None, route_limit=size + 10)
        fake.call("add_table", AZ_RG, "rt")
        base = f"/subscriptions/{sub}/resourceGroups/{AZ_RG}/providers/Microsoft.Compute"
        for i in range(size + changes):
            for gen in (0, 1):
                vm = f"{base}/virtualMachines/vm-{i}-{gen}"
                fake.call("add_nic", AZ_RG, f"vm-{i}-{gen}-nic", vm=vm, ip=_ip(i, gen))
        provider = AzureRoutes(
            AzureConfig(
                sub, AZ_RG, ("rt",), endpoint=fake.url, capacity=size + 10, polling_interval=0.01
            )
        )
    else:
        provider = MemoryCloud()
    try:
        cfg = ControllerConfig(CloudOptions(Cloud.aws), (CIDR,), cluster_name=CLUSTER)
        cache = NodeCache(condition="NetworkUnavailable")
        objs = [node_object(i, _ip(i)) for i in range(size)]
        if cloud == "azure":
            base = f"azure:///subscriptions/{sub}/resourceGroups/{AZ_RG}/providers/"
            for i, o in enumerate(objs):
                o["spec"]["providerID"] = f"{base}Microsoft.Compute/virtualMachines/vm-{i}-0"
        cache.replace(objs)
        cache.set_connected(True)
        ctl = Controller(cfg, cache, provider, request_relist=lambda: None)
        t0 = time.process_time()
        assert ctl.run_pass({"list"}, full=True)
        first = time.process_time() - t0
        assert ctl.status.last_pass is not None
        assert ctl.status.last_pass.writes == size, ctl.status.last_pass.errors[:3]
        per: list[float] = []
        parts: Counter[str] = Counter()
        for k in range(changes):
            i = (k * 7919) % size  # one node's instance replaced: a new address
            o = node_object(i, _ip(i, 1))
            if cloud == "azure":
                o["spec"]["providerID"] = f"{base}Microsoft.Compute/virtualMachines/vm-{i}-1"
            objs[i] = o
            timed.cpu.clear()
            t0 = time.process_time()
            assert cache.apply("MODIFIED", o)
            assert ctl.run_pass({"node"})
            per.append(time.process_time() - t0)
            parts.update(timed.cpu)
            last = ctl.status.last_pass
            assert last is not None
            assert not last.errors, last.errors[:3]
            if cloud == "azure":  # one PUT of the table (Azure counts the old route and the new)
                assert last.calls["routeTables.createOrUpdate"] == 1, last.calls
            else:
                assert last.writes == 1, last.writes
            objs[i] = node_object(i, _ip(i))  # and back, next time
            if cloud == "azure":
                objs[i]["spec"]["providerID"] = f"{base}Microsoft.Compute/virtualMachines/vm-{i}-0"
            cache.apply("MODIFIED", objs[i])
            assert ctl.run_pass({"node"})
        timed.cpu.clear()
        t0 = time.process_time()
        assert ctl.run_pass(set(), full=True)
        resync = time.process_time() - t0
        n = len(per)
        return {
            "first": first,
            "change": statistics.median(per),
            "resync": resync,
            **{f"part:{k}": v / n for k, v in parts.items()},
        }
    finally:
        if fake is not None:
            fake.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--sizes", default="500,5000")
    ap.add_argument("--changes", type=int, default=20)
    ap.add_argument("--cloud", choices=("memory", "azure"), default="memory")
    args = ap.parse_args()
    timed = Timed()
    sizes = [int(s) for s in args.sizes.split(",")]
    print(f"controller CPU per pass ({args.cloud} cloud), median of {args.changes} changes")
    print(
        f"{'nodes':>6}  {'1-node change':>13}  {'full resync':>11}  resync/change  "
        "view / cloud pass / verdicts (per change)"
    )
    rows = {}
    for size in sizes:
        r = rows[size] = measure(size, args.changes, args.cloud, timed)
        print(
            f"{size:>6}  {r['change'] * 1e3:>10.2f} ms  {r['resync'] * 1e3:>8.1f} ms  "
            f"{r['resync'] / r['change']:>13.1f}  "
            f"{r.get('part:view', 0) * 1e3:.2f} / {r.get('part:sync', 0) * 1e3:.2f} / "
            f"{r.get('part:verdicts', 0) * 1e3:.2f} ms"
        )
    if len(sizes) > 1:
        a, b = sizes[0], sizes[-1]
        growth = rows[b]["change"] / rows[a]["change"]
        print(
            f"a 1-node change at {b} nodes costs {growth:.1f}x what it costs at {a} "
            f"({b / a:.0f}x the nodes; flat would be 1.0)"
        )


if __name__ == "__main__":
    main()
