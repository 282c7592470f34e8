"""What every command shares: the inventory option, output formats, and loading with checks."""

from __future__ import annotations

import json
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
import yaml
from rich.console import Console

from nosdn.inventory import InventoryError, load_cluster
from nosdn.model import Cluster

out = Console(highlight=False, soft_wrap=True, emoji=False)
err = Console(stderr=True, highlight=False, soft_wrap=True, emoji=False)

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_BAD_INPUT = 2


class Output(StrEnum):
    table = "table"
    json = "json"
    yaml = "yaml"


FileOpt = Annotated[
    Path,
    typer.Option(
        "-f",
        "--file",
        envvar="NOSDN_INVENTORY",
        help="Inventory YAML (nodes, their addresses and pod subnets). Also $NOSDN_INVENTORY.",
        show_default=False,
    ),
]
OutputOpt = Annotated[
    Output,
    typer.Option("-o", "--output", help="table for people; json or yaml for machines."),
]


def fail(message: str, code: int = EXIT_BAD_INPUT) -> NoReturn:
    err.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(code)


def load(path: Path) -> Cluster:
    """Load and check an inventory; on any problem print them all and exit 2."""
    try:
        return load_cluster(path)
    except InventoryError as e:
        err.print(f"[bold red]{path}: {len(e.problems)} problem(s); nothing was changed[/]")
        for p in e.problems:
            err.print(f"  - {p}")
        raise typer.Exit(EXIT_BAD_INPUT) from None


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
        sys.stdout.write(yaml.dump(data, sort_keys=False, Dumper=yaml.CSafeDumper))
