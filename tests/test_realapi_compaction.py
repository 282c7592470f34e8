"""`nosdn agent` against a real kube-apiserver whose storage is compacted under it (root): a
watch that resumes from a compacted resourceVersion gets ``410 Gone`` from the server itself,
and the agent must list again, once per expiry, without losing or rewriting a route.

The emulator (kmock) answers 410 because it was told to; here the answer comes from the real
chain: kine compacts its history (``--compact-interval``, as etcd's compactor does on a real
cluster; kine ignores the API server's own compaction requests), and with the watch cache off for
nodes (``--watch-cache-sizes=nodes#0``) a resumed watch goes to storage, which refuses a revision
older than the compaction with "too old resource version" (an ERROR event with code 410 in a 200
stream, so the expiries are counted from the agent's log, the lists from the audit log).
This server is the test's own (its flags differ from the session's shared one).
"""

from __future__ import annotations

import secrets
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from agent_env import AgentProcess, nosdn_routes, wait_until
from conftest import ip, remove_netns, requires_root
from kube_api import KubeApi, binaries
from test_realapi_agent import AGENT_USER, CIDR, ME, manifests, ready_node, wanted

pytestmark = [pytest.mark.root, pytest.mark.slow, requires_root]

#: the agent's log line for a watch the server expired (sources/reflector.py)
EXPIRED = "watch expired (410 Gone)"


@pytest.fixture
def compacting_api(tmp_path: Path) -> Iterator[KubeApi]:
    bins = binaries()
    if bins is None:
        pytest.skip("no Go toolchain for the real kube-apiserver tier")
    name = f"nosdn-kcomp-{secrets.token_hex(4)}"
    subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True)
    api = None
    try:
        ip(name, "link", "set", "lo", "up")
        api = KubeApi(
            name,
            bins,
            tmp_path / "kube-api",
            min_request_timeout=5,
            extra_args=("--watch-cache-sizes=nodes#0",),
            kine_args=("--compact-interval=1s", "--compact-min-retain=20"),
        )
        api.start()
        yield api
    finally:
        if api is not None:
            api.close()
        remove_netns(name)


def churn(api: KubeApi, stop: threading.Event) -> None:
    """Move the store's revision on without touching a Node (what leases and events do on a
    real cluster), so compaction passes the revision the agent's watch stands on."""
    path = "/api/v1/namespaces/default/configmaps"
    api.call("POST", path, {"metadata": {"name": "churn"}, "data": {"n": "0"}})
    n = 0
    while not stop.is_set():
        n += 1
        api.call("PATCH", f"{path}/churn", {"data": {"n": str(n)}}, "application/merge-patch+json")
        stop.wait(0.05)


def test_a_watch_resumed_after_compaction_relists_once_and_keeps_every_route(
    compacting_api: KubeApi, netns: Callable[..., str], tmp_path: Path
) -> None:
    api = compacting_api
    ns = netns("nosdn-rcomp")
    ip(ns, "link", "add", "eth0", "type", "veth", "peer", "name", "peer0")
    for dev in ("eth0", "peer0"):
        ip(ns, "link", "set", dev, "addrgenmode", "none")
    ip(ns, "link", "set", "peer0", "up")
    ip(ns, "addr", "add", "10.10.0.1/24", "dev", "eth0")
    ip(ns, "link", "set", "eth0", "up")
    api.attach(ns)
    api.kubectl("apply", "-f", "-", stdin=manifests("--cluster-cidr", CIDR))
    kubeconfig, _ = api.service_account("kube-system", "nosdn-agent")
    for i in (1, 2, 3):
        api.create_node(ready_node(f"node{i}", [f"10.10.0.{i}"], [f"10.244.{i}.0/24"]))

    agent = AgentProcess(
        ns, ME, "", tmp_path, "--cluster-cidr", CIDR, "--watch-timeout", "1", kubeconfig=kubeconfig
    ).start()
    stop = threading.Event()
    churner = threading.Thread(target=churn, args=(api, stop), daemon=True)
    monitor: subprocess.Popen[str] | None = None
    try:
        wait_until(lambda: agent.get("/readyz")[0] == 200, 30, 0.1, "agent ready")
        assert nosdn_routes(ns) == wanted(2, 3)
        monitor = subprocess.Popen(
            ["ip", "-n", ns, "monitor", "route"], stdout=subprocess.PIPE, text=True
        )
        lists_before = api.requests("list", user=AGENT_USER)
        connected: list[float] = []

        churner.start()
        deadline = time.monotonic() + 40
        while agent.logs().count(EXPIRED) < 2 and time.monotonic() < deadline:
            connected.append(agent.metric("nosdn_api_connected") or 0.0)
            time.sleep(0.2)
        stop.set()
        churner.join(10)
        expired = agent.logs().count(EXPIRED)
        assert expired >= 2, f"no 410 from the compacted store in 40 s:\n{agent.logs()[-3000:]}"

        # changes still arrive after the expiries
        api.create_node(ready_node("node4", ["10.10.0.4"], ["10.244.4.0/24"]))
        wait_until(lambda: nosdn_routes(ns) == wanted(2, 3, 4), 15, 0.1, "node4 after 410s")

        lists = api.requests("list", user=AGENT_USER) - lists_before
        expired = agent.logs().count(EXPIRED)
        # one list for each expiry, not a storm, and never a loss of the API in between
        assert lists == expired, f"{lists} lists for {expired} expired watches"
        assert min(connected) == 1.0, "a 410 was treated as the API being away"
        assert "Kubernetes API:" not in agent.logs(), agent.logs()[-3000:]
    finally:
        stop.set()
        agent.stop(signal.SIGKILL)
        out = ""
        if monitor is not None:
            monitor.terminate()
            out, _ = monitor.communicate(timeout=5)
    # the relists rewrote nothing: the only route event in the whole run is node4's
    events = [line for line in out.splitlines() if "10.244." in line]
    assert len(events) == 1, events
    assert "10.244.4.0/24" in events[0], events
