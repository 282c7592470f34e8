"""`nosdn doctor`: every check, in the order a person debugging pod traffic would look.

From the host outward: does this node forward at all, do filters drop what it forwards (in the
forward chain, or before routing), are the routes there and right, does a policy rule send pod
traffic elsewhere, do their next hops answer, are the pods' own config and bridge right,
does egress leave, and is the kernel fit for scale; do packets reach the peers (the
agent's datapath probes); last, what doctor does not check. Each
check is a pure function of the facts, so this module is only the list and the verdict.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from nosdn.diagnose.checks_bgp import check_bgp
from nosdn.diagnose.checks_cni import check_bridge, check_conflist, check_mtu
from nosdn.diagnose.checks_firewall import (
    check_early_drops,
    check_forward_policy,
    check_masquerade,
    check_scope,
)
from nosdn.diagnose.checks_host import check_forwarding, check_nexthops, check_rp_filter
from nosdn.diagnose.checks_probes import check_probes
from nosdn.diagnose.checks_routes import (
    check_conflicts,
    check_neighbours,
    check_offlink,
    check_routes,
)
from nosdn.diagnose.checks_rules import check_rules
from nosdn.diagnose.facts import Facts
from nosdn.diagnose.result import CheckResult

Check = Callable[[Facts], list[CheckResult]]

CHECKS: tuple[Check, ...] = (
    check_forwarding,
    check_rp_filter,
    check_forward_policy,
    check_early_drops,
    check_routes,
    check_conflicts,
    check_rules,
    check_offlink,
    check_bgp,
    check_neighbours,
    check_mtu,
    check_conflist,
    check_bridge,
    check_masquerade,
    check_nexthops,
    check_scope,
    check_probes,
)


def run_checks(facts: Facts, checks: Sequence[Check] = CHECKS) -> list[CheckResult]:
    return [r for check in checks for r in check(facts)]


def healthy(results: Sequence[CheckResult]) -> bool:
    """No check failed (warnings do not make a host unhealthy)."""
    return not any(r.status == "fail" for r in results)
