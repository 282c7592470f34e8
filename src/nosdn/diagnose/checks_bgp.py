"""doctor's BGP lines (the agent's ``--bgp`` mode): one per session of the agent's BIRD, with
its state, since when, what it announces, and the fix when it is down (wrong ASN, MD5
mismatch, peer unreachable: `nosdn.backends.birdc.Session.fix`). A pure function of the facts.
"""

from __future__ import annotations

from nosdn.diagnose.facts import Facts
from nosdn.diagnose.result import CheckResult, fail, ok, skip


def check_bgp(facts: Facts) -> list[CheckResult]:
    check = "bgp"
    if facts.bgp is None:
        return [skip(check, "no BIRD control socket of the agent (not in --bgp mode)")]
    if facts.bgp_error:
        return [
            fail(
                check,
                f"the agent's BIRD does not answer: {facts.bgp_error}",
                "the agent restarts BIRD within a second; if this stays, read the agent's log",
            )
        ]
    if not facts.bgp:
        return [fail(check, "BIRD has no BGP session", "give the agent --bgp-peer ADDRESS:ASN")]
    out: list[CheckResult] = []
    for s in facts.bgp:
        who = f"{check}.{s.neighbor or s.name}"
        peer = f"peer {s.neighbor or s.name} AS {s.neighbor_as}"
        if s.established:
            out.append(
                ok(who, f"{peer}: Established since {s.since}, announces {s.exported} prefix(es)")
            )
        else:
            err = f" ({s.last_error})" if s.last_error else ""
            out.append(fail(who, f"{peer}: {s.bgp_state} since {s.since}{err}", s.fix()))
    return out
