"""The daemons' malloc arenas: asked of glibc, unless the operator chose in the environment."""

from __future__ import annotations

import pytest

from nosdn.daemon.memory import limit_malloc_arenas


def test_glibc_takes_the_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    assert limit_malloc_arenas(2) is True  # these machines run glibc


def test_an_operators_malloc_arena_max_stands(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert limit_malloc_arenas(2) is False
