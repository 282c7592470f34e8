"""What an operator expects of any CLI (no root): --version and ``version -o json``, -h,
shell completion that completes, an Examples block in every command's help, and "did you mean"
for a mistyped command, node name or inventory field."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from nosdn.cli import COMMANDS, app

NOSDN = [sys.executable, "-m", "nosdn"]
TWO = str(Path(__file__).parent.parent / "examples" / "two-nodes.yaml")


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*NOSDN, *args],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, **(env or {})},
        timeout=60,
    )


def test_version_line_and_document() -> None:
    line = run("--version")
    assert line.returncode == 0
    assert line.stdout.startswith("nosdn ")
    doc = json.loads(run("version", "-o", "json").stdout)
    assert doc["apiVersion"] == "nosdn/v1"
    assert doc["kind"] == "Version"
    assert line.stdout.split()[1] == doc["version"]


def test_dash_h_is_help_everywhere() -> None:
    assert run("-h").stdout == run("--help").stdout
    assert "Usage:" in run("lab", "up", "-h").stdout


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_script_completes_commands_and_choices(shell: str) -> None:
    script = run("completion", shell)
    assert script.returncode == 0, script.stderr
    assert "_NOSDN_COMPLETE" in script.stdout
    if shell == "bash":  # what the script asks nosdn, and nosdn's answer
        r = run(
            env={"_NOSDN_COMPLETE": "bash_complete", "COMP_WORDS": "nosdn ap", "COMP_CWORD": "1"}
        )
        assert "plain,apply" in r.stdout.splitlines()
        r = run(
            env={
                "_NOSDN_COMPLETE": "bash_complete",
                "COMP_WORDS": "nosdn status -o w",
                "COMP_CWORD": "3",
            }
        )
        assert "plain,wide" in r.stdout.splitlines()


def _every_command() -> list[tuple[str, ...]]:
    out: list[tuple[str, ...]] = []

    def walk(path: tuple[str, ...], cmd: click.Command, ctx: click.Context) -> None:
        out.append(path)
        if isinstance(cmd, click.Group):
            for name in cmd.list_commands(ctx):
                sub = cmd.get_command(ctx, name)
                assert sub is not None
                walk((*path, name), sub, click.Context(sub, parent=ctx, info_name=name))

    root = click.Context(app, info_name="nosdn")
    for name in COMMANDS:
        cmd = app.get_command(root, name)
        assert cmd is not None
        walk((name,), cmd, click.Context(cmd, parent=root, info_name=name))
    return out


@pytest.mark.parametrize("path", _every_command(), ids=" ".join)
def test_every_command_help_has_examples(path: tuple[str, ...]) -> None:
    res = CliRunner().invoke(app, [*path, "--help"], prog_name="nosdn")
    assert res.exit_code == 0, res.output
    block = res.output.split("Examples:", 1)
    assert len(block) == 2, f"nosdn {' '.join(path)} --help has no Examples block"
    first = block[1].strip().splitlines()[0].strip()
    assert first.startswith(("nosdn ", "sudo nosdn ", "source <(nosdn")), first


def test_did_you_mean() -> None:
    r = run("aply")
    assert r.returncode == 2
    assert "Did you mean apply?" in r.stderr
    r = run("lab", "dwon")
    assert "Did you mean down?" in r.stderr
    r = run("routes", "-f", TWO, "--node", "nod2")
    assert r.returncode == 2
    assert "did you mean node2?" in r.stderr


@pytest.mark.parametrize(
    ("text", "hint"),
    [
        ("clusterCIDRS: [172.17.0.0/16]\nnodes:\n  - {name: a, ip: 10.0.0.1}\n", "clusterCIDRs"),
        ("nodes:\n  - {name: a, ip: 10.0.0.1, podcidr: 172.17.1.0/24}\n", "podCIDR"),
    ],
    ids=["top", "node"],
)
def test_did_you_mean_an_inventory_field(tmp_path: Path, text: str, hint: str) -> None:
    inv = tmp_path / "inv.yaml"
    inv.write_text(text)
    r = run("check", "-f", str(inv))
    assert r.returncode == 2
    assert f"did you mean {hint}?" in r.stderr  # case does not count
