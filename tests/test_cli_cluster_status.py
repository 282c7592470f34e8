"""``nosdn status --cluster`` against the kmock emulator (no root): every node's agent ready or
not (its NetworkUnavailable condition), the conflicts and off-link peers its agent reported
(Events), ``-o json``, the exit code and ``--watch`` following a change. The same command
against the real kube-apiserver is in tests/test_realapi_cli.py.
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from agent_env import Emulator, node_object
from nosdn.daemon.condition import CONDITION, REASON_UP
from nosdn.daemon.events import COMPONENT, event_body
from nosdn.sources import clusterstatus
from test_cli_kube import CLEAN, free_port, kubeconfig

CIDRS = ["--cluster-cidr", "10.244.0.0/16"]
NOSDN = [sys.executable, "-m", "nosdn"]
#: A name longer than any column cut: the whole of it must come through a pipe.
LONG = "ip-10-0-1-2.eu-west-1.compute.internal-with-a-long-suffix"


def condition(status: str, reason: str, message: str) -> dict[str, Any]:
    return {
        "conditions": [
            {"type": "Ready", "status": "True", "reason": "KubeletReady"},
            {
                "type": CONDITION,
                "status": status,
                "reason": reason,
                "message": message,
                "lastTransitionTime": "2026-01-01T00:00:00Z",
            },
        ]
    }


def nodes() -> list[dict[str, Any]]:
    return [
        node_object(
            "n1",
            ["10.0.0.1"],
            ["10.244.1.0/24"],
            extra_status=condition(
                "False", REASON_UP, "nosdn programmed routes to 1 pod subnet(s)"
            ),
        ),
        node_object(
            LONG,
            ["10.0.0.2"],
            ["10.244.2.0/24"],
            extra_status=condition(
                "True", "NosdnNoRoutablePeer", "node n3 (10.0.1.3): not on a connected network"
            ),
        ),
        node_object("n3", ["10.0.1.3"], ["10.244.3.0/24"]),
    ]


def event(node: str, reason: str, message: str, *, age: float = 0) -> dict[str, Any]:
    body = event_body(node, namespace="default", etype="Warning", reason=reason, message=message)
    when = (datetime.now(UTC) - timedelta(seconds=age)).strftime("%Y-%m-%dT%H:%M:%SZ")
    body["lastTimestamp"] = body["firstTimestamp"] = when
    return body


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[Emulator]:
    emu = Emulator(None, port=free_port(), workdir=tmp_path, seed=nodes()).start()
    try:
        for body in (
            event(
                "n1", "RouteConflict", "route to 10.244.2.0/24 (pods of node x) is owned by boot"
            ),
            event(LONG, "NodeOffLink", "node n3 (10.0.1.3): not on a connected network"),
            event("n1", "RouteConflict", "an old conflict, fixed since", age=3600),
        ):
            emu.call("POST", "/api/v1/namespaces/default/events", body)
        other = event("n3", "RouteConflict", "someone else's event")
        other["source"] = {"component": "kubelet"}
        other["reportingComponent"] = "kubelet"
        emu.call("POST", "/api/v1/namespaces/default/events", other)
        yield emu
    finally:
        emu.kill()


def run(emu: Emulator, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in CLEAN}
    env.pop("NO_COLOR", None)
    return subprocess.run(
        [*NOSDN, "status", "--cluster", "--kube-server", emu.url, *CIDRS, *args],
        capture_output=True,
        text=True,
        check=False,
        env={**env, "COLUMNS": "80"},
        timeout=60,
    )


def test_constants_are_the_agents() -> None:
    assert clusterstatus.CONDITION == CONDITION
    assert clusterstatus.REASON_UP == REASON_UP
    assert clusterstatus.AGENT_COMPONENT == COMPONENT


def test_every_node_its_agent_and_its_problems(emulator: Emulator) -> None:
    r = run(emulator)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "Traceback" not in r.stderr
    lines = r.stdout.splitlines()
    rows = {line.split()[0]: line.split() for line in lines[1:4]}
    assert lines[0].split()[:5] == ["NODE", "AGENT", "REASON", "CONFLICTS", "OFF-LINK"]
    assert rows["n1"][1:5] == ["ready", "NosdnIsUp", "1", "0"]  # the hour-old one is over
    assert LONG in rows  # whole through a pipe of 80 columns
    assert rows[LONG][1:3] == ["not", "ready"]
    assert rows["n3"][1:3] == ["no", "agent"]
    assert "\x1b[" not in r.stdout
    text = r.stdout
    assert f"{LONG}: agent not ready (NosdnNoRoutablePeer): node n3 (10.0.1.3)" in text
    assert "n1: conflict: route to 10.244.2.0/24 (pods of node x) is owned by boot" in text
    assert f"{LONG}: off-link: node n3 (10.0.1.3)" in text
    assert "n3: no NetworkUnavailable condition of nosdn's" in text
    assert "someone else's event" not in text
    assert "an old conflict" not in text
    assert "agents ready: 1/3" in text
    assert f"next: on node {LONG} (and 2 more), `nosdn doctor`" in text


def test_json_is_data(emulator: Emulator) -> None:
    r = run(emulator, "-o", "json")
    assert r.returncode == 1, r.stderr
    doc = json.loads(r.stdout)
    assert doc["apiVersion"] == "nosdn/v1"
    assert doc["kind"] == "ClusterStatus"
    assert (doc["ok"], doc["nodes"], doc["ready"]) == (False, 3, 1)
    assert list(doc) == ["apiVersion", "kind", "ok", "nodes", "ready", "eventsError", "items"]
    assert list(doc["items"][0]) == [  # as the README's Machine output table says
        *("name", "agent", "ready", "reason", "message", "since", "kubeletReady"),
        *("podCIDRs", "addresses", "conflicts", "offlink"),
    ]
    by = {n["name"]: n for n in doc["items"]}
    assert by["n1"]["ready"] is True
    assert by["n1"]["conflicts"] == ["route to 10.244.2.0/24 (pods of node x) is owned by boot"]
    assert by[LONG]["reason"] == "NosdnNoRoutablePeer"
    assert by[LONG]["offlink"] == ["node n3 (10.0.1.3): not on a connected network"]
    assert by["n3"]["agent"] == "no agent"
    assert by["n3"]["podCIDRs"] == ["10.244.3.0/24"]


def test_an_inventory_is_refused_in_one_line() -> None:
    r = subprocess.run(
        [sys.executable, "-m", "nosdn", "status", "--cluster", "-f", "examples/two-nodes.yaml"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert r.returncode == 2
    assert "status --cluster reads the Kubernetes API" in r.stderr
    assert len(r.stderr.splitlines()) == 1


def _read_until(proc: subprocess.Popen[bytes], word: str, timeout: float = 30) -> str:
    """What the process printed up to and with ``word`` (read unbuffered: a text stream's
    buffer would hold lines the selector no longer reports)."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    sel = selectors.DefaultSelector()
    sel.register(fd, selectors.EVENT_READ)
    seen = b""
    deadline = time.monotonic() + timeout
    while word.encode() not in seen:
        left = deadline - time.monotonic()
        assert left > 0, f"no {word!r} within {timeout} s: {seen!r}"
        if sel.select(left):
            chunk = os.read(fd, 65536)
            assert chunk, f"ended before {word!r}: {seen!r}"
            seen += chunk
    sel.close()
    return seen.decode()


def test_watch_prints_again_when_a_node_changes(emulator: Emulator) -> None:
    env = {k: v for k, v in os.environ.items() if k not in CLEAN}
    argv = [sys.executable, "-m", "nosdn", "status", "--cluster", "--kube-server", emulator.url]
    argv += [*CIDRS, "--watch", "--interval", "1"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        first = _read_until(proc, "agents ready: 1/3")
        assert "n3" in first
        fixed: Mapping[str, Any] = condition("False", REASON_UP, "nosdn programmed routes")
        emulator.patch_node(LONG, {"status": fixed})
        second = _read_until(proc, "agents ready: 2/3")
        assert LONG in second
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.stderr is not None
    assert b"Traceback" not in proc.stderr.read()


def test_events_of_a_fixed_problem_age_out() -> None:
    now = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    ev = event("n1", "RouteConflict", "x")
    ev["lastTimestamp"] = "2026-01-01T11:50:00Z"
    st = clusterstatus.cluster_status(nodes()[:1], [ev], now=now)
    assert st.nodes[0].conflicts == ("x",)
    assert not st.ok
    st = clusterstatus.cluster_status(nodes()[:1], [ev], now=now + timedelta(minutes=10))
    assert st.nodes[0].conflicts == ()
    assert st.ok
    unread = clusterstatus.cluster_status(nodes()[:1], None, now=now, events_error="forbidden")
    assert not unread.ok  # conflicts not known is not "no conflicts"


def test_with_nothing_given_it_reads_kubectls_kubeconfig(
    emulator: Emulator, tmp_path: Path
) -> None:
    """As kubectl: no --kubeconfig, no $KUBECONFIG, not in a pod: ~/.kube/config."""
    home = tmp_path / "home"
    (home / ".kube").mkdir(parents=True)
    kubeconfig(home / ".kube" / "config", {"emu": emulator.url}, "emu")
    env = {k: v for k, v in os.environ.items() if k not in CLEAN}
    r = subprocess.run(
        [*NOSDN, "status", "--cluster", "-o", "json"],
        capture_output=True,
        text=True,
        check=False,
        env={**env, "HOME": str(home)},
    )
    assert r.returncode == 1, r.stderr
    assert json.loads(r.stdout)["nodes"] == 3
