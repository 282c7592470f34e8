"""status, apply, doctor and trace on a node, with the nodes read from the Kubernetes API (root).

As in test_agent_kernel: one namespace per test is the node (``eth0``, a veth whose peer stays
in the namespace, holds 10.10.0.1/24, so peers 10.10.0.2.. are on-link), and the `kmock`
emulator serves the Node objects on 127.0.0.1:18080 of that same namespace. Every command runs
as an operator would run it there, ``ip netns exec NODE python -m nosdn ... --kube-server URL``,
finding which node it is from the namespace's addresses. The real agent runs in one test, to
show that the one-shot commands and the agent agree.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from agent_env import AgentProcess, Emulator, node_object, nosdn_routes, wait_until
from conftest import ip, requires_root

pytestmark = [pytest.mark.root, requires_root]

ME = "node1"


def wanted(*ids: int) -> dict[str, str]:
    return {f"10.244.{i}.0/24": f"10.10.0.{i}" for i in ids}


@dataclass
class Node:
    ns: str
    emu: Emulator
    workdir: Path

    def nosdn(self, *args: str, server: str | None = None) -> subprocess.CompletedProcess[str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("KUBECONFIG", "NOSDN_INVENTORY", "KUBERNETES_SERVICE_HOST")
        }
        env["NOSDN_RT_PROTOS_D"] = str(self.workdir / "rt_protos.d")
        argv = ["ip", "netns", "exec", self.ns, sys.executable, "-m", "nosdn", *args]
        argv += ["--kube-server", server or self.emu.url]
        return subprocess.run(argv, capture_output=True, text=True, env=env, check=False)

    def json(self, *args: str, server: str | None = None) -> tuple[int, Any, str]:
        r = self.nosdn(*args, "-o", "json", server=server)
        assert r.returncode in (0, 1), r.stderr
        return r.returncode, json.loads(r.stdout), r.stderr

    def doctor(self, server: str | None = None) -> tuple[int, dict[str, dict[str, Any]]]:
        conf = str(self.workdir / "10-nosdn.conflist")
        rc, data, _ = self.json("doctor", "--cni-conf", conf, server=server)
        return rc, {c["check"]: c for c in data["checks"]}


@pytest.fixture
def node(netns: Callable[..., str], tmp_path: Path) -> Iterator[Node]:
    ns = netns("nosdn-kcli")
    ip(ns, "link", "add", "eth0", "type", "veth", "peer", "name", "peer0")
    ip(ns, "link", "set", "eth0", "addrgenmode", "none")
    ip(ns, "link", "set", "peer0", "addrgenmode", "none")
    ip(ns, "link", "set", "peer0", "up")
    ip(ns, "addr", "add", "10.10.0.1/24", "dev", "eth0")
    ip(ns, "link", "set", "eth0", "up")
    seed = [node_object(f"node{i}", [f"10.10.0.{i}"], [f"10.244.{i}.0/24"]) for i in (1, 2, 3)]
    emu = Emulator(ns, workdir=tmp_path, seed=seed).start()
    try:
        yield Node(ns, emu, tmp_path)
    finally:
        emu.kill()


def test_status_says_missing_then_ok_after_apply_and_follows_the_api(node: Node) -> None:
    rc, status, _ = node.json("status")
    assert rc == 1
    assert status["target"] == f"node/{ME}"
    assert {r["dst"]: r["state"] for r in status["routes"]} == {
        "10.244.2.0/24": "missing",
        "10.244.3.0/24": "missing",
    }
    assert nosdn_routes(node.ns) == {}  # status wrote nothing

    done = node.nosdn("apply")
    assert done.returncode == 0, done.stdout + done.stderr
    assert nosdn_routes(node.ns) == wanted(2, 3)
    rc, status, _ = node.json("status")
    assert rc == 0
    assert {r["state"] for r in status["routes"]} == {"ok"}

    # the API changes: a node leaves, another has no subnet yet
    node.emu.delete_node("node3")
    node.emu.create_node(node_object("node4", ["10.10.0.4"]))
    rc, status, err = node.json("status")
    assert rc == 1
    assert {r["dst"]: r["state"] for r in status["routes"]} == {
        "10.244.2.0/24": "ok",
        "10.244.3.0/24": "stale",
    }
    assert "no spec.podCIDRs yet (node4)" in err
    assert node.nosdn("apply").returncode == 0
    assert nosdn_routes(node.ns) == wanted(2)


def test_a_bad_node_stops_apply_before_any_write(node: Node) -> None:
    node.emu.create_node(node_object("node9", ["10.10.0.9"], ["10.244.2.128/25"]))
    r = node.nosdn("apply")
    assert r.returncode == 2
    assert "node node9: podCIDRs 10.244.2.128/25: overlaps node node2's podCIDRs" in r.stderr
    assert nosdn_routes(node.ns) == {}


def test_one_shot_commands_agree_with_the_agent(node: Node) -> None:
    agent = AgentProcess(node.ns, ME, node.emu.url, node.workdir).start()
    try:

        def ready() -> bool:
            if not agent.running():
                raise AssertionError(f"agent exited:\n{agent.logs()[-3000:]}")
            return agent.get("/readyz")[0] == 200

        wait_until(ready, 20, 0.1, "agent /readyz")
        wait_until(lambda: nosdn_routes(node.ns) == wanted(2, 3), 10, what="agent's routes")
        rc, status, _ = node.json("status")
        assert rc == 0, status
        assert {r["state"] for r in status["routes"]} == {"ok"}
        rc, applied, _ = node.json("apply")
        assert rc == 0
        assert applied["writes"] == 0  # same Node objects, same routes: nothing to fight over
    finally:
        agent.stop(signal.SIGKILL)


def test_doctor_reads_the_nodes_and_checks_the_routes(node: Node) -> None:
    rc, checks = node.doctor()
    assert rc == 1
    assert checks["nodes"]["status"] == "ok"
    assert checks["nodes"]["saw"] == f"3 Nodes from {node.emu.url}, each with its pod subnets"
    assert checks["routes"]["status"] == "fail"
    assert "missing 10.244.3.0/24 via 10.10.0.3 (node3)" in checks["routes"]["details"]
    # the fix names the API, not an inventory there is none of, and works as printed
    fix = checks["routes"]["fix"]
    nosdn = f"{shlex.quote(sys.executable)} -m nosdn"  # as doctor was run: python -m nosdn
    assert fix == f"{nosdn} apply --kube-server {node.emu.url} --node {ME}"
    conf = node.workdir / "10-nosdn.conflist"
    assert checks["cni.conflist"]["fix"].startswith(
        f"{nosdn} render --kube-server {node.emu.url} --format cni --node {ME}"
    )
    venv = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": f"{venv}:{os.environ.get('PATH', '/usr/bin:/bin')}"}
    env["NOSDN_RT_PROTOS_D"] = str(node.workdir / "rt_protos.d")
    for command in (fix, checks["cni.conflist"]["fix"]):
        done = subprocess.run(
            ["ip", "netns", "exec", node.ns, "sh", "-c", command],
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr
    assert nosdn_routes(node.ns) == wanted(2, 3)
    assert '"subnet": "10.244.1.0/24"' in conf.read_text()

    node.emu.create_node(node_object("node4", ["10.10.0.4"]))
    _, checks = node.doctor()
    assert checks["routes"]["status"] == "ok"
    assert checks["cni.conflist"]["status"] == "ok"
    assert checks["nodes"]["status"] == "warn"
    assert checks["nodes"]["details"] == ["node4"]
    assert "have no spec.podCIDRs yet" in checks["nodes"]["saw"]


def test_doctor_without_the_api_still_checks_the_host(node: Node) -> None:
    rc, checks = node.doctor(server="http://127.0.0.1:1")
    assert rc == 1
    assert checks["nodes"]["status"] == "fail"
    assert (
        "cannot read the Nodes from the Kubernetes API at http://127.0.0.1:1"
        in (checks["nodes"]["saw"])
    )
    assert checks["forwarding.ipv4"]["status"] in ("ok", "fail")  # the host was still read
    assert checks["routes"]["status"] == "skip"


def test_trace_names_the_node_of_a_pod_address(node: Node) -> None:
    assert node.nosdn("apply").returncode == 0
    _, t, _ = node.json("trace", "10.244.3.7")
    assert (t["kind"], t["addressKind"], t["node"]) == ("Trace", "pod", "node3")
    assert t["wanted"] == {"dst": "10.244.3.0/24", "via": ["10.10.0.3"]}
    assert t["kernel"]["gateway"] == "10.10.0.3"
    text = node.nosdn("trace", "10.244.3.7")
    assert "node3" in text.stdout

    unreachable = node.nosdn("trace", "10.244.3.7", server="http://127.0.0.1:1")
    assert unreachable.returncode == 1
    assert "cannot read the Nodes" in unreachable.stderr
    assert "Traceback" not in unreachable.stderr
