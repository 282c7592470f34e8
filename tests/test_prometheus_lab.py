"""A real Prometheus (Debian's ``prometheus``) scrapes the agents of a live lab (root).

`nosdn lab up --agents` runs `nosdn agent` in every node, serving /metrics on the node's
addresses (port 9712, as the DaemonSet does); Prometheus runs in the lab's API host
(``NAME.api``, on the lab's switch, listening on that namespace's loopback only) and scrapes
every node over the node network. The test queries it (through a socket made in that
namespace) and sees every node's series; then a route broken by hand (a blackhole over one
peer's pod subnet, someone else's route, so the agent leaves it alone) shows in the probe
series of exactly that pair, both ways (the answers back go through it too), and its removal
brings the series back. Then every query of the
Grafana dashboard is parsed and answered by this Prometheus with data.

The lab has a unique name and is removed in teardown with its Prometheus (a process of the
lab's namespace); its data lives under the test's tmp_path. No packet leaves the lab.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shlex
import shutil
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import requires_root
from nosdn.agent.monitoring import dashboard
from nosdn.lab import down, open_lab
from nosdn.lab import netns as ns

pytestmark = [pytest.mark.root, pytest.mark.slow, requires_root]

PROM_PORT = 9090
NODES = {"node1": "10.10.0.1", "node2": "10.10.0.2", "node3": "10.10.0.3"}


@pytest.fixture
def lab_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    name = f"m-{secrets.token_hex(3)}"
    monkeypatch.setenv("NOSDN_LAB_DIR", str(tmp_path / "labs"))
    try:
        yield name
    finally:
        down(name)  # kills every process of the lab's namespaces, Prometheus included
        assert [n for n in ns.list_netns() if n.startswith(f"{name}.")] == []


@pytest.fixture(scope="module")
def prometheus() -> str:
    path = shutil.which("prometheus")
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail("CI: prometheus (Debian package) must be installed")
        pytest.skip("no prometheus: apt-get install prometheus")
    return path


@pytest.fixture(scope="module")
def kube_bins() -> Path:
    from kube_api import binaries

    bins = binaries()
    if bins is None:
        if os.environ.get("CI") == "true":
            pytest.fail("CI: the real API server tier must run, and there is no Go toolchain")
        pytest.skip("no Go toolchain: `lab up --agents` with the real kube-apiserver is skipped")
    return bins


def nosdn(*args: str) -> str:
    r = subprocess.run(
        [sys.executable, "-m", "nosdn", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert r.returncode == 0, f"nosdn {' '.join(args)}:\n{r.stdout}\n{r.stderr}"
    return r.stdout


class Prom:
    """The HTTP API of a Prometheus listening on 127.0.0.1 of ``netns``."""

    def __init__(self, netns: str, port: int) -> None:
        self.netns = netns
        self.port = port

    def get(self, path: str, **params: str) -> Any:
        import http.client

        class Conn(http.client.HTTPConnection):
            def connect(conn) -> None:  # conn: the connection; self: the Prom
                s = ns.socket_in(self.netns)
                s.settimeout(10)
                s.connect(("127.0.0.1", self.port))
                conn.sock = s

        c = Conn("127.0.0.1", self.port, timeout=10)
        try:
            c.request("GET", f"{path}?{urllib.parse.urlencode(params)}")
            r = c.getresponse()
            return json.loads(r.read())
        finally:
            c.close()

    def query(self, q: str) -> list[dict[str, Any]]:
        doc = self.get("/api/v1/query", query=q)
        assert doc["status"] == "success", doc
        result: list[dict[str, Any]] = doc["data"]["result"]
        return result

    def by(self, q: str, *labels: str) -> dict[tuple[str, ...], float]:
        return {
            tuple(r["metric"].get(lab, "") for lab in labels): float(r["value"][1])
            for r in self.query(q)
        }


def wait_for(
    what: str, cond: Callable[[], bool], timeout: float = 60, seen: Callable[[], object] = str
) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {timeout:g} s: {what} (last seen: {seen()})")
        time.sleep(0.5)


def start_prometheus(prometheus: str, netns: str, work: Path) -> None:
    targets = [{"targets": [f"{ip}:9712"], "labels": {"node": name}} for name, ip in NODES.items()]
    (work / "targets.json").write_text(json.dumps(targets))
    (work / "prometheus.yml").write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        "  - job_name: nosdn-agent\n"
        "    file_sd_configs: [{files: ['" + str(work / "targets.json") + "']}]\n"
    )
    log = (work / "prometheus.log").open("w")
    subprocess.Popen(
        [
            "ip", "netns", "exec", netns, prometheus,
            f"--config.file={work / 'prometheus.yml'}",
            f"--storage.tsdb.path={work / 'data'}",
            f"--web.listen-address=127.0.0.1:{PROM_PORT}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip


def dashboard_queries() -> list[str]:
    """Every PromQL expression of the dashboard, with its template variables filled in."""
    out = []
    for panel in dashboard()["panels"]:
        for t in panel.get("targets", []):
            expr = re.sub(r"\$__rate_interval|\$__interval", "1m", t["expr"])
            out.append(re.sub(r"\$\w+", ".*", expr))
    return out


def test_prometheus_scrapes_every_agent_and_sees_a_broken_route(
    lab_name: str, kube_bins: Path, prometheus: str, tmp_path: Path
) -> None:
    up = nosdn("lab", "up", "--agents", "--nodes", "3", "--pods-per-node", "1", "--name", lab_name)
    line = next(x for x in up.splitlines() if "kubectl --kubeconfig" in x)
    kubectl = shlex.split(line)
    kubectl = kubectl[: kubectl.index("--kubeconfig") + 2]
    api_ns = f"{lab_name}.api"
    start_prometheus(prometheus, api_ns, tmp_path)
    prom = Prom(api_ns, PROM_PORT)

    def ready() -> bool:
        try:
            return prom.by("up", "node") == {(n,): 1.0 for n in NODES}
        except OSError:
            return False

    wait_for("Prometheus scrapes all three agents", ready)
    # every node's own series, as each agent sees the cluster
    assert prom.by("nosdn_routes_programmed", "node") == {(n,): 2.0 for n in NODES}
    assert prom.by("nosdn_api_connected", "node") == {(n,): 1.0 for n in NODES}
    pairs = {(a, b) for a in NODES for b in NODES if a != b}

    def reachable() -> dict[tuple[str, ...], float]:
        return prom.by("nosdn_probe_peer_reachable", "node", "peer")

    wait_for("every pair probed", lambda: reachable() == dict.fromkeys(pairs, 1.0))
    rtt = prom.by("sum by (node) (nosdn_probe_rtt_seconds_count)", "node")
    assert set(rtt) == {(n,) for n in NODES}
    assert all(v > 0 for v in rtt.values())

    # node1's route to node3's pods, replaced by hand with someone else's blackhole
    node1 = f"{lab_name}.node1"
    ns.run(["ip", "-n", node1, "route", "replace", "blackhole", "10.244.3.0/24", "proto", "static"])
    try:
        # both ways: node1 cannot send to node3's pods, nor answer them
        broken = {**dict.fromkeys(pairs, 1.0), ("node1", "node3"): 0.0, ("node3", "node1"): 0.0}
        wait_for(
            "node1 -> node3 unreachable in Prometheus",
            lambda: reachable() == broken,
            seen=reachable,
        )
        assert prom.by('nosdn_probe_peers{state="unreachable"}', "node") == {
            ("node1",): 1.0,
            ("node2",): 0.0,
            ("node3",): 1.0,
        }
        assert prom.by("nosdn_route_conflicts", "node")[("node1",)] == 1.0
        # doctor on node1 names the peer and the cause
        doctor = subprocess.run(
            ["ip", "netns", "exec", node1, sys.executable, "-m", "nosdn", "doctor", "-o", "json"],
            capture_output=True,
            text=True,
            check=False,
        )
        lines = {c["check"]: c for c in json.loads(doctor.stdout)["checks"]}
        line = lines["probes.node3"]
        assert line["status"] == "fail"
        assert "node3 does not answer over the pod path (10.244.1.1 -> 10.244.3.1" in line["saw"]
        assert line["saw"].endswith("route missing here: a blackhole route for 10.244.3.0/24")
        # and so does status
        kubeconfig = open_lab(lab_name).paths.agent_kubeconfig
        status = subprocess.run(
            ["ip", "netns", "exec", node1, sys.executable, "-m", "nosdn", "status",
             "--kubeconfig", str(kubeconfig)],
            capture_output=True,
            text=True,
            check=False,
        )  # fmt: skip
        assert status.returncode == 1, status.stderr  # the blackhole is a conflict
        assert (
            "! probes: node3 does not answer over the pod path (10.244.1.1 -> 10.244.3.1): "
            "route missing here: a blackhole route for 10.244.3.0/24"
        ) in status.stdout
        assert "  probes: 1 of 2 peers answer over the pod path" in status.stdout
        # and an Event on node1's Node names the peer and the cause
        events = subprocess.run(
            [*kubectl, "get", "events", "-n", "default", "-o", "json"],
            capture_output=True,
            text=True,
            check=True,
        )
        mine = [
            e
            for e in json.loads(events.stdout)["items"]
            if e["reason"] == "PeerUnreachable" and e["involvedObject"]["name"] == "node1"
        ]
        assert mine, events.stdout[-2000:]
        assert mine[0]["type"] == "Warning"
        assert "node3 does not answer over the pod path" in mine[0]["message"]
        assert "route missing here: a blackhole route for 10.244.3.0/24" in mine[0]["message"]
    finally:
        ns.run(["ip", "-n", node1, "route", "del", "blackhole", "10.244.3.0/24"], check=False)
    wait_for("node1 -> node3 answers again", lambda: reachable() == dict.fromkeys(pairs, 1.0))

    # every dashboard query parses and returns data from this Prometheus
    empty = [q for q in dashboard_queries() if not prom.query(q)]
    assert not empty, f"dashboard queries without data: {empty}"
    bad = prom.get("/api/v1/query", query="sum(rate(nosdn_errors_total[1m]")
    assert bad["status"] == "error"  # a broken query would be caught
