"""`nosdn lab`: a cluster made of network namespaces on this machine, to try nosdn and to prove it.

A switch namespace (a Linux bridge), N node namespaces on it, an external host, and pods made
by the real CNI plugins with the conflist nosdn renders; routes come from ``nosdn apply`` run
inside each node, or (``--agents``) from ``nosdn agent`` in each node following a real API
server (`nosdn.lab.cluster`, `nosdn.lab.members`). Nothing touches the machine's own
namespace. See `nosdn.lab.lifecycle`.
"""

from nosdn.lab.lifecycle import (
    ApplyRun,
    CheckResult,
    DownReport,
    Lab,
    apply_routes,
    check,
    down,
    open_lab,
    up,
)
from nosdn.lab.members import add_node, readdress_node, remove_node
from nosdn.lab.netns import LabError
from nosdn.lab.topology import DEFAULT_NAME, LabInputError, LabSpec

__all__ = [
    "DEFAULT_NAME",
    "ApplyRun",
    "CheckResult",
    "DownReport",
    "Lab",
    "LabError",
    "LabInputError",
    "LabSpec",
    "add_node",
    "apply_routes",
    "check",
    "down",
    "open_lab",
    "readdress_node",
    "remove_node",
    "up",
]
