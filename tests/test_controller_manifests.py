"""`nosdn manifests --controller --cloud aws|gce`: every object validates against the Kubernetes
schema (offline, strict: unknown fields are errors), the permissions are the least the
controller uses, and the Deployment runs what `nosdn controller` accepts."""

from __future__ import annotations

import subprocess
import sys
from ipaddress import ip_network
from typing import Any

import kubernetes_validate
import pytest
import yaml
from click.testing import CliRunner

from nosdn.backends.cloud.factory import Cloud, CloudOptions
from nosdn.cli import app
from nosdn.controller.manifests import controller_manifests

K8S_VERSION = "1.30.0"
CIDR = (ip_network("10.244.0.0/16"),)
AWS = CloudOptions(Cloud.aws, aws_region="eu-west-1", route_tables=("rtb-0123456789abcdef0",))
GCE = CloudOptions(Cloud.gce, gce_project="proj", gce_zone="europe-west1-b", gce_network="k8s")
AZURE = CloudOptions(
    Cloud.azure,
    route_tables=("rt-nodes",),
    azure_subscription="00000000-0000-0000-0000-00000000cafe",
    azure_resource_group="rg-nodes",
)


def by_kind(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {d["kind"]: d for d in docs}


@pytest.mark.parametrize("cloud", [AWS, GCE, AZURE], ids=["aws", "gce", "azure"])
def test_every_object_is_valid_kubernetes(cloud: CloudOptions) -> None:
    docs = controller_manifests(cloud, cluster_cidrs=CIDR, cluster_name="prod")
    for doc in docs:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    assert [d["kind"] for d in docs] == [
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
        "Deployment",
    ]


def test_a_broken_deployment_would_be_caught() -> None:
    dep = by_kind(controller_manifests(AWS, cluster_cidrs=CIDR))["Deployment"]
    dep["spec"]["template"]["spec"]["containers"][0]["securityContext"]["runAsNonroot"] = True
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(dep, K8S_VERSION, strict=True)


def grants(role: dict[str, Any]) -> set[tuple[str, str, str]]:
    return {
        (r["resources"][0], v, ",".join(r.get("resourceNames", ())))
        for r in role["rules"]
        for v in r["verbs"]
    }


def test_least_privilege() -> None:
    objs = by_kind(controller_manifests(AWS, cluster_cidrs=CIDR, namespace="net"))
    assert grants(objs["ClusterRole"]) == {
        ("nodes", "list", ""),
        ("nodes", "watch", ""),
        ("nodes/status", "patch", ""),
        ("events", "create", ""),
    }
    # the Lease: created, then read and written (PATCH) by name only, in its own namespace
    assert grants(objs["Role"]) == {
        ("leases", "get", "nosdn-controller"),
        ("leases", "patch", "nosdn-controller"),
        ("leases", "create", ""),
    }
    assert objs["Role"]["metadata"]["namespace"] == "net"
    assert objs["RoleBinding"]["subjects"][0]["namespace"] == "net"


def test_two_replicas_unprivileged_in_the_host_network_with_the_controller_args() -> None:
    dep = by_kind(controller_manifests(AWS, image="x/nosdn:1", cluster_cidrs=CIDR))["Deployment"]
    assert dep["spec"]["replicas"] == 2
    pod = dep["spec"]["template"]["spec"]
    assert pod["hostNetwork"] is True
    assert {t["key"] for t in pod["tolerations"]} >= {
        "node.kubernetes.io/network-unavailable",
        "node-role.kubernetes.io/control-plane",
    }
    (c,) = pod["containers"]
    assert c["image"] == "x/nosdn:1"
    sc = c["securityContext"]
    assert sc["runAsNonRoot"] is True
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert "add" not in sc["capabilities"]
    assert c["args"][:2] == ["controller", "--cloud=aws"]
    assert "--cluster-cidr=10.244.0.0/16" in c["args"]
    assert "--route-table=rtb-0123456789abcdef0" in c["args"]
    assert "--aws-region=eu-west-1" in c["args"]
    assert {p["httpGet"]["path"] for p in (c["livenessProbe"], c["readinessProbe"])} == {
        "/healthz",
        "/readyz",
    }
    assert c["env"][0]["name"] == "POD_NAME"


def test_the_deployment_args_are_accepted_by_nosdn_controller() -> None:
    """The args parse and validate (``--lease-duration 1`` makes it stop right after, before
    any connection: the check that refuses it runs after every other option was accepted)."""
    for cloud in (AWS, GCE, AZURE):
        dep = by_kind(controller_manifests(cloud, cluster_cidrs=CIDR))["Deployment"]
        args = dep["spec"]["template"]["spec"]["containers"][0]["args"]
        res = CliRunner().invoke(app, [*args, "--lease-duration", "1"])
        assert res.exit_code == 2, res.output
        assert "--lease-retry-period < --lease-renew-deadline < --lease-duration" in res.output


def test_azure_says_what_its_identity_needs_and_refuses_what_cannot_work() -> None:
    dep = by_kind(controller_manifests(AZURE, cluster_cidrs=CIDR))["Deployment"]
    need = dep["metadata"]["annotations"]["nosdn.io/azure-permissions"]
    assert "Microsoft.Network/routeTables/write" in need
    assert "Microsoft.Network/networkInterfaces/write" in need
    args = dep["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--azure-resource-group=rg-nodes" in args
    assert "--route-table=rt-nodes" in args
    base = ["manifests", "--controller", "--cloud", "azure", "--cluster-cidr", "10.244.0.0/16"]
    for extra, message in [
        ([], "--cloud azure needs --azure-subscription"),
        (["--azure-subscription", "nope"], "not a subscription id"),
        (
            [
                "--azure-subscription",
                AZURE.azure_subscription or "",
                "--azure-resource-group",
                "rg",
            ],
            "--cloud azure needs --route-table NAME",
        ),
        (["--gce-project", "p"], "--gce-project is not for --cloud azure"),
    ]:
        res = CliRunner().invoke(app, [*base, *extra])
        assert res.exit_code == 2, (extra, res.output)
        assert message in res.output, (extra, res.output)


def test_azure_header_names_its_identity_and_role_not_another_clouds() -> None:
    """The comment above the objects is what an operator reads first: on Azure it must name
    the identity (DefaultAzureCredential: managed, workload, service principal) and the role,
    never GCE's or AWS's permissions."""
    argv = ["manifests", "--controller", "--cloud", "azure", "--cluster-cidr", "10.244.0.0/16"]
    argv += ["--azure-subscription", AZURE.azure_subscription or "", "--route-table", "rt"]
    res = CliRunner().invoke(app, [*argv, "--azure-resource-group", "rg-nodes"])
    assert res.exit_code == 0, res.output
    header = [line for line in res.output.splitlines() if line.startswith("#")]
    text = " ".join(line.lstrip("# ") for line in header)
    for want in (
        "DefaultAzureCredential",
        "managed identity",
        "azure.workload.identity/client-id",
        "AZURE_CLIENT_SECRET",
        "Network Contributor",
        "Microsoft.Network/routeTables/read",
        "Microsoft.Network/networkInterfaces/read",
    ):
        assert want in text, (want, text)
    assert "compute." not in text
    assert "ec2:" not in text
    assert all(len(line) <= 100 for line in header)
    assert list(yaml.safe_load_all(res.output)) == controller_manifests(
        CloudOptions(
            Cloud.azure,
            route_tables=("rt",),
            azure_subscription=AZURE.azure_subscription,
            azure_resource_group="rg-nodes",
        ),
        cluster_cidrs=CIDR,
    )


def test_cli_prints_the_same_objects_and_refuses_what_cannot_work() -> None:
    argv = [sys.executable, "-m", "nosdn", "manifests", "--controller", "--cloud", "gce"]
    argv += ["--cluster-cidr", "10.244.0.0/16", "--gce-project", "proj"]
    argv += ["--gce-zone", "europe-west1-b", "--gce-network", "k8s", "--image", "x/y:z"]
    proc = subprocess.run(argv, capture_output=True, text=True, check=True)
    assert list(yaml.safe_load_all(proc.stdout)) == controller_manifests(
        GCE, image="x/y:z", cluster_cidrs=CIDR
    )
    for args, message in [
        (["--controller"], "--controller needs --cloud aws|gce"),
        (["--controller", "--cloud", "aws"], "--controller needs --cluster-cidr"),
        (["--cloud", "aws"], "--cloud needs --controller"),
        (["--controller", "--cloud", "gce", "--cluster-cidr", "10.244.0.0/16"], "--gce-project"),
        (["--controller", "--cloud", "aws", "--cluster-cidr", "10.244.0.0/16"], "--aws-region"),
        (
            [
                "--controller",
                "--cloud",
                "aws",
                "--cluster-cidr",
                "10.244.0.0/16",
                "--gce-zone",
                "z",
            ],
            "--gce-zone is not for --cloud aws",
        ),
    ]:
        res = CliRunner().invoke(app, ["manifests", *args])
        assert res.exit_code == 2, (args, res.output)
        assert message in res.output, (args, res.output)


def test_aws_manifests_carry_the_region_and_say_which_iam_permissions() -> None:
    argv = [sys.executable, "-m", "nosdn", "manifests", "--controller", "--cloud", "aws"]
    argv += ["--cluster-cidr", "10.244.0.0/16", "--aws-region", "eu-west-1"]
    proc = subprocess.run(argv, capture_output=True, text=True, check=True)
    note = [line for line in proc.stdout.splitlines() if line.startswith("#")]
    text = " ".join(note)
    for action in ("ec2:CreateRoute", "ec2:DeleteRoute", "ec2:DescribeRouteTables"):
        assert action in text
    assert "eks.amazonaws.com/role-arn" in text
    assert "instance profile" in text
    dep = by_kind(list(yaml.safe_load_all(proc.stdout)))["Deployment"]
    assert "--aws-region=eu-west-1" in dep["spec"]["template"]["spec"]["containers"][0]["args"]
