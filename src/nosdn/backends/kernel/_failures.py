"""Many failed kernel writes, told as a total and a likely cause instead of one line each.

Why: when another writer races an apply, or a link goes down under it, every write fails the
same way; 15,000 routes made 15,000 identical lines that buried the one thing a person needs:
what happened. The kernel's own words say it: ``File exists`` means someone added the prefix
(or the nexthop id) between our read and our write; ``Nexthop device is not up`` and
``Network is unreachable`` mean the next hops' link went away; ``No such process`` means
someone removed what we were changing. Pure functions over the errors' messages.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from nosdn.backends.base import WriteError

#: (words of the kernel's message, the likely cause), first match wins.
_CAUSES: tuple[tuple[tuple[str, ...], str], ...] = (
    (
        ("File exists",),
        "another writer added these prefixes or nexthops between this read and its writes "
        "(another nosdn apply, the agent, a routing daemon); run apply again: it reads the "
        "table afresh and reports what it finds",
    ),
    (
        (
            "Nexthop device is not up",
            "Network is unreachable",
            "No such device",
            "Nexthop has invalid gateway",
            "carrier",
        ),
        "the next hops' link went down (or away) during the writes: the kernel drops a link's "
        "gateway routes and nexthops with it; check `ip link`, then run apply again",
    ),
    (
        ("Operation not permitted",),
        "writing routes needs root (CAP_NET_ADMIN)",
    ),
    (
        ("No such process", "No such file or directory"),
        "another writer removed routes or nexthops this apply was changing; run apply again",
    ),
    (
        ("ENOBUFS",),
        "the kernel dropped replies under load; run apply again: it converges",
    ),
)


def reason(message: str) -> str:
    """The kernel's words in a write error (without the ``nexthop N via GW:`` it was for)."""
    head, sep, rest = message.partition(": ")
    return rest if sep and head.startswith("nexthop ") else message


@dataclass(frozen=True, slots=True)
class FailureSummary:
    total: int
    #: (the kernel's reason, how many writes failed with it), most first
    reasons: tuple[tuple[str, int], ...]
    cause: str | None

    def line(self) -> str:
        why = ", ".join(f"{n} {r}" for r, n in self.reasons[:3])
        if len(self.reasons) > 3:
            why += f", {sum(n for _, n in self.reasons[3:])} other"
        cause = f"; likely cause: {self.cause}" if self.cause else ""
        return f"{self.total} write(s) failed ({why}){cause}"


def summarize(errors: Sequence[WriteError]) -> FailureSummary:
    """How many writes failed, why (by the kernel's reason), and the likely cause of the
    most common reason."""
    counts = Counter(reason(e.message) for e in errors)
    reasons = tuple(counts.most_common())
    cause = None
    if reasons:
        top = reasons[0][0]
        low = top.lower()
        cause = next((c for words, c in _CAUSES if any(w.lower() in low for w in words)), None)
    return FailureSummary(len(errors), reasons, cause)
