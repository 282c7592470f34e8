"""Runs ``nosdn plan|apply --cloud ...`` in-process (the real app) for the cloud tests."""

from __future__ import annotations

from typing import Any


def run(*args: str) -> Any:
    from click.testing import CliRunner

    from nosdn.cli import app

    return CliRunner().invoke(app, list(args), catch_exceptions=False)
