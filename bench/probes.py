"""Benchmark: the datapath probes' cost at 5,000 nodes, probing on beside probing off (root).

Two fresh network namespaces made here (removed at the end): ``node`` is this agent's node
(its pod bridge ``cni0`` with 10.100.0.1/24, a veth to ``peers``, one route to every peer
subnet through it), ``peers`` holds the 4,999 peers' pod bridge addresses (10.1xx.y.1, one per
peer pod subnet, on its loopback) and answers their echoes in the kernel. The `Prober` runs as
in the agent, in its own thread of this process with its sockets in ``node``, over the cluster
of 5,000 NodeInfos (targets built, per-peer series published every interval).

Figures, each measured for ``--seconds`` (default 60) in the same run: this process's CPU time
(every thread, `time.process_time`) with the prober running beside the same period without it
(the floor: an idle process), and probe packets sent per second, after the prober's first
interval (which builds every target; printed apart: later ones rebuild changed nodes only).
First at the defaults (``--probe-interval 10``, ``--probe-batch 64``: every peer once every
~13 minutes at 5,000 nodes), then every peer every interval (``--batch`` the whole cluster:
the worst a user can ask for). Target (issue 16): under 1% of one core at the defaults.

    sudo .venv/bin/python bench/probes.py [--nodes 5000] [--seconds 60]
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import secrets
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from nosdn.agent.metrics import AgentMetrics
from nosdn.agent.probes import Pinger, Prober
from nosdn.model import Node
from nosdn.sources.nodes import NodeInfo


def subnet(i: int) -> ipaddress.IPv4Network:
    return ipaddress.IPv4Network(f"10.{100 + (i >> 8)}.{i & 255}.0/24")


def sh(*argv: str, stdin: str | None = None) -> None:
    subprocess.run(argv, input=stdin, text=True, check=True, capture_output=True)


@contextmanager
def namespaces(n: int) -> Iterator[tuple[str, str]]:
    tag = secrets.token_hex(3)
    node, peers = f"nosdn-bp-{tag}-node", f"nosdn-bp-{tag}-peers"
    try:
        sh("ip", "netns", "add", node)
        sh("ip", "netns", "add", peers)
        sh("ip", "-n", node, "link", "add", "eth0", "type", "veth", "peer", "eth0", "netns", peers)
        sh(
            "ip", "-n", node, "-batch", "-",
            stdin="link set lo up\nlink set eth0 up\naddr add 10.20.0.1/30 dev eth0\n"
            "link add cni0 type bridge\nlink set cni0 up\naddr add 10.100.0.1/24 dev cni0\n"
            "route add 10.96.0.0/11 via 10.20.0.2\n",
        )  # fmt: skip
        lines = ["link set lo up", "link set eth0 up", "addr add 10.20.0.2/30 dev eth0"]
        lines += [f"addr add {subnet(i)[1]}/32 dev lo" for i in range(1, n)]
        lines.append("route add 10.100.0.0/24 via 10.20.0.1")
        sh("ip", "-n", peers, "-batch", "-", stdin="\n".join(lines) + "\n")
        yield node, peers
    finally:
        for ns in (node, peers):
            subprocess.run(["ip", "netns", "del", ns], check=False, capture_output=True)


def cluster(n: int) -> list[NodeInfo]:
    return [
        NodeInfo(
            f"node{i}",
            Node(f"node{i}", (ipaddress.ip_address(f"10.20.{i >> 8}.{i & 255}"),), (subnet(i),)),
        )
        for i in range(n)
    ]


def first_step(prober: Prober) -> float:
    """CPU seconds of the prober's first interval (every target built from 5,000 nodes)."""
    c0 = time.process_time()
    prober.step()
    return time.process_time() - c0


def cpu_over(seconds: float, prober: Prober | None) -> tuple[float, int]:
    """This process's CPU seconds over ``seconds``, and the probes sent, with ``prober``
    running its thread (started and stopped here) or nothing."""
    sent0 = prober.pinger.sent if prober is not None else 0
    c0 = time.process_time()
    if prober is not None:
        prober.start()
    time.sleep(seconds)
    if prober is not None:
        prober._stop.set()
        assert prober._thread is not None
        prober._thread.join()
        prober._stop = threading.Event()
    cpu = time.process_time() - c0
    return cpu, (prober.pinger.sent - sent0) if prober is not None else 0


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--nodes", type=int, default=5000)
    p.add_argument("--seconds", type=float, default=60)
    args = p.parse_args()
    logging.getLogger("nosdn").setLevel(logging.ERROR)  # a lost probe would log a line
    n, secs = args.nodes, args.seconds
    nodes = cluster(n)
    with namespaces(n) as (node_ns, _peers):
        runs = [
            ("defaults (interval 10 s, batch 64)", 10.0, 64),
            (f"every peer every 10 s (batch {n - 1})", 10.0, n - 1),
        ]
        print(
            f"datapath probes, {n} nodes, {secs:g} s per figure (CPU: every thread of this process)"
        )
        for title, interval, batch in runs:
            m = AgentMetrics()
            pr = Prober(
                lambda: nodes, "node0", m, pinger=Pinger(node_ns), interval=interval, batch=batch
            )
            first = first_step(pr)
            off, _ = cpu_over(secs, None)
            on, sent = cpu_over(secs, pr)
            answered = (
                m.registry.get_sample_value("nosdn_probes_total", {"result": "answered"}) or 0
            )
            reach = m.registry.get_sample_value("nosdn_probe_peers", {"state": "reachable"}) or 0
            per_min_on, per_min_off = on / secs * 60, off / secs * 60
            core = (on - off) / secs * 100
            print(
                f"  {title}: probing on {per_min_on * 1000:.0f} ms CPU/min, "
                f"off {per_min_off * 1000:.0f} ms/min "
                f"(+{core:.3f}% of one core; target < 1%), {sent / secs:.1f} probes/s sent, "
                f"{answered:.0f} answered, {reach:.0f} peers reachable; its first interval "
                f"(targets from {n} nodes) {first * 1000:.0f} ms"
            )
            pr.pinger.close()


if __name__ == "__main__":
    main()
