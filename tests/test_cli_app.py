"""The command line's shape: lazy loading, the command table, exit codes (no root needed).

The speed itself is measured in bench/; here what makes it fast is checked by what it imports:
``-X importtime`` lists every module a real ``nosdn`` process loaded.
"""

from __future__ import annotations

import inspect
import os
import re
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from nosdn.cli import COMMANDS, LazyGroup, app

EXAMPLES = Path(__file__).parent.parent / "examples"
TWO = str(EXAMPLES / "two-nodes.yaml")
#: The CLI's shared modules (options, errors, output), which every command imports.
PLUMBING = {"nosdn.cli._click", "nosdn.cli._errors", "nosdn.cli._examples", "nosdn.cli._output"}
#: Never needed to print routes as JSON.
HEAVY = ("typer", "pydantic", "rich", "nosdn.backends.kernel", "boto3", "google", "nosdn.lab")


def imported(*args: str) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    """Run ``python -X importtime -m nosdn ARGS``; the result and every module it imported."""
    r = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "nosdn", *args],
        capture_output=True,
        text=True,
        check=False,
    )
    modules = {
        line.rsplit("|", 1)[1].strip()
        for line in r.stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    }
    return r, modules


def test_help_lists_every_command_without_importing_any() -> None:
    r, modules = imported("--help")
    assert r.returncode == 0, r.stderr
    listed = r.stdout.split("Commands:")[1]
    for name in COMMANDS:
        assert f"\n  {name} " in listed
    assert not [m for m in modules if m.startswith("nosdn.cli._")]
    assert not [m for m in modules if m.split(".")[0] in ("typer", "pydantic", "rich")]
    assert "Start with:  nosdn check -f examples/two-nodes.yaml" in r.stdout


def test_routes_json_imports_only_its_own_module() -> None:
    r, modules = imported("routes", "-f", TWO, "--router", "-o", "json")
    assert r.returncode == 0, r.stderr
    assert '"dst": "172.17.1.0/24"' in r.stdout
    commands = {m for m in modules if m.startswith("nosdn.cli._")}
    assert commands - PLUMBING == {"nosdn.cli._inventory_cmds"}
    heavy = [m for m in modules if m == "google" or m.startswith(HEAVY)]
    assert not heavy


def test_every_table_entry_is_its_command() -> None:
    ctx = click.Context(app)
    assert isinstance(app, LazyGroup)
    for name, entry in COMMANDS.items():
        cmd = app.get_command(ctx, name)
        assert cmd is not None, name
        assert cmd.name == name
        # the listing says what the command's own help starts with
        first = " ".join(inspect.cleandoc(cmd.help or "").split("\n\n")[0].split())
        assert first == entry.help, name


def test_lab_lists_its_commands_in_teaching_order() -> None:
    res = CliRunner().invoke(app, ["lab", "--help"])
    assert res.exit_code == 0, res.output
    rows = res.output.split("Commands:")[1].splitlines()
    names = [m.group(1) for line in rows if (m := re.match(r"  (\w+) ", line))]
    assert names == ["up", "apply", "check", "node", "down", "demo"]


def test_manifests_runs_under_the_click_group() -> None:
    res = CliRunner().invoke(app, ["manifests", "--cluster-cidr", "10.244.0.0/16"])
    assert res.exit_code == 0, res.output
    assert "kind: DaemonSet" in res.stdout
    bad = CliRunner().invoke(app, ["manifests", "--allocate-node-cidrs"])
    assert bad.exit_code == 2
    assert "--allocate-node-cidrs needs --cluster-cidr" in bad.output


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["nope"],
        ["routes", "--router"],  # no -f
        ["routes", "-f", TWO, "--router", "-o", "xml"],
        ["routes", "-f", TWO],  # no target
        ["lab", "check", "--parallel", "0"],
    ],
)
def test_usage_errors_exit_2(args: list[str]) -> None:
    env = {k: v for k, v in os.environ.items() if k != "NOSDN_INVENTORY"}
    res = CliRunner().invoke(app, args, env=env)
    assert res.exit_code == 2, res.output


def test_cloud_project_from_the_environment_does_not_block_the_kernel_commands(
    tmp_path: Path,
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("nodes: 3\n")
    res = CliRunner().invoke(
        app, ["plan", "-f", str(bad), "--node", "n1"], env={"GOOGLE_CLOUD_PROJECT": "p"}
    )
    assert res.exit_code == 2
    assert "needs --cloud" not in res.output
    assert str(bad) in res.output  # it got as far as reading the inventory
    given = CliRunner().invoke(app, ["plan", "-f", str(bad), "--gce-project", "p"])
    assert given.exit_code == 2
    assert "--gce-project needs --cloud aws|gce" in given.output


def test_cloud_choices_are_the_clouds() -> None:
    from nosdn.backends.cloud.factory import Cloud
    from nosdn.cli._cloud import CLOUDS

    assert list(CLOUDS) == [c.value for c in Cloud]


#: Run ``nosdn ARGV`` as its own process, saying whether the cyclic collector was turned off
#: and whether the interpreter's teardown (atexit) ran.
PROCESS_TRICKS = """
import atexit, gc, sys
real_disable = gc.disable
def disable():
    print("collector off", flush=True)
    real_disable()
gc.disable = disable
atexit.register(lambda: print("teardown", flush=True))
sys.argv = ["nosdn", *sys.argv[1:]]
from nosdn.cli import main
main()
"""


@pytest.mark.parametrize(
    ("argv", "one_shot"),
    [
        (["version"], True),
        (["routes", "-f", TWO, "--node", "node1", "-o", "json"], True),
        (["lab", "--help"], False),
        (["agent", "--help"], False),
        (["controller", "--help"], False),
        (["--help"], False),
    ],
)
def test_only_one_shot_commands_turn_the_collector_off_and_skip_the_teardown(
    argv: list[str], one_shot: bool
) -> None:
    """The daemons and the lab have threads and children to join and atexit handlers to run;
    a one-shot command has neither, and its objects are freed by the kernel. The choice is the
    command's (`Entry.one_shot`), not a guess from the command line."""
    r = subprocess.run(
        [sys.executable, "-c", PROCESS_TRICKS, *argv], capture_output=True, text=True, check=False
    )
    assert r.returncode == 0, r.stderr
    assert ("collector off" in r.stdout) is one_shot
    assert ("teardown" in r.stdout) is not one_shot


def test_a_caller_running_the_app_in_its_own_process_keeps_its_collector() -> None:
    """A test's CliRunner (or any script calling `app`) is not the command's process."""
    import gc

    assert gc.isenabled()
    result = CliRunner().invoke(app, ["version"])
    assert result.exit_code == 0
    assert gc.isenabled()


def test_the_daemons_and_the_lab_are_the_only_commands_that_are_not_one_shot() -> None:
    assert {name for name, e in COMMANDS.items() if not e.one_shot} == {
        "agent",
        "controller",
        "lab",
    }
