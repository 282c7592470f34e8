"""Every command's error path ends as one line and an exit code, never a traceback.

Each case is a real ``nosdn`` process given input that fails (no root needed): the one error
handler in `nosdn.cli.main` must turn whatever went wrong into ``error: ...`` with what to do,
exit 1 for a runtime failure and 2 for bad input.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).parent.parent / "examples"
TWO = str(EXAMPLES / "two-nodes.yaml")
NOSDN = [sys.executable, "-m", "nosdn"]
SETPRIV_NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG", "NOSDN_DEBUG")}
    environ.update(env or {})
    return subprocess.run(
        [*NOSDN, *args], capture_output=True, text=True, check=False, env=environ, timeout=60
    )


CASES: list[tuple[str, list[str], int, str]] = [
    ("graph-missing-dir", ["graph", "-f", TWO, "--out", "{tmp}/missing/x.svg"], 1, "missing"),
    ("graph-out-is-dir", ["graph", "-f", TWO, "--out", "{tmp}"], 1, "directory"),
    ("graph-bad-format", ["graph", "-f", TWO, "--format", "gif"], 2, "--format"),
    (
        "kube-server-scheme",
        ["routes", "--kube-server", "10.0.0.1:6443", "--node", "a"],
        2,
        "https://10.0.0.1:6443",
    ),
    ("missing-inventory", ["check", "-f", "{tmp}/nope.yaml"], 2, "nope.yaml"),
    ("no-such-node", ["routes", "-f", TWO, "--node", "node9"], 2, "node9"),
    ("render-bad-format", ["render", "-f", TWO, "--format", "nope"], 2, "nope"),
    ("no-source", ["plan"], 2, "-f FILE"),
    ("bad-option", ["routes", "--no-such-flag"], 2, "--no-such-flag"),
]


@pytest.mark.parametrize(
    ("args", "code", "needle"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_error_path_is_one_line_without_traceback(
    tmp_path: Path, args: list[str], code: int, needle: str
) -> None:
    r = run(*(a.replace("{tmp}", str(tmp_path)) for a in args))
    assert "Traceback" not in r.stderr, r.stderr
    assert r.returncode == code, r.stderr
    assert needle in r.stderr, r.stderr
    assert "site-packages" not in r.stderr, r.stderr  # no library warning with its path


BUGGY = """
import sys
import nosdn.cli._inventory_cmds as m
def boom(**kw):
    raise RuntimeError("boom")
m.check.callback = boom
sys.argv = ["nosdn", "check", "-f", sys.argv[1]]
from nosdn.cli import main
main()
"""


@pytest.mark.parametrize("debug", [False, True])
def test_a_bug_is_one_line_unless_debugging(debug: bool) -> None:
    """An exception no command expected ends as one line naming NOSDN_DEBUG, exit 1; with
    NOSDN_DEBUG=1 the traceback is there for the bug report."""
    env = {k: v for k, v in os.environ.items() if k != "NOSDN_DEBUG"}
    if debug:
        env["NOSDN_DEBUG"] = "1"
    r = subprocess.run(
        [sys.executable, "-c", BUGGY, TWO],
        capture_output=True,
        text=True,
        check=False,
        env=env,
        timeout=60,
    )
    assert r.returncode == 1, r.stderr
    if debug:
        assert "Traceback" in r.stderr
        return
    assert "Traceback" not in r.stderr, r.stderr
    assert r.stderr.strip().splitlines() == [
        "error: unexpected RuntimeError: boom — this is a bug in nosdn; run again with "
        "NOSDN_DEBUG=1 for the traceback and report it"
    ]


@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("setpriv") is None, reason="needs root to drop to nobody"
)
def test_allocate_write_in_an_unwritable_directory() -> None:
    """As an ordinary user (root writes anywhere): the file is not replaced, one line, exit 1.
    The directory is made outside pytest's tmp_path, whose parent only root may enter."""
    d = Path(tempfile.mkdtemp(prefix="nosdn-ro-"))
    try:
        inv = d / "inv.yaml"
        inv.write_text("clusterCIDRs: [172.17.0.0/16]\nnodes:\n  - {name: a, ip: 10.10.0.1}\n")
        os.chmod(inv, 0o644)
        os.chmod(d, 0o555)
        r = subprocess.run(
            [*SETPRIV_NOBODY, *NOSDN, "allocate", "-f", str(inv), "--write"],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
            env={**os.environ, "HOME": str(d)},
        )
        assert "Traceback" not in r.stderr, r.stderr
        assert r.returncode == 1, r.stderr
        assert str(inv) in r.stderr
        assert "podCIDR" not in inv.read_text()
    finally:
        shutil.rmtree(d)


@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("setpriv") is None, reason="needs root to drop to nobody"
)
@pytest.mark.parametrize(
    "args",
    [["apply", "-f", TWO, "--node", "node1"], ["flush"], ["uninstall", "--node-local"]],
    ids=["apply", "flush", "uninstall"],
)
def test_not_root_is_said_once_before_trying_anything(args: list[str]) -> None:
    """As an ordinary user: one line saying root is needed and the command to run, exit 1;
    not one EPERM per route, nor a guess about another table's routes."""
    r = subprocess.run(
        [*SETPRIV_NOBODY, *NOSDN, *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        env={**os.environ, "HOME": "/"},
    )
    assert r.returncode == 1, r.stdout + r.stderr
    assert r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert "needs root (CAP_NET_ADMIN)" in lines[0]
    assert f"sudo {sys.executable} -m nosdn {args[0]}" in lines[0]


#: One failing invocation per command of the tree (bad input: exit 2; a runtime failure:
#: exit 1). The walker below fails when a command is added without its case here.
EVERY: dict[str, tuple[list[str], int]] = {
    "check": (["-f", "{tmp}/nope.yaml"], 2),
    "allocate": (["-f", "{tmp}/nope.yaml"], 2),
    "routes": (["-f", "{tmp}/nope.yaml", "--router"], 2),
    "render": (["-f", TWO, "--format", "script", "--router"], 2),
    "plan": (["-f", TWO, "--node", "node9"], 2),
    "apply": (["-f", "{tmp}/nope.yaml"], 2),
    "status": (["-f", TWO, "--netns", "no-such-netns-q7"], 2),
    "flush": (["--netns", "no-such-netns-q7"], 2),
    "agent": (["--netns", "no-such-netns-q7"], 2),
    "controller": (["--cloud", "aws", "--cluster-cidr", "10.244.0.0/16", "--capacity", "0"], 2),
    "manifests": (["--cluster-cidr", "notacidr"], 2),
    "install-cni": (["--from", "{tmp}/no-plugins", "--to", "{tmp}/bin"], 1),
    "uninstall": (["--node-local", "--netns", "no-such-netns-q7"], 2),
    "doctor": (["-f", "{tmp}/nope.yaml"], 2),
    "trace": (["not-an-ip", "-f", TWO], 2),
    "graph": (["-f", TWO, "--out", "{tmp}/missing/x.svg"], 1),
    "version": (["-o", "xml"], 2),
    "completion": (["tcsh"], 2),
    "lab up": (["--nodes", "0", "--name", "errwalk"], 2),
    "lab demo": (["--nodes", "0", "--name", "errwalk"], 2),
    "lab apply": (["--name", "no-such-lab-q7"], 1),
    "lab check": (["--name", "no-such-lab-q7"], 1),
    "lab down": (["--name", "bad name!"], 2),
    "lab node add": (["--name", "no-such-lab-q7"], 1),
    "lab node remove": (["node9", "--name", "no-such-lab-q7"], 1),
    "lab node readdress": (["node9", "--name", "no-such-lab-q7"], 1),
}


def _every_command() -> list[str]:
    import click

    from nosdn.cli import app

    def walk(cmd: click.Command, path: tuple[str, ...]) -> list[str]:
        if not isinstance(cmd, click.Group):
            return [" ".join(path)]
        ctx = click.Context(cmd)
        found: list[str] = []
        for name in cmd.list_commands(ctx):
            sub = cmd.get_command(ctx, name)
            assert sub is not None
            found += walk(sub, (*path, name))
        return found

    return walk(app, ())


def test_every_command_has_an_error_case() -> None:
    assert set(_every_command()) == set(EVERY)


@pytest.mark.parametrize("name", sorted(EVERY))
def test_every_commands_error_path_ends_without_a_traceback(tmp_path: Path, name: str) -> None:
    """The issue's "every command's error path ends without a traceback", command by command:
    exit 1 or 2 as the failure is, nothing on stdout, an error said on stderr."""
    args, code = EVERY[name]
    r = run(*name.split(), *(a.replace("{tmp}", str(tmp_path)) for a in args))
    assert "Traceback" not in r.stderr, r.stderr
    assert r.returncode == code, r.stderr
    assert r.stdout == ""
    assert r.stderr.strip(), "an error must say what failed"
    assert "site-packages" not in r.stderr, r.stderr
    assert "Errno" not in r.stderr, r.stderr  # an OSError said in words, not as repr


def test_a_png_is_refused_on_a_terminal() -> None:
    """``graph --format png`` with stdout on a terminal: one line, exit 2, no binary bytes on
    the terminal; redirected (not a terminal) the same command writes the PNG."""
    from test_cli_output import _on_a_terminal

    shown = _on_a_terminal(["graph", "-f", TWO, "--format", "png"], {"NO_COLOR": "1"})
    assert b"a PNG is binary: write it with --out FILE or redirect stdout" in shown, shown
    assert b"\x89PNG" not in shown
    assert b"Traceback" not in shown
    piped = subprocess.run(
        [*NOSDN, "graph", "-f", TWO, "--format", "png"], capture_output=True, check=False
    )
    assert piped.returncode == 0, piped.stderr
    assert piped.stdout[:8] == b"\x89PNG\r\n\x1a\n"
