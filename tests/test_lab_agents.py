"""`nosdn lab up --agents` end to end (root): the lab as a live cluster, driven as a person
would, through the CLI. The lab starts its own API server (the real kube-apiserver on kine,
or kmock with ``--api emulator``) in ``NAME.api``, creates the Node objects and runs
`nosdn agent` in every node; `lab node add|remove|readdress` change the cluster through the
API and every node's kernel table must follow; `lab down` must leave no namespace, no process
and no file.

Each test makes its own lab with a unique name and removes it in teardown (state kept under
tmp_path); nothing is attached to this machine's own namespace.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from agent_env import nosdn_routes
from conftest import lab_namespaces, requires_root
from nosdn.lab import netns as ns

pytestmark = [pytest.mark.root, pytest.mark.slow, requires_root]
#: Labs made here are named LAB_PREFIX-xxxxxx (the `lab_name` fixture).
LAB_PREFIX = "g"


def nosdn(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nosdn", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )


def ok(*args: str) -> str:
    r = nosdn(*args)
    assert r.returncode == 0, f"nosdn {' '.join(args)}:\n{r.stdout}\n{r.stderr}"
    return r.stdout


def lab_processes(name: str) -> dict[int, str]:
    """pid -> command line of every process living in one of the lab's namespaces."""
    out = {}
    for n in lab_namespaces(name):
        for pid in ns.pids(n):
            try:
                out[pid] = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
    return out


def running(pid: int) -> bool:
    """Alive and not a zombie (the lab's processes outlive the command that started them)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.fixture(scope="module")
def kube_bins() -> Path:
    """The real API server's binaries, where `lab up --agents` looks for them."""
    from kube_api import binaries

    bins = binaries()
    if bins is None:
        if os.environ.get("CI") == "true":
            pytest.fail("CI: the real API server tier must run, and there is no Go toolchain")
        pytest.skip("no Go toolchain: `lab up --agents` with the real kube-apiserver is skipped")
    return bins


def wanted(nodes: dict[int, str]) -> dict[str, dict[str, str]]:
    """For nodes {number: IPv4}, what each one's kernel must hold (by namespace suffix)."""
    return {
        f"node{i}": {f"10.244.{j}.0/24": ip for j, ip in nodes.items() if j != i} for i in nodes
    }


def tables(name: str, nodes: dict[int, str]) -> dict[str, dict[str, str]]:
    return {f"node{i}": nosdn_routes(f"{name}.node{i}") for i in nodes}


def kubectl_argv(up_output: str) -> list[str]:
    """The kubectl command `lab up` printed, as argv (without its `get nodes ...`)."""
    line = next(x for x in up_output.splitlines() if "kubectl --kubeconfig" in x)
    argv = shlex.split(line)
    return argv[: argv.index("--kubeconfig") + 2]


def kubectl(argv: list[str], *args: str) -> str:
    proc = subprocess.run([*argv, *args], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def kube_nodes(argv: list[str]) -> dict[str, str]:
    """name -> InternalIP of every Node, as kubectl shows them."""
    items = json.loads(kubectl(argv, "get", "nodes", "-o", "json"))["items"]
    return {
        n["metadata"]["name"]: next(
            a["address"] for a in n["status"]["addresses"] if a["type"] == "InternalIP"
        )
        for n in items
    }


def test_live_cluster_on_the_real_api_server(lab_name: str, kube_bins: Path) -> None:
    up = ok("lab", "up", "--agents", "--nodes", "3", "--pods-per-node", "1", "--name", lab_name)
    state_dir = Path(os.environ["NOSDN_LAB_DIR"]) / lab_name
    kubeconfig = state_dir / "kubeconfig"
    assert f"kubeconfig: {kubeconfig}" in up
    kc = kubectl_argv(up)
    assert kc[:4] == ["ip", "netns", "exec", f"{lab_name}.api"]
    assert kc[4] == str(kube_bins / "kubectl")
    assert kc[-1] == str(kubeconfig)

    # every node's table holds its peers' routes, written by its agent (not nosdn apply)
    nodes = {1: "10.10.0.1", 2: "10.10.0.2", 3: "10.10.0.3"}
    assert tables(lab_name, nodes) == wanted(nodes)
    procs = lab_processes(lab_name)
    for i in nodes:
        mine = [c for p, c in procs.items() if p in ns.pids(f"{lab_name}.node{i}")]
        assert any(f"nosdn agent --node node{i} --kubeconfig" in c for c in mine), mine
        log = (state_dir / "agents" / f"node{i}.log").read_text()
        assert "routes: 2 added" in log, log
    assert any("kube-apiserver" in c for c in procs.values())
    assert kube_nodes(kc) == {"node1": "10.10.0.1", "node2": "10.10.0.2", "node3": "10.10.0.3"}
    check = ok("lab", "check", "--name", lab_name)
    assert "all 18 pings answered" in check

    # a node comes: its route appears on the others (and the others' on it)
    added = ok("lab", "node", "add", "--name", lab_name)
    assert "created Node node4" in added
    nodes[4] = "10.10.0.4"
    assert tables(lab_name, nodes) == wanted(nodes)
    assert kube_nodes(kc)["node4"] == "10.10.0.4"

    # a node moves: the others' routes to it follow to the new gateway
    moved = ok("lab", "node", "readdress", "node2", "--ip", "10.10.0.42", "--name", lab_name)
    assert "patched Node node2" in moved
    nodes[2] = "10.10.0.42"
    assert tables(lab_name, nodes) == wanted(nodes)
    assert kube_nodes(kc)["node2"] == "10.10.0.42"

    # a node goes: its route goes from every other node, the one that just moved included
    # (its agent's watch must not stay on a dead connection from its old address)
    ok("lab", "node", "remove", "node3", "--name", lab_name)
    del nodes[3]
    assert tables(lab_name, nodes) == wanted(nodes)
    assert f"{lab_name}.node3" not in lab_namespaces(lab_name)
    assert set(kube_nodes(kc)) == {"node1", "node2", "node4"}
    ok("lab", "node", "readdress", "node4", "--ip", "10.10.0.44", "--name", lab_name)
    nodes[4] = "10.10.0.44"
    assert tables(lab_name, nodes) == wanted(nodes)
    check = ok("lab", "check", "--name", lab_name)
    assert "all 18 pings answered" in check  # node1, node2, node4 now

    # down: no namespace, no process, no file
    pids = lab_processes(lab_name)
    assert len(pids) >= 5  # kine, kube-apiserver, three agents
    gone = ok("lab", "down", "--name", lab_name)
    assert re.search(r"killed \d+ process", gone)
    assert lab_namespaces(lab_name) == []
    assert [p for p in pids if running(p)] == []
    assert not state_dir.exists()


def test_live_cluster_on_the_emulator(lab_name: str) -> None:
    up = ok(
        "lab", "up", "--agents", "--api", "emulator", "--nodes", "2", "--pods-per-node", "1",
        "--name", lab_name,
    )  # fmt: skip
    assert "kmock emulator" in up
    nodes = {1: "10.10.0.1", 2: "10.10.0.2"}
    assert tables(lab_name, nodes) == wanted(nodes)
    ok("lab", "node", "add", "--name", lab_name)
    nodes[3] = "10.10.0.3"
    assert tables(lab_name, nodes) == wanted(nodes)
    ok("lab", "node", "readdress", "node1", "--name", lab_name)  # the first free of .100 up
    nodes[1] = "10.10.0.100"
    assert tables(lab_name, nodes) == wanted(nodes)
    ok("lab", "node", "remove", "node2", "--name", lab_name)
    del nodes[2]
    assert tables(lab_name, nodes) == wanted(nodes)
    assert "all 8 pings answered" in ok("lab", "check", "--name", lab_name)
    pids = lab_processes(lab_name)
    ok("lab", "down", "--name", lab_name)
    assert lab_namespaces(lab_name) == []
    assert [p for p in pids if running(p)] == []


def test_node_changes_without_agents_run_nosdn_apply_again(lab_name: str) -> None:
    ok("lab", "up", "--nodes", "2", "--pods-per-node", "1", "--name", lab_name)
    added = ok("lab", "node", "add", "--name", lab_name)
    assert "nosdn apply -f" in added
    nodes = {1: "10.10.0.1", 2: "10.10.0.2", 3: "10.10.0.3"}
    assert tables(lab_name, nodes) == wanted(nodes)
    ok("lab", "node", "readdress", "node3", "--ip", "10.10.0.33", "--name", lab_name)
    nodes[3] = "10.10.0.33"
    assert tables(lab_name, nodes) == wanted(nodes)
    ok("lab", "node", "remove", "node1", "--name", lab_name)
    del nodes[1]
    assert tables(lab_name, nodes) == wanted(nodes)
    assert "all 8 pings answered" in ok("lab", "check", "--name", lab_name)


def test_refusals_are_one_clear_line(lab_name: str, tmp_path: Path) -> None:
    env = {**os.environ, "NOSDN_CACHE": str(tmp_path / "no-cache")}
    r = subprocess.run(
        [sys.executable, "-m", "nosdn", "lab", "up", "--agents", "--name", lab_name],
        capture_output=True, text=True, check=False, env=env,
    )  # fmt: skip
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert "make kube" in lines[0]
    assert "tools/build-kube.sh" in lines[0]
    assert "--api emulator" in lines[0]
    assert lab_namespaces(lab_name) == []
    assert not (tmp_path / "labs" / lab_name).exists()

    ok("lab", "up", "--nodes", "1", "--pods-per-node", "1", "--no-routes", "--name", lab_name)
    for args, want in (
        (["remove", "node1"], "last node"),
        (["remove", "node7"], "has no node7"),
        (["readdress", "node1", "--ip", "10.10.0.250"], ".250-.255"),
        (["readdress", "node1", "--ip", "10.10.9.1"], "10.10.0.0/24"),
    ):
        r = nosdn("lab", "node", *args, "--name", lab_name)
        assert r.returncode == 2, (args, r.stdout, r.stderr)
        assert want in r.stderr, (args, r.stderr)
