"""The Kubernetes objects that deploy the agent: what `nosdn manifests` prints (the cloud
route controller's are `nosdn.controller.manifests`).

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
from nosdn.agent.config import DEFAULT_METRICS_PORT
from nosdn.agent.installcni import HOST_CNI_BIN, IMAGE_CNI_BIN
from nosdn.daemon.deploy import DEFAULT_IMAGE, serving
from nosdn.model import IPNetwork

APP = "nosdn-agent"
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
        **serving(metrics_port),
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
