"""What the manifests of every nosdn workload share (the agent's DaemonSet, the controller's
Deployment, the cleanup DaemonSet): the image, and the securityContext of a container that
needs no privilege."""

from __future__ import annotations

from typing import Any

DEFAULT_IMAGE = "ghcr.io/nosdn/nosdn:0.1.0"


def non_root() -> dict[str, Any]:
    """The securityContext of a container that needs no privilege at all: uid 65532, no
    capability, a read-only root (a new dict each time: YAML would print a shared one as an
    alias)."""
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "runAsUser": 65532,
        "capabilities": {"drop": ["ALL"]},
    }
