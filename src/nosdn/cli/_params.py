"""Option values that mean the same thing in every command: a routing table, a namespace.

One vocabulary: ``--table`` took a number in plan/apply/status/doctor/agent and a name in
render, so ``--table main`` worked in one and failed in the other. `TABLE` takes both forms
everywhere (a number, or a name from iproute2's ``rt_tables``) and hands the kernel commands
the number; `TABLE_TEXT` takes the same values and keeps the text a rendered script writes.

``--netns NAME`` on every command that reads a host: the kernel commands open their netlink
socket in it (`nosdn.backends.kernel`); doctor and trace read far more of the host (sysctls,
nftables, the CNI conflist, BIRD), so they run again inside it the way ``ip netns exec`` runs
anything (`reexec_in_netns`), which also gives them the namespace's /sys and /etc/netns files.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Any

import click

#: iproute2's built-in table names (``ip route show table main``).
BUILTIN_TABLES = {"default": 253, "main": 254, "local": 255}
#: Where iproute2 reads the other names (Debian ships /etc; newer iproute2 /usr/share too).
RT_TABLES = (
    Path("/etc/iproute2/rt_tables"),
    Path("/etc/iproute2/rt_tables.d"),
    Path("/usr/share/iproute2/rt_tables"),
    Path("/usr/share/iproute2/rt_tables.d"),
)
MAX_TABLE = 2**32 - 1


def table_names(places: tuple[Path, ...] = RT_TABLES) -> dict[str, int]:
    """Every table name iproute2 knows here: the built-in ones and ``rt_tables`` lines."""
    names = dict(BUILTIN_TABLES)
    files: list[Path] = []
    for p in places:
        if p.is_dir():
            files += sorted(p.glob("*.conf"))
        elif p.is_file():
            files.append(p)
    for f in files:
        try:
            text = f.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        for line in text.splitlines():
            words = line.split("#", 1)[0].split()
            if len(words) == 2 and words[0].isdigit():
                names.setdefault(words[1], int(words[0]))
    return names


class TableParam(click.ParamType):  # type: ignore[type-arg]
    """A routing table: a number (1..2^32-1) or a name (main, default, ``rt_tables``).
    ``local`` is the kernel's own table: nosdn never manages it."""

    name = "table"

    def __init__(self, *, keep_text: bool = False) -> None:
        self.keep_text = keep_text

    def get_metavar(self, param: click.Parameter, ctx: click.Context | None = None) -> str:
        return "NUMBER|NAME"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            text = str(value)
        else:
            text = str(value).strip()
        number: int | None = None
        if text.isdigit():
            number = int(text)
        else:
            number = table_names().get(text)
            if number is None and self.keep_text and text != "local":
                return text  # a name of the host the script runs on: render checks its form
            if number is None:
                from nosdn.problems import did_you_mean

                hint = did_you_mean(text, table_names()).strip()
                self.fail(
                    f"{text!r} is no routing table: "
                    + (f"{hint[0].upper()}{hint[1:]} Or give" if hint else "give")
                    + " a number or a name from /etc/iproute2/rt_tables (main is 254)",
                    param,
                    ctx,
                )
        if not 1 <= number <= MAX_TABLE or number == BUILTIN_TABLES["local"]:
            self.fail(
                f"{text}: give a table from 1 to {MAX_TABLE}, not the kernel's local (255)",
                param,
                ctx,
            )
        if self.keep_text:
            return "main" if number == BUILTIN_TABLES["main"] else text
        return number


#: ``--table`` of the commands that talk to the kernel: the number.
TABLE = TableParam()
#: ``--table`` of render: the same values, kept as written (the script says ``table main``); a
#: name this machine does not know is taken as one of the host the script will run on.
TABLE_TEXT = TableParam(keep_text=True)

NETNS_HELP = "Work in this named network namespace (like `ip -n`), not the current one."
#: Set in the environment of a command run again inside its ``--netns``.
IN_NETNS_ENV = "NOSDN_IN_NETNS"
#: What ``ip netns add`` accepts as a name (a file name under /run/netns).
_NETNS_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,254}")


def _refuse_unknown_netns(netns: str) -> None:
    if not _NETNS_NAME.fullmatch(netns) or not (Path("/run/netns") / netns).exists():
        raise click.BadParameter(
            f"{netns!r}: no such network namespace (ip netns list shows them)",
            param_hint="'--netns'",
        )


def netns_exists(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """``--netns`` callback of the commands that open the namespace themselves (plan, apply,
    status, flush): a name ``ip netns`` does not know is bad input (exit 2), said as the
    commands that re-run themselves inside it say it, before anything is read."""
    if value is not None:
        _refuse_unknown_netns(value)
    return value


def reexec_in_netns(netns: str | None) -> None:
    """Run this very command again inside ``netns`` (``ip netns exec NETNS nosdn ...``),
    unless it is already running there; returns only when there is nothing to do."""
    if not netns or os.environ.get(IN_NETNS_ENV) == netns:
        return
    from nosdn.invocation import self_command

    _refuse_unknown_netns(netns)
    argv = ["ip", "netns", "exec", netns, *self_command(), *sys.argv[1:]]
    env = {**os.environ, IN_NETNS_ENV: netns}
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execvpe("ip", argv, env)
    except OSError as e:
        raise click.ClickException(f"cannot run ip netns exec {netns}: {e.strerror}") from e
