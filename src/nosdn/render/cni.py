"""The CNI network configuration of one node: the file pods get their addresses from.

With plain routes there is nothing clever on the node itself: a Linux bridge (``cni0``) that is
the pods' default gateway, addresses handed out by ``host-local`` from the node's own pod
subnets, and ``portmap`` for ``hostPort``. Everything that makes pods reachable across nodes is
the routes nosdn programs elsewhere, which is why masquerading is off here: a pod's address must
be seen unchanged by the other nodes (egress NAT for destinations outside the cluster is the
agent's job, in its own nftables table, not the bridge plugin's blanket rule).

This is the exact file the agent writes to ``/etc/cni/net.d/10-nosdn.conflist`` and the one the
lab drives the real plugins with, so it is a pure function of the cluster: same input, same
bytes, and a changed byte means a changed network.
"""

from __future__ import annotations

import json
from typing import Any

from nosdn.model import Cluster, IPNetwork
from nosdn.plan import UnknownNodeError

CNI_VERSION = "1.0.0"
NETWORK_NAME = "nosdn"
#: Where the agent writes the result (the ``10-`` sorts it before most other networks).
CONFLIST_PATH = "/etc/cni/net.d/10-nosdn.conflist"

_MIN_MTU_V4 = 68
_MIN_MTU_V6 = 1280
_MAX_MTU = 65535
_IFNAMSIZ = 15

_DEFAULT_ROUTE = {4: "0.0.0.0/0", 6: "::/0"}


def _check_bridge(bridge: str) -> None:
    if (
        not bridge
        or len(bridge) > _IFNAMSIZ
        or any(c in bridge for c in "/: \t\n")
        or bridge
        in {
            ".",
            "..",
        }
    ):
        raise ValueError(
            f"bridge {bridge!r}: not a valid Linux interface name "
            f"(1 to {_IFNAMSIZ} characters, no '/', ':' or whitespace) — e.g. cni0"
        )


def _check_mtu(mtu: int, node: str, families: set[int]) -> None:
    low = _MIN_MTU_V6 if 6 in families else _MIN_MTU_V4
    if isinstance(mtu, bool) or not isinstance(mtu, int) or not low <= mtu <= _MAX_MTU:
        why = " (IPv6 needs at least 1280)" if 6 in families else ""
        raise ValueError(
            f"node {node}: mtu {mtu!r} is out of range {low}..{_MAX_MTU}{why} — "
            "use the MTU of the node's interface toward the other nodes, e.g. 1500"
        )


def _pod_cidrs_by_family(cidrs: tuple[IPNetwork, ...]) -> dict[int, list[IPNetwork]]:
    by_family: dict[int, list[IPNetwork]] = {}
    for cidr in cidrs:
        by_family.setdefault(cidr.version, []).append(cidr)
    return dict(sorted(by_family.items()))


def cni_config(
    cluster: Cluster, node: str, *, mtu: int = 1500, bridge: str = "cni0"
) -> dict[str, Any]:
    """The conflist of ``node`` as a JSON-ready dict (see `render_cni`)."""
    me = cluster.node(node)
    if me is None:
        known = ", ".join(n.name for n in cluster.nodes[:10]) or "none"
        more = "" if len(cluster.nodes) <= 10 else f" and {len(cluster.nodes) - 10} more"
        raise UnknownNodeError(
            f"node {node!r} is not in the inventory (nodes: {known}{more}) — "
            "pass --node with one of those names"
        )
    if not me.pod_cidrs:
        raise ValueError(
            f"node {node}: podCIDRs is empty, so its pods would get no address — "
            "give it podCIDRs in the inventory, or set clusterCIDRs and run "
            "`nosdn allocate -f INVENTORY --write`"
        )
    by_family = _pod_cidrs_by_family(me.pod_cidrs)
    _check_bridge(bridge)
    _check_mtu(mtu, node, set(by_family))
    # One range set per family: host-local hands each pod one address per range set, and
    # several subnets of one family in one set are pooled (used when the first one is full).
    ranges = [[{"subnet": str(cidr)} for cidr in cidrs] for cidrs in by_family.values()]
    routes = [{"dst": _DEFAULT_ROUTE[family]} for family in by_family]
    return {
        "cniVersion": CNI_VERSION,
        "name": NETWORK_NAME,
        "plugins": [
            {
                "type": "bridge",
                "bridge": bridge,
                "isGateway": True,
                "ipMasq": False,
                "hairpinMode": True,
                "mtu": mtu,
                "ipam": {"type": "host-local", "ranges": ranges, "routes": routes},
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }


def render_cni(cluster: Cluster, node: str, *, mtu: int = 1500, bridge: str = "cni0") -> str:
    """The CNI conflist (JSON, CNI 1.0.0, network ``nosdn``) for one node.

    ``bridge`` plugin as the pods' gateway (no masquerade: pod addresses travel unchanged on the
    plain routes), ``host-local`` addresses from the node's pod subnets (one range set per
    family, default route per family through the bridge), then ``portmap`` for hostPorts.

    Raises ``ValueError`` naming the node when it is unknown (`UnknownNodeError`) or has no pod
    subnets, and for an out-of-range ``mtu`` or an invalid ``bridge`` name.
    """
    return json.dumps(cni_config(cluster, node, mtu=mtu, bridge=bridge), indent=2) + "\n"
