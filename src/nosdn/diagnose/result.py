"""One line of `nosdn doctor`: a check's verdict, what it saw, and the command that fixes it.

The fix is a command a person can paste (or a test can run) on the host the doctor ran on; when
no single command can fix it, ``fix`` says what to do in words. ``details`` carries the items
behind a summary line (every missing route, every stale neighbour) for ``-o json`` and for
people who want them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias

Status: TypeAlias = Literal["ok", "warn", "fail", "skip"]
#: Worst first: the order the summary counts them in.
SEVERITY: dict[Status, int] = {"fail": 3, "warn": 2, "ok": 1, "skip": 0}


@dataclass(frozen=True, slots=True)
class CheckResult:
    id: str  # forwarding.ipv4, rp_filter, routes, ...
    status: Status
    saw: str
    fix: str | None = None
    details: tuple[str, ...] = field(default=())

    def as_dict(self) -> dict[str, Any]:
        return {
            "check": self.id,
            "status": self.status,
            "saw": self.saw,
            "fix": self.fix,
            "details": list(self.details),
        }


def ok(check: str, saw: str, details: tuple[str, ...] = ()) -> CheckResult:
    return CheckResult(check, "ok", saw, None, details)


def warn(
    check: str, saw: str, fix: str | None = None, details: tuple[str, ...] = ()
) -> CheckResult:
    return CheckResult(check, "warn", saw, fix, details)


def fail(
    check: str, saw: str, fix: str | None = None, details: tuple[str, ...] = ()
) -> CheckResult:
    return CheckResult(check, "fail", saw, fix, details)


def skip(check: str, saw: str) -> CheckResult:
    return CheckResult(check, "skip", saw)
