"""The ping matrix: can every pod be reached from every other pod, every node and the outside?

This is the one question a pod network must answer yes to, asked with the tool people use to
ask it (``ping``, one echo, 1 s timeout) from inside each source namespace. Pings run in
parallel but bounded (the machine is shared; a broken lab means many 1 s timeouts at once),
and every result is kept, so a failure names the exact source, destination and family.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass

from nosdn.lab.netns import LabError, exec_argv, run
from nosdn.model import IPAddress

DEFAULT_PARALLEL = 16


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Something that pings or is pinged: ``node1/pod2``, ``node1`` or ``external``."""

    label: str
    netns: str
    ips: tuple[IPAddress, ...]
    kind: str  # "pod" | "node" | "external"

    def ip_for(self, family: int) -> IPAddress | None:
        return next((ip for ip in self.ips if ip.version == family), None)


@dataclass(frozen=True, slots=True)
class Probe:
    src: Endpoint
    dst: Endpoint
    ip: IPAddress

    @property
    def family(self) -> int:
        return self.ip.version


@dataclass(frozen=True, slots=True)
class ProbeResult:
    probe: Probe
    ok: bool
    detail: str = ""

    def as_dict(self) -> dict[str, object]:
        return {
            "from": self.probe.src.label,
            "to": self.probe.dst.label,
            "family": self.probe.family,
            "ip": str(self.probe.ip),
            "ok": self.ok,
            "detail": self.detail,
        }


def probes(
    sources: Sequence[Endpoint], targets: Sequence[Endpoint], families: Sequence[int]
) -> list[Probe]:
    """Every (source, target, family) pair except a target pinging itself."""
    out: list[Probe] = []
    for family in families:
        for src in sources:
            if src.ip_for(family) is None:
                continue
            for dst in targets:
                ip = dst.ip_for(family)
                if dst.label != src.label and ip is not None:
                    out.append(Probe(src, dst, ip))
    return out


def ping_once(probe: Probe, timeout: int = 1) -> ProbeResult:
    argv = exec_argv(probe.src.netns, ["ping", "-n", "-c", "1", "-W", str(timeout), str(probe.ip)])
    try:
        proc = run(argv, timeout=timeout + 10, check=False)
    except LabError as e:
        return ProbeResult(probe, False, str(e))
    if proc.returncode == 0:
        return ProbeResult(probe, True)
    for line in (proc.stderr + proc.stdout).splitlines():
        if "unreachable" in line.lower() or line.startswith("ping:"):
            return ProbeResult(probe, False, line.replace(" icmp_seq=1", "").strip())
    return ProbeResult(probe, False, f"no reply within {timeout} s")


def run_probes(
    todo: Sequence[Probe],
    *,
    parallel: int = DEFAULT_PARALLEL,
    timeout: int = 1,
    progress: Callable[[int, int, int], None] | None = None,
) -> list[ProbeResult]:
    """Ping every probe, at most ``parallel`` at a time; results in the order given.
    ``progress(done, failed, total)`` is called as each ping ends (from this thread)."""
    if not todo:
        return []
    with ThreadPoolExecutor(max_workers=max(1, min(parallel, len(todo)))) as pool:
        futures = [pool.submit(ping_once, p, timeout) for p in todo]
        if progress is not None:
            failed = 0
            for done, f in enumerate(as_completed(futures), 1):
                failed += not f.result().ok
                progress(done, failed, len(todo))
        return [f.result() for f in futures]
