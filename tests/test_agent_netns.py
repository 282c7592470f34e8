"""`nosdn agent --netns NS` (root): started from the machine's own namespace, the agent runs
itself again under ``ip netns exec NS`` and programs the routes of NS only.

The agent is started *without* ``ip netns exec`` (the `agent_env.AgentProcess` argv minus that
prefix, plus ``--netns``); the emulator serves the Nodes on the loopback of NS, so the agent can
only become ready once it really runs there. The machine's own namespace and a second, sibling
namespace (made with the same veth set-up and address) are read before and after: the agent
writes neither. Nothing listens in or connects from the machine's own namespace.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from agent_env import AgentProcess, Emulator, node_object, nosdn_routes, wait_until
from conftest import ip, on_link_namespace, requires_root

pytestmark = [pytest.mark.root, pytest.mark.slow, requires_root]

PEERS = {"10.244.2.0/24": "10.10.0.2", "10.244.3.0/24": "10.10.0.3"}


def _host(*args: str) -> Any:
    """``ip -j ARGS`` in the machine's own namespace (read only)."""
    out = subprocess.run(["ip", "-j", *args], capture_output=True, text=True, check=True).stdout
    return json.loads(out or "[]")


def _host_owned() -> tuple[list[Any], list[Any]]:
    routes = [r for fam in ("-4", "-6") for r in _host(fam, "route", "show", "proto", "157")]
    return routes, _host("nexthop", "show", "protocol", "157")


def test_agent_netns_programs_that_namespace_only(
    netns: Callable[..., str], tmp_path: Path
) -> None:
    ns = on_link_namespace(netns, "nosdn-agentns", "10.10.0.1/24")
    sibling = on_link_namespace(netns, "nosdn-agentns-other", "10.10.0.1/24")
    host_before = _host_owned()
    me = node_object("node1", ["10.10.0.1"], ["10.244.1.0/24"])
    peers = [node_object(f"node{i}", [f"10.10.0.{i}"], [f"10.244.{i}.0/24"]) for i in (2, 3)]
    emu = Emulator(ns, workdir=tmp_path, seed=[me, *peers]).start()
    agent = AgentProcess(ns, "node1", emu.url, tmp_path)
    assert agent.argv[:4] == ["ip", "netns", "exec", ns]
    agent.argv = [*agent.argv[4:], "--netns", ns]  # started here; it enters NS itself
    try:
        agent.start()

        def ready() -> bool:
            if not agent.running():
                raise AssertionError(f"agent exited:\n{agent.logs()[-3000:]}")
            return agent.get("/readyz")[0] == 200  # its metrics socket is in NS

        wait_until(ready, 20, 0.1, "agent /readyz inside the namespace")
        wait_until(lambda: nosdn_routes(ns) == PEERS, 10, what="the peers' routes in NS")
        assert agent.proc is not None
        # the very process (ip netns exec execs it in place) lives in NS, not here
        assert (
            os.stat(f"/proc/{agent.proc.pid}/ns/net").st_ino == os.stat(f"/run/netns/{ns}").st_ino
        )
        assert '"subnet": "10.244.1.0/24"' in agent.cni.read_text()
        # nothing outside NS: the sibling namespace and the machine's own are as they were
        assert nosdn_routes(sibling) == {}
        assert ip(sibling, "nexthop", "show").strip() == ""
        host_after = _host_owned()
        assert host_after == host_before
        assert not {r["dst"] for r in _host("-4", "route", "show")} & PEERS.keys()
    finally:
        agent.stop(signal.SIGKILL)
        emu.kill()
