"""`nosdn manifests`: every object validates against the Kubernetes schema (offline, strict:
unknown fields are errors), and the permissions are the least the agent needs."""

from __future__ import annotations

import subprocess
import sys
from ipaddress import ip_address, ip_network
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


def test_bgp_mode_carries_the_peers_bird_and_the_password_secret() -> None:
    from nosdn.agent.bgp import BgpOptions

    bgp = BgpOptions(
        asn=64512,
        routers=((ip_address("10.10.0.254"), 65000), (ip_address("fd00:10::fe"), 65000)),
        bfd=True,
    )
    docs = manifests(cluster_cidrs=(ip_network("10.244.0.0/16"),), bgp=bgp,
                     bgp_password_secret="bgp-md5")  # fmt: skip
    for doc in docs:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    pod = by_kind(docs)["DaemonSet"]["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    args = c["args"]
    assert "--bgp" in args
    assert "--bgp-peer=10.10.0.254:65000" in args
    assert "--bgp-peer=[fd00:10::fe]:65000" in args
    assert "--bgp-bfd=true" in args
    assert "--bgp-password-file=/etc/nosdn/bgp/password" in args
    assert "NET_BIND_SERVICE" in c["securityContext"]["capabilities"]["add"]
    vols = {v["name"]: v for v in pod["volumes"]}
    assert vols["bgp-password"]["secret"]["secretName"] == "bgp-md5"
    assert vols["bird"]["hostPath"]["path"] == "/run/nosdn-bird"
    # the agent takes exactly these flags (its own parser, up to the point it would start)
    from nosdn.cli._agent_cmds import bgp_config

    flags = [a for a in args if a.startswith("--bgp-peer=")]
    opts = bgp_config(
        bgp=True, bgp_asn=64512, bgp_peer=tuple(a.split("=", 1)[1] for a in flags),
        bgp_password_file=None, bgp_multihop=0, bgp_bfd=True, bgp_graceful_restart_time=120,
        bgp_service_cidr=(), bgp_service_via=(),
    )  # fmt: skip
    assert opts.routers == bgp.routers
    # without --bgp, nothing of it
    plain = by_kind(manifests())["DaemonSet"]["spec"]["template"]["spec"]
    assert not [a for a in plain["containers"][0]["args"] if a.startswith("--bgp")]
    assert "bird" not in {v["name"] for v in plain["volumes"]}
    with pytest.raises(ValueError, match="--bgp-password-secret goes with --bgp"):
        manifests(bgp_password_secret="x")


def test_dashboard_is_a_configmap_the_grafana_sidecar_loads() -> None:
    """`--dashboard`: the package's dashboard JSON as it is (not re-serialised), in a ConfigMap
    labelled grafana_dashboard: "1", in the given namespace, after the agent's objects."""
    from importlib import resources

    def run_manifests(*flags: str) -> list[Any]:
        argv = [sys.executable, "-m", "nosdn", "manifests", *flags]
        out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
        return [d for d in yaml.safe_load_all(out) if d]

    plain = run_manifests("--namespace", "obs")
    docs = run_manifests("--namespace", "obs", "--dashboard")
    assert docs[:-1] == plain
    cm = docs[-1]
    kubernetes_validate.validate(cm, K8S_VERSION, strict=True)
    assert (cm["kind"], cm["metadata"]["name"], cm["metadata"]["namespace"]) == (
        "ConfigMap",
        "nosdn-dashboard",
        "obs",
    )
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    text = resources.files("nosdn").joinpath("data/nosdn-dashboard.json").read_text()
    assert cm["data"] == {"nosdn-dashboard.json": text}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--image", "bad image!"], "--image 'bad image!': not a container image reference"),
        (["--image", "x/y:z\nkind: Secret"], "not a container image reference"),
        (["--namespace", "Kube_System"], "--namespace 'Kube_System': not a Kubernetes namespace"),
        (["--uninstall", "--image", "a b"], "--image 'a b': not a container image reference"),
        (["--uninstall", "--monitoring"], "--uninstall prints a one-shot cleanup"),
        (["--uninstall", "--dashboard"], "leave out --dashboard"),
    ],
)
def test_what_would_not_be_valid_yaml_for_kubernetes_is_refused(
    args: list[str], message: str
) -> None:
    """The image and the namespace go into YAML that kubectl applies as written: a space or a
    newline there would be a broken or another object. Refused, with exit 2 and no output."""
    r = subprocess.run(
        [sys.executable, "-m", "nosdn", "manifests", *args],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert r.returncode == 2, r.stdout
    assert message in r.stderr
    assert r.stdout == ""


@pytest.mark.parametrize(
    "image",
    ["ghcr.io/nosdn/nosdn:0.1.0", "localhost:5000/nosdn", "nosdn", f"nosdn@sha256:{'ab' * 32}"],
)
def test_image_references_kubernetes_takes_are_taken(image: str) -> None:
    from nosdn.names import install_names_problem

    assert install_names_problem(image, "kube-system") is None
