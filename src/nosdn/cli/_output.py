"""How every command prints for people: consoles, and tables that never cut data.

A rich table squeezed into 80 columns (a pipe, a narrow terminal) cuts cells with an ellipsis
(two IPv6 next hops that differ at the end print the same) or wraps one route over three lines
(``grep`` gets fragments). So data tables are printed as plain aligned columns, the way
``kubectl get`` prints them: one row per line, every value whole, no box glyphs, on a terminal
and through a pipe alike. On a terminal a cell may carry a colour; with ``NO_COLOR`` set (or
``TERM=dumb``, or not a terminal) nothing but text is written.

``-o wide`` adds a table's wide-only columns, ``--no-headers`` drops its title and header row
(for ``awk``); both are read from the click context (`OutputOpt` and `NoHeadersOpt` of
``_common`` put them there), so a command only calls `table`.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import click

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
