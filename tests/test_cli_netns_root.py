"""``--netns NAME`` on doctor and trace (root): they run again inside the namespace, as
``ip netns exec`` would, so what they read is the namespace's (its routes, its sysctls), and
doctor's printed fixes enter it. One namespace with a unique name, removed by the fixture."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable

import pytest

from conftest import ip, requires_root

pytestmark = [pytest.mark.root, requires_root]


def nosdn(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nosdn", *args], capture_output=True, text=True, check=False
    )


def test_doctor_and_trace_look_inside_the_namespace(netns: Callable[..., str]) -> None:
    ns = netns("nosdn-nsopt")
    ip(ns, "link", "add", "d0", "type", "veth", "peer", "name", "d1")
    ip(ns, "link", "set", "d1", "up")
    ip(ns, "addr", "add", "10.77.0.1/24", "dev", "d0")
    ip(ns, "link", "set", "d0", "up")
    t = nosdn("trace", "10.77.0.9", "--netns", ns, "-o", "json")
    assert t.returncode == 0, t.stderr
    doc = json.loads(t.stdout)
    assert doc["kernel"]["dev"] == "d0"  # the namespace's connected route, not this host's
    assert doc["kernel"]["src"] == "10.77.0.1"
    d = nosdn("doctor", "--netns", ns)
    assert d.returncode == 1, d.stdout + d.stderr  # a new namespace forwards nothing
    assert f"fix: ip netns exec {ns} sysctl -w net.ipv4.ip_forward=1" in d.stdout
    j = json.loads(nosdn("doctor", "--netns", ns, "-o", "json").stdout)
    assert j["netns"] == ns
    fixes = {c["check"]: c["fix"] for c in j["checks"]}
    assert fixes["forwarding.ipv4"] == "sysctl -w net.ipv4.ip_forward=1"  # as run inside
