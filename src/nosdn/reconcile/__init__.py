"""Reconciling: make a backend's routes equal the routes a cluster needs.

``reconcile_once`` is one pass (plan, adjacency check, diff, apply); the long-running agent loop
will call it repeatedly. Nothing here imports a particular backend.
"""

from nosdn.reconcile.once import (
    AdjacencyCheck,
    AdjacencyInfo,
    MassRemovalError,
    OffLink,
    OffLinkError,
    PassResult,
    ReadsEntries,
    ReadsKeys,
    Scope,
    drop_offlink,
    nodes_with_addresses,
    reconcile_once,
    reconcile_routes,
)

__all__ = [
    "AdjacencyCheck",
    "AdjacencyInfo",
    "MassRemovalError",
    "OffLink",
    "OffLinkError",
    "PassResult",
    "ReadsEntries",
    "ReadsKeys",
    "Scope",
    "drop_offlink",
    "nodes_with_addresses",
    "reconcile_once",
    "reconcile_routes",
]
