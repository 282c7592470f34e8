"""Every command that reads the cluster, with ``--kubeconfig``, against a real kube-apiserver
(root): the node is a namespace cabled to the API server's (`KubeApi.attach`), and each command
runs there as an operator would, ``ip netns exec NODE python -m nosdn CMD --kubeconfig FILE``.

Beside the answers themselves, how each command fails when the server cannot be used: refused
credentials (a wrong token; the token of a deleted service account, which the server refuses
exactly as an expired one), an account without the right to list Nodes, a certificate-authority
that did not sign the server's certificate, a port nobody listens on. Each is exit 1 and one
line on stderr saying what failed and what to do, no traceback, nothing written.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from agent_env import node_object, nosdn_routes
from conftest import ip, requires_root
from kube_api import KubeApi

pytestmark = [pytest.mark.root, pytest.mark.slow, requires_root]

CIDR = "10.244.0.0/16"
COMMANDS: dict[str, tuple[str, ...]] = {
    "status": ("status",),
    "status --cluster": ("status", "--cluster"),
    "plan": ("plan",),
    "apply": ("apply",),
    "doctor": ("doctor",),
    "trace": ("trace", "10.244.2.5"),
    "routes": ("routes", "--router"),
    "render": ("render", "--format", "script"),
    "graph": ("graph", "--format", "dot"),
}


@dataclass
class Node:
    ns: str
    api: KubeApi
    workdir: Path

    def nosdn(self, *args: str, kubeconfig: Path) -> subprocess.CompletedProcess[str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("KUBECONFIG", "NOSDN_INVENTORY", "KUBERNETES_SERVICE_HOST")
        }
        env["NOSDN_RT_PROTOS_D"] = str(self.workdir / "rt_protos.d")
        argv = ["ip", "netns", "exec", self.ns, sys.executable, "-m", "nosdn", *args]
        argv += ["--kubeconfig", str(kubeconfig), "--cluster-cidr", CIDR]
        return subprocess.run(argv, capture_output=True, text=True, env=env, check=False)

    def json(self, *args: str, kubeconfig: Path) -> tuple[int, Any]:
        r = self.nosdn(*args, "-o", "json", kubeconfig=kubeconfig)
        assert r.returncode in (0, 1), r.stderr
        return r.returncode, json.loads(r.stdout)


@pytest.fixture
def node(kapi: KubeApi, netns: Callable[..., str], tmp_path: Path) -> Node:
    ns = netns("nosdn-rcli")
    ip(ns, "link", "add", "eth0", "type", "veth", "peer", "name", "peer0")
    ip(ns, "link", "set", "eth0", "addrgenmode", "none")
    ip(ns, "link", "set", "peer0", "addrgenmode", "none")
    ip(ns, "link", "set", "peer0", "up")
    ip(ns, "addr", "add", "10.10.0.1/24", "dev", "eth0")
    ip(ns, "link", "set", "eth0", "up")
    kapi.attach(ns)
    for i in (1, 2, 3):
        kapi.create_node(node_object(f"node{i}", [f"10.10.0.{i}"], [f"10.244.{i}.0/24"]))
    return Node(ns, kapi, tmp_path)


def test_every_command_reads_the_real_server(node: Node) -> None:
    admin = node.api.kubeconfig()
    rc, status = node.json("status", kubeconfig=admin)
    assert rc == 1
    assert status["target"] == "node/node1"
    assert {r["dst"]: r["state"] for r in status["routes"]} == {
        "10.244.2.0/24": "missing",
        "10.244.3.0/24": "missing",
    }
    plan = node.nosdn("plan", kubeconfig=admin)
    assert plan.returncode == 0, plan.stderr
    assert "10.244.2.0/24" in plan.stdout
    assert "10.244.3.0/24" in plan.stdout
    done = node.nosdn("apply", kubeconfig=admin)
    assert done.returncode == 0, done.stdout + done.stderr
    assert nosdn_routes(node.ns) == {"10.244.2.0/24": "10.10.0.2", "10.244.3.0/24": "10.10.0.3"}
    rc, status = node.json("status", kubeconfig=admin)
    assert rc == 0
    assert {r["state"] for r in status["routes"]} == {"ok"}
    _, doctor = node.json("doctor", kubeconfig=admin)
    checks = {c["check"]: c for c in doctor["checks"]}
    assert checks["routes"]["status"] == "ok", checks["routes"]
    trace = node.nosdn("trace", "10.244.2.5", kubeconfig=admin)
    assert "node2" in trace.stdout
    assert "10.10.0.2" in trace.stdout
    _, routes = node.json("routes", "--router", kubeconfig=admin)
    assert {r["node"] for r in routes["routes"]} == {"node1", "node2", "node3"}
    script = node.nosdn("render", "--format", "script", kubeconfig=admin)
    assert script.returncode == 0, script.stderr
    assert "10.244.3.0/24" in script.stdout
    dot = node.nosdn("graph", "--format", "dot", kubeconfig=admin)
    assert dot.returncode == 0, dot.stderr
    assert "node3" in dot.stdout


def _unusable_kubeconfigs(node: Node) -> dict[str, tuple[Path, str]]:
    """name -> (kubeconfig, the words its error must say)."""
    api = node.api
    wd = node.workdir
    admin = api.kubeconfig()
    out: dict[str, tuple[Path, str]] = {}
    out["wrong token"] = (api.kubeconfig("wrong", token="not-a-token"), "refused the credentials")
    for name in ("gone", "nobody"):
        api.call("POST", "/api/v1/namespaces/default/serviceaccounts", {"metadata": {"name": name}})
    gone, _ = api.service_account("default", "gone")
    api.call("DELETE", "/api/v1/namespaces/default/serviceaccounts/gone")
    out["expired token"] = (gone, "refused the credentials")
    nobody, _ = api.service_account("default", "nobody")
    out["no right to list nodes"] = (nobody, "may not list Nodes")

    def edited(name: str, **cluster: str) -> Path:
        cfg = json.loads(admin.read_text())
        cfg["clusters"][0]["cluster"].update(cluster)
        path = wd / f"{name}.kubeconfig"
        path.write_text(json.dumps(cfg))
        return path

    out["another CA"] = (
        edited("other-ca", **{"certificate-authority": str(api.pki / "admin.crt")}),
        "certificate-authority",
    )
    out["nobody listening"] = (
        edited("refused", server=api.url.replace(":6443", ":6444")),
        "is the server up",
    )
    return out


def test_every_command_fails_in_one_clear_line_when_the_server_cannot_be_used(
    node: Node,
) -> None:
    cases = _unusable_kubeconfigs(node)
    try:
        for case, (kubeconfig, says) in cases.items():
            for name, args in COMMANDS.items():
                r = node.nosdn(*args, kubeconfig=kubeconfig)
                what = f"{name} with {case}: {r.stdout[-500:]} {r.stderr[-1500:]}"
                assert r.returncode == 1, what
                assert "Traceback" not in r.stderr, what
                if name == "doctor":  # a report: the failed read is one of its checks
                    assert says in r.stdout, what
                    continue
                lines = r.stderr.strip().splitlines()
                assert len(lines) == 1, what
                assert "cannot read the Nodes from the Kubernetes API" in lines[0], what
                assert says in lines[0], what
        assert nosdn_routes(node.ns) == {}  # apply wrote nothing
    finally:
        node.api.call("DELETE", "/api/v1/namespaces/default/serviceaccounts/nobody")


def test_status_cluster_from_the_real_server(node: Node) -> None:
    """``status --cluster`` reads the conditions the agents write (through the status
    subresource, as they do) and the Events they post, from kube-apiserver itself."""
    from nosdn.daemon.condition import CONDITION, REASON_NO_PEER, REASON_UP
    from nosdn.daemon.events import event_body

    api = node.api

    def set_condition(name: str, status: str, reason: str, message: str) -> None:
        cond = {"type": CONDITION, "status": status, "reason": reason, "message": message}
        api.patch_node(name, {"status": {"conditions": [cond]}})

    set_condition("node1", "False", REASON_UP, "nosdn programmed routes to 2 pod subnet(s)")
    set_condition("node2", "True", REASON_NO_PEER, "node node3 (10.10.0.3): not on-link")
    body = event_body(
        "node2",
        namespace="default",
        etype="Warning",
        reason="NodeOffLink",
        message="node node3 (10.10.0.3): not on-link; its pod routes are skipped",
    )
    api.call("POST", "/api/v1/namespaces/default/events", body)
    r = node.nosdn("status", "--cluster", kubeconfig=api.kubeconfig())
    assert r.returncode == 1, r.stdout + r.stderr
    rows = {line.split()[0]: line.split() for line in r.stdout.splitlines()[1:4]}
    assert rows["node1"][1:3] == ["ready", "NosdnIsUp"]
    assert rows["node2"][1:5] == ["not", "ready", REASON_NO_PEER, "0"]
    assert rows["node2"][5] == "1"  # one off-link peer, from the Event
    assert rows["node3"][1:3] == ["no", "agent"]
    assert "node2: off-link: node node3 (10.10.0.3): not on-link" in r.stdout
    assert "agents ready: 1/3" in r.stdout
    _, doc = node.json("status", "--cluster", kubeconfig=api.kubeconfig())
    assert doc["kind"] == "ClusterStatus"
    assert [n["ready"] for n in doc["items"]] == [True, False, False]
