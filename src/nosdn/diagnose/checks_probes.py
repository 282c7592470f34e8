"""doctor's datapath lines: what the agent's probes saw (``/probes``: ICMP from this node's pod
bridge address to each peer's). One line per peer that does not answer, naming it and the
likely cause the agent found; one line for the rest. A pure function of the facts.
"""

from __future__ import annotations

import time

from nosdn.diagnose.facts import Facts
from nosdn.diagnose.result import CheckResult, fail, ok, skip


def check_probes(facts: Facts) -> list[CheckResult]:
    check = "probes"
    p = facts.probes
    if p is None:
        return [skip(check, "no agent answers on this host's /probes (not a node, or probes off)")]
    peers, up, unknown = int(p.get("peers", 0)), int(p.get("reachable", 0)), p.get("unknown", 0)
    out: list[CheckResult] = []
    for bad in p.get("unreachable", []):
        peer = str(bad.get("peer", "?"))
        since = float(bad.get("since", 0) or 0)
        ago = f", for {max(0, int(time.time() - since))} s" if since else ""
        cause = str(bad.get("cause") or "cause unknown")
        out.append(
            fail(
                f"{check}.{peer}",
                f"{peer} does not answer over the pod path ({bad.get('src')} -> "
                f"{bad.get('dst')}{ago}): {cause}",
                f"if the route here is in place, run `nosdn doctor` on {peer}",
            )
        )
    if not out:
        more = f" ({unknown} not probed yet)" if unknown else ""
        out.append(ok(check, f"{up} of {peers} peers answer over the pod path{more}"))
    return out
