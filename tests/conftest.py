"""Shared fixtures: a root guard and throw-away network namespaces.

Tests that touch the kernel work only inside namespaces they made: every namespace has a unique
name (prefix + random suffix) and is deleted in teardown, processes left in it included, even
when the test fails. Nothing is ever added to the machine's own (default) namespace.

- ``requires_root``: apply as ``pytestmark = [pytest.mark.root, requires_root]`` (or decorate
  one test) to skip cleanly when not root.
- ``netns``: a factory fixture; ``netns()`` returns the name of a fresh namespace with ``lo``
  up, ``netns("lab")`` uses a readable prefix. All are removed after the test.
- ``ip(ns, *args)``: run ``ip -n NS ...`` and return its stdout (raises on failure).
- ``lab_name``: a unique lab name (the test module's ``LAB_PREFIX`` and a random suffix, state
  kept under tmp_path) whose lab is brought down afterwards, no namespace of it left;
  ``lab_namespaces(name)`` lists a lab's namespaces, ``this_machines_network()`` is the
  test runner's own network, to compare before and after.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

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


def on_link_namespace(make: Callable[..., str], prefix: str, address: str = "10.10.0.1/16") -> str:
    """A namespace from ``make`` (the `netns` fixture) whose ``eth0`` (a veth, up, its peer
    in the same namespace) holds ``address``: the rest of that network is on-link."""
    ns = make(prefix)
    ip(ns, "link", "add", "eth0", "type", "veth", "peer", "name", "peer0")
    ip(ns, "link", "set", "peer0", "up")
    ip(ns, "addr", "add", address, "dev", "eth0")
    ip(ns, "link", "set", "eth0", "up")
    return ns


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


@pytest.fixture(scope="session")
def kube_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The real API server tier (`kube_api.KubeApi`), one per test session, in a namespace of
    its own. Without Go it is skipped with a line saying so; under CI it must run."""
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces)")
    from kube_api import KubeApi, binaries

    bins = binaries()
    if bins is None:
        if os.environ.get("CI") == "true":
            pytest.fail("CI: the real API server tier must run, and there is no Go toolchain")
        pytest.skip(
            "no Go toolchain: the real kube-apiserver tier is skipped "
            "(install Go 1.26+ and run `make test`, which builds it once)"
        )
    name = f"nosdn-kapi-{secrets.token_hex(4)}"
    subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True)
    api = None
    try:
        ip(name, "link", "set", "lo", "up")
        api = KubeApi(name, bins, tmp_path_factory.mktemp("kube-api"), min_request_timeout=5)
        api.start()
        yield api
    finally:
        if api is not None:
            api.close()
        remove_netns(name)


@pytest.fixture
def kapi(kube_api: Any) -> Any:
    """The session's API server with no Node and no Lease left from an earlier test."""
    kube_api.delete_all_nodes()
    kube_api.call("DELETE", "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases")
    return kube_api


def lab_namespaces(name: str) -> list[str]:
    """Every namespace of lab ``name`` (its nodes, pods, switch, router, external host)."""
    from nosdn.lab import netns as ns

    return [n for n in ns.list_netns() if n.startswith(f"{name}.")]


def this_machines_network() -> str:
    """Links, addresses and every route of the namespace the tests run in."""
    from nosdn.lab import netns as ns

    show = [
        ["link"],
        ["addr"],
        ["route", "show", "table", "all"],
        ["-6", "route", "show", "table", "all"],
    ]
    return "".join(ns.run(["ip", "-o", *args]).stdout for args in show)


@pytest.fixture
def lab_name(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    """A unique lab name whose lab (and state, kept under tmp_path) is gone afterwards."""
    from nosdn.lab import down

    name = f"{getattr(request.module, 'LAB_PREFIX', 't')}-{secrets.token_hex(3)}"
    monkeypatch.setenv("NOSDN_LAB_DIR", str(tmp_path / "labs"))
    try:
        yield name
    finally:
        down(name)
        assert lab_namespaces(name) == []
