"""Benchmark: `nosdn apply` against `ip -batch`, for 1,000, 10,000 and 50,000 peer routes (root).

Every peer node has its own gateway address (distinct gateways: the case where plain gateway
routes are quadratic in the kernel). Each command runs in a FRESH namespace (a bridge carrying
10.0.0.1/16, which is node-0's address, so nosdn finds its node by itself). The contenders:

- ``nosdn apply``: the whole command (process start, inventory load and checks, plan,
  adjacency lookups, table read, writes), run as ``ip netns exec NS python -m nosdn`` with
  ``PYTHONPATH`` at this checkout's ``src/``; then, in the same namespace, a no-op re-apply
  (``nosdn apply`` again on the installed table: must make zero writes); peak RSS of both
  (``wait4`` rusage);
- with ``--compare PATH``, the same two commands from another checkout (``PYTHONPATH=PATH/src``,
  the same interpreter): the "before" column beside this checkout's "after";
- ``ip -batch`` of plain ``route add DST via GW dev br0`` lines (the post's approach at its
  best: one process, a file made beforehand);
- ``ip -batch`` of ``nexthop add`` + ``route add DST nhid N`` lines (same, with nexthop objects).

Fairness. The kernel's routing lock (and the plain routes' hash) is shared by all namespaces,
and deleting a namespace that still holds a big table of nexthop routes leaves the kernel
tearing it down in the background while holding that lock: whichever command ran next paid for
it (bench/README.md has the figures). So:

- the runs are interleaved: run i runs every contender once (a nosdn's cold apply and its
  no-op re-apply together, in one namespace), in an order rotated by i, so no contender always
  comes first;
- before a namespace is deleted its table is emptied in the foreground: one ``ip -force -batch``
  of ``route del DST`` lines, then ``ip nexthop flush`` (``ip route flush`` refuses nexthop
  routes with EINVAL on iproute2 6.1, and ``ip nexthop flush`` with the routes still on them
  grows much faster than linearly), and the table is checked empty;
- before each timed command the kernel must have settled: a probe (``ip -batch`` adding 100
  device routes in a scratch namespace kept for the whole run, then deleting them) is timed
  every 0.1 s until two in a row take no longer than 1.5 times its settled time (the median
  of 7 probes at the start) or that time plus 3 ms, whichever is larger; at most
  ``--settle-max`` seconds (the report counts the waits that hit that bound). Right after
  deleting an unflushed big namespace the probe is many times its settled time; after a flush
  it is back at once;
- each figure is the median of ``--runs`` runs with their spread (min-max); ratios are taken
  from the medians.

Targets: cold apply of 10,000 routes at least 4x faster than plain ``ip -batch`` and within 2x
of ``ip -batch`` with nexthops; 50,000 routes under 2 s; no-op re-apply of 10,000 under 0.3 s
with zero writes; peak RSS under 80 MB at 10,000 and under 160 MB at 50,000. They are checked
on this checkout's nosdn ("after"). The kernel shares route hashing and its routing lock across
namespaces: run this on a quiet machine (it warns when other namespaces exist).

    sudo .venv/bin/python bench/apply.py [--sizes 1000,10000,50000] [--runs 3]
                                         [--skip-plain-above N] [--compare PATH]

To compare with an older commit, check it out beside this one and name it:

    git worktree add /tmp/nosdn-before <commit> && sudo .venv/bin/python bench/apply.py \\
        --compare /tmp/nosdn-before
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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

HOST_IP = "10.0.0.1"
BASE_GW = int(ipaddress.IPv4Address(HOST_IP))
BASE_POD = int(ipaddress.IPv4Address("100.64.0.0"))
#: This checkout's source tree: the "after" nosdn.
HERE_SRC = Path(__file__).resolve().parent.parent / "src"
NS_PREFIX = f"nosdn-bench-{os.getpid()}"


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


def delete_batch(n: int) -> str:
    return "".join(f"route del {pod}\n" for _, _, pod in peers(n))


def sh(*cmd: str) -> None:
    subprocess.run(cmd, check=True, capture_output=True)


@contextmanager
def namespace(tag: str) -> Iterator[str]:
    """A fresh namespace with the host's bridge, named uniquely; deleted whatever happens."""
    name = f"{NS_PREFIX}-{tag}-{secrets.token_hex(3)}"
    try:
        sh("ip", "netns", "add", name)
        sh("ip", "-n", name, "link", "set", "lo", "up")
        sh("ip", "-n", name, "link", "add", "br0", "type", "bridge")
        sh("ip", "-n", name, "link", "set", "br0", "up")
        sh("ip", "-n", name, "addr", "add", f"{HOST_IP}/16", "dev", "br0")
        yield name
    finally:
        subprocess.run(["ip", "netns", "delete", name], capture_output=True, check=False)


@dataclass
class Run:
    seconds: float
    cpu: float  # user + system, of the process (and its children, none here)
    rss_mb: float
    stdout: str


#: Installed packages run from compiled bytecode (pip writes it); a shell that sets
#: PYTHONDONTWRITEBYTECODE would make every run recompile nosdn and its dependencies.
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def timed_rss(argv: list[str], env: dict[str, str] | None = None) -> Run:
    """Wall time and peak RSS of one process: output goes to files (no pipe to drain), and
    the child is reaped with ``wait4`` so its own rusage is known."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as errs:
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=out, stderr=errs, env=env or ENV)
        _pid, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        errs.seek(0)
        if proc.returncode != 0:
            tail = errs.read().decode()[-800:]
            raise RuntimeError(f"{argv[:6]}... exited {proc.returncode}: {tail}")
        cpu = usage.ru_utime + usage.ru_stime
        return Run(seconds, cpu, usage.ru_maxrss / 1024, out.read().decode())


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


@dataclass
class Files:
    n: int
    inv: Path
    plain: Path
    nh: Path
    delete: Path

    @classmethod
    def write(cls, n: int, work: Path) -> Files:
        files = cls(
            n,
            work / f"inv-{n}.yaml",
            work / f"plain-{n}.batch",
            work / f"nh-{n}.batch",
            work / f"del-{n}.batch",
        )
        files.inv.write_text(inventory(n))
        files.plain.write_text(plain_batch(n))
        files.nh.write_text(nexthop_batch(n))
        files.delete.write_text(delete_batch(n))
        return files


def flush(ns: str, files: Files) -> None:
    """Empty a namespace's table in the foreground, so that deleting it leaves the kernel
    nothing big to tear down: the routes by destination, then the (unused) nexthops."""
    subprocess.run(
        ["ip", "-n", ns, "-force", "-batch", str(files.delete)], capture_output=True, check=False
    )
    subprocess.run(["ip", "-n", ns, "nexthop", "flush"], capture_output=True, check=False)
    left = count_routes(ns)
    if left:
        raise RuntimeError(f"{left} route(s) left in {ns} after the flush")


class Settler:
    """Waits, before each timed command, until a small probe runs at its settled speed."""

    def __init__(self, work: Path, ns: str, bound: float) -> None:
        self.ns = ns
        self.bound = bound
        self.add = work / "probe-add.batch"
        self.delete = work / "probe-del.batch"
        dsts = [f"192.168.{i // 256}.{i % 256}/32" for i in range(100)]
        self.add.write_text("".join(f"route add {d} dev br0\n" for d in dsts))
        self.delete.write_text("".join(f"route del {d} dev br0\n" for d in dsts))
        self.waits: list[float] = []
        self.bound_hit = 0
        self.settled = statistics.median(self.probe() for _ in range(7))
        self.limit = max(1.5 * self.settled, self.settled + 0.003)

    def probe(self) -> float:
        t0 = time.perf_counter()
        sh("ip", "-n", self.ns, "-batch", str(self.add))
        seconds = time.perf_counter() - t0
        sh("ip", "-n", self.ns, "-batch", str(self.delete))
        return seconds

    def wait(self) -> None:
        t0 = time.perf_counter()
        good = 0
        while good < 2:
            if time.perf_counter() - t0 > self.bound:
                self.bound_hit += 1
                break
            good = good + 1 if self.probe() <= self.limit else 0
            if good < 2:
                time.sleep(0.1)
        self.waits.append(time.perf_counter() - t0)


@dataclass
class Nosdn:
    """One checkout's nosdn, run as ``python -m nosdn`` from its ``src/`` tree."""

    label: str
    src: Path
    env: dict[str, str] = field(init=False)

    def __post_init__(self) -> None:
        self.env = {**ENV, "PYTHONPATH": str(self.src)}
        where = subprocess.run(
            [sys.executable, "-c", "import nosdn; print(nosdn.__file__)"],
            env=self.env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        if not Path(where).resolve().is_relative_to(self.src.resolve()):
            raise RuntimeError(f"{self.label}: nosdn imports from {where}, not {self.src}")

    def argv(self, ns: str, inv: Path) -> list[str]:
        return ["ip", "netns", "exec", ns, sys.executable, "-m", "nosdn", "apply", "-f", str(inv)]

    def run(self, files: Files, settler: Settler) -> dict[str, Run]:
        """A cold apply in a fresh namespace, then a no-op re-apply on the table it made."""
        n = files.n
        with namespace(self.label) as ns:
            try:
                settler.wait()
                cold = timed_rss(self.argv(ns, files.inv), self.env)
                got = count_routes(ns)
                if writes_of(cold.stdout) < n or got != n:
                    raise RuntimeError(f"{self.label}: nosdn apply installed {got} of {n} routes")
                settler.wait()
                noop = timed_rss(self.argv(ns, files.inv), self.env)
                if writes_of(noop.stdout) != 0:
                    raise RuntimeError(f"{self.label}: no-op re-apply wrote: {noop.stdout[-200:]}")
            finally:
                flush(ns, files)
        return {f"{self.label}:cold": cold, f"{self.label}:noop": noop}


def ip_batch(key: str, pick: Callable[[Files], Path]) -> Callable[[Files, Settler], dict[str, Run]]:
    def run(files: Files, settler: Settler) -> dict[str, Run]:
        with namespace(key) as ns:
            try:
                settler.wait()
                r = timed_rss(["ip", "-n", ns, "-batch", str(pick(files))])
                got = count_routes(ns)
                if got != files.n:
                    raise RuntimeError(f"{key}: ip -batch installed {got} of {files.n}")
            finally:
                flush(ns, files)
        return {key: r}

    return run


@dataclass
class Figure:
    runs: list[Run]

    @property
    def median(self) -> float:
        return statistics.median(r.seconds for r in self.runs)

    @property
    def cpu(self) -> float:
        return statistics.median(r.cpu for r in self.runs)

    @property
    def rss(self) -> float:
        return max(r.rss_mb for r in self.runs)

    def text(self) -> str:
        lo = min(r.seconds for r in self.runs)
        hi = max(r.seconds for r in self.runs)
        if len(self.runs) == 1:
            return f"{self.median:.3f} s (1 run)"
        return f"{self.median:.3f} s ({lo:.3f}-{hi:.3f})"


def bench_size(
    n: int, runs: int, *, plain: bool, nosdns: list[Nosdn], settler: Settler, work: Path
) -> dict[str, Figure]:
    files = Files.write(n, work)
    contenders: list[tuple[str, Callable[[Files, Settler], dict[str, Run]]]] = [
        (x.label, x.run) for x in nosdns
    ]
    contenders.append(("ip_nh", ip_batch("ip_nh", lambda f: f.nh)))
    if plain:
        contenders.append(("ip_plain", ip_batch("ip_plain", lambda f: f.plain)))
    got: dict[str, list[Run]] = {}
    for i in range(runs):
        k = i % len(contenders)
        order = contenders[k:] + contenders[:k]
        # Plain ip -batch is quadratic: above 10,000 it runs once.
        if n > 10_000 and i > 0:
            order = [c for c in order if c[0] != "ip_plain"]
        print(f"  {n:,} routes, run {i + 1}/{runs}: {', '.join(c[0] for c in order)}", flush=True)
        for _key, once in order:
            for k2, r in once(files, settler).items():
                got.setdefault(k2, []).append(r)
    return {k: Figure(v) for k, v in got.items()}


def ratio(num: Figure | None, den: Figure | None) -> float:
    if num is None or den is None:
        return math.nan
    return num.median / den.median


def times(x: float) -> str:
    return "-" if math.isnan(x) else f"{x:.2f}x"


def cells(figs: dict[str, Figure], lb: str) -> list[tuple[str, str]]:
    """The figures of one nosdn column at one size."""
    cold, noop = figs[f"{lb}:cold"], figs[f"{lb}:noop"]
    return [
        ("nosdn apply (cold)", cold.text()),
        ("no-op re-apply (0 writes)", noop.text()),
        ("CPU, cold / no-op (median)", f"{cold.cpu:.3f} / {noop.cpu:.3f} s"),
        ("peak RSS (cold or no-op)", f"{max(cold.rss, noop.rss):.1f} MB"),
        ("ip -batch plain / nosdn", times(ratio(figs.get("ip_plain"), cold))),
        ("nosdn / ip -batch nexthops", times(ratio(cold, figs.get("ip_nh")))),
    ]


def report(rows: dict[int, dict[str, Figure]], nosdns: list[Nosdn], runs: int) -> None:
    labels = [x.label for x in nosdns]
    w0, w1 = 30, 28
    for n, figs in rows.items():
        print(f"\n{n:,} routes: median (min-max) of {runs} interleaved run(s)")
        for key, what in (("ip_plain", "ip -batch plain `via`"), ("ip_nh", "ip -batch nexthops")):
            if key in figs:
                print(f"  {what:<{w0}}{figs[key].text()}")
        print(f"  {'':<{w0}}" + "".join(f"{lb:<{w1}}" for lb in labels))
        columns = [cells(figs, lb) for lb in labels]
        for j, (what, _) in enumerate(columns[0]):
            print(f"  {what:<{w0}}" + "".join(f"{col[j][1]:<{w1}}" for col in columns))


def targets(rows: dict[int, dict[str, Figure]], label: str) -> list[tuple[str, bool | None]]:
    def fig(n: int, key: str) -> Figure | None:
        return rows.get(n, {}).get(key)

    def peak(n: int) -> float | None:
        c, o = fig(n, f"{label}:cold"), fig(n, f"{label}:noop")
        return None if c is None or o is None else max(c.rss, o.rss)

    def check(value: float | None, ok: Callable[[float], bool]) -> bool | None:
        return None if value is None or math.isnan(value) else ok(value)

    def median(n: int, key: str) -> float | None:
        f = fig(n, key)
        return None if f is None else f.median

    cold10 = fig(10_000, f"{label}:cold")
    return [
        (
            "cold 10,000: >= 4x faster than ip -batch plain",
            check(ratio(fig(10_000, "ip_plain"), cold10), lambda v: v >= 4),
        ),
        (
            "cold 10,000: within 2x of ip -batch with nexthops",
            check(ratio(cold10, fig(10_000, "ip_nh")), lambda v: v <= 2),
        ),
        ("cold 50,000 under 2 s", check(median(50_000, f"{label}:cold"), lambda v: v < 2)),
        (
            "no-op 10,000 under 0.3 s (zero writes checked)",
            check(median(10_000, f"{label}:noop"), lambda v: v < 0.3),
        ),
        ("peak RSS under 80 MB at 10,000", check(peak(10_000), lambda v: v < 80)),
        ("peak RSS under 160 MB at 50,000", check(peak(50_000), lambda v: v < 160)),
    ]


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--sizes", default="1000,10000,50000")
    ap.add_argument("--runs", type=int, default=3, help="median of this many (1 for plain 50k)")
    ap.add_argument(
        "--skip-plain-above",
        type=int,
        default=10**9,
        help="skip the plain ip -batch baseline above this size (it takes ~55 s at 50,000)",
    )
    ap.add_argument(
        "--compare",
        metavar="PATH",
        type=Path,
        help="also run the nosdn of the checkout at PATH (its src/ tree): the 'before' column",
    )
    ap.add_argument(
        "--settle-max",
        type=float,
        default=10.0,
        help="longest wait, in seconds, for the kernel to settle before a timed command",
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
    nosdns = [Nosdn("after" if args.compare else "nosdn", HERE_SRC)]
    if args.compare:
        src = args.compare / "src"
        if not (src / "nosdn" / "__main__.py").is_file():
            print(f"--compare {args.compare}: no src/nosdn/__main__.py there", file=sys.stderr)
            return 2
        nosdns.append(Nosdn("before", src))
    for x in nosdns:
        print(f"{x.label}: PYTHONPATH={x.src} {sys.executable} -m nosdn")
    rows: dict[int, dict[str, Figure]] = {}
    with tempfile.TemporaryDirectory() as d, namespace("probe") as probe_ns:
        work = Path(d)
        settler = Settler(work, probe_ns, args.settle_max)
        print(
            f"settle probe: {settler.settled * 1000:.1f} ms settled, "
            f"{settler.limit * 1000:.1f} ms limit"
        )
        # Warm-up, untimed: bytecode compiled and files in the page cache for every checkout.
        warm = Files.write(100, work)
        for x in nosdns:
            x.run(warm, settler)
        for n in sizes:
            rows[n] = bench_size(
                n,
                args.runs,
                plain=n <= args.skip_plain_above,
                nosdns=nosdns,
                settler=settler,
                work=work,
            )
    report(rows, nosdns, args.runs)
    waits = sorted(settler.waits)
    print(
        f"\nsettle waits before {len(waits)} timed commands: median "
        f"{statistics.median(waits):.2f} s, max {waits[-1]:.2f} s; "
        f"bound ({args.settle_max:g} s) hit {settler.bound_hit} time(s)"
    )
    print()
    ok_all = True
    checks = {x.label: targets(rows, x.label) for x in nosdns}
    mark = {True: "met", False: "MISSED", None: "not measured"}
    for j, (what, ok) in enumerate(checks[nosdns[0].label]):
        extra = "".join(f"  ({x.label}: {mark[checks[x.label][j][1]]})" for x in nosdns[1:])
        print(f"{mark[ok]:<13} {what}{extra}")
        ok_all = ok_all and ok is not False
    return 0 if ok_all else 1


if __name__ == "__main__":
    sys.exit(main())
