"""What wires nosdn into a Prometheus: the alert rules, the Grafana dashboard, a `PodMonitor`,
a `PrometheusRule` and the scrape annotations (`nosdn manifests --monitoring`).

The rules and the dashboard are plain files shipped in the package (``nosdn/data``), so they can
be loaded as they are (a Prometheus rule file, a Grafana import) or put in a chart; the objects
here are built from those same files so the two never differ. Both the agent's DaemonSet and
the controller's Deployment name their port ``metrics`` and carry the label
``app.kubernetes.io/part-of: nosdn``: one PodMonitor selects both, and copies the node's name
onto every series (``node``), which the dashboard groups by.
"""

from __future__ import annotations

import copy
import json
from importlib import resources
from typing import Any

import yaml

RULES_FILE = "nosdn-alerts.yaml"
DASHBOARD_FILE = "nosdn-dashboard.json"
PART_OF = {"app.kubernetes.io/part-of": "nosdn"}
#: The kinds whose pod template gets the ``prometheus.io/*`` scrape annotations.
WORKLOADS = ("DaemonSet", "Deployment")


def data_text(name: str) -> str:
    return resources.files("nosdn").joinpath(f"data/{name}").read_text()


def alert_rules() -> dict[str, Any]:
    """The rule file's content: ``{"groups": [...]}``."""
    doc: dict[str, Any] = yaml.safe_load(data_text(RULES_FILE))
    return doc


def dashboard() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(data_text(DASHBOARD_FILE))
    return doc


def prometheus_rule(namespace: str) -> dict[str, Any]:
    """The rules as a prometheus-operator ``PrometheusRule``."""
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": "nosdn", "namespace": namespace, "labels": dict(PART_OF)},
        "spec": alert_rules(),
    }


def pod_monitor(namespace: str) -> dict[str, Any]:
    """Scrapes every nosdn pod (agents and controller replicas) on its ``metrics`` port."""
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PodMonitor",
        "metadata": {"name": "nosdn", "namespace": namespace, "labels": dict(PART_OF)},
        "spec": {
            "selector": {"matchLabels": dict(PART_OF)},
            "namespaceSelector": {"matchNames": [namespace]},
            "podMetricsEndpoints": [
                {
                    "port": "metrics",
                    "path": "/metrics",
                    "interval": "30s",
                    "relabelings": [
                        {
                            "sourceLabels": ["__meta_kubernetes_pod_node_name"],
                            "targetLabel": "node",
                        },
                        {
                            "sourceLabels": ["__meta_kubernetes_pod_label_app_kubernetes_io_name"],
                            "targetLabel": "job",
                        },
                    ],
                }
            ],
        },
    }


def _metrics_port(pod_spec: dict[str, Any]) -> int | None:
    for c in pod_spec.get("containers", []):
        for p in c.get("ports", []):
            if p.get("name") == "metrics":
                return int(p["containerPort"])
    return None


def with_monitoring(docs: list[dict[str, Any]], namespace: str) -> list[dict[str, Any]]:
    """``docs`` with scrape annotations on the workloads' pods, then a PodMonitor and the
    PrometheusRule (copies: the input is not changed)."""
    out = copy.deepcopy(docs)
    for doc in out:
        if doc.get("kind") not in WORKLOADS:
            continue
        template = doc["spec"]["template"]
        port = _metrics_port(template["spec"])
        if port is None:
            continue
        template["metadata"].setdefault("annotations", {}).update(
            {
                "prometheus.io/scrape": "true",
                "prometheus.io/port": str(port),
                "prometheus.io/path": "/metrics",
            }
        )
    return [*out, pod_monitor(namespace), prometheus_rule(namespace)]
