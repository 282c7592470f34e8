"""The Kubernetes objects that deploy the agent (and, with ``--controller``, the cloud route
controller): what `nosdn manifests` prints.

Generated rather than kept as static YAML so that the image, the cluster CIDR and allocation
change the objects consistently (the allocator needs two more permissions and its flags), and
so the tests can validate exactly what users apply against the Kubernetes schema.

Least privilege: the ClusterRole allows reading Nodes, patching their status (the
``NetworkUnavailable`` condition) and creating Events; only with allocation does it also
patch Nodes (``spec.podCIDRs``), and the Lease permissions are a namespaced Role in the Lease's
namespace, limited by name wherever the API allows it (``create`` cannot be).

The DaemonSet runs on every node (it tolerates every taint, including not-ready and
network-unavailable: it is what makes the node's network available), in the host's network
namespace with ``NET_ADMIN`` and ``NET_RAW`` only (not privileged), mounts the CNI config
directory, and probes ``/healthz`` and ``/readyz``. Before it, an init container (``nosdn
install-cni``, no capabilities) copies the CNI plugins the conflist names from the image into
the host's ``/opt/cni/bin``. Rolling updates go one node at a time; the old agent leaves its
routes in place, the new one diffs against them.

In BGP mode (``--bgp``) the agent's flags carry the peers and options, the container may also
bind TCP 179 (``NET_BIND_SERVICE``, for BIRD), BIRD's directory is the host's
``/run/nosdn-bird`` (``nosdn status`` and ``doctor`` on the node read its socket), and an MD5
password comes from a Secret mounted read-only (``--bgp-password-secret``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from nosdn.agent.bgp import BgpOptions
from nosdn.agent.config import CONTROLLER_LEASE, CONTROLLER_METRICS_PORT, DEFAULT_METRICS_PORT
from nosdn.agent.installcni import HOST_CNI_BIN, IMAGE_CNI_BIN
from nosdn.backends.cloud import Cloud, CloudOptions
from nosdn.model import IPNetwork

APP = "nosdn-agent"
DEFAULT_IMAGE = "ghcr.io/nosdn/nosdn:0.1.0"


def non_root() -> dict[str, Any]:
    """The securityContext of a container that needs no privilege at all: uid 65532, no
    capability, a read-only root (a new dict each time: YAML would print a shared one as an
    alias)."""
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "runAsUser": 65532,
        "capabilities": {"drop": ["ALL"]},
    }


CNI_DIR = "/etc/cni/net.d"
#: Where the kubelet's container runtime looks for CNI plugins on the host.
HOST_CNI_BIN_DIR = "/opt/cni/bin"
#: The host's /proc/sys/net, mounted where the runtime allows it (its /proc/sys is read-only).
HOST_PROC_SYS_NET = "/host/proc/sys/net"
BIRD_DIR = "/run/nosdn-bird"
#: Where the ``--bgp-password-secret`` Secret is mounted; its key ``password`` is the file.
BGP_SECRET_DIR = "/etc/nosdn/bgp"


def _labels() -> dict[str, str]:
    return {"app.kubernetes.io/name": APP, "app.kubernetes.io/part-of": "nosdn"}


def manifests(
    *,
    image: str = DEFAULT_IMAGE,
    namespace: str = "kube-system",
    cluster_cidrs: Sequence[IPNetwork] = (),
    allocate: bool = False,
    masquerade: bool = True,
    metrics_port: int = DEFAULT_METRICS_PORT,
    lease_name: str = "nosdn-ipam",
    bgp: BgpOptions | None = None,
    bgp_password_secret: str | None = None,
) -> list[dict[str, Any]]:
    """ServiceAccount, ClusterRole(+Binding), Lease Role(+Binding) when allocating, DaemonSet."""
    if bgp_password_secret is not None and bgp is None:
        raise ValueError("--bgp-password-secret goes with --bgp")
    if allocate and not cluster_cidrs:
        raise ValueError(
            "--allocate-node-cidrs needs --cluster-cidr (the range to hand subnets out of), "
            "e.g. --cluster-cidr 10.244.0.0/16"
        )
    labels = _labels()
    meta = {"name": APP, "namespace": namespace, "labels": labels}
    sa: dict[str, Any] = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta}
    rules: list[dict[str, Any]] = [
        # no "get": the agent lists and watches, and never reads one Node alone (the real-API
        # tests drop each verb in turn and see the agent fail, and see "get" not missed)
        {"apiGroups": [""], "resources": ["nodes"], "verbs": ["list", "watch"]},
        {"apiGroups": [""], "resources": ["nodes/status"], "verbs": ["patch"]},
        {"apiGroups": [""], "resources": ["events"], "verbs": ["create"]},
    ]
    if allocate:
        rules.append({"apiGroups": [""], "resources": ["nodes"], "verbs": ["patch"]})
    cluster_meta = {"name": APP, "labels": labels}
    role: dict[str, Any] = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": cluster_meta,
        "rules": rules,
    }
    subject = [{"kind": "ServiceAccount", "name": APP, "namespace": namespace}]
    binding: dict[str, Any] = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": cluster_meta,
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": APP},
        "subjects": subject,
    }
    out = [sa, role, binding]
    if allocate:
        lease_meta = {"name": f"{APP}-lease", "namespace": namespace, "labels": labels}
        out.append(
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "Role",
                "metadata": lease_meta,
                "rules": [
                    {
                        "apiGroups": ["coordination.k8s.io"],
                        "resources": ["leases"],
                        "resourceNames": [lease_name],
                        "verbs": ["get", "update", "patch"],
                    },
                    {
                        "apiGroups": ["coordination.k8s.io"],
                        "resources": ["leases"],
                        "verbs": ["create"],
                    },
                ],
            }
        )
        out.append(
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "RoleBinding",
                "metadata": lease_meta,
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "Role",
                    "name": f"{APP}-lease",
                },
                "subjects": subject,
            }
        )
    out.append(
        daemonset(
            image=image,
            namespace=namespace,
            cluster_cidrs=cluster_cidrs,
            allocate=allocate,
            masquerade=masquerade,
            metrics_port=metrics_port,
            lease_name=lease_name,
            bgp=bgp,
            bgp_password_secret=bgp_password_secret,
        )
    )
    return out


def bgp_args(bgp: BgpOptions, password_secret: str | None) -> list[str]:
    """The agent's ``--bgp`` flags for ``bgp`` (the password file is the mounted Secret's)."""
    args = ["--bgp", f"--bgp-asn={bgp.asn}", f"--bgp-dir={BIRD_DIR}"]
    for address, asn in bgp.routers:
        host = f"[{address}]" if address.version == 6 else str(address)
        args.append(f"--bgp-peer={host}:{asn}")
    args.append(f"--bgp-graceful-restart-time={bgp.graceful_restart_time}")
    if bgp.multihop:
        args.append(f"--bgp-multihop={bgp.multihop}")
    if bgp.bfd:
        args.append("--bgp-bfd=true")
    args += [f"--bgp-service-cidr={c}" for c in bgp.service_cidrs]
    args += [f"--bgp-service-via={n}" for n in bgp.service_via]
    if password_secret is not None:
        args.append(f"--bgp-password-file={BGP_SECRET_DIR}/password")
    return args


def daemonset(
    *,
    image: str,
    namespace: str,
    cluster_cidrs: Sequence[IPNetwork],
    allocate: bool,
    masquerade: bool,
    metrics_port: int,
    lease_name: str,
    bgp: BgpOptions | None = None,
    bgp_password_secret: str | None = None,
) -> dict[str, Any]:
    labels = _labels()
    args = [
        "agent",
        "--log-format=json",
        f"--metrics-address=0.0.0.0:{metrics_port}",
        f"--proc-sys-net={HOST_PROC_SYS_NET}",
    ]
    args += [f"--cluster-cidr={c}" for c in cluster_cidrs]
    if allocate:
        args += [
            "--allocate-node-cidrs",
            f"--lease-namespace={namespace}",
            f"--lease-name={lease_name}",
        ]
    if not masquerade:
        args.append("--masquerade=false")
    caps = ["NET_ADMIN", "NET_RAW"]
    mounts: list[dict[str, Any]] = [
        {"name": "cni-conf", "mountPath": CNI_DIR},
        {"name": "proc-sys-net", "mountPath": HOST_PROC_SYS_NET},
    ]
    volumes: list[dict[str, Any]] = [
        {"name": "cni-bin", "hostPath": {"path": HOST_CNI_BIN_DIR, "type": "DirectoryOrCreate"}},
        {"name": "cni-conf", "hostPath": {"path": CNI_DIR, "type": "DirectoryOrCreate"}},
        {"name": "proc-sys-net", "hostPath": {"path": "/proc/sys/net", "type": "Directory"}},
    ]
    if bgp is not None:
        args += bgp_args(bgp, bgp_password_secret)
        caps.append("NET_BIND_SERVICE")  # BIRD listens on TCP 179
        mounts.append({"name": "bird", "mountPath": BIRD_DIR})
        volumes.append(
            {"name": "bird", "hostPath": {"path": BIRD_DIR, "type": "DirectoryOrCreate"}}
        )
        if bgp_password_secret is not None:
            mounts.append({"name": "bgp-password", "mountPath": BGP_SECRET_DIR, "readOnly": True})
            volumes.append(
                {
                    "name": "bgp-password",
                    "secret": {"secretName": bgp_password_secret, "defaultMode": 0o400},
                }
            )
    probe = {"port": metrics_port, "host": "127.0.0.1"}
    container: dict[str, Any] = {
        "name": "agent",
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "args": args,
        "env": [
            {"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
        ],
        "securityContext": {
            "privileged": False,
            "capabilities": {"add": caps, "drop": ["ALL"]},
        },
        "resources": {
            "requests": {"cpu": "20m", "memory": "64Mi"},
            "limits": {"memory": "256Mi"},
        },
        "ports": [{"name": "metrics", "containerPort": metrics_port, "protocol": "TCP"}],
        "livenessProbe": {
            "httpGet": {**probe, "path": "/healthz"},
            "initialDelaySeconds": 10,
            "periodSeconds": 10,
            "failureThreshold": 6,
        },
        "readinessProbe": {"httpGet": {**probe, "path": "/readyz"}, "periodSeconds": 5},
        "volumeMounts": mounts,
    }
    # the init container: copies the CNI plugins into the host's bin dir before the agent
    # writes a conflist that names them (root to write there, no capability needed)
    install_cni: dict[str, Any] = {
        "name": "install-cni",
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "args": ["install-cni", f"--from={IMAGE_CNI_BIN}", f"--to={HOST_CNI_BIN}"],
        "securityContext": {
            "privileged": False,
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
        },
        "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"memory": "64Mi"}},
        "volumeMounts": [{"name": "cni-bin", "mountPath": HOST_CNI_BIN}],
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": APP, "namespace": namespace, "labels": labels},
        "spec": {
            "selector": {"matchLabels": {"app.kubernetes.io/name": APP}},
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "serviceAccountName": APP,
                    "hostNetwork": True,
                    "dnsPolicy": "ClusterFirstWithHostNet",
                    "priorityClassName": "system-node-critical",
                    "tolerations": [{"operator": "Exists"}],
                    "terminationGracePeriodSeconds": 10,
                    "initContainers": [install_cni],
                    "containers": [container],
                    "volumes": volumes,
                },
            },
        },
    }


# --- the cloud route controller ---------------------------------------------------------------
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
    lease_name: str = CONTROLLER_LEASE,
    metrics_port: int = CONTROLLER_METRICS_PORT,
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
    probe = {"port": metrics_port, "host": "127.0.0.1"}
    container: dict[str, Any] = {
        "name": "controller",
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "args": args,
        "env": [
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        ],
        "securityContext": non_root(),
        "resources": {
            "requests": {"cpu": "20m", "memory": "64Mi"},
            "limits": {"memory": "256Mi"},
        },
        "ports": [{"name": "metrics", "containerPort": metrics_port, "protocol": "TCP"}],
        "livenessProbe": {
            "httpGet": {**probe, "path": "/healthz"},
            "initialDelaySeconds": 10,
            "periodSeconds": 10,
            "failureThreshold": 6,
        },
        "readinessProbe": {"httpGet": {**probe, "path": "/readyz"}, "periodSeconds": 5},
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
