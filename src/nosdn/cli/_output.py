"""How every command prints and ends: consoles, tables that never cut data, the documents for
machines (``-o json|yaml``), problems, and the one-line error with its exit code.

A rich table squeezed into 80 columns (a pipe, a narrow terminal) cuts cells with an ellipsis
(two IPv6 next hops that differ at the end print the same) or wraps one route over three lines
(``grep`` gets fragments). So data tables are printed as plain aligned columns, the way
``kubectl get`` prints them: one row per line, every value whole, no box glyphs, on a terminal
and through a pipe alike. On a terminal a cell may carry a colour; with ``NO_COLOR`` set (or
``TERM=dumb``, or not a terminal) nothing but text is written.

``-o wide`` adds a table's wide-only columns, ``--no-headers`` drops its title and header row
(for ``awk``); both are read from the click context (`OutputOpt` and `NoHeadersOpt` of
``_click`` put them there), so a command only calls `table`. rich is imported on first
print, not here: ``nosdn routes -o json`` prints nothing through it, and importing it costs
more than computing a small cluster's routes.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any, NoReturn

import click

from nosdn.cli import _errors
from nosdn.echo import cut, echo
from nosdn.problems import Problem

if TYPE_CHECKING:
    from rich.console import Console

#: Keys of the click context's ``meta`` that the output options set.
WIDE_KEY = "nosdn.output.wide"
NO_HEADERS_KEY = "nosdn.output.no_headers"
#: Spaces between two columns.
GAP = "   "


def color_allowed(stream: Any = None) -> bool:
    """Escape sequences may be written to ``stream`` (stdout by default): a terminal, and
    neither ``NO_COLOR`` (https://no-color.org) nor ``TERM=dumb``."""
    s = sys.stdout if stream is None else stream
    if os.environ.get("NO_COLOR", "") != "" or os.environ.get("TERM") == "dumb":
        return False
    isatty = getattr(s, "isatty", None)
    return bool(isatty and isatty())


def make_console(*, stderr: bool = False) -> Console:
    """The one way a rich console is made: no emoji codes (rich would turn the ":a:" of
    fd17:0:0:a::/64 into a picture), no highlighting, no wrapping of long lines, and no escape
    sequence at all when `color_allowed` says so (rich alone keeps bold under NO_COLOR)."""
    from rich.console import Console

    plain = not color_allowed(sys.stderr if stderr else sys.stdout)
    return Console(
        stderr=stderr,
        highlight=False,
        soft_wrap=True,
        emoji=False,
        color_system=None if plain else "auto",
        no_color=plain,
    )


def _meta(key: str) -> bool:
    ctx = click.get_current_context(silent=True)
    return bool(ctx is not None and ctx.find_root().meta.get(key))


def wide() -> bool:
    """``-o wide`` was given."""
    return _meta(WIDE_KEY)


def no_headers() -> bool:
    """``--no-headers`` was given."""
    return _meta(NO_HEADERS_KEY)


@dataclass(frozen=True, slots=True)
class Column:
    """A table column: its header, and whether only ``-o wide`` shows it."""

    header: str
    wide: bool = False


#: A cell: its text, or (text, colour) for a terminal.
Cell = str | tuple[str, str]


def _text(cell: Cell) -> str:
    text = cell if isinstance(cell, str) else cell[0]
    return " ".join(text.split("\n"))  # one row per line: a multi-line value is joined


def table_lines(
    columns: Sequence[Column],
    rows: Iterable[Sequence[Cell]],
    *,
    title: str | None = None,
    show_wide: bool = False,
    headers: bool = True,
    colour: bool = False,
) -> list[str]:
    """The lines of a plain table: every value whole, columns aligned, the last not padded."""
    keep = [i for i, c in enumerate(columns) if show_wide or not c.wide]
    body = [[row[i] for i in keep] for row in rows]
    texts = [[_text(c) for c in row] for row in body]
    head = [columns[i].header.upper() for i in keep]
    widths = [len(h) if headers else 0 for h in head]
    for row in texts:
        for j, t in enumerate(row):
            widths[j] = max(widths[j], len(t))
    lines: list[str] = []
    if headers and title:
        lines.append(title)
    if headers:
        lines.append(_join(head, widths))
    for cells, row in zip(body, texts, strict=True):
        if colour:
            shown = [
                _paint(t, c[1]) if isinstance(c, tuple) else t
                for c, t in zip(cells, row, strict=True)
            ]
            lines.append(_join(shown, widths, row))
        else:
            lines.append(_join(row, widths))
    return lines


def _join(cells: Sequence[str], widths: Sequence[int], lengths: Sequence[str] = ()) -> str:
    size = [len(t) for t in (lengths or cells)]
    parts = [c + " " * (w - n) for c, w, n in zip(cells, widths, size, strict=True)]
    return GAP.join(parts).rstrip()


#: The few colours a cell may have, as ANSI codes.
_COLOURS = {"green": "32", "red": "31", "yellow": "33", "bold red": "1;31", "dim": "2"}


def _paint(text: str, colour: str) -> str:
    code = _COLOURS.get(colour)
    return f"\x1b[{code}m{text}\x1b[0m" if code else text


def table(
    columns: Sequence[Column], rows: Iterable[Sequence[Cell]], *, title: str | None = None
) -> None:
    """Print a data table on stdout, as `table_lines` makes it for this command's options."""
    lines = table_lines(
        columns,
        rows,
        title=title,
        show_wide=wide(),
        headers=not no_headers(),
        colour=color_allowed(),
    )
    sys.stdout.write("".join(line + "\n" for line in lines))


# --- documents, problems, exits ----------------------------------------------------------
EXIT_OK = 0
EXIT_FAILURE = _errors.EXIT_FAILURE
EXIT_BAD_INPUT = _errors.EXIT_BAD_INPUT


class LazyConsole:
    """A rich ``Console`` made on first use, by `make_console`."""

    def __init__(self, *, stderr: bool = False) -> None:
        self._stderr = stderr
        self._console: Console | None = None

    @property
    def console(self) -> Console:
        if self._console is None:
            self._console = make_console(stderr=self._stderr)
        return self._console

    def print(self, *objects: Any, **kwargs: Any) -> None:
        self.console.print(*objects, **kwargs)


out = LazyConsole()
err = LazyConsole(stderr=True)


class Output(StrEnum):
    table = "table"
    json = "json"
    yaml = "yaml"


def fail(message: str, code: int = EXIT_BAD_INPUT) -> NoReturn:
    """Print ``error: MESSAGE`` (as plain text: it may hold values with [brackets]), exit."""
    err.print("[bold red]error:[/] ", end="")
    err.print(message, markup=False)
    raise SystemExit(code)


#: Problems listed in a table before "... and N more": a person reads the first few, and a
#: file with a million bad lines must not print a million lines.
SHOWN_PROBLEMS = 50


#: Characters of each field of a problem (node, field, value, message, hint) that are printed.
FIELD_LIMIT = 200


def _cut_problem(p: Problem) -> Problem:
    """``p`` with every field cut to `FIELD_LIMIT`: values come from untrusted input, and a
    value the parser did not cut (a name, another node's name in a message) can be huge."""
    return Problem(
        None if p.node is None else echo(p.node, FIELD_LIMIT),
        cut(p.field, FIELD_LIMIT),
        cut(p.value, FIELD_LIMIT),
        cut(p.message, FIELD_LIMIT),
        cut(p.hint, FIELD_LIMIT),
    )


def problem_dicts(problems: Sequence[Problem]) -> list[dict[str, str | None]]:
    """Every problem for ``-o json|yaml``, each field cut like in the table."""
    return [_cut_problem(p).as_dict() for p in problems]


def print_problems(header: str, problems: Sequence[Problem]) -> None:
    """``header`` (which gives the total), then the first `SHOWN_PROBLEMS` problems and how
    many more there are, on stderr as plain text: a value is never read as rich markup."""
    err.print(header, style="bold red", markup=False)
    for p in problems[:SHOWN_PROBLEMS]:
        err.print(f"  - {_cut_problem(p)}", markup=False)
    if len(problems) > SHOWN_PROBLEMS:
        err.print(f"  ... and {len(problems) - SHOWN_PROBLEMS} more (-o json for all)")


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


#: The version of every document nosdn prints for machines (``-o json|yaml``): a field is
#: only ever added under it; a change of meaning gets a new version.
API_VERSION = "nosdn/v1"


def document_kind() -> str:
    """The ``kind`` of the running command's document: its path, capitalised ("lab check":
    LabCheck)."""
    from nosdn.cli._examples import command_key

    ctx = click.get_current_context(silent=True)
    key = command_key(ctx) if ctx is not None else ""
    return "".join(w.capitalize() for w in key.split()) or "Document"


def versioned(data: dict[str, Any], kind: str | None = None) -> dict[str, Any]:
    """``data`` with ``apiVersion`` and ``kind`` first (unless it has them)."""
    if "apiVersion" in data:
        return data
    return {"apiVersion": API_VERSION, "kind": kind or document_kind(), **data}


def dump(data: Any, output: Output) -> None:
    """Print ``data`` as JSON or YAML (for ``-o json|yaml``); a document (a dict) is
    `versioned`."""
    if isinstance(data, dict):
        data = versioned(data)
    if output is Output.json:
        sys.stdout.write(json_text(data) + "\n")
    else:
        import yaml

        sys.stdout.write(yaml.dump(data, sort_keys=False, Dumper=yaml.CSafeDumper))
