"""The `nosdn` command ends one-shot commands with ``os._exit`` (no interpreter teardown): all
output must still arrive, and the exit status must be the command's."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

NOSDN = [sys.executable, "-m", "nosdn"]
#: Output buffered as it is for a user's pipe (a test runner may set PYTHONUNBUFFERED).
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}


def _inventory(tmp_path: Path, n: int) -> Path:
    lines = ["clusterCIDRs: [100.64.0.0/10]", "nodeCIDRMaskSize: 26", "nodes:"]
    lines += [f"  - {{name: node-{i}, ip: 10.0.{i >> 8}.{i & 255}}}" for i in range(1, n + 1)]
    path = tmp_path / "inv.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("nodes", [2, 3000])
def test_output_through_a_pipe_is_complete(tmp_path: Path, nodes: int) -> None:
    """Small output sits in Python's buffer until flushed; large output goes out in pieces."""
    inv = _inventory(tmp_path, nodes)
    proc = subprocess.run(
        [*NOSDN, "routes", "-f", str(inv), "--node", "node-1", "-o", "json"],
        capture_output=True,
        text=True,
        check=False,
        env=ENV,
    )
    assert proc.returncode == 0, proc.stderr
    routes = json.loads(proc.stdout)  # cut short (or empty), it would not parse
    assert len(routes["routes"]) == nodes - 1


def test_exit_status_is_the_commands(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("nodes:\n  - {name: a, ip: 10.0.0.300}\n")
    proc = subprocess.run(
        [*NOSDN, "check", "-f", str(bad)], capture_output=True, text=True, check=False, env=ENV
    )
    assert proc.returncode == 2
    assert "10.0.0.300" in proc.stderr
    proc = subprocess.run(
        [*NOSDN, "no-such-command"], capture_output=True, text=True, check=False, env=ENV
    )
    assert proc.returncode == 2
    assert "No such command" in proc.stderr
    ok = _inventory(tmp_path, 2)
    proc = subprocess.run(
        [*NOSDN, "check", "-f", str(ok)], capture_output=True, text=True, check=False, env=ENV
    )
    assert proc.returncode == 0
    assert proc.stdout.startswith("ok ")
