"""What the `nosdn lab` command modules share: the consoles, the ``--name`` option, and how
a lab's errors become one clear line and an exit code."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import NoReturn

from nosdn.cli._click import option
from nosdn.cli._output import EXIT_BAD_INPUT, EXIT_FAILURE, make_console
from nosdn.lab import DEFAULT_NAME, LabError, LabInputError
from nosdn.sources.inventory import InventoryError

out = make_console()
err = make_console(stderr=True)

NameOpt = option(
    "--name",
    envvar="NOSDN_LAB",
    default=DEFAULT_NAME,
    help="Lab name; prefixes every namespace (NAME.node1, NAME.node1.pod1, NAME.sw, NAME.ext) "
    "so several labs can coexist. Also $NOSDN_LAB.",
)


def help_text(*paragraphs: str) -> str:
    return "\n\n".join(paragraphs)


def fail(message: str, code: int) -> NoReturn:
    """Print an error as plain text (it may hold command output with [brackets]) and exit."""
    err.print("[bold red]error:[/] ", end="")
    err.print(message, markup=False)
    raise SystemExit(code)


@contextmanager
def lab_errors() -> Iterator[None]:
    try:
        yield
    except LabInputError as e:
        fail(str(e), EXIT_BAD_INPUT)
    except InventoryError as e:  # the lab wrote an inventory nosdn refuses: a bug, say so
        fail(f"the lab's own inventory was refused: {e}", EXIT_FAILURE)
    except LabError as e:
        fail(str(e), EXIT_FAILURE)


def log(line: str) -> None:
    out.print(line, markup=False)
