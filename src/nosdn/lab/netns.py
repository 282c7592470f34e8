"""Network namespaces through iproute2, the way an operator would type it.

The lab drives ``ip`` rather than netlink on purpose: every step it takes can be printed and
replayed by hand (``ip netns exec demo.node1 ip route``), and running programs *inside* a
namespace (CNI plugins, ``ping``, ``nosdn apply``) needs ``ip netns exec`` anyway, which also
gives each program the namespace's own ``/sys`` and ``/proc/sys/net``. Nothing here ever
names the machine's own namespace: every command carries ``-n NS`` or ``netns exec NS``.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from nosdn.netns import socket_in as netns_socket

NETNS_DIR = Path("/run/netns")


class LabError(RuntimeError):
    """A step of building or running the lab failed; the message says which and why."""


def run(
    argv: Sequence[str],
    *,
    input: str | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = 60,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    try:
        proc = subprocess.run(
            list(argv),
            input=input,
            env=dict(env) if env is not None else None,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except FileNotFoundError as e:
        raise LabError(f"{argv[0]}: not found ({e.strerror})") from None
    except subprocess.TimeoutExpired:
        raise LabError(f"`{' '.join(argv)}` did not finish within {timeout:g} s") from None
    if check and proc.returncode != 0:
        msg = (proc.stderr or proc.stdout).strip() or f"exit code {proc.returncode}"
        raise LabError(f"`{' '.join(argv)}` failed: {msg}")
    return proc


def exec_argv(netns: str, argv: Sequence[str]) -> list[str]:
    """``argv`` run inside ``netns``."""
    return ["ip", "netns", "exec", netns, *argv]


def list_netns() -> list[str]:
    """Names of the named network namespaces (what ``ip netns list`` shows)."""
    try:
        return sorted(os.listdir(NETNS_DIR))
    except FileNotFoundError:
        return []


def current_netns() -> str | None:
    """The name of the named namespace this process is in, as ``ip netns identify`` says
    (None: the machine's own, or an unnamed one)."""
    try:
        me = os.stat("/proc/self/ns/net")
    except OSError:
        return None
    for name in list_netns():
        try:
            st = os.stat(NETNS_DIR / name)
        except OSError:
            continue
        if (st.st_dev, st.st_ino) == (me.st_dev, me.st_ino):
            return name
    return None


def add(netns: str) -> None:
    run(["ip", "netns", "add", netns])


def batch(netns: str, commands: Iterable[str]) -> None:
    """Run ``ip`` commands inside ``netns`` in one process (``ip -n NS -batch -``)."""
    text = "".join(f"{c}\n" for c in commands)
    if text:
        run(["ip", "-n", netns, "-batch", "-"], input=text)


def sysctl(netns: str, settings: Mapping[str, str]) -> None:
    """Set per-namespace sysctls (``net.*`` keys are per network namespace)."""
    if settings:
        run(exec_argv(netns, ["sysctl", "-q", "-w", *(f"{k}={v}" for k, v in settings.items())]))


def pids(netns: str) -> list[int]:
    proc = run(["ip", "netns", "pids", netns], check=False)
    return [int(p) for p in proc.stdout.split() if p.isdigit()]


def kill_all(netns: str) -> list[int]:
    """SIGKILL every process living in ``netns`` (a namespace is only freed once empty)."""
    killed = []
    for pid in pids(netns):
        try:
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
        except ProcessLookupError:
            pass
    return killed


def delete(netns: str) -> bool:
    """Remove ``netns``; False if it was already gone."""
    if not (NETNS_DIR / netns).exists():
        return False
    proc = run(["ip", "netns", "del", netns], check=False)
    if proc.returncode != 0 and (NETNS_DIR / netns).exists():
        raise LabError(f"`ip netns del {netns}` failed: {proc.stderr.strip()}")
    return True


def socket_in(netns: str) -> socket.socket:
    """A TCP socket of ``netns`` (a socket stays in the namespace it was made in): how the lab
    talks to its API server without anything listening in this machine's own namespace."""
    return netns_socket(netns, socket.AF_INET, socket.SOCK_STREAM)
