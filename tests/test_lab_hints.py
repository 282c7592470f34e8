"""`lab up`'s printed next steps run as printed (root): each hint line, pasted into a shell
whose PATH is sudo's secure_path (no venv, so no ``nosdn`` on it), exits 0. So does the
transcript's ``$ ...`` line of what the lab ran.

One lab with a unique name, removed in a `finally`; nothing attached to this machine's own
namespace (the lab never does that), so no packet leaves the test.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import requires_root
from nosdn.lab import down
from nosdn.lab import netns as ns

pytestmark = [pytest.mark.root, pytest.mark.slow, requires_root]

#: Debian's sudo `secure_path`: what a pasted ``sudo ...`` line gets.
SECURE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def _lab_up(name: str, env: dict[str, str], *extra: str) -> subprocess.CompletedProcess[str]:
    up = subprocess.run(
        [sys.executable, "-m", "nosdn", "lab", "up", "--nodes", "2", "--name", name, *extra],
        capture_output=True,
        text=True,
        check=False,
        env=env,
        timeout=300,
    )
    assert up.returncode == 0, up.stdout + up.stderr
    return up


@pytest.mark.parametrize(
    "extra",
    [[], ["--segments", "2", "--router-daemon", "bird"]],
    ids=["one-segment", "router"],
)
def test_lab_up_hints_run_as_printed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, extra: list[str]
) -> None:
    """With a router the hints differ (graph gets --segment and --router-address, the far
    pod is behind the router): those run as printed too."""
    name = f"t-{secrets.token_hex(3)}"
    monkeypatch.setenv("NOSDN_LAB_DIR", str(tmp_path / "labs"))  # for the finally's `down`
    env = {**os.environ, "NOSDN_LAB_DIR": str(tmp_path / "labs"), "PATH": SECURE_PATH}
    try:
        up = _lab_up(name, env, *extra)
        lines = up.stdout.splitlines()
        start = lines.index("look around:")
        hints = [line.strip() for line in lines[start + 1 :] if line.startswith("  ")]
        hints = [h.removeprefix("and ") for h in hints]
        then = [line.removeprefix("then: ") for line in lines if line.startswith("then: ")]
        ran = [line.removeprefix("$ ") for line in lines if line.startswith("$ ")]
        assert len(hints) >= 5, up.stdout
        if extra:
            assert any("--router-address=" in h for h in hints), up.stdout
        assert then, up.stdout
        assert ran, up.stdout
        down_cmd = hints.pop()  # "and ... lab down": run last, by the finally's check
        assert " lab down --name " in down_cmd
        for hint in [*hints, *then, ran[0]]:
            r = subprocess.run(
                ["bash", "-c", hint],
                capture_output=True,
                text=True,
                check=False,
                env=env,
                cwd=tmp_path,
                timeout=120,
            )
            assert r.returncode == 0, f"{hint}\n{r.stdout}\n{r.stderr}"
            assert "command not found" not in r.stderr
        assert (tmp_path / "lab.svg").read_bytes().lstrip().startswith(b"<")
        r = subprocess.run(
            ["bash", "-c", down_cmd],
            check=False,
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
        assert r.returncode == 0, r.stderr
        assert not [n for n in ns.list_netns() if n.startswith(f"{name}.")]
    finally:
        down(name)


def test_doctor_in_a_lab_node_reads_the_labs_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``ip netns exec LAB.node1 nosdn doctor`` with no options: the lab's inventory and
    node1's own conflist, so it passes, and no line (check or fix) names /etc/cni/net.d."""
    name = f"t-{secrets.token_hex(3)}"
    monkeypatch.setenv("NOSDN_LAB_DIR", str(tmp_path / "labs"))
    try:
        _lab_up(name, dict(os.environ))
        conflist = tmp_path / "labs" / name / "cni" / "node1" / "10-nosdn.conflist"
        in_node1 = ["ip", "netns", "exec", f"{name}.node1", sys.executable, "-m", "nosdn"]
        for args in (["doctor", "-o", "json"], ["trace", "10.244.2.2"]):
            r = subprocess.run(
                [*in_node1, *args], capture_output=True, text=True, check=False, timeout=120
            )
            assert r.returncode == 0, r.stdout + r.stderr
            assert f"its conflist {conflist}" in r.stderr
            assert "/etc/cni" not in r.stdout + r.stderr
            if args[0] == "doctor":
                checks = {c["check"]: c for c in json.loads(r.stdout)["checks"]}
                assert checks["cni.conflist"]["status"] == "ok", checks["cni.conflist"]
    finally:
        down(name)


def test_lab_check_groups_failures_and_its_doctor_runs_as_printed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One route removed by hand in node2: `lab check` says "every ping from node2 to
    node1's pods fails" (not a line per ping), and the doctor it names next runs as printed
    (sudo's PATH, no nosdn on it) and finds the missing route."""
    name = f"t-{secrets.token_hex(3)}"
    monkeypatch.setenv("NOSDN_LAB_DIR", str(tmp_path / "labs"))
    env = {**os.environ, "NOSDN_LAB_DIR": str(tmp_path / "labs"), "PATH": SECURE_PATH}
    try:
        _lab_up(name, env)
        node2 = f"{name}.node2"
        shown = subprocess.run(
            ["ip", "-j", "-n", node2, "route", "show", "proto", "157"],
            capture_output=True,
            text=True,
            check=True,
        )
        routes = json.loads(shown.stdout)
        assert len(routes) == 1, routes  # two nodes: node2's one route, to node1's pods
        subprocess.run(["ip", "-n", node2, "route", "del", routes[0]["dst"]], check=True)
        r = subprocess.run(
            [sys.executable, "-m", "nosdn", "lab", "check", "--name", name],
            capture_output=True,
            text=True,
            check=False,
            env=env,
            timeout=300,
        )
        assert r.returncode == 1, r.stdout + r.stderr
        said = "every ping between node1's pods and node2's pods fails, both ways"
        assert f"{said}: node2 cannot reach the other's pods either" in r.stdout, r.stdout
        assert "✗ node1/pod1 →" not in r.stdout  # grouped, not a line per ping
        assert "pings: " in r.stderr  # progress, on a pipe a few lines
        lines = r.stdout.splitlines()
        hints = lines[lines.index("next, on the host the failures point at:") + 1 :]
        assert hints, r.stdout
        assert f"--netns {node2}" in hints[0]
        d = subprocess.run(
            ["bash", "-c", hints[0].strip()],
            capture_output=True,
            text=True,
            check=False,
            env=env,
            timeout=120,
        )
        assert d.returncode == 1, d.stdout + d.stderr  # it found what is wrong
        assert "command not found" not in d.stderr
        assert routes[0]["dst"] in d.stdout, d.stdout
        # ...and each fix it prints, pasted into this machine's own shell, mends node2 only
        fixes = [x.split("fix: ", 1)[1] for x in d.stdout.splitlines() if "fix: " in x]
        assert fixes, d.stdout
        assert all(f.startswith(f"ip netns exec {node2} ") for f in fixes), fixes
        host_routes = ns.run(["ip", "route", "show"]).stdout
        for fix in fixes:
            m = subprocess.run(
                ["bash", "-c", fix], capture_output=True, text=True, check=False, env=env
            )
            assert m.returncode == 0, f"{fix}\n{m.stdout}\n{m.stderr}"
        assert ns.run(["ip", "route", "show"]).stdout == host_routes
        again = subprocess.run(
            ["bash", "-c", hints[0].strip()], capture_output=True, text=True, check=False, env=env
        )
        assert again.returncode == 0, again.stdout + again.stderr
    finally:
        down(name)
