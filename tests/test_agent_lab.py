"""The lab with agents instead of `nosdn apply` (root): every node's routes come from its own
`nosdn agent`, all pointed at one emulator, and the lab's ping matrix must pass.

The emulator runs in an "api" namespace of this test, cabled to the lab's switch like any
other host on the node network (10.10.0.250), so the agents reach it the way kubelets reach a
real API server: over the node network, from the node's own namespace. The lab itself builds
the namespaces and the pods with the real CNI plugins; the test adds nothing to the machine's
own namespace.
"""

from __future__ import annotations

import secrets
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from agent_env import AgentProcess, Emulator, node_object, nosdn_routes, wait_until
from conftest import ip, requires_root
from nosdn.lab import LabSpec, check, down, up
from nosdn.lab.ping import Endpoint, Probe, ping_once

pytestmark = [pytest.mark.root, pytest.mark.slow, requires_root]

API_IP = "10.10.0.250"


@pytest.fixture
def lab_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    name = f"a-{secrets.token_hex(3)}"
    monkeypatch.setenv("NOSDN_LAB_DIR", str(tmp_path / "labs"))
    try:
        yield name
    finally:
        down(name)


def test_lab_with_agents_passes_the_ping_matrix(
    lab_name: str, netns: Callable[..., str], tmp_path: Path
) -> None:
    lab = up(LabSpec(name=lab_name, nodes=3, ipv6=True, pods_per_node=2), routes=False)
    topo = lab.topo
    api = netns("nosdn-api")
    ip(topo.switch_ns, "link", "add", "api", "type", "veth", "peer", "name", "eth0", "netns", api)
    ip(topo.switch_ns, "link", "set", "api", "master", "br0", "up")
    ip(api, "addr", "add", f"{API_IP}/24", "dev", "eth0")
    ip(api, "link", "set", "eth0", "up")
    seed = [
        node_object(n.name, [str(a) for a in n.ips], [str(c) for c in n.pod_cidrs])
        for n in topo.nodes
    ]
    emu = Emulator(api, host="0.0.0.0", workdir=tmp_path, seed=seed).start()
    agents: list[AgentProcess] = []
    try:
        for n in topo.nodes:
            cidrs = ["--cluster-cidr", "10.244.0.0/16", "--cluster-cidr", "fd00:244::/56"]
            agents.append(
                AgentProcess(n.netns, n.name, f"http://{API_IP}:18080", tmp_path, *cidrs).start()
            )
        for a in agents:
            wait_until(lambda a=a: a.get("/readyz")[0] == 200, 30, 0.1, f"{a.node} ready")
        for n, a in zip(topo.nodes, agents, strict=True):
            others = {str(c) for m in topo.nodes if m is not n for c in m.pod_cidrs}
            assert set(nosdn_routes(n.netns)) == others
            # the agent writes byte for byte the conflist the lab drove the CNI plugins with
            assert a.cni.read_text() == lab.paths.conflist(n.name).read_text()
        # egress: the external host knows no pod route yet; masquerade makes it answer anyway
        pod = lab.pods()[0]
        ext = lab.external()
        for fam in topo.families:
            probe = Probe(
                pod, Endpoint("external", ext.netns, ext.ips, "external"), ext.ip_for(fam)
            )  # type: ignore[arg-type]
            res = ping_once(probe)
            assert res.ok, f"pod -> external over IPv{fam} without pod routes: {res.detail}"
        # the external host is not a node: it gets its routes from `nosdn apply --external`
        proc = subprocess.run(
            ["ip", "netns", "exec", ext.netns, sys.executable, "-m", "nosdn", "apply",
             "-f", str(lab.paths.inventory), "--external"],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stdout + proc.stderr
        result = check(lab)
        failed = [
            f"{r.probe.src.label}->{r.probe.dst.label} {r.probe.ip}: {r.detail}"
            for r in result.failed
        ]
        assert result.ok, "\n".join(failed[:20])
        assert len(result.results) > 0
    finally:
        for a in agents:
            a.stop(signal.SIGKILL)
        emu.kill()
