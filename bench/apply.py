"""Benchmark: `nosdn apply` against `ip -batch`, for 1,000, 10,000 and 50,000 peer routes (root).

Every peer node has its own gateway address (distinct gateways: the case where plain gateway
routes are quadratic in the kernel). Side by side in one run, each in a FRESH namespace (a
bridge carrying 10.0.0.1/16, which is node-0's address, so nosdn finds its node by itself):

- ``nosdn apply``: the whole command (process start, inventory load and checks, plan,
  adjacency lookups, table read, writes), run with ``ip netns exec``;
- ``ip -batch`` of plain ``route add DST via GW dev br0`` lines (the post's approach at its
  best: one process, a file made beforehand);
- ``ip -batch`` of ``nexthop add`` + ``route add DST nhid N`` lines (same, with nexthop objects);
- a no-op re-apply (``nosdn apply`` again on the installed table: must make zero writes);
- peak RSS of ``nosdn apply`` (``wait4`` rusage).

Targets (issue 3): cold 10,000 at least 5x faster than plain ip -batch and within 2x of ip -batch
with nexthops; 50,000 under 2 s; no-op 10,000 under 0.3 s with zero writes; RSS under 80 MB.
The kernel shares route hashing and its routing lock across namespaces: run this on a quiet
machine (it warns when other namespaces exist).

    sudo .venv/bin/python bench/apply.py [--sizes 1000,10000,50000] [--runs 3]
                                         [--skip-plain-above N]
"""

from __future__ import annotations

import argparse
import ipaddress
import math
import os
import re
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

HOST_IP = "10.0.0.1"
BASE_GW = int(ipaddress.IPv4Address(HOST_IP))
BASE_POD = int(ipaddress.IPv4Address("100.64.0.0"))
NOSDN = [str(Path(sys.executable).with_name("nosdn"))]


def peers(n: int) -> list[tuple[str, str, str]]:
    """(name, gateway, pod /26) of n peers; node-0 (this host) is not among them."""
    out = []
    for i in range(1, n + 1):
        gw = ipaddress.IPv4Address(BASE_GW + i)
        pod = ipaddress.IPv4Address(BASE_POD + 64 * i)
        out.append((f"node-{i}", str(gw), f"{pod}/26"))
    return out


def inventory(n: int) -> str:
    lines = [
        "clusterCIDRs: [100.64.0.0/10]",
        "nodeCIDRMaskSize: 26",
        "nodes:",
        f"  - {{name: node-0, ip: {HOST_IP}, podCIDRs: [100.64.0.0/26]}}",
    ]
    lines += [f"  - {{name: {name}, ip: {gw}, podCIDRs: [{pod}]}}" for name, gw, pod in peers(n)]
    return "\n".join(lines) + "\n"


def plain_batch(n: int) -> str:
    return "".join(f"route add {pod} via {gw} dev br0\n" for _, gw, pod in peers(n))


def nexthop_batch(n: int) -> str:
    ps = peers(n)
    nhs = "".join(f"nexthop add id {i} via {gw} dev br0\n" for i, (_, gw, _) in enumerate(ps, 1))
    rts = "".join(f"route add {pod} nhid {i}\n" for i, (_, _, pod) in enumerate(ps, 1))
    return nhs + rts


def sh(*cmd: str) -> None:
    subprocess.run(cmd, check=True, capture_output=True)


class Namespace:
    """A fresh namespace with the host's bridge; deleted on exit whatever happens."""

    def __init__(self) -> None:
        self.name = f"nosdn-bench-{secrets.token_hex(4)}"

    def __enter__(self) -> str:
        sh("ip", "netns", "add", self.name)
        sh("ip", "-n", self.name, "link", "set", "lo", "up")
        sh("ip", "-n", self.name, "link", "add", "br0", "type", "bridge")
        sh("ip", "-n", self.name, "link", "set", "br0", "up")
        sh("ip", "-n", self.name, "addr", "add", f"{HOST_IP}/16", "dev", "br0")
        return self.name

    def __exit__(self, *exc: object) -> None:
        subprocess.run(["ip", "netns", "delete", self.name], capture_output=True, check=False)


@dataclass
class Run:
    seconds: float
    rss_mb: float
    stdout: str


#: Installed packages run from compiled bytecode (pip writes it); a shell that sets
#: PYTHONDONTWRITEBYTECODE would make every run recompile nosdn and its dependencies.
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def timed_rss(argv: list[str]) -> Run:
    """Wall time and peak RSS of one process: output goes to files (no pipe to drain), and
    the child is reaped with ``wait4`` so its own rusage is known."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as errs:
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=out, stderr=errs, env=ENV)
        _pid, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        errs.seek(0)
        if proc.returncode != 0:
            tail = errs.read().decode()[-800:]
            raise RuntimeError(f"{argv[:6]}... exited {proc.returncode}: {tail}")
        return Run(seconds, usage.ru_maxrss / 1024, out.read().decode())


def median_of(runs: int, once: Callable[[], Run]) -> Run:
    results = [once() for _ in range(runs)]
    results.sort(key=lambda r: r.seconds)
    mid = results[len(results) // 2]
    return Run(mid.seconds, max(r.rss_mb for r in results), mid.stdout)


def writes_of(stdout: str) -> int:
    m = re.search(r"; (\d+) write\(s\)", stdout)
    if m is None:
        raise RuntimeError(f"no write count in nosdn's output: {stdout[-300:]!r}")
    return int(m.group(1))


def count_routes(ns: str) -> int:
    out = subprocess.run(
        ["ip", "-n", ns, "-4", "route", "show"], capture_output=True, text=True, check=True
    ).stdout
    return sum(1 for ln in out.splitlines() if ln.startswith("100."))


def bench_size(n: int, runs: int, plain: bool, work: Path) -> dict[str, float]:
    inv = work / f"inv-{n}.yaml"
    inv.write_text(inventory(n))
    plain_file = work / f"plain-{n}.batch"
    plain_file.write_text(plain_batch(n))
    nh_file = work / f"nh-{n}.batch"
    nh_file.write_text(nexthop_batch(n))
    row: dict[str, float] = {"n": n}

    def nosdn_cold() -> Run:
        with Namespace() as ns:
            cold = timed_rss(["ip", "netns", "exec", ns, *NOSDN, "apply", "-f", str(inv)])
            if writes_of(cold.stdout) < n or count_routes(ns) != n:
                raise RuntimeError(f"nosdn apply installed {count_routes(ns)} of {n} routes")
            noop = timed_rss(["ip", "netns", "exec", ns, *NOSDN, "apply", "-f", str(inv)])
            if writes_of(noop.stdout) != 0:
                raise RuntimeError(f"no-op re-apply wrote: {noop.stdout[-200:]}")
            noops.append(noop)
            return cold

    def ip_batch(path: Path) -> Callable[[], Run]:
        def once() -> Run:
            with Namespace() as ns:
                r = timed_rss(["ip", "-n", ns, "-batch", str(path)])
                if count_routes(ns) != n:
                    raise RuntimeError(f"ip -batch installed {count_routes(ns)} of {n}")
                return r

        return once

    noops: list[Run] = []
    cold = median_of(runs, nosdn_cold)
    row["nosdn"] = cold.seconds
    row["noop"] = statistics.median(r.seconds for r in noops)
    row["rss"] = max(cold.rss_mb, *(r.rss_mb for r in noops))
    row["ip_nh"] = median_of(runs, ip_batch(nh_file)).seconds
    plain_runs = runs if n <= 10_000 else 1
    row["ip_plain"] = median_of(plain_runs, ip_batch(plain_file)).seconds if plain else math.nan
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1000,10000,50000")
    ap.add_argument("--runs", type=int, default=3, help="median of this many (1 for plain 50k)")
    ap.add_argument(
        "--skip-plain-above",
        type=int,
        default=10**9,
        help="skip the plain ip -batch baseline above this size (it takes ~55 s at 50,000)",
    )
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench/apply.py needs root (network namespaces)", file=sys.stderr)
        return 2
    others = subprocess.run(
        ["ip", "netns", "list"], capture_output=True, text=True, check=False
    ).stdout
    if others.strip():
        print(
            f"warning: {len(others.splitlines())} other namespace(s) exist; the kernel shares "
            "route hashing and its routing lock across namespaces, figures may be noisy\n"
        )
    sizes = [int(s) for s in args.sizes.split(",")]
    subprocess.run([*NOSDN, "--help"], env=ENV, check=True, capture_output=True)  # warm caches
    rows = []
    with tempfile.TemporaryDirectory() as d:
        for n in sizes:
            rows.append(bench_size(n, args.runs, n <= args.skip_plain_above, Path(d)))
    hdr = (
        f"{'routes':>7} {'nosdn apply':>12} {'ip-batch plain':>15} {'ip-batch nh':>12} "
        f"{'plain/nosdn':>12} {'nosdn/nh':>9} {'no-op':>8} {'peak RSS':>9}"
    )
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        print(
            f"{int(r['n']):>7} {r['nosdn']:>11.3f}s {r['ip_plain']:>14.3f}s {r['ip_nh']:>11.3f}s "
            f"{r['ip_plain'] / r['nosdn']:>11.1f}x {r['nosdn'] / r['ip_nh']:>8.2f}x "
            f"{r['noop']:>7.3f}s {r['rss']:>6.1f} MB"
        )
    print()
    by_n = {int(r["n"]): r for r in rows}
    checks: list[tuple[str, bool]] = []
    if 10_000 in by_n:
        r = by_n[10_000]
        checks += [
            ("cold 10,000: >= 5x faster than ip -batch plain", r["ip_plain"] / r["nosdn"] >= 5),
            ("cold 10,000: within 2x of ip -batch with nexthops", r["nosdn"] / r["ip_nh"] <= 2),
            ("no-op 10,000 under 0.3 s (zero writes checked)", r["noop"] < 0.3),
        ]
    if 50_000 in by_n:
        checks.append(("cold 50,000 under 2 s", by_n[50_000]["nosdn"] < 2))
    checks += [(f"peak RSS under 80 MB at {int(r['n']):,}", r["rss"] < 80) for r in rows]
    for label, ok in checks:
        print(f"{'PASS' if ok else 'FAIL'}  {label}")
    return 0 if all(ok for _, ok in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
