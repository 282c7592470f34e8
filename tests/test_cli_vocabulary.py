"""One flag vocabulary across every command (issue 15): the walker visits the whole click
command tree, the commands added later too, and asserts the rules a person learns once:

- ``-o/--output`` is the output format, with the same values everywhere;
- a file or directory written is ``--out`` (no ``--out-dir``, ``--matrix-png``, ...);
- ``--format`` is a choice (its values listed in the help, a typo refused by click);
- one name means one thing: the same value type and value set in every command;
- every command that reads a host's network takes ``--netns``.
"""

from __future__ import annotations

import subprocess
import sys
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pytest

from nosdn.cli import app
from nosdn.cli._click import OUTPUT_CHOICES

#: Names that were ever used for what now has one name, and the name to use.
RETIRED = {
    "--out-dir": "--out",
    "--matrix-png": "--out",
    "--output-file": "--out",
    "--node-name": "--node",
    "--bridge": "--cni-bridge",
    "--fmt": "--format",
}
#: Commands that read (or write) a host's network: each takes --netns.
HOST_COMMANDS = {
    "plan",
    "apply",
    "status",
    "flush",
    "doctor",
    "trace",
    "agent",
}
#: Names whose values differ by command on purpose, and why (keep this list short).
DIFFERENT_VALUES = {
    # every command renders its own set of formats; each is a choice (asserted below)
    "--format",
    # doctor's is whether to check: auto, or the agent's own true|false
    "--masquerade",
}


def walk(
    cmd: click.Command, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], click.Command]]:
    if isinstance(cmd, click.Group):
        ctx = click.Context(cmd)
        for name in cmd.list_commands(ctx):
            sub = cmd.get_command(ctx, name)
            assert sub is not None
            yield from walk(sub, (*path, name))
    else:
        yield path, cmd


COMMANDS = list(walk(app))


def options(cmd: click.Command) -> list[click.Option]:
    return [p for p in cmd.params if isinstance(p, click.Option) and not p.hidden]


def value_set(p: click.Option) -> Any:
    t = p.type
    if isinstance(t, click.Choice):
        return ("choice", tuple(sorted(map(str, t.choices))))
    if p.is_flag and not p.is_bool_flag:
        return ("flag-value",)
    if p.is_flag:
        return ("flag",)
    if t is click.BOOL:
        return ("bool",)
    return (type(t).__name__, getattr(t, "name", ""))


def test_the_walker_sees_every_command() -> None:
    names = {" ".join(path) for path, _ in COMMANDS}
    assert {"render", "lab check", "lab node add", "status", "agent", "doctor"} <= names
    assert len(COMMANDS) > 20


@pytest.mark.parametrize(("path", "cmd"), COMMANDS, ids=[" ".join(p) for p, _ in COMMANDS])
def test_one_vocabulary(path: tuple[str, ...], cmd: click.Command) -> None:
    where = " ".join(path)
    for p in options(cmd):
        for name in p.opts + p.secondary_opts:
            assert name not in RETIRED, f"{where}: {name} is now {RETIRED[name]}"
            if name.startswith("--out") and name not in ("--out", "--output"):
                pytest.fail(f"{where}: {name}: files are written with --out")
        if "-o" in p.opts or "--output" in p.opts:
            assert p.opts == ["-o", "--output"], f"{where}: -o is --output"
            assert isinstance(p.type, click.Choice)
            assert list(p.type.choices) == OUTPUT_CHOICES, f"{where}: -o values"
        if "--format" in p.opts:
            assert isinstance(p.type, click.Choice), f"{where}: --format must be a choice"
    if path[0] in HOST_COMMANDS:
        assert any("--netns" in p.opts for p in options(cmd)), f"{where}: no --netns"


def test_one_name_one_value_set() -> None:
    seen: dict[str, dict[Any, list[str]]] = defaultdict(lambda: defaultdict(list))
    for path, cmd in COMMANDS:
        for p in options(cmd):
            for name in p.opts:
                if name.startswith("--") and name not in DIFFERENT_VALUES:
                    seen[name][value_set(p)].append(" ".join(path))
    mixed = {name: dict(kinds) for name, kinds in seen.items() if len(kinds) > 1}
    assert not mixed, mixed


def test_router_is_the_router_target_everywhere() -> None:
    """``--router`` once also chose the lab's daemon (``lab up --router bird``); now it is
    the router target wherever it is shown, a flag like --external, and the daemon is
    ``--router-daemon`` (asserted by name here so a second meaning cannot come back)."""
    taking = {
        " ".join(path) for path, cmd in COMMANDS for p in options(cmd) if "--router" in p.opts
    }
    assert {"routes", "render"} <= taking
    for path, cmd in COMMANDS:
        for p in options(cmd):
            if "--router" in p.opts:
                assert value_set(p) == ("flag",), " ".join(path)
                assert p.name == "router"
            if "--external" in p.opts:
                assert value_set(p) == ("flag",), " ".join(path)
            if "--node" in p.opts:
                assert not p.is_flag, " ".join(path)  # --node takes a NAME everywhere
    for sub in ("up", "demo"):
        cmd = dict(COMMANDS)[("lab", sub)]
        daemon = next(p for p in options(cmd) if "--router-daemon" in p.opts)
        assert value_set(daemon) == ("choice", ("bird", "frr"))


@pytest.mark.parametrize("sub", ["up", "demo"])
def test_lab_router_old_spelling_still_reads(sub: str) -> None:
    """Scripts that say ``lab up --router bird`` keep working: the hidden old name reaches
    the same parameter (parsed only: no lab is built), and a mismatch of both is refused."""
    from nosdn.cli._lab_cmds import _daemon

    cmd = dict(COMMANDS)[("lab", sub)]
    ctx = cmd.make_context(sub, ["--segments", "2", "--router", "frr"])
    assert (ctx.params["router"], ctx.params["router_old"]) == (None, "frr")
    assert _daemon(ctx.params["router"], ctx.params["router_old"]) == "frr"
    new = cmd.make_context(sub, ["--segments", "2", "--router-daemon", "bird"])
    assert _daemon(new.params["router"], new.params["router_old"]) == "bird"
    assert "--router " not in cmd.get_help(ctx).replace("--router-", "")
    with pytest.raises(SystemExit) as e:
        _daemon("bird", "frr")
    assert e.value.code == 2
    run = subprocess.run(
        [sys.executable, "-m", "nosdn", "lab", sub, "--router", "quagga"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 2
    assert "Traceback" not in run.stderr
    assert "bird" in run.stderr
    assert "frr" in run.stderr


def test_render_router_is_the_router_formats_default() -> None:
    render = [sys.executable, "-m", "nosdn", "render", "-f", "examples/two-nodes.yaml"]
    for fmt in ("bird", "aws-cli"):
        plain = subprocess.run([*render, "-F", fmt], capture_output=True, text=True, check=True)
        said = subprocess.run(
            [*render, "-F", fmt, "--router"], capture_output=True, text=True, check=True
        )
        assert said.stdout == plain.stdout != ""
    host = subprocess.run(
        [*render, "-F", "script", "--router"], capture_output=True, text=True, check=False
    )
    assert host.returncode == 2
    assert host.stdout == ""
    assert "--format script does not take --router: it takes --external or --node NAME" in (
        host.stderr
    ), host.stderr
    both = subprocess.run(
        [*render, "-F", "bird", "--router", "--external"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert both.returncode == 2
    assert "choose at most one" in both.stderr


def test_table_takes_a_name_or_a_number_everywhere() -> None:
    from nosdn.cli._params import TABLE, TABLE_TEXT

    assert TABLE.convert("main", None, None) == 254
    assert TABLE.convert("100", None, None) == 100
    assert TABLE_TEXT.convert("main", None, None) == "main"
    assert TABLE_TEXT.convert("254", None, None) == "main"
    assert TABLE_TEXT.convert("pods", None, None) == "pods"  # the target host's rt_tables
    for bad in ("local", "255", "0", "mian"):
        with pytest.raises(click.BadParameter):
            TABLE.convert(bad, None, None)


@pytest.mark.parametrize(
    "args",
    [
        ["plan", "-f", "examples/two-nodes.yaml", "--table", "mian"],
        ["render", "-f", "examples/two-nodes.yaml", "--format", "scrpit"],
        ["graph", "-f", "examples/two-nodes.yaml", "--format", "jpeg"],
        ["doctor", "--netns", "no-such-namespace-here"],
    ],
)
def test_bad_values_are_refused_in_one_line(args: list[str]) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "nosdn", *args], capture_output=True, text=True, check=False
    )
    assert run.returncode == 2, run.stderr
    assert "Traceback" not in run.stderr
    assert run.stdout == ""
    if "mian" in args:
        assert "main" in run.stderr  # did you mean


#: What each command that takes --netns needs besides it, to get as far as reading it.
NETNS_ARGS = {"trace": ["10.244.1.5"], "agent": [], "flush": []}


@pytest.mark.parametrize("name", sorted(HOST_COMMANDS))
def test_an_unknown_netns_is_bad_input_everywhere(name: str) -> None:
    """plan/apply/status/flush once said "cannot open the kernel's routing table: [Errno 2]"
    and exit 1; every --netns command now says the same line, exit 2, nothing read or run."""
    args = NETNS_ARGS.get(name, ["-f", "examples/two-nodes.yaml"])
    for bad in ("no-such-netns-q7", "../../etc"):
        run = subprocess.run(
            [sys.executable, "-m", "nosdn", name, *args, "--netns", bad],
            capture_output=True,
            text=True,
            check=False,
        )
        assert run.returncode == 2, run.stderr
        assert f"'{bad}': no such network namespace (ip netns list shows them)" in run.stderr
        assert "Traceback" not in run.stderr
        assert "Errno" not in run.stderr
        assert run.stdout == ""


RENDER = [sys.executable, "-m", "nosdn", "render", "-f", "examples/two-nodes.yaml", "-F", "script"]


def test_render_out_writes_one_file_formats_to_that_file(tmp_path: Path) -> None:
    target = tmp_path / "nosdn-routes.sh"
    run = subprocess.run(
        [*RENDER, "--out", str(target)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    printed = subprocess.run(
        [*RENDER, "--table", "254"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert target.read_text() == printed.stdout  # --table 254 is main, said as main


def test_a_fix_from_inside_a_namespace_enters_it() -> None:
    from nosdn.cli._debug_cmds import in_netns
    from nosdn.invocation import cmd

    ns = "lab.node1"
    assert in_netns("sysctl -w net.ipv4.ip_forward=1", ns) == (
        "ip netns exec lab.node1 sysctl -w net.ipv4.ip_forward=1"
    )
    redirected = cmd("render", "-f", "inv.yaml", "--format", "cni") + " > /run/x.conflist"
    assert in_netns(redirected, ns) == f"ip netns exec lab.node1 sh -c '{redirected}'"
    words = "put them on this node's network, or route their pod subnets through a router"
    assert in_netns(words, ns) == words  # a fix in words stays as it is
