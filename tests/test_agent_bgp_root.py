"""`nosdn agent --bgp` on the wire (root): the real agent in a node namespace starts and
supervises a real BIRD, a router namespace runs BIRD with ``render --format bird --bgp``'s
config (dynamic neighbours on the node network, nothing about this node in it), and the
router's kernel table learns this node's pod subnet.

Each test makes two namespaces (unique names, removed with everything running in them): the
node (``eth0`` 10.10.0.1/24, the emulator on its loopback) and the router (``r0`` 10.10.0.254/24,
a veth to the node). Every BIRD is killed by its pid file in a finally, every agent by its
process. A second node, node2 on 10.20.0.2, is off-link: in BGP mode it is reached through the
router and does not make the node unready.

Failures are reported as they would be met: a wrong peer ASN and an MD5 mismatch (the router
re-rendered with a password the node does not have) each fail doctor's line for the session
with the fix; a session the router drops is a ``BgpSessionDown`` Event and a flap metric.
Dual top-of-rack: the node's segment becomes a bridge (a switch namespace) with a second router
on it; when one router goes, the other keeps the subnet and the node stays ready.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from agent_env import AgentProcess, Emulator, node_object, wait_until
from conftest import ip, requires_root
from nosdn.render import RenderOptions
from nosdn.render.bgp import read_passwords, render_bird_bgp
from nosdn.sources.inventory import load_cluster

pytestmark = [pytest.mark.root, pytest.mark.slow, requires_root]

ROUTER_INVENTORY = """\
clusterCIDRs: [10.244.0.0/16]
bgp:
  asn: 64512
  gracefulRestartTime: 120
  nodeNetworks: [10.10.0.0/24]
  peers:
    - {address: 10.10.0.254, asn: 65000}
nodes: []
"""


def _kill_pidfile(path: Path) -> None:
    with suppress(OSError, ValueError):
        os.kill(int(path.read_text().strip()), signal.SIGKILL)


@dataclass
class BgpEnv:
    node: str
    router: str
    emu: Emulator
    workdir: Path
    router_sock: Path
    agents: list[AgentProcess] = field(default_factory=list)

    @property
    def bird_dir(self) -> Path:
        return self.workdir / "node-bird"

    def agent(self, *args: str, peer: str = "10.10.0.254:65000") -> AgentProcess:
        a = AgentProcess(
            self.node,
            "node1",
            self.emu.url,
            self.workdir,
            "--bgp",
            "--bgp-peer",
            peer,
            "--bgp-dir",
            str(self.bird_dir),
            "--masquerade=false",
            *args,
        ).start()
        self.agents.append(a)
        return a

    def nosdn(self, *args: str) -> subprocess.CompletedProcess[str]:
        """A one-shot nosdn command in the node namespace, reading the emulator and BIRD."""
        return subprocess.run(
            ["ip", "netns", "exec", self.node, sys.executable, "-m", "nosdn", *args,
             "--kube-server", self.emu.url, "--bgp-dir", str(self.bird_dir)],
            capture_output=True, text=True, check=False, timeout=60,
        )  # fmt: skip

    def learned(self) -> dict[str, str]:
        out = ip(self.router, "route", "show", "proto", "bird")
        return dict(re.findall(r"^(\S+) via (\S+)", out, re.M))

    def ready(self, a: AgentProcess, timeout: float = 30) -> None:
        def ok() -> bool:
            if not a.running():
                raise AssertionError(f"agent exited:\n{a.logs()[-3000:]}")
            return a.get("/readyz")[0] == 200

        wait_until(ok, timeout, 0.2, f"agent /readyz ({a.get('/readyz')})")


@pytest.fixture
def env(netns: Callable[..., str], tmp_path: Path) -> Iterator[BgpEnv]:
    node, router = netns("nosdn-bgpa"), netns("nosdn-bgpr")
    ip(router, "link", "add", "r0", "type", "veth", "peer", "name", "eth0", "netns", node)
    ip(router, "addr", "add", "10.10.0.254/24", "dev", "r0")
    ip(router, "link", "set", "r0", "up")
    ip(node, "addr", "add", "10.10.0.1/24", "dev", "eth0")
    ip(node, "link", "set", "eth0", "up")
    ip(node, "route", "add", "default", "via", "10.10.0.254")
    inv = tmp_path / "router.yaml"
    inv.write_text(ROUTER_INVENTORY)
    conf = tmp_path / "router.conf"
    conf.write_text(
        render_bird_bgp(load_cluster(inv, warn=False), RenderOptions(bgp=True), standalone=True)
    )
    sock, pid = tmp_path / "router.ctl", tmp_path / "router.pid"
    seed = [
        node_object("node1", ["10.10.0.1"], ["10.244.1.0/24"]),
        node_object("node2", ["10.20.0.2"], ["10.244.2.0/24"]),
    ]
    emu: Emulator | None = None
    e: BgpEnv | None = None
    try:
        subprocess.run(
            [
                "ip",
                "netns",
                "exec",
                router,
                "bird",
                "-c",
                str(conf),
                "-s",
                str(sock),
                "-P",
                str(pid),
            ],
            check=True,
            capture_output=True,
        )
        emu = Emulator(node, workdir=tmp_path, seed=seed).start()
        e = BgpEnv(node, router, emu, tmp_path, sock)
        yield e
    finally:
        if e is not None:
            for a in e.agents:
                a.stop(signal.SIGKILL)
            _kill_pidfile(e.bird_dir / "bird.pid")
        if emu is not None:
            emu.kill()
        _kill_pidfile(pid)


def test_the_router_learns_the_nodes_subnet_and_follows_a_change(env: BgpEnv) -> None:
    a = env.agent()
    wait_until(lambda: env.learned() == {"10.244.1.0/24": "10.10.0.1"}, 30, 0.2, "router route")
    # node2 is off-link: reached through the router, not an error that makes us unready
    env.ready(a)
    assert a.metric("nosdn_bgp_session_up") == 1
    assert a.metric("nosdn_bgp_prefixes_announced") == 1
    assert a.metric("nosdn_bgp_bird_starts_total") == 1
    cond = {c["type"]: c for c in env.emu.node("node1")["status"]["conditions"]}
    wait_until(
        lambda: (
            {c["type"]: c for c in env.emu.node("node1")["status"]["conditions"]}.get(
                "NetworkUnavailable", {}
            ).get("reason")
            == "NosdnIsUp"
        ),
        15,
        0.2,
        f"condition NosdnIsUp ({cond})",
    )
    # only its own subnet: node2's is never announced by node1
    assert "10.244.2.0/24" not in env.learned()
    st = env.nosdn("status", "--node", "node1")
    assert "bgp peer 10.10.0.254 AS 65000: Established since" in st.stdout, st.stdout + st.stderr
    assert "announces 1 prefix(es)" in st.stdout
    assert "via the router: 10.244.2.0/24 of node node2 (10.20.0.2), announced by node2" in (
        st.stdout
    )
    assert st.returncode == 0, st.stdout + st.stderr
    doc = env.nosdn("doctor", "--node", "node1", "-o", "json")
    checks = {c["check"]: c for c in json.loads(doc.stdout)["checks"]}
    assert checks["bgp.10.10.0.254"]["status"] == "ok"
    assert checks["offlink"]["status"] == "ok"
    assert "announced by them over BGP" in checks["offlink"]["saw"]
    tr = env.nosdn("trace", "10.244.2.5", "--node", "node1")
    assert "via the router (via 10.10.0.254), announced by node2 over BGP" in tr.stdout, tr.stdout
    assert tr.returncode == 0, tr.stdout + tr.stderr
    env.emu.patch_node(
        "node1", {"spec": {"podCIDR": "10.244.9.0/24", "podCIDRs": ["10.244.9.0/24"]}}
    )
    wait_until(lambda: env.learned() == {"10.244.9.0/24": "10.10.0.1"}, 15, 0.1, "re-announce")


def test_sigkill_keeps_bird_and_the_routers_route_and_the_next_agent_adopts_it(
    env: BgpEnv,
) -> None:
    a = env.agent()
    wait_until(lambda: env.learned() == {"10.244.1.0/24": "10.10.0.1"}, 30, 0.2, "router route")
    env.ready(a)
    mon = subprocess.Popen(
        ["ip", "-n", env.router, "monitor", "route"], stdout=subprocess.PIPE, text=True
    )
    try:
        time.sleep(0.5)
        a.stop(signal.SIGKILL)
        time.sleep(3)
        assert env.learned() == {"10.244.1.0/24": "10.10.0.1"}  # BIRD kept the session
        b = env.agent()
        env.ready(b)
        assert b.metric("nosdn_bgp_bird_starts_total") == 0  # adopted, not restarted
        assert "adopted the running BIRD" in b.logs()
        time.sleep(2)
    finally:
        mon.terminate()
        out, _ = mon.communicate(timeout=10)
    assert "10.244.1.0/24" not in out  # no flap on the router: not withdrawn, not re-added


def test_bird_killed_is_restarted_and_graceful_restart_keeps_the_route(env: BgpEnv) -> None:
    a = env.agent()
    wait_until(lambda: env.learned() == {"10.244.1.0/24": "10.10.0.1"}, 30, 0.2, "router route")
    env.ready(a)
    _kill_pidfile(env.bird_dir / "bird.pid")
    time.sleep(0.5)
    assert env.learned() == {"10.244.1.0/24": "10.10.0.1"}  # the router keeps it (GR)
    wait_until(lambda: a.metric("nosdn_bgp_bird_starts_total") == 2, 15, 0.2, "BIRD restarted")
    env.ready(a)
    assert env.learned() == {"10.244.1.0/24": "10.10.0.1"}


def test_a_wrong_peer_asn_is_reported_with_the_fix(env: BgpEnv) -> None:
    a = env.agent(peer="10.10.0.254:65099")

    def down() -> str:
        code, text = a.get("/readyz")
        return text if code == 503 and "no BGP session established" in text else ""

    text = wait_until(down, 30, 0.3, "readyz naming the BGP session")
    assert "65099" in text
    doc = env.nosdn("doctor", "--node", "node1", "-o", "json")
    assert doc.returncode == 1
    bgp = {c["check"]: c for c in json.loads(doc.stdout)["checks"]}["bgp.10.10.0.254"]
    assert bgp["status"] == "fail"
    assert "AS 65099" in bgp["saw"]
    assert bgp["fix"]
    assert env.learned() == {}
    wait_until(
        lambda: (
            {c["type"]: c for c in env.emu.node("node1")["status"]["conditions"]}.get(
                "NetworkUnavailable", {}
            ).get("reason")
            == "NosdnNoBgpSession"
        ),
        15,
        0.2,
        "condition NosdnNoBgpSession",
    )


def _router_with_password(env: BgpEnv, secret: str) -> None:
    """The router's config re-rendered with an MD5 password on its peer group, reloaded."""
    pw = env.workdir / "router-password"
    pw.write_text(secret)
    pw.chmod(0o600)
    inv = env.workdir / "router.yaml"
    inv.write_text(ROUTER_INVENTORY.replace("asn: 65000}", f"asn: 65000, passwordFile: {pw}}}"))
    cluster = load_cluster(inv, warn=False)
    opts = read_passwords(cluster, "bird", RenderOptions(bgp=True))
    text = render_bird_bgp(cluster, opts, standalone=True)
    assert f'password "{secret}";' in text
    (env.workdir / "router.conf").write_text(text)
    subprocess.run(
        ["birdc", "-s", str(env.router_sock), "configure"], check=True, capture_output=True
    )


def test_an_md5_mismatch_is_reported_by_doctor_with_the_fix(env: BgpEnv) -> None:
    _router_with_password(env, "router-secret")
    wrong = env.workdir / "node-password"
    wrong.write_text("not-the-routers")
    wrong.chmod(0o600)
    a = env.agent("--bgp-password-file", str(wrong))

    def failing() -> dict[str, Any] | None:
        doc = env.nosdn("doctor", "--node", "node1", "-o", "json")
        checks = {c["check"]: c for c in json.loads(doc.stdout)["checks"]}
        c = checks.get("bgp.10.10.0.254")
        return c if c and c["status"] == "fail" and doc.returncode == 1 else None

    check = wait_until(failing, 30, 0.5, "doctor failing the session")
    assert "MD5" in check["fix"], check
    assert "10.10.0.254" in check["saw"]
    time.sleep(3)  # long enough for a session to come up if the keys matched
    assert env.learned() == {}
    assert a.metric("nosdn_bgp_session_up") == 0
    # the same key on both sides: the session comes up and the subnet is announced
    wrong.write_text("router-secret")
    env.emu.patch_node("node1", {"metadata": {"labels": {"nudge": "1"}}})  # a pass re-reads it
    wait_until(lambda: env.learned() == {"10.244.1.0/24": "10.10.0.1"}, 40, 0.3, "router route")


def test_a_lost_session_is_an_event_and_a_flap(env: BgpEnv) -> None:
    a = env.agent()
    wait_until(lambda: env.learned() == {"10.244.1.0/24": "10.10.0.1"}, 30, 0.2, "router route")
    env.ready(a)
    # the router drops every dynamic session, as a router reboot or a cut link would
    subprocess.run(
        ["birdc", "-s", str(env.router_sock), "disable", '"nosdn_kubernetes_dyn1_v4*"'],
        check=True,
        capture_output=True,
    )

    def lost() -> list[Any]:
        return [e for e in env.emu.events() if e.get("reason") == "BgpSessionDown"]

    events = wait_until(lost, 20, 0.3, "a BgpSessionDown Event")
    assert "10.10.0.254" in events[0]["message"]
    assert events[0]["type"] == "Warning"
    assert a.metric("nosdn_bgp_session_flaps_total") == 1
    assert a.metric("nosdn_bgp_session_up") == 0


def test_dual_top_of_rack_the_subnet_stays_announced_when_one_router_goes(
    env: BgpEnv, netns: Callable[..., str]
) -> None:
    # two routers on the node's segment: a switch namespace with a bridge, the node's and the
    # first router's links moved onto it, a second router at 10.10.0.253
    sw, r2 = netns("nosdn-bgpsw"), netns("nosdn-bgpr2")
    ip(env.router, "link", "del", "r0")  # the node-router veth (both ends)
    ip(sw, "link", "add", "br0", "type", "bridge")
    ip(sw, "link", "set", "br0", "up")
    for port, ns, dev, addr in (
        ("p-node", env.node, "eth0", "10.10.0.1/24"),
        ("p-r1", env.router, "r0", "10.10.0.254/24"),
        ("p-r2", r2, "r0", "10.10.0.253/24"),
    ):
        ip(sw, "link", "add", port, "type", "veth", "peer", "name", dev, "netns", ns)
        ip(sw, "link", "set", port, "master", "br0", "up")
        ip(ns, "addr", "add", addr, "dev", dev)
        ip(ns, "link", "set", dev, "up")
    ip(env.node, "route", "add", "default", "via", "10.10.0.254")
    inv = env.workdir / "router2.yaml"
    inv.write_text(ROUTER_INVENTORY.replace("10.10.0.254", "10.10.0.253"))
    conf = env.workdir / "router2.conf"
    conf.write_text(
        render_bird_bgp(load_cluster(inv, warn=False), RenderOptions(bgp=True), standalone=True)
    )
    sock, pid = env.workdir / "router2.ctl", env.workdir / "router2.pid"
    try:
        subprocess.run(
            ["ip", "netns", "exec", r2, "bird", "-c", str(conf), "-s", str(sock), "-P", str(pid)],
            check=True,
            capture_output=True,
        )

        def learned2() -> dict[str, str]:
            out = ip(r2, "route", "show", "proto", "bird")
            return dict(re.findall(r"^(\S+) via (\S+)", out, re.M))

        a = env.agent("--bgp-peer", "10.10.0.253:65000")
        want = {"10.244.1.0/24": "10.10.0.1"}
        wait_until(lambda: env.learned() == want, 30, 0.2, "router 1 learns the subnet")
        wait_until(lambda: learned2() == want, 30, 0.2, "router 2 learns the subnet")
        wait_until(lambda: a.metric("nosdn_bgp_session_up") == 2, 15, 0.2, "two sessions")
        env.ready(a)
        # router 1 goes away (its BIRD dies, as a switch reboot would take it)
        _kill_pidfile(env.workdir / "router.pid")
        wait_until(lambda: a.metric("nosdn_bgp_session_up") == 1, 30, 0.3, "one session left")
        assert learned2() == want
        assert a.get("/readyz")[0] == 200  # one router still carries the subnet: ready
        st = env.nosdn("status", "--node", "node1")
        assert "bgp peer 10.10.0.253 AS 65000: Established since" in st.stdout, st.stdout
        assert "! bgp peer 10.10.0.254 AS 65000:" in st.stdout, st.stdout
    finally:
        _kill_pidfile(pid)
