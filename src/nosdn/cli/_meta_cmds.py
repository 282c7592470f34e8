"""Commands about nosdn itself: ``version`` and ``completion``.

``nosdn --version`` prints the one line; ``nosdn version -o json`` the same as data a tool can
read (the versioned shape every machine output of nosdn has: ``apiVersion``, ``kind``).
``nosdn completion bash|zsh|fish`` prints click's completion script for that shell, wired to
the ``nosdn`` command name (completion runs ``nosdn`` from PATH, as a shell does).
"""

from __future__ import annotations

import platform
import sys
from importlib import metadata
from typing import Any

import click

from nosdn.cli._click import OutputOpt, argument, command
from nosdn.cli._output import API_VERSION, Output, dump

SHELLS = ("bash", "zsh", "fish")


def nosdn_version() -> str:
    try:
        return metadata.version("nosdn")
    except metadata.PackageNotFoundError:  # run from a source tree without an install
        return "unknown"


def version_line() -> str:
    return f"nosdn {nosdn_version()} (Python {platform.python_version()}, {sys.platform})"


def print_version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    """``--version`` on the top-level group."""
    if not value or ctx.resilient_parsing:
        return
    click.echo(version_line())
    ctx.exit(0)


def version_data() -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "Version",
        "version": nosdn_version(),
        "python": platform.python_version(),
        "platform": sys.platform,
        "kernel": platform.release(),
    }


@command("version")
@OutputOpt
def version(output: Output) -> None:
    """Print nosdn's version (and Python's, and the kernel's with -o json|yaml).

    \b
    Examples:
      nosdn version
      nosdn version -o json
    """
    if output is Output.table:
        click.echo(version_line())
    else:
        dump(version_data(), output)


@command("completion")
@argument("shell", type=click.Choice(SHELLS), doc="bash, zsh or fish.")
def completion(shell: str) -> None:
    """Print the shell completion script for SHELL (commands, options, choices).

    \b
    Examples:
      source <(nosdn completion bash)                   # this shell only
      nosdn completion bash > /etc/bash_completion.d/nosdn
      nosdn completion zsh > "${fpath[1]}/_nosdn"
      nosdn completion fish > ~/.config/fish/completions/nosdn.fish
    """
    from click.shell_completion import get_completion_class

    from nosdn.cli import app

    cls = get_completion_class(shell)
    assert cls is not None  # one of SHELLS, which click ships
    script = cls(app, {}, "nosdn", "_NOSDN_COMPLETE").source()
    sys.stdout.write(script if script.endswith("\n") else script + "\n")
