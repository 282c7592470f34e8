"""The Helm chart (deploy/helm/nosdn) renders exactly what `nosdn manifests` prints.

For each of the main value combinations, ``helm template`` with those values and ``nosdn
manifests`` with the equivalent flags give the same objects (compared as parsed objects,
keyed by kind, namespace and name: Helm orders them by kind), and every rendered object
validates against the Kubernetes schema as the manifests do (strict: unknown fields are
errors). ``helm lint`` passes, and the chart refuses what the command refuses, with the same
words. helm is built from the Go module proxy by tools/build-helm.sh (`make test` does it);
without Go this module is skipped, and under CI=true that is a failure.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from test_manifests import K8S_VERSION

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "deploy" / "helm" / "nosdn"
BUILD = ROOT / "tools" / "build-helm.sh"
AZ_SUB = "00000000-0000-0000-0000-000000000001"


@pytest.fixture(scope="module")
def helm() -> str:
    proc = subprocess.run([str(BUILD)], capture_output=True, text=True, check=False)
    if proc.returncode == 3:
        if os.environ.get("CI") == "true":
            pytest.fail("CI: the chart tests must run, and there is no Go toolchain for helm")
        pytest.skip("no Go toolchain: the Helm chart tests are skipped (install Go 1.26+)")
    assert proc.returncode == 0, f"tools/build-helm.sh failed:\n{proc.stderr[-4000:]}"
    return proc.stdout.strip().splitlines()[-1]


#: The prometheus-operator's kinds (PodMonitor, PrometheusRule) have no schema offline: they are
#: held equal to the command's, whose rules tests/test_alerts.py checks with promtool.
CRD_GROUPS = ("monitoring.coreos.com/",)


def validate(doc: dict[str, Any]) -> None:
    if not doc["apiVersion"].startswith(CRD_GROUPS):
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def key(doc: dict[str, Any]) -> tuple[str, str, str]:
    meta = doc["metadata"]
    return doc["kind"], meta.get("namespace", ""), meta["name"]


def keyed(docs: list[dict[str, Any]]) -> dict[tuple[str, str, str], dict[str, Any]]:
    out = {key(d): d for d in docs}
    assert len(out) == len(docs), "two objects with one kind, namespace and name"
    return out


def render(helm: str, values: dict[str, Any], tmp_path: Path, namespace: str) -> list[Any]:
    vf = tmp_path / "values.yaml"
    vf.write_text(yaml.safe_dump(values))
    proc = subprocess.run(
        [helm, "template", "nosdn", str(CHART), "--namespace", namespace, "-f", str(vf)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return [d for d in yaml.safe_load_all(proc.stdout) if d]


def nosdn_manifests(*flags: str) -> list[Any]:
    proc = subprocess.run(
        [sys.executable, "-m", "nosdn", "manifests", *flags],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return [d for d in yaml.safe_load_all(proc.stdout) if d]


CIDR = ["--cluster-cidr", "10.244.0.0/16"]
BGP_FLAGS = [
    "--bgp",
    "--bgp-asn",
    "64600",
    "--bgp-peer",
    "10.10.0.254:65000",
    "--bgp-peer",
    "[fd00:10::fe]:65000",
    "--bgp-graceful-restart-time",
    "90",
]
BGP_VALUES = {
    "enabled": True,
    "asn": 64600,
    "peers": ["10.10.0.254:65000", "[fd00:10::fe]:65000"],
    "gracefulRestartTime": 90,
}

#: (id, flags of `nosdn manifests`, chart values (beyond the defaults), namespace)
CASES: list[tuple[str, list[str], dict[str, Any], str]] = [
    ("defaults", [], {}, "kube-system"),
    (
        "image-cidrs-namespace",
        [
            "--image",
            "registry.example/nosdn:9",
            "--namespace",
            "net",
            *CIDR,
            "--cluster-cidr",
            "fd10::/56",
        ],
        {"image": "registry.example/nosdn:9", "clusterCIDRs": ["10.244.0.0/16", "fd10::/56"]},
        "net",
    ),
    (
        "allocator-no-masquerade",
        [*CIDR, "--allocate-node-cidrs", "--masquerade=false"],
        {
            "clusterCIDRs": ["10.244.0.0/16"],
            "agent": {"allocateNodeCIDRs": True, "masquerade": False},
        },
        "kube-system",
    ),
    (
        "bgp",
        [*CIDR, *BGP_FLAGS],
        {"clusterCIDRs": ["10.244.0.0/16"], "agent": {"bgp": BGP_VALUES}},
        "kube-system",
    ),
    (
        "bgp-everything",
        [
            *CIDR,
            *BGP_FLAGS,
            "--bgp-multihop",
            "2",
            "--bgp-bfd=true",
            "--bgp-service-cidr",
            "10.96.0.0/12",
            "--bgp-service-via",
            "node1",
            "--bgp-service-via",
            "node2",
            "--bgp-password-secret",
            "bgp-md5",
        ],
        {
            "clusterCIDRs": ["10.244.0.0/16"],
            "agent": {
                "bgp": {
                    **BGP_VALUES,
                    "multihop": 2,
                    "bfd": True,
                    "serviceCIDRs": ["10.96.0.0/12"],
                    "serviceVia": ["node1", "node2"],
                    "passwordSecret": "bgp-md5",
                }
            },
        },
        "kube-system",
    ),
    (
        "controller-aws",
        [
            "--controller",
            "--cloud",
            "aws",
            "--aws-region",
            "eu-west-1",
            *CIDR,
            "--route-table",
            "rtb-1",
            "--route-table",
            "rtb-2",
            "--capacity",
            "200",
            "--cluster-name",
            "prod",
        ],
        {
            "clusterCIDRs": ["10.244.0.0/16"],
            "agent": {"enabled": False},
            "controller": {
                "enabled": True,
                "cloud": "aws",
                "aws": {"region": "eu-west-1"},
                "routeTables": ["rtb-1", "rtb-2"],
                "capacity": 200,
                "clusterName": "prod",
            },
        },
        "kube-system",
    ),
    (
        "controller-gce",
        [
            "--controller",
            "--cloud",
            "gce",
            "--gce-project",
            "p1",
            "--gce-network",
            "vpc1",
            "--gce-zone",
            "europe-west1-b",
            *CIDR,
            "--replicas",
            "3",
        ],
        {
            "clusterCIDRs": ["10.244.0.0/16"],
            "agent": {"enabled": False},
            "controller": {
                "enabled": True,
                "cloud": "gce",
                "replicas": 3,
                "gce": {"project": "p1", "network": "vpc1", "zone": "europe-west1-b"},
            },
        },
        "kube-system",
    ),
    (
        "controller-azure",
        [
            "--controller",
            "--cloud",
            "azure",
            "--azure-subscription",
            AZ_SUB,
            "--azure-resource-group",
            "rg1",
            "--route-table",
            "rt1",
            *CIDR,
        ],
        {
            "clusterCIDRs": ["10.244.0.0/16"],
            "agent": {"enabled": False},
            "controller": {
                "enabled": True,
                "cloud": "azure",
                "routeTables": ["rt1"],
                "azure": {"subscription": AZ_SUB, "resourceGroup": "rg1"},
            },
        },
        "kube-system",
    ),
    (
        "agent-monitoring",
        [*CIDR, "--monitoring", "--namespace", "obs"],
        {"clusterCIDRs": ["10.244.0.0/16"], "monitoring": {"enabled": True}},
        "obs",
    ),
    (
        "agent-dashboard",
        ["--dashboard"],
        {"monitoring": {"dashboard": {"enabled": True}}},
        "kube-system",
    ),
    (
        "controller-monitoring-dashboard",
        [
            "--controller",
            "--cloud",
            "aws",
            "--aws-region",
            "eu-west-1",
            *CIDR,
            "--monitoring",
            "--dashboard",
        ],
        {
            "clusterCIDRs": ["10.244.0.0/16"],
            "agent": {"enabled": False},
            "controller": {"enabled": True, "cloud": "aws", "aws": {"region": "eu-west-1"}},
            "monitoring": {"enabled": True, "dashboard": {"enabled": True}},
        },
        "kube-system",
    ),
    (
        "uninstall",
        ["--uninstall", "--image", "x/nosdn:1"],
        {"image": "x/nosdn:1", "uninstall": {"enabled": True}},
        "kube-system",
    ),
]


@pytest.mark.parametrize(
    ("flags", "values", "namespace"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_chart_renders_what_manifests_prints(
    helm: str, tmp_path: Path, flags: list[str], values: dict[str, Any], namespace: str
) -> None:
    chart = render(helm, values, tmp_path, namespace)
    for doc in chart:
        validate(doc)
    want = keyed(nosdn_manifests(*flags))
    got = keyed(chart)
    assert sorted(got) == sorted(want)
    for k, doc in want.items():
        assert got[k] == doc, k


@pytest.mark.parametrize("monitoring", [False, True], ids=["plain", "monitoring"])
def test_agent_and_controller_together_are_both_commands(
    helm: str, tmp_path: Path, monitoring: bool
) -> None:
    """With monitoring, both workloads are annotated, and the one PodMonitor (selecting
    part-of: nosdn) and PrometheusRule are the ones each command prints."""
    values = {
        "clusterCIDRs": ["10.244.0.0/16"],
        "controller": {"enabled": True, "cloud": "aws", "aws": {"region": "us-east-1"}},
        "monitoring": {"enabled": monitoring},
    }
    got = keyed(render(helm, values, tmp_path, "kube-system"))
    mon = ["--monitoring"] if monitoring else []
    agent = keyed(nosdn_manifests(*CIDR, *mon))
    ctl = keyed(
        nosdn_manifests("--controller", "--cloud", "aws", "--aws-region", "us-east-1", *CIDR, *mon)
    )
    shared = agent.keys() & ctl.keys()
    assert {k[0] for k in shared} == ({"PodMonitor", "PrometheusRule"} if monitoring else set())
    assert all(agent[k] == ctl[k] for k in shared)
    assert got == {**agent, **ctl}


def test_the_uninstall_replaces_the_agent(helm: str, tmp_path: Path) -> None:
    """Upgrading the release with uninstall.enabled removes the agent and adds the cleanup
    (the monitoring objects go too: nothing is left to scrape)."""
    values = {
        "clusterCIDRs": ["10.244.0.0/16"],
        "uninstall": {"enabled": True},
        "controller": {"enabled": True, "cloud": "aws", "aws": {"region": "us-east-1"}},
        "monitoring": {"enabled": True, "dashboard": {"enabled": True}},
    }
    kinds = {(d["kind"], d["metadata"]["name"]) for d in render(helm, values, tmp_path, "x")}
    assert kinds == {("ServiceAccount", "nosdn-uninstall"), ("DaemonSet", "nosdn-uninstall")}


@pytest.mark.parametrize(
    ("values", "flags"),
    [
        ({"agent": {"allocateNodeCIDRs": True}}, ["--allocate-node-cidrs"]),
        (
            {
                "agent": {"enabled": False},
                "controller": {"enabled": True, "cloud": "aws", "aws": {"region": "x"}},
            },
            ["--controller", "--cloud", "aws", "--aws-region", "x"],
        ),
        (
            {
                "clusterCIDRs": ["10.0.0.0/8"],
                "agent": {"enabled": False},
                "controller": {"enabled": True, "cloud": "aws"},
            },
            ["--controller", "--cloud", "aws", "--cluster-cidr", "10.0.0.0/8"],
        ),
    ],
    ids=["allocate-without-cidr", "controller-without-cidr", "aws-without-region"],
)
def test_chart_refuses_what_manifests_refuses(
    helm: str, tmp_path: Path, values: dict[str, Any], flags: list[str]
) -> None:
    vf = tmp_path / "values.yaml"
    vf.write_text(yaml.safe_dump(values))
    proc = subprocess.run(
        [helm, "template", "n", str(CHART), "-f", str(vf)],
        capture_output=True,
        text=True,
        check=False,
    )
    cli = subprocess.run(
        [sys.executable, "-m", "nosdn", "manifests", *flags],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode != 0
    assert cli.returncode == 2
    said = cli.stderr.strip().removeprefix("error: ").split(" (")[0].split(", e.g.")[0]
    assert said[:40] in proc.stderr, (said, proc.stderr)


@pytest.mark.parametrize(
    "sets",
    [[], ["monitoring.enabled=true", "monitoring.dashboard.enabled=true"]],
    ids=["defaults", "monitoring"],
)
def test_helm_lint_passes(helm: str, sets: list[str]) -> None:
    """Lint renders the templates with the values: the monitoring ones only render when set."""
    argv = [helm, "lint", "--strict", str(CHART), *(a for s in sets for a in ("--set", s))]
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_chart_defaults_are_the_commands_defaults() -> None:
    from nosdn.daemon.deploy import DEFAULT_IMAGE

    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["image"] == DEFAULT_IMAGE
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    from nosdn import __version__

    assert chart["appVersion"] == __version__


@pytest.mark.parametrize(
    ("values", "said"),
    [
        ({"agent": {"allocateNodeCidrs": True}}, "'allocateNodeCidrs' not allowed"),
        ({"agent": {"bgp": {"enabled": True, "peers": ["10.0.0.1"]}}}, "does not match pattern"),
        ({"controller": {"cloud": "ibm"}}, "/controller/cloud"),
        ({"clusterCIDRs": "10.244.0.0/16"}, "/clusterCIDRs"),
        ({"monitoring": {"dashboards": {"enabled": True}}}, "'dashboards' not allowed"),
        ({"monitoring": True}, "/monitoring"),
    ],
    ids=[
        "misspelt",
        "peer-without-asn",
        "unknown-cloud",
        "cidrs-not-a-list",
        "dashboards-misspelt",
        "monitoring-not-an-object",
    ],
)
def test_a_wrong_value_is_refused_not_ignored(
    helm: str, tmp_path: Path, values: dict[str, Any], said: str
) -> None:
    """values.schema.json: a misspelt key would otherwise render the defaults without a word."""
    vf = tmp_path / "values.yaml"
    vf.write_text(yaml.safe_dump(values))
    proc = subprocess.run(
        [helm, "template", "n", str(CHART), "-f", str(vf)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode != 0
    assert said in proc.stderr, proc.stderr


#: Options of `nosdn manifests` that are no chart value, and why.
NOT_VALUES = {
    "--help": "help",
    "--namespace": "the release's namespace (helm --namespace), tested by every case",
    "--bgp-password-file": "refused by manifests: the password is --bgp-password-secret",
    "--bgp-dir": "refused by manifests unless the default, which the DaemonSet mounts",
}


def test_every_manifests_option_is_a_chart_value_proven_equal() -> None:
    """The chart is written by hand beside `nosdn manifests`: a new option of the command that
    no case above renders both ways would let the two drift apart unseen. Each option must be
    used by a case (so `helm template` is compared with it), or be listed in NOT_VALUES."""
    import click

    from nosdn.cli import app

    command = app.get_command(click.Context(app), "manifests")
    assert command is not None
    options = {
        max(p.opts, key=len) for p in command.params if p.opts and not getattr(p, "hidden", False)
    }
    options.add("--help")
    used = {f.split("=")[0] for c in CASES for f in c[1] if f.startswith("--")}
    missing = sorted(options - used - set(NOT_VALUES))
    assert not missing, (
        f"nosdn manifests options no chart case renders: {missing}; give each a chart value "
        "(deploy/helm/nosdn) and a case in CASES comparing helm template with the command"
    )


#: The chart's copies of the package's monitoring files (Helm reads only files inside the chart):
#: chart path -> package path. Refresh with the cp lines in deploy/helm/nosdn/README.md.
CHART_FILES = {
    "files/rules/nosdn-alerts.yaml": "nosdn-alerts.yaml",
    "files/dashboards/nosdn-dashboard.json": "nosdn-dashboard.json",
}


@pytest.mark.parametrize("chart_path", sorted(CHART_FILES))
def test_the_chart_copy_is_the_package_file(chart_path: str) -> None:
    """One source of truth: src/nosdn/data/ is edited, the chart's copy follows byte for byte
    (else `helm install` and `nosdn manifests --monitoring` would ship different rules)."""
    package = ROOT / "src" / "nosdn" / "data" / CHART_FILES[chart_path]
    assert (CHART / chart_path).read_bytes() == package.read_bytes(), (
        f"deploy/helm/nosdn/{chart_path} differs from {package.relative_to(ROOT)}: "
        f"cp {package.relative_to(ROOT)} deploy/helm/nosdn/{chart_path}"
    )


def test_the_chart_files_are_only_those_copies() -> None:
    """templates/dashboard.yaml ships every files/dashboards/*.json: a stray one would be a
    dashboard `nosdn manifests --dashboard` does not print."""
    files = {str(p.relative_to(CHART)) for p in (CHART / "files").rglob("*") if p.is_file()}
    assert files == set(CHART_FILES)
