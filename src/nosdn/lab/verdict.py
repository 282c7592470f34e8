"""What a failed ping matrix means, said the way a person would: "every ping from node2 to
node1's pods fails", not 24 lines of single failures, and which doctor to run next.

A broken lab fails in patterns: no routes at all (nothing crosses a node), one node's pods
unreachable (its bridge, its forwarding, everybody's route to it), one node unable to reach
out (its routes), one pair of nodes (one route missing), the external host alone (its
routes). `groups` looks for those patterns, largest first, per IP family; a failure that fits
none is left to be listed on its own. Pure: it reads a `CheckResult` and returns text.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from nosdn.lab.ping import Endpoint, ProbeResult


@dataclass(frozen=True, slots=True)
class Group:
    """Failures that share one cause: what they say, and whose host to look at first."""

    text: str
    results: tuple[ProbeResult, ...]
    #: The lab node (or "external") whose doctor is the next thing to run.
    suspect: str


def owner(e: Endpoint) -> str:
    """The node an endpoint lives on (``node1/pod2`` and ``node1`` -> node1; the external
    host is its own)."""
    return e.label.split("/", 1)[0]


def _family(f: int) -> str:
    return f"IPv{f}"


def groups(results: Sequence[ProbeResult]) -> tuple[list[Group], list[ProbeResult]]:
    """The patterns the failures fall into (each failure in at most one) and the failures
    left over, both in the order of ``results``."""
    covered: set[int] = set()
    found: list[Group] = []
    cross = [r for r in results if owner(r.probe.src) != owner(r.probe.dst)]
    families = sorted({r.probe.family for r in results})
    many = len(families) > 1

    def take(
        text: str, suspect: str, family: int, src: str | None = None, dst: str | None = None
    ) -> None:
        """One group of ``family``'s cross-node pings (from ``src``, to ``dst``), if there
        are at least two not yet grouped and every one of them failed."""
        chosen = [
            r
            for r in cross
            if r.probe.family == family
            and (src is None or owner(r.probe.src) == src)
            and (dst is None or owner(r.probe.dst) == dst)
            and id(r) not in covered
        ]
        if len(chosen) >= 2 and not any(r.ok for r in chosen):
            covered.update(id(r) for r in chosen)
            found.append(Group(text, tuple(chosen), suspect))

    def take_between(a: str, b: str, family: int, tag: str) -> None:
        """A route missing on one of two nodes: pods of each reach no pod of the other (the
        replies need the route too), and the node that lacks it reaches none of the other's
        pods either. Grouped when every pod-to-pod ping between them failed."""
        both = [
            r
            for r in cross
            if r.probe.family == family
            and {owner(r.probe.src), owner(r.probe.dst)} == {a, b}
            and id(r) not in covered
        ]
        pods = [r for r in both if r.probe.src.kind == "pod"]
        if len(pods) < 2 or any(r.ok for r in pods):
            return
        if not any(owner(r.probe.src) == a for r in pods) or not any(
            owner(r.probe.src) == b for r in pods
        ):
            return
        failing = [r for r in both if not r.ok]
        lacking = sorted({owner(r.probe.src) for r in failing if r.probe.src.kind == "node"})
        covered.update(id(r) for r in failing)
        found.append(
            Group(
                f"every ping between {a}'s pods and {b}'s pods fails, both ways{tag}"
                + (
                    f": {lacking[0]} cannot reach the other's pods either"
                    if len(lacking) == 1
                    else ""
                ),
                tuple(failing),
                lacking[0] if len(lacking) == 1 else a,
            )
        )

    for f in families:
        tag = f" ({_family(f)})" if many else ""
        mine = [r for r in cross if r.probe.family == f]
        nodes = sorted({owner(r.probe.dst) for r in mine})
        sources = sorted({owner(r.probe.src) for r in mine})
        take(
            f"no ping crosses from one node to another{tag}: no routes, or none work",
            nodes[0] if nodes else "external",
            f,
        )
        for n in nodes:
            take(f"every ping to {n}'s pods from elsewhere fails{tag}", n, f, dst=n)
        for s in sources:
            if len(set(nodes) - {s}) < 2:  # one other node: said as a pair below
                continue
            what = "the external host" if s == "external" else f"{s} and its pods"
            take(f"every ping from {what} to other nodes' pods fails{tag}", s, f, src=s)
        for i, a in enumerate(nodes):
            for b in nodes[i + 1 :]:
                take_between(a, b, f, tag)
        for s in sources:
            what = "the external host" if s == "external" else s
            for n in nodes:
                if n != s:
                    take(f"every ping from {what} to {n}'s pods fails{tag}", s, f, s, n)
    left = [r for r in results if not r.ok and id(r) not in covered]
    order = {id(r): i for i, r in enumerate(results)}
    found.sort(key=lambda g: order[id(g.results[0])])
    return found, left
