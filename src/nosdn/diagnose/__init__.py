"""Troubleshooting: ``nosdn doctor`` (what is wrong on this host) and ``nosdn trace IP`` (which
node and route an address takes from here), the post's answer to "SDNs are harder to debug".

One gatherer (`gather`) reads the host into plain `Facts`; every doctor check (``checks_*``)
is a small pure function of them, so each can be tested with the exact facts it needs, and the
doctor itself can never change the host it examines. `trace` reads the few facts one address
needs and tells its path top to bottom.
"""

from nosdn.diagnose.doctor import CHECKS, healthy, run_checks
from nosdn.diagnose.facts import Facts
from nosdn.diagnose.gather import TargetError, gather
from nosdn.diagnose.result import CheckResult, Status

__all__ = [
    "CHECKS",
    "CheckResult",
    "Facts",
    "Status",
    "TargetError",
    "gather",
    "healthy",
    "run_checks",
]
