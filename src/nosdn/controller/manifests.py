"""The Kubernetes objects that deploy the cloud route controller (`nosdn manifests
--controller --cloud aws|gce|azure`), and the note on the cloud credentials its pod needs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from nosdn.backends.cloud.factory import Cloud, CloudOptions
from nosdn.controller.config import DEFAULT_LEASE, DEFAULT_METRICS_PORT
from nosdn.daemon.deploy import DEFAULT_IMAGE, non_root, serving
from nosdn.model import IPNetwork

CONTROLLER_APP = "nosdn-controller"
#: What the Azure identity of the controller must be allowed (Network Contributor has it).
AZURE_PERMISSIONS = (
    "Microsoft.Network/routeTables/read, Microsoft.Network/routeTables/write (the route "
    "table), Microsoft.Network/networkInterfaces/read, Microsoft.Network/networkInterfaces/write "
    "(the nodes' NICs, for IP forwarding)"
)


def _controller_args(
    cloud: CloudOptions,
    *,
    namespace: str,
    cluster_cidrs: Sequence[IPNetwork],
    cluster_name: str,
    lease_name: str,
    metrics_port: int,
) -> list[str]:
    args = [
        "controller",
        f"--cloud={cloud.cloud.value}",
        f"--cluster-name={cluster_name}",
        *(f"--cluster-cidr={c}" for c in cluster_cidrs),
        "--log-format=json",
        f"--metrics-address=0.0.0.0:{metrics_port}",
        f"--lease-namespace={namespace}",
        f"--lease-name={lease_name}",
    ]
    args += [f"--route-table={t}" for t in cloud.route_tables]
    for flag, value in (
        ("--capacity", cloud.capacity),
        ("--aws-region", cloud.aws_region),
        ("--gce-project", cloud.gce_project),
        ("--gce-zone", cloud.gce_zone),
        ("--azure-subscription", cloud.azure_subscription),
        ("--azure-resource-group", cloud.azure_resource_group),
    ):
        if value is not None:
            args.append(f"{flag}={value}")
    if cloud.cloud is Cloud.gce and cloud.gce_network != "default":
        args.append(f"--gce-network={cloud.gce_network}")
    return args


#: What the controller calls, for the IAM policy of its role (`cloud_access_note`).
AWS_IAM_ACTIONS = (
    "ec2:DescribeRouteTables",
    "ec2:DescribeInstances",
    "ec2:CreateRoute",
    "ec2:ReplaceRoute",
    "ec2:DeleteRoute",
    "ec2:ModifyInstanceAttribute",
    "ec2:CreateTags",
)
GCE_IAM_PERMISSIONS = (
    "compute.routes.list",
    "compute.routes.get",
    "compute.routes.create",
    "compute.routes.delete",
    "compute.instances.get",
    "compute.projects.get",
    "compute.networks.updatePolicy",
)


def cloud_access_note(cloud: Cloud) -> list[str]:
    """Comment lines for the top of the controller's manifests: the cloud credentials its
    pod needs, which no Kubernetes object grants."""
    if cloud is Cloud.aws:
        return [
            "The controller calls EC2 with the pod's AWS credentials: give them an IAM policy",
            f"allowing {', '.join(AWS_IAM_ACTIONS)}",
            "(Resource: the cluster's route tables and instances). Either IRSA: annotate the",
            "ServiceAccount below with eks.amazonaws.com/role-arn: ROLE_ARN; or the nodes'",
            "instance profile (the pod runs in the host network, so it reaches the metadata",
            "service; with IMDSv2 set the hop limit to 2).",
        ]
    if cloud is Cloud.azure:
        return [
            "The controller calls Azure Resource Manager with DefaultAzureCredential: in the",
            "host network it reaches the node VM's managed identity (with several user-assigned",
            "identities on the VM, set AZURE_CLIENT_ID on the Deployment to pick one); or",
            'workload identity (label the pod azure.workload.identity/use: "true" and',
            "annotate the ServiceAccount azure.workload.identity/client-id: CLIENT_ID); or a",
            "service principal (AZURE_TENANT_ID, AZURE_CLIENT_ID, AZURE_CLIENT_SECRET from a",
            "Secret). Give that identity the role Network Contributor on the resource group(s)",
            "of the route table and of the nodes' NICs (az role assignment create --assignee ID",
            "--role 'Network Contributor' --scope /subscriptions/SUB/resourceGroups/RG),",
            "or a custom role allowing Microsoft.Network/routeTables/read and .../write, and",
            "Microsoft.Network/networkInterfaces/read and .../write (IP forwarding on the NICs).",
        ]
    return [
        "The controller calls the Compute API with the node's (or Workload Identity's)",
        f"service account: grant it {', '.join(GCE_IAM_PERMISSIONS)}",
        "(roles/compute.networkAdmin covers them).",
    ]


def controller_manifests(
    cloud: CloudOptions,
    *,
    image: str = DEFAULT_IMAGE,
    namespace: str = "kube-system",
    cluster_cidrs: Sequence[IPNetwork] = (),
    cluster_name: str = "kubernetes",
    lease_name: str = DEFAULT_LEASE,
    metrics_port: int = DEFAULT_METRICS_PORT,
    replicas: int = 2,
) -> list[dict[str, Any]]:
    """ServiceAccount, ClusterRole(+Binding), Lease Role(+Binding) and the Deployment of the
    cloud route controller (`nosdn controller --cloud aws|gce|azure`).

    Least privilege: list and watch Nodes (never a single GET), patch their status
    (``NetworkUnavailable``), create Events; in its own namespace, create the Lease and
    get/patch it by name (the elector writes the Lease with PATCH carrying the resourceVersion
    it read, so ``update`` is not needed). The cloud side is the cloud's business: an IAM role
    (IRSA or the instance profile) allowing ``ec2:DescribeRouteTables``, ``DescribeInstances``,
    ``CreateRoute``, ``ReplaceRoute``, ``DeleteRoute``, ``ModifyInstanceAttribute``,
    ``CreateTags``; on GCE a service account with ``compute.routes.*``,
    ``compute.instances.get`` and ``compute.projects.get``; on Azure the VM's managed identity
    (reached from the host network) or a workload identity, allowed (`AZURE_PERMISSIONS`, also
    written on the Deployment as the ``nosdn.io/azure-permissions`` annotation)
    ``Microsoft.Network/routeTables/read|write`` on the route table and
    ``Microsoft.Network/networkInterfaces/read|write`` on the nodes' NICs (the built-in role
    Network Contributor, scoped to the resource group, holds both).

    The Deployment runs two replicas (one leads, one waits warm) on different nodes if it can,
    in the host network (it is what makes the pod network work, and the cloud's instance
    credentials are reached from there), tolerating the taints a node has before its network
    is up; it needs no capability and runs as a non-root user with a read-only root.
    """
    if not cluster_cidrs:
        raise ValueError(
            "--controller needs --cluster-cidr (the pod range whose routes the controller "
            "owns), e.g. --cluster-cidr 10.244.0.0/16"
        )
    if replicas < 1:
        raise ValueError(f"--replicas {replicas}: use at least 1 (2: one leads, one waits)")
    if cloud.cloud is Cloud.aws and not cloud.aws_region:
        raise ValueError(
            "--cloud aws needs --aws-region (the region of the cluster's VPC, e.g. "
            "--aws-region eu-west-1): the controller's pod has no AWS_REGION of its own"
        )
    labels = {"app.kubernetes.io/name": CONTROLLER_APP, "app.kubernetes.io/part-of": "nosdn"}
    meta = {"name": CONTROLLER_APP, "namespace": namespace, "labels": labels}
    cluster_meta = {"name": CONTROLLER_APP, "labels": labels}
    subject = [{"kind": "ServiceAccount", "name": CONTROLLER_APP, "namespace": namespace}]
    lease_meta = {"name": f"{CONTROLLER_APP}-lease", "namespace": namespace, "labels": labels}
    rbac = "rbac.authorization.k8s.io"
    objects: list[dict[str, Any]] = [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta},
        {
            "apiVersion": f"{rbac}/v1",
            "kind": "ClusterRole",
            "metadata": cluster_meta,
            "rules": [
                {"apiGroups": [""], "resources": ["nodes"], "verbs": ["list", "watch"]},
                {"apiGroups": [""], "resources": ["nodes/status"], "verbs": ["patch"]},
                {"apiGroups": [""], "resources": ["events"], "verbs": ["create"]},
            ],
        },
        {
            "apiVersion": f"{rbac}/v1",
            "kind": "ClusterRoleBinding",
            "metadata": cluster_meta,
            "roleRef": {"apiGroup": rbac, "kind": "ClusterRole", "name": CONTROLLER_APP},
            "subjects": subject,
        },
        {
            "apiVersion": f"{rbac}/v1",
            "kind": "Role",
            "metadata": lease_meta,
            "rules": [
                {
                    "apiGroups": ["coordination.k8s.io"],
                    "resources": ["leases"],
                    "resourceNames": [lease_name],
                    "verbs": ["get", "patch"],
                },
                {
                    "apiGroups": ["coordination.k8s.io"],
                    "resources": ["leases"],
                    "verbs": ["create"],
                },
            ],
        },
        {
            "apiVersion": f"{rbac}/v1",
            "kind": "RoleBinding",
            "metadata": lease_meta,
            "roleRef": {"apiGroup": rbac, "kind": "Role", "name": f"{CONTROLLER_APP}-lease"},
            "subjects": subject,
        },
    ]
    args = _controller_args(
        cloud,
        namespace=namespace,
        cluster_cidrs=cluster_cidrs,
        cluster_name=cluster_name,
        lease_name=lease_name,
        metrics_port=metrics_port,
    )
    container: dict[str, Any] = {
        "name": "controller",
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "args": args,
        "env": [
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        ],
        "securityContext": non_root(),
        **serving(metrics_port),
    }
    tolerations = [
        {"key": key, "operator": "Exists", "effect": "NoSchedule"}
        for key in (
            "node-role.kubernetes.io/control-plane",
            "node.kubernetes.io/network-unavailable",
            "node.kubernetes.io/not-ready",
            "node.cloudprovider.kubernetes.io/uninitialized",
        )
    ]
    deployment_meta = meta
    if cloud.cloud is Cloud.azure:
        deployment_meta = {**meta, "annotations": {"nosdn.io/azure-permissions": AZURE_PERMISSIONS}}
    objects.append(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": deployment_meta,
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app.kubernetes.io/name": CONTROLLER_APP}},
                # host network: two replicas on one node would share the metrics port
                "strategy": {
                    "type": "RollingUpdate",
                    "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1},
                },
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "serviceAccountName": CONTROLLER_APP,
                        "hostNetwork": True,
                        "dnsPolicy": "ClusterFirstWithHostNet",
                        "priorityClassName": "system-cluster-critical",
                        "tolerations": tolerations,
                        "affinity": {
                            "podAntiAffinity": {
                                "preferredDuringSchedulingIgnoredDuringExecution": [
                                    {
                                        "weight": 100,
                                        "podAffinityTerm": {
                                            "topologyKey": "kubernetes.io/hostname",
                                            "labelSelector": {
                                                "matchLabels": {
                                                    "app.kubernetes.io/name": CONTROLLER_APP
                                                }
                                            },
                                        },
                                    }
                                ]
                            }
                        },
                        "terminationGracePeriodSeconds": 30,
                        "containers": [container],
                    },
                },
            },
        }
    )
    return objects
