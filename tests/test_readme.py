"""The README says what the code does, and its commands run as written (no root).

- the demo block: after `make install` puts ``nosdn`` on sudo's PATH, each ``nosdn`` line of
  it runs as written, from a shell whose PATH is sudo's ``secure_path`` plus that directory;
- `make demo` installs only what the demo needs, `make install` links nosdn into
  /usr/local/bin (checked with ``make -n``: nothing is installed here);
- the inventory example passes ``nosdn check``; the field reference lists every field the
  parser accepts and no other; the metrics list is every metric the agent and the controller
  register, each with its type.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from nosdn.agent.metrics import AgentMetrics
from nosdn.controller.metrics import ControllerMetrics
from nosdn.sources.inventory import BGP_KEYS, NODE_KEYS, TOP_KEYS

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
SECURE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def block_after(marker: str) -> str:
    """The first fenced block after ``<!-- marker -->`` (a table: the lines up to a blank)."""
    start = README.index(f"<!-- {marker} -->")
    rest = README[start:].split("\n", 1)[1]
    if rest.startswith("```"):
        return rest.split("\n", 1)[1].split("```", 1)[0]
    return rest.split("\n\n", 1)[0]


def test_the_demo_commands_run_as_written(tmp_path: Path) -> None:
    entry = Path(sys.executable).parent / "nosdn"
    if not entry.exists():
        pytest.skip(f"no nosdn entry point beside {sys.executable} (pip install -e .)")
    bindir = tmp_path / "bin"  # what `sudo make install` makes /usr/local/bin hold
    bindir.mkdir()
    (bindir / "nosdn").symlink_to(entry)
    lines = [
        line.split("#", 1)[0].strip()
        for line in block_after("readme-run: demo").splitlines()
        if line.startswith("nosdn ")
    ]
    assert len(lines) >= 2, lines
    env = {k: v for k, v in os.environ.items() if k not in ("NOSDN_INVENTORY", "KUBECONFIG")}
    env["PATH"] = f"{bindir}:{SECURE_PATH}"
    for line in lines:
        r = subprocess.run(
            ["sh", "-c", line], cwd=ROOT, env=env, capture_output=True, text=True, check=False
        )
        assert r.returncode == 0, f"{line}\n{r.stdout}\n{r.stderr}"
        assert r.stdout.strip(), line


def make_n(target: str, tmp_path: Path) -> str:
    r = subprocess.run(
        ["make", "-n", "-C", str(ROOT), target, f"VENV={tmp_path / 'venv'}"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_make_demo_installs_only_what_the_demo_needs(tmp_path: Path) -> None:
    demo = make_n("demo", tmp_path)
    assert "pip install -q -e ." in demo
    assert "[dev]" not in demo
    for package in ("bird2", "frr", "shellcheck", "graphviz"):
        assert package not in demo
    assert "containernetworking-plugins" in demo
    assert "nosdn lab demo" in demo
    test = make_n("test", tmp_path)
    assert "[dev]" in test
    assert "bird2" in test
    install = make_n("install", tmp_path)
    assert re.search(r'ln -sfn "[^"]*/venv/bin/nosdn" "/usr/local/bin/nosdn"', install), install


def test_the_inventory_example_passes_check(tmp_path: Path) -> None:
    start = README.index("## The inventory")
    yaml_text = README[start:].split("```yaml\n", 1)[1].split("```", 1)[0]
    inv = tmp_path / "inv.yaml"
    inv.write_text(yaml_text)
    r = subprocess.run(
        [sys.executable, "-m", "nosdn", "check", "-f", str(inv)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert r.returncode == 0, r.stdout + r.stderr


def test_the_field_reference_lists_every_field() -> None:
    table = block_after("readme-fields")
    documented: set[str] = set()
    for row in table.splitlines()[2:]:
        first = row.split("|")[1]
        documented |= set(re.findall(r"`([A-Za-z0-9]+)`", first))
    assert documented == TOP_KEYS | NODE_KEYS
    for key in BGP_KEYS:  # the bgp section's own fields are named in its row
        assert f"`{key}`" in table


def registered() -> dict[str, str]:
    out: dict[str, str] = {}
    for cls in (AgentMetrics, ControllerMetrics):
        r = CollectorRegistry()
        cls(r)
        for collector in list(r._collector_to_names):
            kind = getattr(collector, "_type", None)
            name = getattr(collector, "_name", None)
            if kind and name:
                out[name + ("_total" if kind == "counter" else "")] = kind
    return out


def test_the_metrics_list_is_every_metric() -> None:
    rows = [r.split("|") for r in block_after("readme-metrics").splitlines()[2:]]
    listed = {r[1].strip().strip("`"): r[2].strip() for r in rows}
    assert listed == registered()


DOCUMENTS = {
    "Check": ["check", "-f", "examples/two-nodes.yaml"],
    "Allocate": ["allocate", "-f", "examples/rack-cluster.yaml"],
    "Routes": ["routes", "-f", "examples/two-nodes.yaml", "--router"],
    "Plan": ["plan", "-f", "examples/two-nodes.yaml", "--external"],
    "Status": ["status", "-f", "examples/two-nodes.yaml", "--external"],
    "Doctor": ["doctor"],
    "Trace": ["trace", "10.1.2.3"],
    "Version": ["version"],
}


def test_the_documents_list_their_top_level_fields() -> None:
    rows = [r.split("|") for r in block_after("readme-documents").splitlines()[2:]]
    documented: dict[str, list[str]] = {}
    for r in rows:
        text = re.sub(r"\([^)]*\)", "", r[3])  # the items' fields are in parentheses
        documented[r[1].strip().strip("`")] = re.findall(r"`([A-Za-z]+)`", text)
    assert set(documented) == {*DOCUMENTS, "ClusterStatus"}  # that one: test_cli_cluster_status
    for kind, args in DOCUMENTS.items():
        r = subprocess.run(
            [sys.executable, "-m", "nosdn", *args, "-o", "json"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
        )
        assert r.returncode in (0, 1), r.stderr
        doc = json.loads(r.stdout)
        assert doc["apiVersion"] == "nosdn/v1"
        assert doc["kind"] == kind
        fields = [k for k in doc if k not in ("apiVersion", "kind")]
        optional = {"bgp"}  # --bgp mode only
        assert set(fields) - optional == set(documented[kind]) - optional, kind


def test_the_uninstall_removes_every_file_render_systemd_installs(tmp_path: Path) -> None:
    """`render --format systemd --out DIR` writes the files; the README's uninstall removes
    each of them (and the rt_protos name apply installs), nothing it did not write."""
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "nosdn",
            "render",
            "-f",
            "examples/two-nodes.yaml",
            "--format",
            "systemd",
            "--out",
            str(tmp_path),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    written = {"/" + str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file()}
    section = README[README.index("## Uninstall") :].split("\n## ", 1)[0]
    removed = set(re.findall(r"rm -f ([^#\n]+)", section))
    paths = {p for line in removed for p in line.split()}
    assert written <= paths, written - paths
    units = re.findall(r"disable --now ([^\n]+)", section)[0].split()
    assert {f"/etc/systemd/system/{u}" for u in units} <= written


def test_the_first_screen_says_what_it_needs_and_where_to_go() -> None:
    """The issue's first screen: what it is, the requirements (Linux with nexthop objects,
    Python, root for writes), the demo, a real-cluster quick start (kubeadm's pod network CIDR
    -> image -> manifests -> doctor), before any reference section."""
    first = README[: README.index("\n## Two commands")]
    for needle in ("plain IP routes", "nexthop objects", "Python 3.11", "root", "make demo"):
        assert needle in first, needle
    quick = first[first.index("## Quick start on a real cluster") :]
    steps = [quick.index(s) for s in ("--pod-network-cidr", "docker build", "manifests", "doctor")]
    assert steps == sorted(steps), "the quick start's steps are out of order"
    assert '"Install on a real cluster"' in quick


def test_license_and_bench_internals_are_where_the_readme_says() -> None:
    assert (ROOT / "LICENSE").read_text().lstrip().startswith("Apache License")
    assert 'license-files = ["LICENSE"]' in (ROOT / "pyproject.toml").read_text()
    speed = README[README.index("## Speed") :].split("\n## ", 1)[0]
    assert "[bench/README.md](bench/README.md)" in speed
    bench = (ROOT / "bench/README.md").read_text()
    for script in sorted((ROOT / "bench").glob("*.py")):
        assert f"bench/{script.name}" in bench or script.name in bench, script.name
    assert "median" in bench.lower() or "baseline" in bench.lower()  # the internals live there


def test_a_transcript_is_what_the_command_prints() -> None:
    """The README's ``$ nosdn routes ...`` block, run as written: its output, whole (it lacked
    apiVersion and kind once they were added to every document)."""
    block = block_after("readme-output: routes")
    command, shown = block.split("\n", 1)
    assert command.startswith("$ nosdn ")
    r = subprocess.run(
        [sys.executable, "-m", "nosdn", *command.removeprefix("$ nosdn ").split()],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout == shown
