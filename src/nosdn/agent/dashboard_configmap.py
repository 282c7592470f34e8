"""The Grafana dashboard as a ConfigMap (``nosdn manifests --dashboard``, the chart's
``monitoring.dashboard.enabled``).

Grafana's dashboard sidecar (the one the grafana and kube-prometheus-stack charts run) loads
every ConfigMap labelled ``grafana_dashboard: "1"``, each key a dashboard JSON; so the
dashboard reaches Grafana the same way the PodMonitor reaches Prometheus, without an import by
hand. The JSON is the package's file as it is (`nosdn.agent.monitoring.DASHBOARD_FILE`), not
re-serialised, so the ConfigMap and the file never differ.
"""

from __future__ import annotations

from typing import Any

from nosdn.agent.monitoring import DASHBOARD_FILE, PART_OF, data_text

NAME = "nosdn-dashboard"
#: The Grafana sidecar's default label for dashboard ConfigMaps.
SIDECAR_LABEL = {"grafana_dashboard": "1"}


def dashboard_configmap(namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": NAME,
            "namespace": namespace,
            "labels": {**PART_OF, **SIDECAR_LABEL},
        },
        "data": {DASHBOARD_FILE: data_text(DASHBOARD_FILE)},
    }
