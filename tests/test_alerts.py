"""The alert rules (``nosdn/data/nosdn-alerts.yaml``): each fires on the series that should fire
it and not otherwise (`promtool test rules`, Debian's ``prometheus``), every series they use is
one the agent or the controller really exposes, and `nosdn manifests --monitoring` carries the
same rules as a PrometheusRule beside a PodMonitor and the scrape annotations."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from nosdn.agent.metrics import AgentMetrics
from nosdn.agent.monitoring import alert_rules
from nosdn.controller.metrics import ControllerMetrics
from nosdn.daemon.server import HealthServer

HERE = Path(__file__).parent
CASES = HERE / "promtool" / "nosdn-alerts.test.yaml"
K8S_VERSION = "1.30.0"


@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail("CI: promtool (Debian package prometheus) must be installed")
        pytest.skip("no promtool: apt-get install prometheus")
    return path


def run_cases(promtool: str, rules: dict[str, Any], tmp: Path) -> subprocess.CompletedProcess[str]:
    """`promtool test rules` of the cases against ``rules`` without their annotations (the
    cases test what fires; `promtool check rules` parses the templates)."""
    bare = {
        "groups": [
            {**g, "rules": [{k: v for k, v in r.items() if k != "annotations"} for r in g["rules"]]}
            for g in rules["groups"]
        ]
    }
    (tmp / "rules.yaml").write_text(yaml.safe_dump(bare))
    (tmp / "cases.yaml").write_text(CASES.read_text().replace("  - RULES", "  - rules.yaml"))
    return subprocess.run(
        [promtool, "test", "rules", "cases.yaml"],
        cwd=tmp,
        capture_output=True,
        text=True,
        check=False,
    )


def alerts(rules: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["alert"]: r for g in rules["groups"] for r in g["rules"] if "alert" in r}


def test_rule_file_parses_with_its_templates(promtool: str) -> None:
    rules = Path(str(__import__("nosdn").__file__)).parent / "data" / "nosdn-alerts.yaml"
    proc = subprocess.run(
        [promtool, "check", "rules", str(rules)], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"SUCCESS: {len(alerts(alert_rules()))} rules found" in proc.stdout


def test_each_rule_fires_on_its_series_and_not_otherwise(promtool: str, tmp_path: Path) -> None:
    proc = run_cases(promtool, alert_rules(), tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_every_alert_has_a_firing_and_a_quiet_case() -> None:
    cases = yaml.safe_load(CASES.read_text())
    fired: set[str] = set()
    quiet: set[str] = set()
    for t in cases["tests"]:
        names = {s["series"] for s in t["input_series"]}
        for check in t["alert_rule_test"]:
            if check["exp_alerts"]:
                fired.add(check["alertname"])
            if any('instance="quiet' in n for n in names):
                quiet.add(check["alertname"])
    assert fired == set(alerts(alert_rules()))
    assert quiet == fired


@pytest.mark.parametrize(
    ("alert", "old", "new"),
    [
        # forgetting BGP mode: off-link peers are expected there
        ("NosdnOffLinkNodes", " unless on (job, instance) nosdn_bgp_session_up", ""),
        # forgetting the standby controller replicas
        ("NosdnNoSuccessfulPass", "unless on (job, instance) (nosdn_controller_leader == 0)", ""),
        # paging on any error kind
        ("NosdnRouteWriteErrors", '{kind=~"route|kernel|cloud"}', ""),
    ],
)
def test_a_loosened_rule_is_caught(
    promtool: str, tmp_path: Path, alert: str, old: str, new: str
) -> None:
    rules = alert_rules()
    rule = alerts(rules)[alert]
    assert old in rule["expr"]
    rule["expr"] = rule["expr"].replace(old, new)
    proc = run_cases(promtool, rules, tmp_path)
    assert proc.returncode != 0
    assert alert in proc.stdout + proc.stderr


def scrape(render: Any) -> str:
    """GET /metrics of a real HealthServer on loopback serving ``render``."""
    server = HealthServer("127.0.0.1", 0, render, lambda: (True, "ok"), lambda: (True, "ok"))
    server.start()
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=5) as r:
            text: str = r.read().decode()
            return text
    finally:
        server.stop()


def exposed_names(text: str) -> set[str]:
    """Every series name the exposition can carry (histogram and counter suffixes included)."""
    names: set[str] = set()
    for m in re.finditer(r"^# TYPE (\S+) (\S+)$", text, re.M):
        name, kind = m.groups()
        suffixes = {
            "counter": [""],  # the text format names a counter with its _total
            "histogram": ["_bucket", "_sum", "_count"],
            "summary": ["_sum", "_count", ""],
        }.get(kind, [""])
        names.update(name + s for s in suffixes)
    return names


def test_every_series_a_rule_uses_is_exposed() -> None:
    names = exposed_names(scrape(AgentMetrics().render)) | exposed_names(
        scrape(ControllerMetrics().render)
    )
    assert "nosdn_errors_total" in names
    assert "process_start_time_seconds" in names
    used: set[str] = set()
    for rule in alerts(alert_rules()).values():
        used |= set(re.findall(r"\b(?:nosdn|process)_[a-z_]+", rule["expr"]))
    missing = used - names
    assert not missing, f"rules use series nobody exposes: {sorted(missing)}"
    assert "nosdn_probe_peers" in used
    assert "nosdn_bgp_session_up" in used


def manifests_out(*args: str) -> list[dict[str, Any]]:
    proc = subprocess.run(
        [sys.executable, "-m", "nosdn", "manifests", *args],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return [d for d in yaml.safe_load_all(proc.stdout) if d]


@pytest.mark.parametrize(
    "args",
    [
        ["--cluster-cidr", "10.244.0.0/16"],
        [
            "--controller",
            "--cloud",
            "aws",
            "--aws-region",
            "eu-west-1",
            "--cluster-cidr",
            "10.244.0.0/16",
        ],
    ],
)
def test_manifests_monitoring(promtool: str, tmp_path: Path, args: list[str]) -> None:
    plain = manifests_out(*args)
    docs = manifests_out(*args, "--monitoring")
    assert [d["kind"] for d in docs] == [
        *(d["kind"] for d in plain),
        "PodMonitor",
        "PrometheusRule",
    ]
    for doc in docs[:-2]:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    (work,) = [d for d in docs if d["kind"] in ("DaemonSet", "Deployment")]
    ann = work["spec"]["template"]["metadata"]["annotations"]
    (port,) = [
        p for c in work["spec"]["template"]["spec"]["containers"] for p in c.get("ports", [])
    ]
    assert ann["prometheus.io/scrape"] == "true"
    assert ann["prometheus.io/port"] == str(port["containerPort"])
    assert port["name"] == "metrics"
    monitor, rule = docs[-2:]
    labels = work["spec"]["template"]["metadata"]["labels"]
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= labels.items()
    assert monitor["spec"]["podMetricsEndpoints"][0]["port"] == "metrics"
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["spec"] == alert_rules()
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(rule["spec"]))
    proc = subprocess.run(
        [promtool, "check", "rules", str(tmp_path / "spec.yaml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout
