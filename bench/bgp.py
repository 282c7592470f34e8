"""Benchmark: the agent's BGP mode in the lab (root), each figure beside a baseline run side by
side: the same lab with the router's static routes rendered by ``nosdn render`` instead.

1. change -> router: a Node's pod subnet changed in the API (a PATCH to the lab's emulator) to
   the new prefix in the router's kernel table (learned over BGP from the node's BIRD, which
   the node's agent reconfigured), p50 / p99 over ``--changes`` changes. Baseline: the static
   path at its fastest, in a lab of the same shape without agents: the inventory changed,
   ``nosdn render --format bird`` run, its file written and ``birdc configure`` on the router,
   to the prefix in the router's kernel table (what ``nosdn lab apply`` does, with no person
   in the loop).
2. start -> reachable: a ``--nodes``-node, 3-segment cluster, from starting every agent
   (``nosdn agent --bgp``; the router already listening) to every node's kernel holding its
   same-segment host routes and the router's kernel every pod subnet; then the external host
   pings every pod (not timed: it proves the routes carry traffic). Baseline: the same lab
   without agents, from running ``nosdn apply`` in every node to the router's BIRD carrying
   the rendered static routes.

Kernel events on the router are timed by a netlink socket of this process opened inside the
router's namespace (`agent.KernelWatch`, BIRD's protocol number 12). Every lab gets a unique
name and a state directory of its own, and is removed at the end.

Targets (issue 14): change p99 under 1 s; 200 nodes reachable under 15 s.

    sudo PYTHONPATH=src .venv/bin/python bench/bgp.py [--changes 50] [--nodes 200] [--api real]
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import yaml

from agent import KernelWatch  # bench/agent.py: the netlink route watcher
from nosdn.lab import Lab, LabSpec, down, up
from nosdn.lab import cluster as live
from nosdn.lab import router as lab_router
from nosdn.lab.lifecycle import apply_routes
from nosdn.lab.netns import run
from nosdn.lab.ping import Probe, run_probes
from nosdn.lab.state import write_atomic

RTPROT_BIRD = 12
MERGE = "application/merge-patch+json"
TIMEOUT = 600.0


def quiet(_: str) -> None:
    pass


@contextmanager
def lab(spec_args: dict[str, object], *, routes: bool) -> Iterator[Lab]:
    name = f"bb-{secrets.token_hex(3)}"
    try:
        yield up(LabSpec(name=name, **spec_args), routes=routes, log=quiet)  # type: ignore[arg-type]
    finally:
        down(name)


def wait(
    pred: Callable[[], bool], what: str, every: float = 0.005, how: Callable[[], str] = str
) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not pred():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out after {TIMEOUT:g} s waiting for {what} ({how()})")
        time.sleep(every)


def on_router(watch: KernelWatch, cidr: str, since: float) -> float:
    """Seconds from ``since`` until ``cidr`` came into the router's kernel table."""
    key = ipaddress.ip_network(cidr).network_address.packed
    wait(lambda: watch.route_at.get(key, 0.0) >= since, f"{cidr} on the router")
    return watch.route_at[key] - since


def changes_bgp(n: int, api: str) -> list[float]:
    """Figure 1 with BGP: node3's pod subnet moved ``n`` times through the API."""
    spec = {"nodes": 3, "segments": 3, "router": "bird", "api": api, "bgp": True}
    spec["pods_per_node"] = 1
    with lab(spec, routes=True) as lb:
        assert lb.topo.router is not None
        api = live.open_api(lb)
        watch = KernelWatch(lb.topo.router.netns, RTPROT_BIRD)
        out = []
        try:
            for k in range(n):
                cidr = f"10.244.{100 + k}.0/24"
                t0 = time.perf_counter()
                api.call(
                    "PATCH",
                    "/api/v1/nodes/node3",
                    {"spec": {"podCIDR": cidr, "podCIDRs": [cidr]}},
                    MERGE,
                )
                out.append(on_router(watch, cidr, t0))
        finally:
            watch.close()
        return out


def changes_static(n: int) -> list[float]:
    """Figure 1's baseline: the inventory changed, re-rendered, ``birdc configure``."""
    spec = {"nodes": 3, "segments": 3, "router": "bird", "pods_per_node": 1}
    with lab(spec, routes=True) as lb:
        assert lb.topo.router is not None
        bird = lab_router.Bird(lb.topo, lb.paths)
        watch = KernelWatch(lb.topo.router.netns, RTPROT_BIRD)
        inv = yaml.safe_load(lb.paths.inventory.read_text())
        out = []
        try:
            for k in range(n):
                cidr = f"10.244.{100 + k}.0/24"
                node = next(x for x in inv["nodes"] if x["name"] == "node3")
                node["podCIDRs"] = [cidr]
                t0 = time.perf_counter()
                write_atomic(lb.paths.inventory, yaml.safe_dump(inv, sort_keys=False))
                write_atomic(bird.routes, lab_router.render_config(lb.paths, "bird"))
                run(["birdc", "-s", str(bird.ctl), "configure"], timeout=30)
                out.append(on_router(watch, cidr, t0))
        finally:
            watch.close()
        return out


def ping_every_pod(lb: Lab) -> tuple[int, int]:
    """The external host pings every pod: (answered, sent)."""
    ext = lb.external()
    todo = [Probe(ext, p, ip) for p in lb.pods() for ip in p.ips]
    res = run_probes(todo, parallel=16, timeout=2)
    return sum(r.ok for r in res), len(res)


def router_missing(lb: Lab) -> set[str]:
    assert lb.topo.router is not None
    want = {d for d, _ in lab_router.wanted_routes(lb.topo)}
    return want - {d for d, _ in lab_router._kernel_routes(lb.topo.router.netns)}


def nodes_have_all(lb: Lab, todo: set[str]) -> bool:
    for node in [n for n in lb.topo.nodes if n.name in todo]:
        if live.kernel_routes(node.netns) == live.wanted_routes(lb.topo, node):
            todo.discard(node.name)
    return not todo


def start_bgp(nodes: int, api: str) -> tuple[float, tuple[int, int]]:
    """Figure 2 with BGP: agents started -> every route in place."""
    spec = {"nodes": nodes, "segments": 3, "router": "bird", "api": api, "bgp": True}
    spec["pods_per_node"] = 1
    with lab(spec, routes=False) as lb:
        lab_router.program(lb.topo, lb.paths, quiet)  # the router listens first
        t0 = time.perf_counter()
        live.start_agents(lb, log=quiet)
        todo = {n.name for n in lb.topo.nodes}
        hosts: list[float] = []

        def done() -> bool:
            if not nodes_have_all(lb, todo):
                return False
            hosts[:] = hosts or [time.perf_counter() - t0]
            return not router_missing(lb)

        # polled every 0.2 s: each look runs `ip route` in the nodes not there yet, and a
        # tighter loop would take the CPU the agents are starting on
        wait(
            done,
            "every route",
            0.2,
            lambda: (
                f"{len(todo)} node(s) without their host routes, "
                f"{len(router_missing(lb))} pod subnet(s) not on the router"
            ),
        )
        took = time.perf_counter() - t0
        sys.stdout.write(f"   (agent --bgp: every node's host routes at {hosts[0]:.1f} s)\n")
        return took, ping_every_pod(lb)


def start_static(nodes: int) -> tuple[float, tuple[int, int]]:
    """Figure 2's baseline: ``nosdn apply`` in every node and the router's static routes."""
    spec = {"nodes": nodes, "segments": 3, "router": "bird", "pods_per_node": 1}
    with lab(spec, routes=False) as lb:
        t0 = time.perf_counter()
        apply_routes(lb, log=quiet)  # waits for the router's kernel table
        took = time.perf_counter() - t0
        return took, ping_every_pod(lb)


def p99(xs: list[float]) -> float:
    return sorted(xs)[max(0, round(0.99 * len(xs)) - 1)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--changes", type=int, default=50, help="0: skip figure 1")
    ap.add_argument("--nodes", type=int, default=200)
    ap.add_argument(
        "--api",
        choices=["emulator", "real"],
        default="emulator",
        help="the lab's API server: kmock, or kube-apiserver on kine (tools/build-kube.sh)",
    )
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench/bgp.py needs root (network namespaces)")
    state = tempfile.mkdtemp(prefix="nosdn-bench-bgp-")
    os.environ["NOSDN_LAB_DIR"] = state
    try:
        figures(args)
    finally:
        shutil.rmtree(state, ignore_errors=True)


def figures(args: argparse.Namespace) -> None:
    w = sys.stdout.write
    if args.changes:
        figure1(args.changes, args.api)
    w(f"2. {args.nodes} nodes on 3 segments: start -> every route in place ({args.api} API)\n")
    tb, pb = start_bgp(args.nodes, args.api)
    ts, ps = start_static(args.nodes)
    w(f"   agent --bgp (BIRD)             {tb:6.1f} s   ext->pod pings {pb[0]}/{pb[1]}\n")
    w(f"   baseline: apply + static routes {ts:6.1f} s   ext->pod pings {ps[0]}/{ps[1]}\n")
    w(f"   ratio bgp/baseline {tb / ts:.2f}  (target < 15 s)\n")


def figure1(n: int, api: str) -> None:
    w = sys.stdout.write
    w(f"1. pod subnet change -> prefix in the router's kernel ({n} changes, {api} API)\n")
    bgp = changes_bgp(n, api)
    static = changes_static(n)
    w(f"   {'':28} {'p50':>8} {'p99':>8}\n")
    for label, xs in (("agent --bgp (BIRD)", bgp), ("baseline: render + configure", static)):
        w(f"   {label:28} {statistics.median(xs) * 1e3:6.0f}ms {p99(xs) * 1e3:6.0f}ms\n")
    w(f"   ratio p99 bgp/baseline {p99(bgp) / p99(static):.2f}  (target p99 < 1000 ms)\n")


if __name__ == "__main__":
    main()
