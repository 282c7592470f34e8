"""Cloud route tables as the commands people already type: the "Kubernetes the hard way" steps
(``aws ec2 create-route``, ``gcloud compute routes create``), one per pod subnet, as a script.

These are for the router target only (a VPC route table is the cluster's router). They create
routes and never replace or delete any: a cloud route table holds routes of other owners
(internet gateways, peerings), and the CLIs' replace commands would silently take one over. A
destination that is already routed makes that one command fail, and the script says so and goes on;
it exits 1 at the end. Every lookup runs before the first write, so a node whose instance cannot
be found stops the script before it has changed anything.

GCE route names are derived from cluster, node and subnet (`gce_route_name`): valid GCE names
(lowercase, at most 63 characters), unique per subnet, the same on every rendering.
"""

from __future__ import annotations

import re
import shlex

from nosdn.model import ROUTER, Cluster, Node, Route
from nosdn.names import gce_route_name
from nosdn.plan import desired_routes
from nosdn.render._base import (
    RenderedFile,
    RenderError,
    RenderOptions,
    check_names,
    comment_text,
    generated_by,
)

_AWS_INSTANCE = re.compile(r"^i-[0-9a-f]{8,17}$")


def _routes(cluster: Cluster, options: RenderOptions, fmt: str) -> list[Route]:
    if options.target is not None and options.target.kind != "router":
        raise RenderError(
            f"--format {fmt} renders the VPC route table (the cluster's router): "
            "--node and --external do not apply; use --format script for hosts"
        )
    check_names(cluster)
    return desired_routes(cluster, ROUTER)


def _var(name: str, taken: set[str]) -> str:
    base = "iid_" + re.sub(r"[^A-Za-z0-9_]", "_", name)
    var, i = base, 2
    while var in taken:
        var, i = f"{base}_{i}", i + 1
    taken.add(var)
    return var


def render_aws(cluster: Cluster, options: RenderOptions) -> str:
    routes = _routes(cluster, options, "aws-cli")
    used = [n for n in cluster.nodes if any(r.node == n.name for r in routes)]
    out = [
        "#!/bin/sh",
        f'# nosdn: AWS VPC routes for the pod subnets of Kubernetes cluster "'
        f'{comment_text(cluster.name)}",',
        '# one `aws ec2 create-route` per subnet, as in "Kubernetes the hard way".',
        f"# {generated_by()}",
        "#",
        "# Run:  ROUTE_TABLE_ID=rtb-0123456789abcdef0 sh nosdn-aws-routes.sh",
        "#       (the aws CLI's usual credentials and region: AWS_PROFILE, AWS_REGION, ...)",
        "# Nodes without instanceId in the inventory are looked up by address first; nothing is",
        "# created unless every lookup succeeds. Existing routes are never replaced: a destination",
        "# the table already routes fails that create-route (RouteAlreadyExists) and the script",
        "# exits 1 at the end. Instances that forward pod traffic need the source/destination",
        "# check off:  aws ec2 modify-instance-attribute --instance-id ID --no-source-dest-check",
        "# A route table holds 50 routes unless AWS raised the quota (at most 1,000).",
        "",
        "set -u",
        ': "${ROUTE_TABLE_ID:?set ROUTE_TABLE_ID to the VPC route table id (rtb-...)}"',
        "failed=0",
    ]
    ids: dict[str, str] = {}
    lookups = [n for n in used if not n.instance_id]
    for n in used:
        if n.instance_id and not _AWS_INSTANCE.match(n.instance_id):
            raise RenderError(
                f"node {n.name}: instanceId {n.instance_id!r} is not an EC2 instance id "
                "(i- and 8 or 17 hex digits) — fix it or remove it to look the node up by address"
            )
        if n.instance_id:
            ids[n.name] = n.instance_id
    if lookups:
        out += [
            "",
            "# instance_by_ip FILTER ADDRESS NODE: the id of the one instance with that address",
            "instance_by_ip() {",
            '    id=$(aws ec2 describe-instances --filters "Name=$1,Values=$2" \\',
            "        --query 'Reservations[].Instances[].InstanceId' --output text) || exit 1",
            "    case $id in",
            "    i-*[!0-9a-f]*)",
            '        echo "nosdn: several instances have address $2 ($3): $id" >&2',
            "        exit 1",
            "        ;;",
            '    i-*) echo "$id" ;;',
            "    *)",
            '        echo "nosdn: no EC2 instance has address $2 ($3)" >&2',
            "        exit 1",
            "        ;;",
            "    esac",
            "}",
            "",
        ]
        taken: set[str] = set()
        for n in lookups:
            var = _var(n.name, taken)
            ids[n.name] = f'"${var}"'
            ip, filt = _lookup_key(n)
            out.append(f"{var}=$(instance_by_ip {filt} {ip} {n.name}) || exit 1")
    out.append("")
    for r in routes:
        node = cluster.node(r.node or "")
        assert node is not None
        flag = "--destination-cidr-block" if r.family == 4 else "--destination-ipv6-cidr-block"
        out.append(f"# {r.node}: {r.dst} via {r.via[0]}")
        out += [
            'aws ec2 create-route --route-table-id "$ROUTE_TABLE_ID" \\',
            f"    {flag} {r.dst} --instance-id {ids[node.name]} \\",
            "    >/dev/null || failed=$((failed + 1))",
        ]
    out += [
        "",
        f'[ "$failed" -eq 0 ] || echo "nosdn: $failed of {len(routes)} routes not created" >&2',
        '[ "$failed" -eq 0 ]',
    ]
    return "\n".join(out) + "\n"


def _lookup_key(n: Node) -> tuple[str, str]:
    v4 = n.ip_for(4)
    if v4 is not None:
        return str(v4), "private-ip-address"
    v6 = n.ip_for(6)
    assert v6 is not None
    return str(v6), "network-interface.ipv6-addresses.ipv6-address"


def render_gcloud(cluster: Cluster, options: RenderOptions) -> str:
    routes = _routes(cluster, options, "gcloud")
    out = [
        "#!/bin/sh",
        f'# nosdn: GCE routes for the pod subnets of Kubernetes cluster "'
        f'{comment_text(cluster.name)}",',
        '# one `gcloud compute routes create` per subnet, as in "Kubernetes the hard way".',
        f"# {generated_by()}",
        "#",
        "# Run:  GCE_NETWORK=my-vpc sh nosdn-gcloud-routes.sh   (gcloud's active project)",
        "# Route names are CLUSTER-NODE-SUBNET; an existing name or destination fails that",
        "# command (nothing is replaced) and the script exits 1 at the end. The instances need",
        "# IP forwarding on (--can-ip-forward) to carry pod traffic.",
        "",
        "set -u",
        ': "${GCE_NETWORK:?set GCE_NETWORK to the VPC network name}"',
        "failed=0",
    ]
    for r in routes:
        name = gce_route_name(cluster.name, r.node or "services", str(r.dst))
        desc = shlex.quote(f"nosdn: pods of node {r.node} in cluster {comment_text(cluster.name)}")
        out += [
            "",
            f"# {r.node}: {r.dst} via {r.via[0]}",
            f'gcloud compute routes create {name} --network "$GCE_NETWORK" \\',
            f"    --next-hop-address {r.via[0]} --destination-range {r.dst} \\",
            f"    --description {desc} || failed=$((failed + 1))",
        ]
    out += [
        "",
        f'[ "$failed" -eq 0 ] || echo "nosdn: $failed of {len(routes)} routes not created" >&2',
        '[ "$failed" -eq 0 ]',
    ]
    return "\n".join(out) + "\n"


def aws_files(cluster: Cluster, options: RenderOptions) -> list[RenderedFile]:
    return [RenderedFile("nosdn-aws-routes.sh", render_aws(cluster, options), 0o755)]


def gcloud_files(cluster: Cluster, options: RenderOptions) -> list[RenderedFile]:
    return [RenderedFile("nosdn-gcloud-routes.sh", render_gcloud(cluster, options), 0o755)]
