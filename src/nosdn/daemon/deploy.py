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


def serving(metrics_port: int) -> dict[str, Any]:
    """What a daemon's container carries for its health and metrics server (`nosdn.daemon.
    server`, on ``metrics_port``): its resources, the port, and the probes of ``/healthz`` and
    ``/readyz`` (asked on loopback: both daemons run in the host network)."""
    probe = {"port": metrics_port, "host": "127.0.0.1"}
    return {
        "resources": {
            "requests": {"cpu": "20m", "memory": "64Mi"},
            "limits": {"memory": "256Mi"},
        },
        "ports": [{"name": "metrics", "containerPort": metrics_port, "protocol": "TCP"}],
        "livenessProbe": {
            "httpGet": {**probe, "path": "/healthz"},
            "initialDelaySeconds": 10,
            "periodSeconds": 10,
            "failureThreshold": 6,
        },
        "readinessProbe": {"httpGet": {**probe, "path": "/readyz"}, "periodSeconds": 5},
    }
