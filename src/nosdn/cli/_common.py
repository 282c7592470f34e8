"""What every command shares: the inventory option, output formats, and loading with checks.

Also the two click classes every command is built from (`Command`, `Group`): help that keeps
arguments documented, options grouped in titled sections (``panel=``) and subcommands listed
in the order they were written, which is the order they are taught in.

rich is imported on first print, not here: ``nosdn routes -o json`` prints nothing through it,
and importing it costs more than computing a small cluster's routes.
"""

from __future__ import annotations

import inspect
import json
import sys
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click

from nosdn.inventory import InventoryError, load_cluster
from nosdn.model import Cluster

if TYPE_CHECKING:
    from rich.console import Console

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_BAD_INPUT = 2

F = TypeVar("F", bound=Callable[..., Any])


class LazyConsole:
    """A rich ``Console`` (no emoji codes, no highlighting, no wrapping) made on first use.

    No emoji codes: rich would turn the ":a:" of fd17:0:0:a::/64 into a picture.
    """

    def __init__(self, *, stderr: bool = False) -> None:
        self._stderr = stderr
        self._console: Console | None = None

    @property
    def console(self) -> Console:
        if self._console is None:
            from rich.console import Console

            self._console = Console(
                stderr=self._stderr, highlight=False, soft_wrap=True, emoji=False
            )
        return self._console

    def print(self, *objects: Any, **kwargs: Any) -> None:
        self.console.print(*objects, **kwargs)


out = LazyConsole()
err = LazyConsole(stderr=True)


class Output(StrEnum):
    table = "table"
    json = "json"
    yaml = "yaml"


# --- click pieces ----------------------------------------------------------------------------
class Option(click.Option):
    """An option that may name the help section (``panel``) it is listed under."""

    def __init__(self, *args: Any, panel: str | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.panel = panel


class Argument(click.Argument):
    """A positional argument with a line of help (``doc``), listed under "Arguments"."""

    def __init__(self, *args: Any, doc: str = "", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.doc = doc


def _sections(cmd: click.Command, ctx: click.Context) -> dict[str, list[tuple[str, str]]]:
    sections: dict[str, list[tuple[str, str]]] = {}
    for param in cmd.get_params(ctx):
        if isinstance(param, click.Argument):
            doc = getattr(param, "doc", "")
            if doc:
                sections.setdefault("Arguments", []).append((param.human_readable_name, doc))
            continue
        record = param.get_help_record(ctx)
        if record is not None:
            sections.setdefault(getattr(param, "panel", None) or "Options", []).append(record)
    return sections


class Command(click.Command):
    """A command whose help lists arguments first, then options by section. ``lists`` adds
    titled name/description lists after the help text (``nosdn render``'s formats)."""

    def __init__(
        self, *args: Any, lists: dict[str, list[tuple[str, str]]] | None = None, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.lists = lists or {}

    def format_help_text(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        super().format_help_text(ctx, formatter)
        for title, rows in self.lists.items():
            with formatter.section(title):
                formatter.write_dl(rows)

    def get_short_help_str(self, limit: int = 45) -> str:
        """The help's whole first paragraph (click would cut it at ``limit`` characters)."""
        if self.short_help or not self.help:
            return super().get_short_help_str(limit)
        return " ".join(inspect.cleandoc(self.help).split("\n\n")[0].split())

    def format_arguments(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """Listed by `format_options`, with the options."""

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        for title, rows in _sections(self, ctx).items():
            with formatter.section(title):
                formatter.write_dl(rows)


class Group(click.Group):
    """A group that lists its commands in the order they were added."""

    command_class = Command

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(self.commands)


def command(name: str, **kwargs: Any) -> Callable[[Callable[..., Any]], Command]:
    """``click.command`` making a `Command`."""
    return click.command(name, cls=Command, **kwargs)


def option(*decls: str, **kwargs: Any) -> Callable[[F], F]:
    """``click.option`` making an `Option`; shows the default and the envvar like the help of
    every other option does."""
    kwargs.setdefault("show_envvar", "envvar" in kwargs)
    return click.option(*decls, cls=Option, **kwargs)


def argument(name: str, **kwargs: Any) -> Callable[[F], F]:
    return click.argument(name, cls=Argument, **kwargs)


def _to_output(_ctx: click.Context, _param: click.Parameter, value: str) -> Output:
    return Output(value)


def file_option(help: str, *, required: bool = True) -> Callable[[F], F]:
    """``-f/--file`` (also ``$NOSDN_INVENTORY``): the inventory."""
    return option(
        "-f",
        "--file",
        "file",
        type=click.Path(path_type=Path),
        required=required,
        envvar="NOSDN_INVENTORY",
        help=help,
    )


FileOpt = file_option(
    "Inventory YAML (nodes, their addresses and pod subnets). Also $NOSDN_INVENTORY."
)
OutputOpt = option(
    "-o",
    "--output",
    type=click.Choice([o.value for o in Output]),
    default=Output.table.value,
    callback=_to_output,
    help="table for people; json or yaml for machines.",
)


# --- exits and loading -----------------------------------------------------------------------
def fail(message: str, code: int = EXIT_BAD_INPUT) -> NoReturn:
    err.print(f"[bold red]error:[/] {message}")
    raise SystemExit(code)


def load(path: Path) -> Cluster:
    """Load and check an inventory; on any problem print them all and exit 2."""
    try:
        return load_cluster(path)
    except InventoryError as e:
        err.print(f"[bold red]{path}: {len(e.problems)} problem(s); nothing was changed[/]")
        for p in e.problems:
            err.print(f"  - {p}")
        raise SystemExit(EXIT_BAD_INPUT) from None


def json_text(data: Any) -> str:
    """JSON with one line per list item: readable, diffable, and written by the C encoder
    (``indent=`` switches json to its pure-Python encoder, 5x slower at 50,000 routes)."""
    if not isinstance(data, dict):
        return json.dumps(data)
    parts = []
    for key, value in data.items():
        k = json.dumps(key)
        if isinstance(value, list) and value:
            items = ",\n    ".join(json.dumps(v) for v in value)
            parts.append(f"  {k}: [\n    {items}\n  ]")
        else:
            parts.append(f"  {k}: {json.dumps(value)}")
    return "{\n" + ",\n".join(parts) + "\n}"


def dump(data: Any, output: Output) -> None:
    """Print ``data`` as JSON or YAML (for ``-o json|yaml``)."""
    if output is Output.json:
        sys.stdout.write(json_text(data) + "\n")
    else:
        import yaml

        sys.stdout.write(yaml.dump(data, sort_keys=False, Dumper=yaml.CSafeDumper))
