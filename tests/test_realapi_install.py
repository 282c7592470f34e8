"""The install objects against a real kube-apiserver (root): what the offline schema cannot see.

The cleanup of ``nosdn manifests --uninstall`` and the Helm chart's renderings are accepted by
the server itself (``kubectl apply --dry-run=server``: defaulting, admission, immutability of
nothing yet), and the cleanup's ServiceAccount, once applied, may do nothing at all on the API.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import requires_root
from kube_api import KubeApi

pytestmark = [pytest.mark.root, pytest.mark.slow, requires_root]

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "deploy" / "helm" / "nosdn"
UNINSTALL_SA = "system:serviceaccount:kube-system:nosdn-uninstall"
AGENT_SA = "system:serviceaccount:kube-system:nosdn-agent"


def nosdn_manifests(*args: str) -> str:
    return subprocess.run(
        [sys.executable, "-m", "nosdn", "manifests", "--image", "nosdn:test", *args],
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def helm_template(values: dict[str, object], tmp_path: Path) -> str:
    helm = subprocess.run(
        [str(ROOT / "tools" / "build-helm.sh")], capture_output=True, text=True, check=False
    )
    if helm.returncode == 3:
        pytest.skip("no Go toolchain for helm")
    vf = tmp_path / "values.yaml"
    vf.write_text(yaml.safe_dump(values))
    return subprocess.run(
        [helm.stdout.strip(), "template", "nosdn", str(CHART), "-n", "kube-system", "-f", str(vf)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def can_i(api: KubeApi, verb: str, resource: str, user: str) -> str:
    proc = subprocess.run(
        [
            "ip",
            "netns",
            "exec",
            api.netns,
            str(api.bins / "kubectl"),
            "--kubeconfig",
            str(api.kubeconfig("admin")),
            "auth",
            "can-i",
            verb,
            resource,
            "--all-namespaces",
            f"--as={user}",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    return proc.stdout.strip()


def test_the_server_accepts_the_cleanup_and_its_account_may_do_nothing(kube_api: KubeApi) -> None:
    docs = nosdn_manifests("--uninstall")
    out = kube_api.kubectl("apply", "--dry-run=server", "-f", "-", stdin=docs)
    assert "daemonset.apps/nosdn-uninstall created (server dry run)" in out
    kube_api.kubectl("apply", "-f", "-", stdin=docs)
    agent = nosdn_manifests()
    kube_api.kubectl("apply", "-f", "-", stdin=agent)
    try:
        # the question is asked right: the agent's account, applied the same way, may list
        assert can_i(kube_api, "list", "nodes", AGENT_SA) == "yes"
        for verb, resource in (
            ("list", "nodes"),
            ("patch", "nodes"),
            ("get", "secrets"),
            ("create", "events"),
            ("get", "leases"),
        ):
            assert can_i(kube_api, verb, resource, UNINSTALL_SA) == "no", (verb, resource)
    finally:
        kube_api.kubectl("delete", "--ignore-not-found", "-f", "-", stdin=docs)
        kube_api.kubectl("delete", "--ignore-not-found", "-f", "-", stdin=agent)


@pytest.mark.parametrize(
    "values",
    [
        {
            "image": "nosdn:test",
            "clusterCIDRs": ["10.244.0.0/16"],
            "agent": {
                "allocateNodeCIDRs": True,
                "bgp": {
                    "enabled": True,
                    "peers": ["10.10.0.254:65000"],
                    "bfd": True,
                    "passwordSecret": "bgp-md5",
                },
            },
            "controller": {"enabled": True, "cloud": "aws", "aws": {"region": "eu-west-1"}},
        },
        {"image": "nosdn:test", "uninstall": {"enabled": True}},
    ],
    ids=["agent-bgp-allocator-and-controller", "uninstall"],
)
def test_the_server_accepts_the_charts_objects(
    kube_api: KubeApi, tmp_path: Path, values: dict[str, object]
) -> None:
    docs = helm_template(values, tmp_path)
    out = kube_api.kubectl("apply", "--dry-run=server", "-f", "-", stdin=docs)
    assert out.count("(server dry run)") == len([d for d in yaml.safe_load_all(docs) if d])
