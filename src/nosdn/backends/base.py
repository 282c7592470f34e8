"""The surface every backend implements, and the result of applying a diff."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from nosdn.model import Diff, InstalledRoute, IPNetwork


@dataclass(frozen=True, slots=True)
class WriteError:
    """One write the backend could not make, with the node it belongs to and why."""

    dst: IPNetwork
    node: str | None
    action: str  # "add" | "change" | "remove"
    message: str


@dataclass(slots=True)
class ApplyResult:
    writes: int = 0
    errors: list[WriteError] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


class Backend(Protocol):
    """Lists the routes in its table (owned and foreign, for the prefixes it can see) and
    applies a diff computed from them. Applying must be safe to repeat: after a partial failure
    the next ``routes()`` + ``diff`` + ``apply`` converges."""

    name: str

    def routes(self) -> list[InstalledRoute]: ...

    def apply(self, diff: Diff) -> ApplyResult: ...
