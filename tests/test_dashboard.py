"""The Grafana dashboard (``nosdn/data/nosdn-dashboard.json``): it has the panels operators
look for, and every series its queries use is one the agent really exposes. That each query
parses and returns data is checked against a real Prometheus in tests/test_prometheus_lab.py."""

from __future__ import annotations

import re

from nosdn.agent.metrics import AgentMetrics
from nosdn.agent.monitoring import dashboard
from test_alerts import exposed_names


def test_panels_and_their_series() -> None:
    d = dashboard()
    titles = [p["title"] for p in d["panels"]]
    for want in ("Routes desired vs programmed", "pass duration", "Errors", "held back",
                 "reachability", "round trip"):  # fmt: skip
        assert any(want.lower() in t.lower() for t in titles), (want, titles)
    exprs = [t["expr"] for p in d["panels"] for t in p["targets"]]
    assert all('node=~"$node"' in e for e in exprs)
    names = exposed_names(AgentMetrics().render().decode())
    used = {n for e in exprs for n in re.findall(r"\bnosdn_[a-z_]+", e)}
    assert used <= names, sorted(used - names)
    ids = [p["id"] for p in d["panels"]]
    assert len(ids) == len(set(ids))
    matrix = next(p for p in d["panels"] if "reachability" in p["title"])
    assert matrix["transformations"][0]["options"] == {
        "rowField": "node",
        "columnField": "peer",
        "valueField": "Value",
    }
