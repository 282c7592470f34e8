"""The Linux kernel backend: host routes in a kernel routing table, through rtnetlink.

``KernelBackend`` is the only part of nosdn that talks to the kernel; it uses the small raw
netlink client in ``_netlink`` because bulk writes and no-op checks at scale must be fast (see
DESIGN.md). Everything above it sees only the ``Backend`` surface plus ``adjacency()``,
``local_addresses()`` and ``flush()``.
"""

from nosdn.backends.kernel._failures import FailureSummary
from nosdn.backends.kernel._failures import summarize as summarize_failures
from nosdn.backends.kernel.backend import Adjacency, KernelBackend, NexthopsUnsupportedError

__all__ = [
    "Adjacency",
    "FailureSummary",
    "KernelBackend",
    "NexthopsUnsupportedError",
    "summarize_failures",
]
