"""The lab's router: one namespace on every segment, running real routing software with the
config ``nosdn render`` prints for it.

This is the post's first option ("update the router's routing table with a next hop for the
subnet") done for real: the router learns every pod subnet from the rendered static routes,
exports them to its kernel table and forwards between segments; nodes reach pods on other
segments through their default route to it, while their host routes (``nosdn apply``) cover
only same-segment peers — the others are off-link, reported and skipped.

- BIRD 2 (Debian ``bird2``): ``bird.conf`` is a few lines (router id, log, device and kernel
  protocols) that ``include`` the file ``nosdn render --format bird`` printed, unchanged. BIRD
  runs with its control socket, pid file and log in the lab's state directory; ``lab apply``
  re-renders and runs ``birdc configure`` (which withdraws routes that left the file), then
  ``birdc reload out`` on the kernel protocols (configure alone does not put back a route
  someone deleted from the kernel table: BIRD only notices at its next scan).
- FRR (Debian ``frr``): ``zebra`` + ``staticd`` read the file ``nosdn render --format frr``
  printed. FRR drops privileges to its ``frr`` user and insists on its ``frrvty`` group, so its
  files live in ``/run/nosdn/frr/<lab>/`` (owned by ``frr``) rather than in the state directory,
  which may sit where ``frr`` cannot read (a test's tmp directory). ``lab apply`` restarts
  ``staticd`` with the new file.

The render runs as a subprocess of this very nosdn, exactly as an operator would run it, so the
lab proves the CLI's output, not a function behind it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

from nosdn.lab import netns
from nosdn.lab.netns import LabError
from nosdn.lab.state import LabPaths, write_atomic
from nosdn.lab.topology import LabRouter, Topology
from nosdn.model import ROUTER
from nosdn.plan import desired_routes

Log = Callable[[str], None]
FRR_ROOT = Path("/run/nosdn/frr")
FRR_DAEMONS = ("zebra", "staticd", "bgpd")
FRR_BIN = Path("/usr/lib/frr")
#: How long the router may take to put every route in its kernel table.
CONVERGE_TIMEOUT = 30.0


def _nosdn(*args: str) -> list[str]:
    return [sys.executable, "-m", "nosdn", *args]


def render_config(paths: LabPaths, fmt: str, *, bgp: bool = False) -> str:
    """``nosdn render -f INVENTORY --format FMT`` (the router target: every pod subnet), or
    with ``bgp`` its ``--bgp`` config from the node-less router inventory: a peer group for
    the node networks, no pod subnet anywhere in it (a live cluster's router knows no node)."""
    if bgp:
        argv = _nosdn("render", "-f", str(paths.router_inventory), "--format", fmt, "--bgp")
    else:
        argv = _nosdn("render", "-f", str(paths.inventory), "--format", fmt)
    proc = netns.run(argv)
    return proc.stdout


def preflight(router: str) -> None:
    """Refuse, with what to install, before anything is made."""
    if router == "bird":
        missing = [t for t in ("bird", "birdc") if shutil.which(t) is None]
        if missing:
            raise LabError(
                f"--router-daemon bird needs {' and '.join(missing)} — install BIRD 2 "
                "(Debian: apt-get install bird2)"
            )
    elif router == "frr":
        missing = [d for d in FRR_DAEMONS if not (FRR_BIN / d).is_file()]
        if missing:
            raise LabError(
                f"--router-daemon frr needs {', '.join(missing)} in {FRR_BIN} — install FRR "
                "(Debian: apt-get install frr)"
            )


# --- waiting for the routes ------------------------------------------------------------------
def _kernel_routes(ns: str) -> set[tuple[str, frozenset[str]]]:
    found: set[tuple[str, frozenset[str]]] = set()
    for fam in ("-4", "-6"):
        out = netns.run(["ip", "-n", ns, "-j", fam, "route", "show"]).stdout
        for r in json.loads(out or "[]"):
            gws = {h["gateway"] for h in r.get("nexthops", []) if "gateway" in h}
            if "gateway" in r:
                gws.add(r["gateway"])
            if gws and r.get("dst") not in (None, "default"):
                found.add((str(r["dst"]), frozenset(gws)))
    return found


def wanted_routes(topo: Topology) -> set[tuple[str, frozenset[str]]]:
    return {
        (str(r.dst), frozenset(str(v) for v in r.via))
        for r in desired_routes(topo.cluster(), ROUTER)
    }


def wait_bgp(topo: Topology, paths: LabPaths, timeout: float = CONVERGE_TIMEOUT) -> float:
    """``--bgp``: until the router's kernel table holds a route to every node's pod subnets
    and to nothing else (learned over BGP: an IPv6 next hop is the node's link-local address,
    so only the prefixes are compared); the seconds it took."""
    assert topo.router is not None
    want = {d for d, _ in wanted_routes(topo)}
    t0 = time.monotonic()
    found: set[str] = set()
    while time.monotonic() - t0 < timeout:
        found = {d for d, _ in _kernel_routes(topo.router.netns)}
        if found == want:
            return time.monotonic() - t0
        time.sleep(0.1)
    d = daemon(topo, paths)
    raise LabError(
        f"router {topo.router.netns}: BGP did not bring every pod subnet within {timeout:g} s: "
        f"missing {', '.join(sorted(want - found)) or 'none'}, unexpected "
        f"{', '.join(sorted(found - want)) or 'none'}\n{d._why()}"
    )


def wait_converged(
    router: LabRouter, want: set[tuple[str, frozenset[str]]], why: Callable[[], str]
) -> None:
    """Until the router's kernel table holds exactly the wanted pod routes (and no other
    gateway route); raises with the daemon's own words if it does not within the timeout."""
    deadline = time.monotonic() + CONVERGE_TIMEOUT
    found: set[tuple[str, frozenset[str]]] = set()
    while time.monotonic() < deadline:
        found = _kernel_routes(router.netns)
        if found == want:
            return
        time.sleep(0.2)
    missing = sorted(d for d, _ in want - found)
    extra = sorted(d for d, _ in found - want)
    raise LabError(
        f"router {router.netns} ({router.daemon}) did not converge in {CONVERGE_TIMEOUT:g} s: "
        f"missing {', '.join(missing) or 'none'}, unexpected {', '.join(extra) or 'none'}\n"
        f"{why()}"
    )


def _tail(path: Path, lines: int = 8) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"(no {path})"


def stop_pid(pid_file: Path, ns: str) -> int | None:
    """SIGTERM the daemon named by ``pid_file`` if it lives in ``ns``; wait; SIGKILL."""
    try:
        pid = int(pid_file.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    if pid not in netns.pids(ns):
        return None  # gone already, or the number was reused by something that is not ours
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
        time.sleep(0.05)
    if Path(f"/proc/{pid}").exists():
        os.kill(pid, signal.SIGKILL)
    return pid


# --- BIRD 2 ------------------------------------------------------------------------------------
class Bird:
    """BIRD 2 in the router namespace, every file of it under ``router/`` in the state dir."""

    def __init__(self, topo: Topology, paths: LabPaths) -> None:
        assert topo.router is not None
        self.topo = topo
        self.router = topo.router
        self.dir = paths.router_dir
        self.paths = paths
        self.conf = self.dir / "bird.conf"
        self.routes = self.dir / "nosdn-bird.conf"
        self.ctl = self.dir / "bird.ctl"
        self.pid = self.dir / "bird.pid"
        self.log = self.dir / "bird.log"

    def main_config(self) -> str:
        return (
            f"# The router of lab {self.topo.name}, written by `nosdn lab up`: BIRD 2 exports\n"
            f"# the routes `nosdn render --format bird` printed ({self.routes.name}) to this\n"
            "# namespace's kernel table and forwards between the lab's segments.\n"
            f"router id {self.router.router_id};\n"
            f'log "{self.log}" all;\n'
            "protocol device {\n}\n"
            "protocol kernel kernel4 {\n    ipv4 { export all; };\n}\n"
            "protocol kernel kernel6 {\n    ipv6 { export all; };\n}\n"
            f'include "{self.routes}";\n'
        )

    def _why(self) -> str:
        show = netns.run(
            ["birdc", "-s", str(self.ctl), "show", "protocols", "all"], check=False, timeout=10
        )
        return f"bird log:\n{_tail(self.log)}\nbirdc show protocols:\n{show.stdout[-2000:]}"

    def start(self, log: Log) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        write_atomic(self.routes, render_config(self.paths, "bird", bgp=self.topo.spec.bgp))
        write_atomic(self.conf, self.main_config())
        netns.run(["bird", "-p", "-c", str(self.conf)])  # parse only: fail with its message
        argv = ["bird", "-c", str(self.conf), "-s", str(self.ctl), "-P", str(self.pid)]
        netns.run(netns.exec_argv(self.router.netns, argv))
        log(f"$ ip netns exec {self.router.netns} {' '.join(argv)}")
        if self.topo.spec.bgp:
            log(f"router {self.router.netns}: BIRD listens for the nodes' BGP sessions")
            return
        wait_converged(self.router, wanted_routes(self.topo), self._why)
        log(f"router {self.router.netns}: BIRD carries {len(wanted_routes(self.topo))} route(s)")

    def running(self) -> bool:
        return self.ctl.exists() and self.pid.exists()

    def reload(self, log: Log) -> None:
        if self.topo.spec.bgp:
            return  # the peer group takes new nodes as they come: nothing to re-render
        write_atomic(self.routes, render_config(self.paths, "bird"))
        netns.run(["birdc", "-s", str(self.ctl), "configure"], timeout=30)
        log(f"$ birdc -s {self.ctl} configure")
        # configure only acts on what changed in the file; a route someone deleted from the
        # kernel table comes back when the kernel protocols are fed every route again
        for proto in ("kernel4", "kernel6"):
            netns.run(["birdc", "-s", str(self.ctl), "reload", "out", proto], timeout=30)
            log(f"$ birdc -s {self.ctl} reload out {proto}")
        wait_converged(self.router, wanted_routes(self.topo), self._why)

    @staticmethod
    def stop(paths: LabPaths, router_ns: str) -> list[int]:
        pid = stop_pid(paths.router_dir / "bird.pid", router_ns)
        return [pid] if pid is not None else []


# --- FRR -------------------------------------------------------------------------------------
class Frr:
    """zebra + staticd in the router namespace, files in ``/run/nosdn/frr/<lab>/``."""

    def __init__(self, topo: Topology, paths: LabPaths) -> None:
        assert topo.router is not None
        self.topo = topo
        self.router = topo.router
        self.paths = paths
        self.dir = self.runtime_dir(topo.name)
        self.conf = self.dir / "nosdn-frr.conf"

    @staticmethod
    def runtime_dir(lab: str) -> Path:
        return FRR_ROOT / lab

    def _argv(self, daemon: str, conf: str) -> list[str]:
        d = self.dir
        return [
            str(FRR_BIN / daemon), "-d", "-u", "frr", "-g", "frr",
            "-i", str(d / f"{daemon}.pid"), "-z", str(d / "zserv.api"),
            "--vty_socket", str(d), "-A", "127.0.0.1", "-P", "0",
            "-f", conf, "--log", f"file:{d / f'{daemon}.log'}",
        ]  # fmt: skip

    def _why(self) -> str:
        return "\n".join(f"{d} log:\n{_tail(self.dir / f'{d}.log')}" for d in FRR_DAEMONS)

    def _write(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        shutil.chown(self.dir, "frr", "frr")
        write_atomic(self.conf, render_config(self.paths, "frr", bgp=self.topo.spec.bgp))
        self.conf.chmod(0o644)

    def _staticd(self, log: Log) -> None:
        # --bgp: bgpd with the rendered peer group instead of staticd with static routes
        argv = self._argv("bgpd" if self.topo.spec.bgp else "staticd", str(self.conf))
        netns.run(netns.exec_argv(self.router.netns, argv))
        log(f"$ ip netns exec {self.router.netns} {' '.join(argv)}")

    def start(self, log: Log) -> None:
        self._write()
        zebra = self._argv("zebra", "/dev/null")
        netns.run(netns.exec_argv(self.router.netns, zebra))
        log(f"$ ip netns exec {self.router.netns} {' '.join(zebra)}")
        deadline = time.monotonic() + 10
        while not (self.dir / "zserv.api").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        self._staticd(log)
        if self.topo.spec.bgp:
            log(f"router {self.router.netns}: FRR bgpd listens for the nodes' BGP sessions")
            return
        wait_converged(self.router, wanted_routes(self.topo), self._why)
        log(f"router {self.router.netns}: FRR carries {len(wanted_routes(self.topo))} route(s)")

    def running(self) -> bool:
        return (self.dir / "zebra.pid").exists()

    def reload(self, log: Log) -> None:
        if self.topo.spec.bgp:
            return  # the peer group takes new nodes as they come: nothing to re-render
        self._write()
        stop_pid(self.dir / "staticd.pid", self.router.netns)
        self._staticd(log)
        wait_converged(self.router, wanted_routes(self.topo), self._why)

    @staticmethod
    def stop(lab: str, router_ns: str) -> list[int]:
        d = Frr.runtime_dir(lab)
        pids = [stop_pid(d / f"{x}.pid", router_ns) for x in reversed(FRR_DAEMONS)]
        if d.exists():
            shutil.rmtree(d)
        return [p for p in pids if p is not None]


def daemon(topo: Topology, paths: LabPaths) -> Bird | Frr:
    assert topo.router is not None
    return Bird(topo, paths) if topo.router.daemon == "bird" else Frr(topo, paths)


def program(topo: Topology, paths: LabPaths, log: Log) -> None:
    """Start the router's daemon with the rendered config, or reload it if it runs."""
    d = daemon(topo, paths)
    if d.running():
        d.reload(log)
    else:
        d.start(log)


def stop_all(lab: str, paths: LabPaths, router_ns: str) -> list[int]:
    """Stop whatever routing daemon the lab's router runs (works without the state file:
    the namespace's remaining processes are killed by `lab down` anyway)."""
    return Bird.stop(paths, router_ns) + Frr.stop(lab, router_ns)
