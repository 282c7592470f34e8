"""The Kubernetes objects that deploy the agent: what `nosdn manifests` prints.

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
directory, and probes ``/healthz`` and ``/readyz``. Rolling updates go one node at a time; the
old agent leaves its routes in place, the new one diffs against them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from nosdn.agent.config import DEFAULT_METRICS_PORT
from nosdn.model import IPNetwork

APP = "nosdn-agent"
DEFAULT_IMAGE = "ghcr.io/nosdn/nosdn:0.1.0"
CNI_DIR = "/etc/cni/net.d"
#: The host's /proc/sys/net, mounted where the runtime allows it (its /proc/sys is read-only).
HOST_PROC_SYS_NET = "/host/proc/sys/net"


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
) -> list[dict[str, Any]]:
    """ServiceAccount, ClusterRole(+Binding), Lease Role(+Binding) when allocating, DaemonSet."""
    if allocate and not cluster_cidrs:
        raise ValueError(
            "--allocate-node-cidrs needs --cluster-cidr (the range to hand subnets out of), "
            "e.g. --cluster-cidr 10.244.0.0/16"
        )
    labels = _labels()
    meta = {"name": APP, "namespace": namespace, "labels": labels}
    sa: dict[str, Any] = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta}
    rules: list[dict[str, Any]] = [
        {"apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "list", "watch"]},
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
        )
    )
    return out


def daemonset(
    *,
    image: str,
    namespace: str,
    cluster_cidrs: Sequence[IPNetwork],
    allocate: bool,
    masquerade: bool,
    metrics_port: int,
    lease_name: str,
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
            "capabilities": {"add": ["NET_ADMIN", "NET_RAW"], "drop": ["ALL"]},
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
        "volumeMounts": [
            {"name": "cni-conf", "mountPath": CNI_DIR},
            {"name": "proc-sys-net", "mountPath": HOST_PROC_SYS_NET},
        ],
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
                    "containers": [container],
                    "volumes": [
                        {
                            "name": "cni-conf",
                            "hostPath": {"path": CNI_DIR, "type": "DirectoryOrCreate"},
                        },
                        {
                            "name": "proc-sys-net",
                            "hostPath": {"path": "/proc/sys/net", "type": "Directory"},
                        },
                    ],
                },
            },
        },
    }
