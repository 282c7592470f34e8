"""Benchmark: `nosdn check` and `nosdn routes --router -o json` on 5,000 and 50,000 nodes.

Each figure is a whole command (process start, YAML load, checks, planning, output), the
median of 3 runs, next to a baseline run side by side: a bare Python process that only
loads the same YAML with the parser nosdn uses (the floor for any tool reading this file).
Targets (issue 2): each command under 3 s at 50,000 nodes, and the 50,000 / 5,000 time ratio
at most 12 (10 is linear).

    .venv/bin/python bench/plan.py [--sizes 5000,50000] [--runs 3]
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def inventory(n: int) -> str:
    lines = [
        "clusterCIDRs: [10.0.0.0/8, fd00:10::/48]",
        "serviceCIDRs: [172.20.0.0/16]",
        "serviceVia: [node-0, node-1]",
        "nodes:",
    ]
    base4 = int(ipaddress.IPv4Address("100.64.0.0"))
    for i in range(n):
        lines += [
            f"  - name: node-{i}",
            f"    ips: [{ipaddress.IPv4Address(base4 + i + 1)}, fd00:64::{i + 1:x}]",
            f"    podCIDRs: [10.{i >> 8}.{i & 255}.0/24, fd00:10:0:{i:x}::/64]",
        ]
    return "\n".join(lines) + "\n"


# Installed packages have their bytecode compiled; a shell with PYTHONDONTWRITEBYTECODE=1 would
# make every run recompile nosdn (~0.1 s). Unset it, and warm up once before timing.
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def timed(cmd: list[str], runs: int) -> float:
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env=ENV)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env=ENV)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="5000,50000")
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    nosdn = [sys.executable, "-m", "nosdn"]
    rows = []
    with tempfile.TemporaryDirectory() as d:
        for n in sizes:
            f = Path(d) / f"inv-{n}.yaml"
            f.write_text(inventory(n))
            base = timed(
                [sys.executable, "-c", f"import yaml_rs; yaml_rs.loads(open({str(f)!r}).read())"],
                args.runs,
            )
            check = timed([*nosdn, "check", "-f", str(f)], args.runs)
            routes = timed([*nosdn, "routes", "-f", str(f), "--router", "-o", "json"], args.runs)
            rows.append((n, base, check, routes))
    print(
        f"{'nodes':>7} {'yaml load only':>15} {'nosdn check':>12} {'routes -o json':>15}"
        f" {'check+routes':>13} {'vs yaml load':>13}"
    )
    for n, base, check, routes in rows:
        print(
            f"{n:>7} {base:>14.2f}s {check:>11.2f}s {routes:>14.2f}s {check + routes:>12.2f}s"
            f" {(check + routes) / base:>12.1f}x"
        )
    ok = True
    if len(rows) >= 2:
        small, big = rows[0], rows[-1]
        ratio = (big[2] + big[3]) / (small[2] + small[3])
        print(
            f"ratio {big[0]}/{small[0]} nodes (check+routes): {ratio:.1f} "
            f"(target <= {12 * big[0] / small[0] / 10:.0f}; near linear is {big[0] / small[0]:.0f})"
        )
        ok = ratio <= 12 * big[0] / small[0] / 10
    worst = max(r[2] + r[3] for r in rows if r[0] == max(sizes))
    print(f"largest ({max(sizes)} nodes) check+routes: {worst:.2f}s (target < 3 s)")
    return 0 if ok and worst < 3 else 1


if __name__ == "__main__":
    sys.exit(main())
