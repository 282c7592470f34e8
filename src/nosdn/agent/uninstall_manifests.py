"""The one-shot cleanup of ``nosdn manifests --uninstall``: a DaemonSet that runs ``nosdn
uninstall --node-local`` (`nosdn.agent.uninstall`) once on every node.

Why a DaemonSet and not a Job: a Job cannot be placed once on every node, and a DaemonSet
also reaches nodes that join while it runs. The cleanup is its init container (it runs to
completion before anything else, and the kubelet retries it, with back-off, while it fails:
for instance while the agent still answers); the main container only waits, so the
DaemonSet's rollout is complete (every pod Ready) exactly when every node is clean:
``kubectl -n kube-system rollout status daemonset/nosdn-uninstall``, then delete it.

RBAC: none. The cleanup reads and writes only its own node (netlink, nftables, one file of
the CNI directory), so its ServiceAccount is granted nothing and no token is mounted. It runs
in the host's network namespace with ``NET_ADMIN`` only; the waiting container runs as a
non-root user without capabilities.
"""

from __future__ import annotations

from typing import Any

from nosdn.agent.config import DEFAULT_METRICS_PORT
from nosdn.agent.manifests import CNI_DIR
from nosdn.daemon.deploy import DEFAULT_IMAGE, non_root

UNINSTALL_APP = "nosdn-uninstall"
#: The agent's conflist as the DaemonSet's agent writes it (its --cni-conf default).
CONFLIST = f"{CNI_DIR}/10-nosdn.conflist"


def uninstall_manifests(
    *,
    image: str = DEFAULT_IMAGE,
    namespace: str = "kube-system",
    metrics_port: int = DEFAULT_METRICS_PORT,
) -> list[dict[str, Any]]:
    """ServiceAccount (no rights, no token) and the cleanup DaemonSet."""
    labels = {"app.kubernetes.io/name": UNINSTALL_APP, "app.kubernetes.io/part-of": "nosdn"}
    meta = {"name": UNINSTALL_APP, "namespace": namespace, "labels": labels}
    cleanup: dict[str, Any] = {
        "name": "uninstall",
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "args": [
            "uninstall",
            "--node-local",
            f"--cni-conf={CONFLIST}",
            f"--agent-address=127.0.0.1:{metrics_port}",
        ],
        "securityContext": {
            "privileged": False,
            "allowPrivilegeEscalation": False,
            "capabilities": {"add": ["NET_ADMIN"], "drop": ["ALL"]},
        },
        "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"memory": "128Mi"}},
        "volumeMounts": [{"name": "cni-conf", "mountPath": CNI_DIR}],
    }
    wait: dict[str, Any] = {
        "name": "done",
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "args": ["uninstall", "--wait"],
        "securityContext": non_root(),
        "resources": {"requests": {"cpu": "1m", "memory": "16Mi"}, "limits": {"memory": "64Mi"}},
    }
    return [
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": meta,
            "automountServiceAccountToken": False,
        },
        {
            "apiVersion": "apps/v1",
            "kind": "DaemonSet",
            "metadata": meta,
            "spec": {
                "selector": {"matchLabels": {"app.kubernetes.io/name": UNINSTALL_APP}},
                "updateStrategy": {
                    "type": "RollingUpdate",
                    "rollingUpdate": {"maxUnavailable": "100%"},
                },
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "serviceAccountName": UNINSTALL_APP,
                        "automountServiceAccountToken": False,
                        "hostNetwork": True,
                        "dnsPolicy": "ClusterFirstWithHostNet",
                        "tolerations": [{"operator": "Exists"}],
                        "terminationGracePeriodSeconds": 5,
                        "initContainers": [cleanup],
                        "containers": [wait],
                        "volumes": [
                            {
                                "name": "cni-conf",
                                "hostPath": {"path": CNI_DIR, "type": "DirectoryOrCreate"},
                            }
                        ],
                    },
                },
            },
        },
    ]
