"""Benchmark: one agent pass, in process, against a real kernel table in a fresh namespace (root).

Why it exists: the pass is the floor of the agent's change latency and the whole of its CPU per
change beyond decoding the event. A Node event's pass plans only the nodes it touched (the
event pass); a resync recomputes and diffs everything. This times the real `Agent.run_pass`
with the agent's own `KernelCache` around a real `KernelBackend` and a `NodeCache` fed by hand
(no API server, no process start), and each stage of a full pass on its own, at several
cluster sizes:

- install: the first pass on an empty table;
- no-op resync: a full pass that finds everything in place (lookups dropped, as on resync);
- change: one node changes address (cache event -> event pass -> nexthop replaced), p50, max and the
  mean CPU time (wall times move with the machine's load, CPU time much less);
- stages of a no-op pass: check_cluster, desired_routes, adjacency, the table read, diff,
  apply.

    sudo .venv/bin/python bench/pass.py [--sizes 5000,10000] [--changes 30]
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import os
import pstats
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from ipaddress import ip_network
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from agent_env import node_object
from nosdn.agent.config import AgentConfig
from nosdn.agent.loop import Agent
from nosdn.backends.kernel import KernelBackend
from nosdn.backends.kernel.cache import KernelCache
from nosdn.checks import check_cluster
from nosdn.model import Target
from nosdn.plan import desired_routes, diff
from nosdn.reconcile import drop_offlink
from nosdn.sources.cache import NodeCache


def ip_of(i: int) -> str:
    return f"10.20.{(i + 1) >> 8}.{(i + 1) & 255}"


def cidr_of(i: int) -> str:
    return f"10.{64 + (i >> 8)}.{i & 255}.0/24"


def sh(*cmd: str) -> None:
    subprocess.run(cmd, check=True, capture_output=True)


def timed(fn: Callable[[], Any], runs: int = 5) -> float:
    """Median seconds of ``runs`` calls."""
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return statistics.median(out)


def ms(s: float) -> str:
    return f"{s * 1000:8.1f} ms"


def view_again(agent: Agent, cache: NodeCache) -> None:
    """The cluster view of the current generation, rebuilt from the whole snapshot (as on
    resync; a node change applies only what changed)."""
    agent.view(cache.snapshot(), full=True)


def bench(n: int, changes: int, profile: bool) -> None:
    ns = f"nosdn-pass-{secrets.token_hex(3)}"
    sh("ip", "netns", "add", ns)
    work = tempfile.mkdtemp(prefix="nosdn-pass-")
    try:
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("ip", "-n", ns, "link", "add", "eth0", "type", "veth", "peer", "name", "peer0")
        sh("ip", "-n", ns, "link", "set", "peer0", "up")
        sh("ip", "-n", ns, "addr", "add", "10.20.0.1/16", "dev", "eth0")
        sh("ip", "-n", ns, "link", "set", "eth0", "up")
        cache = NodeCache(self_name="node-0")
        cache.replace(node_object(f"node-{i}", [ip_of(i)], [cidr_of(i)]) for i in range(n))
        table = KernelBackend(netns=ns)
        backend = KernelCache(table)  # as the agent runs it
        # as bench/agent.py runs it: a CNI conflist to keep, a cluster CIDR to check against
        cfg = AgentConfig(
            node_name="node-0",
            cni_conf=Path(work) / "10-nosdn.conflist",
            cluster_cidrs=(ip_network("10.64.0.0/10"),),
            ip_forward=False,
            metrics_address=None,
            mtu=1500,
            events=False,
            set_condition=False,
        )
        agent = Agent(
            cfg,
            cache,
            backend,
            request_relist=lambda: None,
            adjacency=backend.adjacency,
            invalidate=lambda lookups: backend.invalidate(lookups=lookups),
        )
        t = time.perf_counter()
        assert agent.run_pass({"list"}, full=True)
        install = time.perf_counter() - t
        gc.collect()
        gc.freeze()  # as the agent does after its first pass (Agent.run)
        gc.set_threshold(50_000, 20, 20)
        last = agent.status.last_pass
        assert last is not None
        assert len(last.desired) == n - 1

        noop = timed(lambda: agent.run_pass({"resync"}, full=True))
        assert agent.status.last_pass is not None
        assert agent.status.last_pass.writes == 0

        prof = cProfile.Profile() if profile else None
        lat, cpu = [], []
        for k in range(changes):
            i = 1 + (k * 37) % (n - 1)
            new = f"10.20.{200 + k // 250}.{k % 250 + 1}"
            cache.apply("MODIFIED", node_object(f"node-{i}", [new], [cidr_of(i)]))
            t, c = time.perf_counter(), time.process_time()
            if prof is not None:
                prof.enable()
            agent.run_pass({"node"})
            if prof is not None:
                prof.disable()
            lat.append(time.perf_counter() - t)
            cpu.append(time.process_time() - c)
            assert agent.status.last_pass is not None
            assert agent.status.last_pass.writes >= 1

        # the stages of a pass, each on its own
        v = agent.view(cache.snapshot())
        cluster = v.cluster
        target = Target.for_node("node-0")
        want = desired_routes(cluster, target)
        gws = list(dict.fromkeys(gw for r in want for gw in r.via))
        found = backend.routes()

        def adjacency() -> None:
            backend.invalidate()
            backend.adjacency(gws)

        def entries_fresh() -> None:
            backend.invalidate(lookups=False)
            backend.entries()

        def noop_apply() -> None:
            table.apply(diff(want, table.entries()))

        stages = [
            ("view, full (cluster + checks)", timed(lambda: view_again(agent, cache))),
            ("check_cluster", timed(lambda: check_cluster(cluster))),
            ("desired_routes", timed(lambda: desired_routes(cluster, target))),
            ("adjacency (fresh lookups)", timed(adjacency)),
            ("adjacency (reused)", timed(lambda: backend.adjacency(gws))),
            ("drop_offlink (reused)", timed(lambda: drop_offlink(want, backend.adjacency))),
            ("nexthop refs, all tables", timed(table.nl.count_nexthop_refs)),
            ("table read (cached decoding)", timed(entries_fresh)),
            ("table read (uncached)", timed(lambda: list(table.entries()))),
            ("diff of cached entries", timed(lambda: diff(want, backend.entries()))),
            ("diff of InstalledRoutes", timed(lambda: diff(want, found))),
            ("uncached read + diff + no-op apply", timed(noop_apply)),
        ]
        table.close()
        print(f"\n{n:,} nodes ({n - 1:,} routes), namespace {ns}")
        print(f"  {'first pass (install)':32}{ms(install)}")
        print(f"  {'no-op resync pass (median of 5)':32}{ms(noop)}")
        print(f"  {'change pass p50':32}{ms(statistics.median(lat))}")
        print(f"  {'change pass max':32}{ms(max(lat))}   ({changes} changes)")
        print(f"  {'change pass CPU, mean':32}{ms(statistics.mean(cpu))}")
        for name, s in stages:
            print(f"    {name:30}{ms(s)}")
        if prof is not None:
            pstats.Stats(prof).sort_stats("tottime").print_stats(25)
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False, capture_output=True)
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="5000,10000")
    p.add_argument("--changes", type=int, default=30)
    p.add_argument("--profile", action="store_true", help="cProfile the change passes")
    args = p.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench/pass.py makes a network namespace: run it as root")
    for n in (int(s) for s in args.sizes.split(",")):
        bench(n, args.changes, args.profile)


if __name__ == "__main__":
    main()
