"""`nosdn lab demo|up --agents --segments 3 --router-daemon bird|frr --bgp` end to end (root): the
nodes announce their pod subnets to the router over BGP, so a cluster spans L3 segments with
no pod route in the router's config.

What each test proves, through the CLI as a person would run it:

- the router's config is only the rendered peer group (no pod route); every pod pings every
  pod across all segments, and the external host pings every pod (``lab demo``), with BIRD and
  with FRR, IPv4 and dual stack, on kmock and on the real kube-apiserver;
- a node added is learned by the router and reachable from every segment while the router's
  config file stays byte for byte the same; a node removed is withdrawn; a node's pod subnet
  changed in the API is withdrawn and the new one announced;
- an agent killed with SIGKILL and restarted: BIRD keeps its session, no ping to that node's
  pod is lost, and the router's route to it never flaps (``ip monitor route`` on the router).

Each lab has a unique name and is removed in teardown (state under tmp_path); the API server
is the kmock emulator, and the real kube-apiserver for two of the demos.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import time

import pytest

from conftest import requires_root
from nosdn.lab import cluster as live
from nosdn.lab import open_lab
from test_lab_agents import (
    kube_bins,  # noqa: F401 - the fixture, asked for by name
    ok,  # the CLI as a person runs it, failing with its output
)

pytestmark = [pytest.mark.root, pytest.mark.slow, requires_root]
#: Labs made here are named LAB_PREFIX-xxxxxx (the `lab_name` fixture).
LAB_PREFIX = "b"


def router_routes(lab: str) -> set[str]:
    out = subprocess.run(
        ["ip", "-n", f"{lab}.rt", "route", "show", "proto", "bird"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def wait_for(pred: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.parametrize(
    ("router", "ipv6", "api"),
    [
        ("bird", False, "emulator"),
        ("bird", True, "real"),
        ("frr", False, "real"),
        ("frr", True, "emulator"),
    ],
    ids=[
        "bird-ipv4-kmock",
        "bird-dual-stack-apiserver",
        "frr-ipv4-apiserver",
        "frr-dual-stack-kmock",
    ],
)
def test_demo_every_pod_pings_every_pod_across_three_segments(
    lab_name: str, router: str, ipv6: bool, api: str, request: pytest.FixtureRequest
) -> None:
    if api == "real":
        request.getfixturevalue("kube_bins")  # built by `make kube`; skipped without Go
    args = ["lab", "demo", "--agents", "--api", api, "--segments", "3", "--nodes", "6"]
    args += ["--router-daemon", router, "--bgp", "--pods-per-node", "1", "--name", lab_name]
    out = ok(*args, *(["--ipv6"] if ipv6 else []))
    assert "every pod subnet learned over BGP" in out
    # 6 pods: 5 others from each pod, 6 from each of 6 nodes and the external host
    pings = (6 * 5 + 7 * 6) * (2 if ipv6 else 1)
    assert f"all {pings} pings answered" in out
    assert "demo passed" in out


def test_nodes_come_go_and_change_subnet_with_the_routers_config_untouched(
    lab_name: str,
) -> None:
    ok("lab", "up", "--agents", "--api", "emulator", "--segments", "3", "--nodes", "3",
       "--router-daemon", "bird", "--bgp", "--pods-per-node", "1", "--name", lab_name)  # fmt: skip
    lab = open_lab(lab_name)
    conf = lab.paths.router_dir / "nosdn-bird.conf"
    text = conf.read_text()
    assert "neighbor range 10.10.0.0/24" in text
    # no pod route, no node: only the peer group and its filter at the node mask
    assert "10.244.0.0/16{24,24}" in text
    assert "10.244.1." not in text
    assert "10.10.0.1 " not in text
    before = hashlib.sha256(conf.read_bytes()).hexdigest()
    assert router_routes(lab_name) == {"10.244.1.0/24", "10.244.2.0/24", "10.244.3.0/24"}

    ok("lab", "node", "add", "--name", lab_name)  # node4, on the last segment
    assert "10.244.4.0/24" in router_routes(lab_name)
    assert hashlib.sha256(conf.read_bytes()).hexdigest() == before
    check = ok("lab", "check", "--name", lab_name)
    assert "pings answered" in check

    ok("lab", "node", "remove", "node2", "--name", lab_name)
    wait_for(lambda: "10.244.2.0/24" not in router_routes(lab_name), 15, "withdrawn")
    assert router_routes(lab_name) == {"10.244.1.0/24", "10.244.3.0/24", "10.244.4.0/24"}

    api = live.open_api(open_lab(lab_name))
    api.call(
        "PATCH",
        "/api/v1/nodes/node3",
        {"spec": {"podCIDR": "10.244.33.0/24", "podCIDRs": ["10.244.33.0/24"]}},
        "application/merge-patch+json",
    )
    wait_for(
        lambda: router_routes(lab_name) == {"10.244.1.0/24", "10.244.33.0/24", "10.244.4.0/24"},
        15,
        "the old subnet withdrawn, the new one announced",
    )
    assert hashlib.sha256(conf.read_bytes()).hexdigest() == before


def test_sigkill_of_an_agent_loses_no_ping_and_no_router_route_flaps(lab_name: str) -> None:
    ok("lab", "up", "--agents", "--api", "emulator", "--segments", "3", "--nodes", "3",
       "--router-daemon", "bird", "--bgp", "--pods-per-node", "1", "--name", lab_name)  # fmt: skip
    lab = open_lab(lab_name)
    pod = lab.state.pods["node3/pod1"][0]  # on segment 3: the external host goes via the router
    pid = lab.state.agents["node3"]
    mon = subprocess.Popen(
        ["ip", "-n", f"{lab_name}.rt", "monitor", "route"], stdout=subprocess.PIPE, text=True
    )
    ping = subprocess.Popen(
        ["ip", "netns", "exec", f"{lab_name}.ext", "ping", "-i", "0.1", "-c", "80", "-W", "1",
         pod],
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        time.sleep(1)
        os.kill(pid, signal.SIGKILL)
        time.sleep(2)
        assert "10.244.3.0/24" in router_routes(lab_name)  # BIRD outlived its agent
        ok("lab", "apply", "--name", lab_name)  # starts the agent again; it adopts BIRD
        out, _ = ping.communicate(timeout=60)
    finally:
        if ping.poll() is None:
            ping.kill()
        mon.terminate()
        flaps, _ = mon.communicate(timeout=10)
    sent_received = [ln for ln in out.splitlines() if "packets transmitted" in ln]
    assert sent_received, out
    assert " 0% packet loss" in sent_received[0], sent_received[0]
    assert "10.244.3.0/24" not in flaps, flaps  # never withdrawn nor re-added on the router
    log = lab.paths.agent_log("node3").read_text()
    assert "adopted the running BIRD" in log
