"""nosdn: Kubernetes pod networking with plain IP routes.

The public surface is small: the model (`Cluster`, `Node`, `Route`, `Target`), the inventory
loader, the planner (`desired_routes`, `diff`) and the backends. See README.md.
"""

from nosdn.model import (
    DEFAULT_PROTOCOL,
    EXTERNAL,
    ROUTER,
    Change,
    Cluster,
    Conflict,
    Diff,
    InstalledRoute,
    Node,
    Route,
    Target,
)
from nosdn.plan import desired_routes, diff

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_PROTOCOL",
    "EXTERNAL",
    "ROUTER",
    "Change",
    "Cluster",
    "Conflict",
    "Diff",
    "InstalledRoute",
    "Node",
    "Route",
    "Target",
    "desired_routes",
    "diff",
]
