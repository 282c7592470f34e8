"""IP forwarding: a node routes its pods' packets, so the kernel must forward.

Only the families the node has pod subnets in are switched on, and only when off (a write is
logged; re-checked every resync, since a sysctl reload or another agent may turn it off).
Note for IPv6: ``all.forwarding=1`` makes interfaces with ``accept_ra=1`` ignore router
advertisements; nodes that take their address or default route from RAs need ``accept_ra=2``.

The files are those of the agent's own network namespace (``/proc/sys/net`` follows the
namespace of the process that opens it, whatever path it is mounted at).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

log = logging.getLogger("nosdn.agent.forwarding")

PROC_SYS_NET = Path("/proc/sys/net")
SYSCTL = {4: "ipv4/ip_forward", 6: "ipv6/conf/all/forwarding"}


def ensure_forwarding(families: Iterable[int], proc_sys_net: Path = PROC_SYS_NET) -> list[str]:
    """Turn forwarding on for ``families``; returns the sysctl files written.

    ``proc_sys_net`` may be the host's ``/proc/sys/net`` mounted elsewhere: a container's own
    ``/proc/sys`` is read-only, and with hostNetwork any path to it reaches the host's values.
    """
    written: list[str] = []
    for fam in sorted(set(families)):
        path = proc_sys_net / SYSCTL[fam]
        try:
            if path.read_text().strip() == "1":
                continue
            path.write_text("1\n")
        except OSError as e:
            log.error(
                "cannot enable IPv%d forwarding (%s): pods on this node cannot be reached",
                fam,
                e,
                extra={"file": str(path)},
            )
            continue
        log.info("enabled IPv%d forwarding", fam, extra={"file": str(path)})
        written.append(str(path))
    return written
