"""`nosdn lab` end to end (root): real namespaces, real CNI plugins, `nosdn apply`, real pings.

Each test makes its own lab with a unique name and removes it in teardown; nothing is attached
to this machine's own namespace (the lab never does that), so no packet leaves the test.
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import lab_namespaces, requires_root, this_machines_network
from nosdn.lab import Lab, LabError, LabSpec, apply_routes, check, down, open_lab, up
from nosdn.lab import netns as ns
from nosdn.lab.cni import CniError
from nosdn.lab.topology import LabNames

pytestmark = [pytest.mark.root, pytest.mark.slow, requires_root]
#: Labs made here are named LAB_PREFIX-xxxxxx (the `lab_name` fixture).
LAB_PREFIX = "t"


def nosdn(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nosdn", *args], capture_output=True, text=True, check=False
    )


def failed_pairs(result_json: dict[str, object]) -> set[tuple[str, str, int]]:
    rows = result_json["results"]
    assert isinstance(rows, list)
    return {(r["from"], r["to"], r["family"]) for r in rows if not r["ok"]}


@pytest.mark.parametrize("ipv6", [False, True], ids=["ipv4", "dual-stack"])
def test_three_nodes_ping_matrix_break_and_repair(lab_name: str, ipv6: bool) -> None:
    host_before = this_machines_network()
    lab = up(LabSpec(name=lab_name, nodes=3, ipv6=ipv6, pods_per_node=2), routes=False)
    assert len(lab_namespaces(lab_name)) == 1 + 1 + 3 + 3 * 2  # switch, external, nodes, pods

    # The pods run on exactly what `nosdn render --format cni --node NODE` prints.
    for node in ("node1", "node3"):
        rendered = nosdn(
            "render", "-f", str(lab.paths.inventory), "--format", "cni", "--node", node
        )
        assert rendered.returncode == 0, rendered.stderr
        assert rendered.stdout == lab.paths.conflist(node).read_text()

    runs = apply_routes(lab)
    assert [r.where for r in runs] == ["node1", "node2", "node3", "external"]
    assert all(r.returncode == 0 for r in runs)
    assert runs[0].argv[:4] == ("nosdn", "apply", "-f", str(lab.paths.inventory))
    assert this_machines_network() == host_before  # nothing of the lab in our own namespace

    result = check(lab)
    families = 2 if ipv6 else 1
    # per family: 6 pods x 5 other pods + 3 nodes x 6 pods + external x 6 pods
    assert len(result.results) == families * (30 + 18 + 6)
    assert result.failed == []
    assert result.ok

    # Delete node1's route to node2's IPv4 pod subnet by hand, inside node1.
    node1 = lab.topo.node("node1").netns
    ns.run(["ip", "-n", node1, "route", "del", "10.244.2.0/24"])
    r = nosdn("lab", "check", "--name", lab_name, "-o", "json")
    assert r.returncode == 1, r.stdout + r.stderr
    pods1 = ["node1/pod1", "node1/pod2"]
    pods2 = ["node2/pod1", "node2/pod2"]
    expected = (
        {(a, b, 4) for a in pods1 for b in pods2}  # node1 has no way there
        | {(b, a, 4) for a in pods1 for b in pods2}  # replies from node1's pods have none back
        | {("node1", b, 4) for b in pods2}
    )
    assert failed_pairs(json.loads(r.stdout)) == expected

    # The table says so too, and `lab apply` (nosdn apply again) repairs it.
    table = nosdn("lab", "check", "--name", lab_name)
    assert table.returncode == 1
    assert "✗ every ping between node1's pods and node2's pods fails, both ways" in table.stdout
    assert "node1 cannot reach the other's pods either" in table.stdout  # one line, not 10
    assert f"doctor --netns {node1}" in table.stdout  # and where to look next
    assert f"{len(expected)} of {len(result.results)} pings failed" in table.stdout
    repaired = nosdn("lab", "apply", "--name", lab_name)
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    assert check(open_lab(lab_name)).ok

    gone = nosdn("lab", "down", "--name", lab_name)
    assert gone.returncode == 0, gone.stderr
    assert lab_namespaces(lab_name) == []
    assert not lab.paths.root.exists()
    again = nosdn("lab", "down", "--name", lab_name)
    assert again.returncode == 0
    assert "nothing to remove" in again.stdout


def test_down_after_a_crash(lab_name: str) -> None:
    """No state file, a process still running in a pod: down finds and removes everything."""
    lab = up(LabSpec(name=lab_name, nodes=2, pods_per_node=1), routes=False)
    pod_ns = LabNames(lab_name).pod("node1", "pod1")
    sleeper = subprocess.Popen(["ip", "netns", "exec", pod_ns, "sleep", "300"])
    try:
        deadline = time.monotonic() + 5
        while not ns.pids(pod_ns) and time.monotonic() < deadline:  # until sleep is in there
            time.sleep(0.01)
        assert ns.pids(pod_ns), "sleep never showed up in the pod namespace"
        shutil.rmtree(lab.paths.root)

        report = down(lab_name)

        assert sleeper.wait(5) == -9  # SIGKILLed by down
        assert sleeper.pid in report.killed
        assert len(report.namespaces) == 1 + 1 + 2 + 2
        assert lab_namespaces(lab_name) == []
    finally:
        if sleeper.poll() is None:
            sleeper.kill()
            sleeper.wait()


def test_up_refuses_an_existing_lab_and_leaves_it_alone(lab_name: str) -> None:
    up(LabSpec(name=lab_name, nodes=1, pods_per_node=1), routes=False)
    before = lab_namespaces(lab_name)
    with pytest.raises(LabError, match=rf"lab '{lab_name}' already exists.*lab down --name"):
        up(LabSpec(name=lab_name, nodes=2), routes=False)
    assert lab_namespaces(lab_name) == before
    assert isinstance(open_lab(lab_name), Lab)


def test_failed_up_removes_what_it_made(lab_name: str, tmp_path: Path) -> None:
    """A plugin that fails (here: a stand-in `bridge` that returns a CNI error) stops `up`,
    the error carries the plugin's message, and nothing of the lab is left."""
    plugins = tmp_path / "cni"
    plugins.mkdir()
    for real in ("host-local", "loopback", "portmap"):
        (plugins / real).symlink_to(Path("/usr/lib/cni") / real)
    bridge = plugins / "bridge"
    bridge.write_text(
        "#!/bin/sh\ncat >/dev/null\n"
        'echo \'{"cniVersion":"1.0.0","code":11,"msg":"no bridge today"}\'\nexit 1\n'
    )
    bridge.chmod(0o755)
    with pytest.raises(CniError, match="no bridge today") as caught:
        up(LabSpec(name=lab_name, nodes=2), cni_path=[str(plugins)])
    assert caught.value.code == 11
    assert lab_namespaces(lab_name) == []
    assert not (tmp_path / "labs" / lab_name).exists()


def test_demo_command(lab_name: str) -> None:
    r = nosdn("lab", "demo", "--name", lab_name)
    assert r.returncode == 0, r.stdout + r.stderr
    # the transcript shows the command that ran (this interpreter), not a `nosdn` not on PATH
    ran = shlex.join(["ip", "netns", "exec", f"{lab_name}.node1", sys.executable, "-m", "nosdn"])
    assert f"$ {ran} apply -f" in r.stdout
    assert "all 54 pings answered" in r.stdout
    assert "demo passed" in r.stdout
    assert lab_namespaces(lab_name) == []
