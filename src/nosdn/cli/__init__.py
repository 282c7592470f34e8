"""The `nosdn` command line: parses, calls, prints. No logic of its own lives here.

Each command group is a small module with a ``register(app)`` function; ``_common`` holds the
options they share (``-f/--file``, ``-o/--output``) and the one way inventories are loaded and
checked, so every command refuses a bad inventory the same way (exit 2, nothing written).
Exit codes: 0 ok, 1 runtime failure, 2 bad input or usage.
"""

from __future__ import annotations

import gc

import typer

from nosdn.cli import _inventory_cmds

app = typer.Typer(
    name="nosdn",
    help=(
        "Kubernetes pod networking with plain IP routes: no overlay, no SDN.\n\n"
        "Each node gets a pod subnet; nosdn tells the network where each subnet lives, as "
        "host routes on every node, in a cloud route table, or in a router's config.\n\n"
        "Start with:  nosdn check -f examples/two-nodes.yaml  then  nosdn routes --node node1"
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)

_inventory_cmds.register(app)

for _mod in ("_render_cmds", "_kernel_cmds", "_lab_cmds", "_agent_cmds", "_debug_cmds"):
    try:
        __import__(f"nosdn.cli.{_mod}")
    except ModuleNotFoundError:  # pragma: no cover - during development only
        continue
    import sys

    sys.modules[f"nosdn.cli.{_mod}"].register(app)


def main() -> None:
    """Entry point: bad input anywhere becomes exit 2 with every problem listed."""
    from nosdn.cli._common import EXIT_BAD_INPUT, err
    from nosdn.problems import ProblemsError

    # One-shot commands build a few hundred thousand small objects and exit: the cyclic GC
    # only re-scans them (it doubled `nosdn check` on 50,000 nodes). Long-running commands
    # (agent, controller) turn it back on.
    gc.disable()
    try:
        app()
    except ProblemsError as e:
        err.print(f"[bold red]{len(e.problems)} problem(s); nothing was changed[/]")
        for p in e.problems:
            err.print(f"  - {p}")
        raise SystemExit(EXIT_BAD_INPUT) from None
