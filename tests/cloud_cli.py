"""Runs ``nosdn plan|apply --cloud ...`` in-process for the cloud tests.

Until ``--cloud`` is wired into the real ``nosdn`` app, the tests wire `cloud_command` around
the kernel plan/apply exactly as the CLI will; once it is wired, they run the real app.
"""

from __future__ import annotations

import inspect
from typing import Any


def cli_app() -> Any:
    import typer

    from nosdn.cli import _kernel_cmds as kernel
    from nosdn.cli import app
    from nosdn.cli._cloud import cloud_command

    names = {c.name: c for c in app.registered_commands}
    plan = names.get("plan")
    if plan is not None and "cloud" in inspect.signature(plan.callback).parameters:  # type: ignore[arg-type]
        return app
    local = typer.Typer()
    local.command("plan")(cloud_command(kernel.plan, always_dry_run=True))
    local.command("apply")(cloud_command(kernel.apply, always_dry_run=False))
    return local


def run(*args: str) -> Any:
    from typer.testing import CliRunner

    return CliRunner().invoke(cli_app(), list(args), catch_exceptions=False)
