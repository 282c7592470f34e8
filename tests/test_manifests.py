"""`nosdn manifests`: every object validates against the Kubernetes schema (offline, strict:
unknown fields are errors), and the permissions are the least the agent needs."""

from __future__ import annotations

import subprocess
import sys
from ipaddress import ip_network
from typing import Any

import kubernetes_validate
import pytest
import yaml

from nosdn.agent.manifests import manifests

K8S_VERSION = "1.30.0"


def by_kind(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {d["kind"]: d for d in docs}


@pytest.mark.parametrize("allocate", [False, True])
def test_every_object_is_valid_kubernetes(allocate: bool) -> None:
    docs = manifests(cluster_cidrs=(ip_network("10.244.0.0/16"),), allocate=allocate)
    for doc in docs:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    kinds = [d["kind"] for d in docs]
    expected = ["ServiceAccount", "ClusterRole", "ClusterRoleBinding"]
    expected += ["Role", "RoleBinding"] if allocate else []
    assert kinds == [*expected, "DaemonSet"]


def test_a_broken_object_would_be_caught() -> None:
    ds = by_kind(manifests())["DaemonSet"]
    ds["spec"]["template"]["spec"]["hostNetwrok"] = True
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(ds, K8S_VERSION, strict=True)


def test_least_privilege() -> None:
    role = by_kind(manifests())["ClusterRole"]
    grants = {(r["resources"][0], v) for r in role["rules"] for v in r["verbs"]}
    assert grants == {
        ("nodes", "list"),
        ("nodes", "watch"),
        ("nodes/status", "patch"),
        ("events", "create"),
    }
    alloc = by_kind(manifests(cluster_cidrs=(ip_network("10.244.0.0/16"),), allocate=True))
    assert ("nodes", "patch") in {
        (r["resources"][0], v) for r in alloc["ClusterRole"]["rules"] for v in r["verbs"]
    }
    lease_rules = alloc["Role"]["rules"]
    assert lease_rules[0]["resourceNames"] == ["nosdn-ipam"]
    assert alloc["Role"]["metadata"]["namespace"] == "kube-system"


def test_daemonset_runs_on_every_node_in_the_host_network_with_two_capabilities() -> None:
    ds = by_kind(manifests(image="example/nosdn:1", cluster_cidrs=(ip_network("10.244.0.0/16"),)))[
        "DaemonSet"
    ]
    pod = ds["spec"]["template"]["spec"]
    assert pod["hostNetwork"] is True
    assert pod["tolerations"] == [{"operator": "Exists"}]
    (c,) = pod["containers"]
    assert c["image"] == "example/nosdn:1"
    assert c["securityContext"]["capabilities"]["add"] == ["NET_ADMIN", "NET_RAW"]
    assert c["securityContext"]["privileged"] is False
    assert "--cluster-cidr=10.244.0.0/16" in c["args"]
    mounts = {m["mountPath"] for m in c["volumeMounts"]}
    assert "/etc/cni/net.d" in mounts
    assert c["env"][0]["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"
    assert {p["httpGet"]["path"] for p in (c["livenessProbe"], c["readinessProbe"])} == {
        "/healthz",
        "/readyz",
    }


def test_cli_prints_the_same_objects_as_yaml() -> None:
    argv = [sys.executable, "-m", "nosdn", "manifests", "--image", "x/y:z"]
    argv += ["--cluster-cidr", "10.244.0.0/16"]
    proc = subprocess.run(argv, capture_output=True, text=True, check=True)
    docs = list(yaml.safe_load_all(proc.stdout))
    assert docs == manifests(image="x/y:z", cluster_cidrs=(ip_network("10.244.0.0/16"),))
    bad = subprocess.run(
        [sys.executable, "-m", "nosdn", "manifests", "--allocate-node-cidrs"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert bad.returncode == 2
    assert "--allocate-node-cidrs needs --cluster-cidr" in bad.stderr
