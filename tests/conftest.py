"""Shared fixtures: a root guard and throw-away network namespaces.

Tests that touch the kernel work only inside namespaces they made: every namespace has a unique
name (prefix + random suffix) and is deleted in teardown, processes left in it included, even
when the test fails. Nothing is ever added to the machine's own (default) namespace.

- ``requires_root``: apply as ``pytestmark = [pytest.mark.root, requires_root]`` (or decorate
  one test) to skip cleanly when not root.
- ``netns``: a factory fixture; ``netns()`` returns the name of a fresh namespace with ``lo``
  up, ``netns("lab")`` uses a readable prefix. All are removed after the test.
- ``ip(ns, *args)``: run ``ip -n NS ...`` and return its stdout (raises on failure).
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

requires_root = pytest.mark.skipif(
    os.geteuid() != 0, reason="needs root (network namespaces, netlink writes)"
)

NETNS_DIR = Path("/run/netns")


def ip(ns: str, *args: str, check: bool = True) -> str:
    """``ip -n NS ARGS...``; stdout, or CalledProcessError with stderr shown."""
    proc = subprocess.run(["ip", "-n", ns, *args], capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise subprocess.CalledProcessError(
            proc.returncode, proc.args, proc.stdout, f"{proc.stderr.strip()}"
        )
    return proc.stdout


def _kill_processes_in(name: str) -> None:
    pids = subprocess.run(
        ["ip", "netns", "pids", name], capture_output=True, text=True, check=False
    ).stdout.split()
    for pid in pids:
        try:
            os.kill(int(pid), signal.SIGKILL)
        except (ProcessLookupError, ValueError):
            continue


def remove_netns(name: str) -> None:
    """Delete a namespace and kill whatever still runs in it (idempotent)."""
    if not (NETNS_DIR / name).exists():
        return
    _kill_processes_in(name)
    subprocess.run(["ip", "netns", "delete", name], capture_output=True, check=False)


@pytest.fixture
def netns() -> Iterator[Callable[..., str]]:
    made: list[str] = []

    def make(prefix: str = "nosdn-t") -> str:
        name = f"{prefix}-{secrets.token_hex(4)}"
        subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True)
        made.append(name)
        ip(name, "link", "set", "lo", "up")
        return name

    try:
        yield make
    finally:
        for name in reversed(made):
            remove_netns(name)
