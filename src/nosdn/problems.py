"""Problems: one bad value in the description of a cluster, said so a person can fix it.

Every check, the inventory parser and the allocator report through this one type, so every
message names the node, the field and the value, and says what to do. Commands collect all
problems first and write nothing when there is any (exit code 2).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Problem:
    node: str | None  # None for cluster-wide fields
    field: str
    value: str
    message: str
    hint: str = ""
    #: The other node of a conflict between two nodes (``node`` is the one to skip or fix).
    party: str | None = None

    def __str__(self) -> str:
        where = f"node {self.node}: " if self.node is not None else ""
        text = f"{where}{self.field} {self.value}: {self.message}"
        return f"{text} — {self.hint}" if self.hint else text

    def as_dict(self) -> dict[str, str | None]:
        return {
            "node": self.node,
            "field": self.field,
            "value": self.value,
            "message": self.message,
            "hint": self.hint,
            "party": self.party,
        }


class ProblemsError(ValueError):
    """Raised with every problem found; nothing has been written."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """``"did you mean X? "`` for the closest of ``choices`` to a mistyped ``word`` (case
    does not count: podcidr finds podCIDR), else ``""``: one rule for command names, node
    names and inventory fields."""
    options = list(choices)
    lower = {c.lower(): c for c in options}
    close = difflib.get_close_matches(word.lower(), list(lower), n=1, cutoff=0.6)
    return f"did you mean {lower[close[0]]}? " if close else ""
