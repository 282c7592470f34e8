"""Helpers for agent tests: the emulator and the agent as processes inside test namespaces.

A network namespace cannot reach 127.0.0.1 of the machine's own namespace, and tests must not
attach anything to it. So the emulator runs *inside* a namespace the test made: for one agent,
in the node's own namespace on its loopback (``http://127.0.0.1:PORT``, like a control-plane
node); for several agents (the lab), in an "api" namespace cabled to the lab's switch, reached
over the lab's node network, like a real API server. The agent runs exactly as in production,
`nosdn agent` as a process whose network namespace is the node's (``ip netns exec``), so its
routes, sysctls, nftables rules and netlink monitor are the node's.

The test process itself talks to the emulator (to add, change, delete Nodes) and to the
agent's /metrics through sockets *created inside* the namespace: a socket stays in the
namespace it was created in, so only the ``socket()`` call runs with the thread switched into
the namespace (`netns_socket`). Nothing ever listens on or connects from the machine's own
namespace.
"""

from __future__ import annotations

import contextlib
import ctypes
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
KMOCKD = HERE / "kmockd.py"
_CLONE_NEWNET = 0x40000000
METRICS_PORT = 9712


@contextlib.contextmanager
def in_netns(netns: str | None) -> Iterator[None]:
    """Run the body with this thread in ``netns`` (None: stay)."""
    if netns is None:
        yield
        return
    libc = ctypes.CDLL(None, use_errno=True)
    target = os.open(f"/run/netns/{netns}", os.O_RDONLY | os.O_CLOEXEC)
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        if libc.setns(target, _CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns {netns}")
        try:
            yield
        finally:
            if libc.setns(home, _CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns back home")
    finally:
        os.close(target)
        os.close(home)


def netns_socket(netns: str | None) -> socket.socket:
    with in_netns(netns):
        return socket.socket(socket.AF_INET, socket.SOCK_STREAM)


class _Conn(http.client.HTTPConnection):
    def __init__(self, netns: str | None, host: str, port: int, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self.netns = netns

    def connect(self) -> None:
        s = netns_socket(self.netns)
        s.settimeout(self.timeout)
        s.connect((self.host, self.port))
        self.sock = s


def http_request(
    netns: str | None,
    port: int,
    method: str,
    path: str,
    body: Any = None,
    *,
    content_type: str = "application/json",
    host: str = "127.0.0.1",
    timeout: float = 10,
) -> tuple[int, bytes]:
    conn = _Conn(netns, host, port, timeout)
    try:
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": content_type} if data is not None else {}
        conn.request(method, path, body=data, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def node_object(
    name: str,
    ips: Sequence[str],
    cidrs: Sequence[str] = (),
    *,
    extra_status: Mapping[str, Any] | None = None,
    created: str | None = None,
) -> dict[str, Any]:
    """A Node object as the kubelet and kube-controller-manager leave it (``created``: its
    ``metadata.creationTimestamp``, which the emulator does not set)."""
    spec: dict[str, Any] = {}
    if cidrs:
        spec = {"podCIDR": cidrs[0], "podCIDRs": list(cidrs)}
    status: dict[str, Any] = {
        "addresses": [{"type": "InternalIP", "address": ip} for ip in ips]
        + [{"type": "Hostname", "address": name}],
        "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}],
    }
    status.update(extra_status or {})
    meta: dict[str, Any] = {"name": name, "labels": {"kubernetes.io/hostname": name}}
    if created is not None:
        meta["creationTimestamp"] = created
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": meta,
        "spec": spec,
        "status": status,
    }


class Emulator:
    """kmock as a process in ``netns`` (None: this namespace), controlled over HTTP."""

    def __init__(
        self,
        netns: str | None,
        *,
        host: str = "127.0.0.1",
        port: int = 18080,
        seed: Sequence[Mapping[str, Any]] = (),
        workdir: Path,
    ) -> None:
        self.netns = netns
        self.host = host
        self.port = port
        self.seed = list(seed)
        self.workdir = workdir
        self.proc: subprocess.Popen[str] | None = None

    @property
    def url(self) -> str:
        return f"http://{'127.0.0.1' if self.host == '0.0.0.0' else self.host}:{self.port}"

    def start(
        self, seed: Sequence[Mapping[str, Any]] | None = None, *, max_node_lists: int | None = None
    ) -> Emulator:
        if seed is not None:
            self.seed = list(seed)
        seed_file = self.workdir / f"seed-{self.port}.json"
        seed_file.write_text(json.dumps(self.seed))
        argv = [sys.executable, str(KMOCKD), "--host", self.host, "--port", str(self.port)]
        argv += ["--seed", str(seed_file)]
        if max_node_lists is not None:
            argv += ["--max-node-lists", str(max_node_lists)]
        if self.netns is not None:
            argv = ["ip", "netns", "exec", self.netns, *argv]
        with open(self.workdir / "kmock.log", "a") as errors:
            self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=errors, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith("ready"):
            self.kill()
            raise RuntimeError(
                f"kmock did not start: {(self.workdir / 'kmock.log').read_text()[-2000:]}"
            )
        return self

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None

    def pause(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    # --- API ------------------------------------------------------------------------------
    def call(
        self, method: str, path: str, body: Any = None, ctype: str = "application/json"
    ) -> Any:
        status, data = http_request(self.netns, self.port, method, path, body, content_type=ctype)
        if status >= 300:
            raise RuntimeError(f"{method} {path}: HTTP {status} {data[:300]!r}")
        return json.loads(data) if data else None

    def create_node(self, obj: Mapping[str, Any]) -> None:
        self.call("POST", "/api/v1/nodes", obj)

    def patch_node(self, name: str, patch: Mapping[str, Any]) -> None:
        self.call("PATCH", f"/api/v1/nodes/{name}", patch, "application/merge-patch+json")

    def delete_node(self, name: str) -> None:
        self.call("DELETE", f"/api/v1/nodes/{name}")

    def node(self, name: str) -> Any:
        return self.call("GET", f"/api/v1/nodes/{name}")

    def nodes(self) -> list[Any]:
        return list(self.call("GET", "/api/v1/nodes")["items"])

    def events(self) -> list[Any]:
        return list(self.call("GET", "/api/v1/events")["items"])


class AgentProcess:
    """`nosdn agent` running inside ``netns``; logs go to ``workdir/agent-<node>.log``."""

    def __init__(
        self,
        netns: str,
        node: str,
        api_url: str,
        workdir: Path,
        *args: str,
        kubeconfig: Path | None = None,
    ) -> None:
        """``api_url``: the emulator (``--kube-server``); ``kubeconfig``: a real API server's
        credentials instead."""
        self.netns = netns
        self.node = node
        self.log = workdir / f"agent-{node}.log"
        self.cni = workdir / node / "10-nosdn.conflist"
        self.argv = [
            "ip", "netns", "exec", netns,
            sys.executable, "-m", "nosdn", "agent",
            "--node", node,
            *(["--kubeconfig", str(kubeconfig)] if kubeconfig else ["--kube-server", api_url]),
            "--cni-conf", str(self.cni),
            "--metrics-address", f"127.0.0.1:{METRICS_PORT}",
            "--resync", "2",
            "--watch-timeout", "5",
            "--log-level", "debug",
            # the probes' first interval comes right after the first list and makes the pod
            # bridge (link and address events, which the monitor answers with passes): off,
            # so a test counting passes counts its own; a test about probes passes its own
            "--probe-interval", "0",
            *args,
        ]  # fmt: skip
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> AgentProcess:
        with open(self.log, "ab") as errors:
            self.proc = subprocess.Popen(self.argv, stdout=subprocess.DEVNULL, stderr=errors)
        return self

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        rc = self.proc.returncode
        self.proc = None
        return rc

    def get(self, path: str) -> tuple[int, str]:
        try:
            status, data = http_request(self.netns, METRICS_PORT, "GET", path, timeout=3)
        except OSError as e:
            return 0, str(e)
        return status, data.decode()

    def metric(self, name: str) -> float | None:
        status, text = self.get("/metrics")
        if status != 200:
            return None
        total = None
        for line in text.splitlines():
            if line.startswith(name) and (line[len(name)] in " {"):
                total = (total or 0.0) + float(line.rsplit(" ", 1)[1])
        return total

    def logs(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def wait_until(
    pred: Callable[[], Any], timeout: float = 10, interval: float = 0.05, what: str = ""
) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = pred()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what or pred}: last {last!r}")


def ip_json(netns: str, *args: str) -> Any:
    out = subprocess.run(
        ["ip", "-n", netns, "-j", *args], capture_output=True, text=True, check=True
    ).stdout
    return json.loads(out or "[]")


def nosdn_routes(netns: str) -> dict[str, str]:
    """dst -> gateway of every route of protocol 157 in the main table (both families)."""
    nhs = {nh["id"]: nh.get("gateway", "") for nh in ip_json(netns, "nexthop", "show")}
    out: dict[str, str] = {}
    for fam in ("-4", "-6"):
        for r in ip_json(netns, fam, "route", "show", "proto", "157"):
            gw = r.get("gateway") or nhs.get(r.get("nhid"), "")
            out[r["dst"]] = gw
    return out
