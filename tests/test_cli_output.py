"""Tables never cut data: through an 80-column pipe every value comes out whole, one row per
line; ``-o wide`` adds columns, ``--no-headers`` drops the header; ``NO_COLOR`` on a terminal
writes no escape sequence at all (no root needed)."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from pathlib import Path

from nosdn.cli._output import Column, table_lines

NOSDN = [sys.executable, "-m", "nosdn"]
EXAMPLES = Path(__file__).parent.parent / "examples"
#: Two next hops that differ only in their last group: cut at 80 columns they print the same.
HOP_A = "2a05:d018:1234:5600:abcd:ef01:2345:6701"
HOP_B = "2a05:d018:1234:5600:abcd:ef01:2345:6702"
#: AWS names nodes by their private DNS name.
LONG_NAME = "ip-10-0-101-23.eu-west-1.compute.internal"
BOX = set("│┃─━┏┓┗┛┡┩└┘┌┐├┤╭╮╰╯…")


def _inventory(tmp_path: Path) -> Path:
    inv = tmp_path / "inv.yaml"
    inv.write_text(
        "clusterCIDRs: ['2a05:d018:1234:5680::/58']\n"
        "nodes:\n"
        f"  - {{name: {LONG_NAME}, ip: '{HOP_A}', podCIDR: '2a05:d018:1234:5681::/64'}}\n"
        f"  - {{name: {LONG_NAME}x, ip: '{HOP_B}', podCIDR: '2a05:d018:1234:5682::/64'}}\n"
        "  - {name: me, ip: '2a05:d018:1234:5600:abcd:ef01:2345:6700',"
        " podCIDR: '2a05:d018:1234:5683::/64'}\n"
    )
    return inv


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environ = {**os.environ, "COLUMNS": "80", **(env or {})}
    return subprocess.run(
        [*NOSDN, *args], capture_output=True, text=True, check=False, env=environ, timeout=60
    )


def test_long_values_through_an_80_column_pipe_come_out_whole(tmp_path: Path) -> None:
    r = _run("routes", "-f", str(_inventory(tmp_path)), "--node", "me")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert not BOX & set(r.stdout), r.stdout
    rows = [line.split() for line in lines[2:]]
    assert rows == [
        ["2a05:d018:1234:5681::/64", HOP_A, LONG_NAME],
        ["2a05:d018:1234:5682::/64", HOP_B, LONG_NAME + "x"],
    ]
    assert lines[1].split() == ["DESTINATION", "VIA", "NODE"]


def test_wide_adds_columns_and_no_headers_drops_the_header(tmp_path: Path) -> None:
    r = _run(
        "routes", "-f", str(_inventory(tmp_path)), "--node", "me", "-o", "wide", "--no-headers"
    )
    assert r.returncode == 0, r.stderr
    assert [line.split() for line in r.stdout.splitlines()] == [
        ["2a05:d018:1234:5681::/64", HOP_A, LONG_NAME, "IPv6"],
        ["2a05:d018:1234:5682::/64", HOP_B, LONG_NAME + "x", "IPv6"],
    ]


def test_table_lines_align_without_cutting_and_join_multiline_cells() -> None:
    cols = (Column("a"), Column("b"), Column("extra", wide=True))
    rows = [("x" * 300, ("ok", "green"), "w"), ("y", "two\nlines", "w")]
    lines = table_lines(cols, rows, title="t")
    assert lines == [
        "t",
        "A" + " " * 299 + "   B",
        "x" * 300 + "   ok",
        "y" + " " * 299 + "   two lines",
    ]
    wide = table_lines(cols, rows, show_wide=True, headers=False, colour=True)
    # padding counts the text only: "ok" is padded to the width of "two lines"
    assert wide[0] == "x" * 300 + "   \x1b[32mok\x1b[0m" + " " * 7 + "   w"
    assert wide[1] == "y" + " " * 299 + "   two lines   w"


def _on_a_terminal(args: list[str], env: dict[str, str]) -> bytes:
    """What nosdn writes to a pseudo-terminal."""
    leader, follower = pty.openpty()
    try:
        proc = subprocess.Popen(
            [*NOSDN, *args],
            stdin=subprocess.DEVNULL,
            stdout=follower,
            stderr=follower,
            env={**os.environ, "TERM": "xterm-256color", **env},
        )
        os.close(follower)
        follower = -1
        chunks = []
        while True:
            try:
                data = os.read(leader, 65536)
            except OSError:  # EIO: the child closed its end
                break
            if not data:
                break
            chunks.append(data)
        proc.wait(timeout=60)
        return b"".join(chunks)
    finally:
        if follower >= 0:
            os.close(follower)
        os.close(leader)


def test_no_color_drops_every_escape_sequence() -> None:
    """rich alone keeps bold under NO_COLOR: the bold "error:" of a failed command shows it."""
    args = ["routes", "-f", str(EXAMPLES / "two-nodes.yaml"), "--node", "node9"]
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    coloured = _on_a_terminal(args, {**env, "NO_COLOR": ""})
    assert b"\x1b[" in coloured  # on a terminal "error:" is bold red: the check sees escapes
    plain = _on_a_terminal(args, {"NO_COLOR": "1"})
    assert b"error: --node node9" in plain
    assert b"\x1b" not in plain, plain
