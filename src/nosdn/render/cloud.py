"""Cloud route tables as the commands people already type: the "Kubernetes the hard way" steps
(``aws ec2 create-route``, ``gcloud compute routes create``), one per pod subnet, as a script.

These are for the router target only (a VPC route table is the cluster's router). They create
routes and never replace or delete any: a cloud route table holds routes of other owners
(internet gateways, peerings), and the CLIs' replace commands would silently take one over. A
destination that is already routed makes that one command fail, and the script says so and goes on;
it exits 1 at the end. Every lookup runs before the first write, so a node whose instance cannot
be found stops the script before it has changed anything.

Success is counted, not failure: each command runs inside one small function that counts the
routes it created, and the script exits 0 only when that count equals the number of routes it
holds. A command that never ran, or whose failure went uncounted, cannot pass for success. Every
value in a command is an `addr`, `net`, checked name or `sh`-quoted word (`nosdn.render._quote`).

GCE route names are derived from cluster, node and subnet (`gce_route_name`): valid GCE names
(lowercase, at most 63 characters), unique per subnet, the same on every rendering. Azure route
names likewise (`azure_route_name`), with the cluster prefix the Azure backend owns by, so the
controller adopts what the ``az`` script made. Each ``az`` command writes the route table once:
the script's commands run one after the other, never two at a time (Azure refuses concurrent
writes to one table).
"""

from __future__ import annotations

import re

from nosdn.model import ROUTER, Cluster, Node, Route
from nosdn.names import azure_route_name, gce_route_name
from nosdn.plan import desired_routes
from nosdn.render._base import RenderedFile, RenderError, RenderOptions, generated_by
from nosdn.render._quote import addr, check_cluster, comment, name, net, sh, token

#: An EC2 instance id: i- and 8 (older) or 17 hex digits, matched whole.
_AWS_INSTANCE = re.compile(r"i-(?:[0-9a-f]{8}|[0-9a-f]{17})")
_SH_VAR = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _routes(cluster: Cluster, options: RenderOptions, fmt: str) -> list[Route]:
    if options.target is not None and options.target.kind != "router":
        raise RenderError(
            f"--format {fmt} renders the VPC route table (the cluster's router): "
            "--node and --external do not apply; use --format script for hosts"
        )
    check_cluster(cluster)
    return desired_routes(cluster, ROUTER)


def _var(name: str, taken: set[str]) -> str:
    base = "iid_" + re.sub(r"[^A-Za-z0-9_]", "_", name)
    var, i = base, 2
    while var in taken:
        var, i = f"{base}_{i}", i + 1
    taken.add(var)
    assert _SH_VAR.fullmatch(var), var
    return token(var)


def _tail(created: str, routes: int) -> list[str]:
    """The end of both scripts: exit 0 only if every one of ``routes`` was created."""
    return [
        "",
        f'if [ "$created" -ne {routes} ]; then',
        f'    echo "nosdn: $(({routes} - created)) of {routes} routes not created" >&2',
        "    exit 1",
        "fi",
        f'echo "nosdn: {routes} routes {created}"',
    ]


def render_aws(cluster: Cluster, options: RenderOptions) -> str:
    routes = _routes(cluster, options, "aws-cli")
    used = [n for n in cluster.nodes if any(r.node == n.name for r in routes)]
    out = [
        "#!/bin/sh",
        f'# nosdn: AWS VPC routes for the pod subnets of Kubernetes cluster "'
        f'{comment(cluster.name)}",',
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
        "created=0",
        "",
        "# create_route NODE ARGS...: one aws ec2 create-route, counted when it succeeds",
        "create_route() {",
        "    node=$1",
        "    shift",
        '    if aws ec2 create-route --route-table-id "$ROUTE_TABLE_ID" "$@" >/dev/null; then',
        "        created=$((created + 1))",
        "    else",
        '        echo "nosdn: route of node $node not created: $*" >&2',
        "    fi",
        "}",
    ]
    ids: dict[str, str] = {}
    lookups = [n for n in used if not n.instance_id]
    for n in used:
        if n.instance_id and not _AWS_INSTANCE.fullmatch(n.instance_id):
            raise RenderError(
                f"node {n.name}: instanceId {n.instance_id!r} is not an EC2 instance id "
                "(i- and 8 or 17 hex digits) — fix it or remove it to look the node up by address"
            )
        if n.instance_id:
            ids[n.name] = sh(n.instance_id)
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
            out.append(f"{var}=$(instance_by_ip {filt} {ip} {sh(name(n.name))}) || exit 1")
    out.append("")
    for r in routes:
        node = cluster.node(r.node or "")
        assert node is not None
        who = name(node.name)
        flag = "--destination-cidr-block" if r.family == 4 else "--destination-ipv6-cidr-block"
        dst = net(r.dst, who, "podCIDRs")
        out.append(f"# {comment(who)}: {dst} via {addr(r.via[0], who)}")
        out.append(f"create_route {sh(who)} {flag} {dst} --instance-id {ids[node.name]}")
    out += _tail("created", len(routes))
    return "\n".join(out) + "\n"


def _lookup_key(n: Node) -> tuple[str, str]:
    v4 = n.ip_for(4)
    if v4 is not None:
        return addr(v4, n.name, "ips"), "private-ip-address"
    v6 = n.ip_for(6)
    assert v6 is not None
    return addr(v6, n.name, "ips"), "network-interface.ipv6-addresses.ipv6-address"


def render_gcloud(cluster: Cluster, options: RenderOptions) -> str:
    routes = _routes(cluster, options, "gcloud")
    out = [
        "#!/bin/sh",
        f'# nosdn: GCE routes for the pod subnets of Kubernetes cluster "{comment(cluster.name)}",',
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
        "created=0",
        "",
        "# create_route NAME ARGS...: one gcloud compute routes create, counted when it succeeds",
        "create_route() {",
        '    if gcloud compute routes create "$@"; then',
        "        created=$((created + 1))",
        "    else",
        '        echo "nosdn: route $1 not created" >&2',
        "    fi",
        "}",
    ]
    for r in routes:
        who = name(r.node or "services")
        dst = net(r.dst, who, "podCIDRs")
        route = token(gce_route_name(cluster.name, who, dst))
        desc = sh(f"nosdn: pods of node {who} in cluster {comment(cluster.name)}")
        out += [
            "",
            f"# {comment(who)}: {dst} via {addr(r.via[0], who)}",
            f'create_route {route} --network "$GCE_NETWORK" \\',
            f"    --next-hop-address {addr(r.via[0], who)} --destination-range {dst} \\",
            f"    --description {desc}",
        ]
    out += _tail("created", len(routes))
    return "\n".join(out) + "\n"


def render_az(cluster: Cluster, options: RenderOptions) -> str:
    routes = _routes(cluster, options, "az-cli")
    out = [
        "#!/bin/sh",
        "# nosdn: Azure routes for the pod subnets of Kubernetes cluster "
        f'"{comment(cluster.name)}",',
        "# one `az network route-table route create` per subnet (next hop: the node's address).",
        f"# {generated_by()}",
        "#",
        "# Run:  AZ_RESOURCE_GROUP=my-rg AZ_ROUTE_TABLE=my-table sh nosdn-az-routes.sh",
        "# Route names start with the cluster's nosdn prefix (the Azure controller owns them):",
        "# `route create` updates a route of the same name (this cluster's) and touches no",
        "# other; a failed command is counted and the script exits 1 at the end. The nodes'",
        "# NICs need IP forwarding on (az network nic update --ip-forwarding true).",
        "",
        "set -u",
        ': "${AZ_RESOURCE_GROUP:?set AZ_RESOURCE_GROUP to the route table\'s resource group}"',
        ': "${AZ_ROUTE_TABLE:?set AZ_ROUTE_TABLE to the route table of the nodes\' subnet}"',
        "created=0",
        "",
        "# create_route NAME ARGS...: one az network route-table route create, counted when it",
        "# succeeds",
        "create_route() {",
        "    route=$1",
        "    shift",
        '    if az network route-table route create --resource-group "$AZ_RESOURCE_GROUP" \\',
        '        --route-table-name "$AZ_ROUTE_TABLE" --name "$route" "$@" >/dev/null; then',
        "        created=$((created + 1))",
        "    else",
        '        echo "nosdn: route $route not created" >&2',
        "    fi",
        "}",
    ]
    for r in routes:
        who = name(r.node or "services")
        dst = net(r.dst, who, "podCIDRs")
        hop = addr(r.via[0], who)
        route = sh(azure_route_name(cluster.name, who, dst))
        out += [
            "",
            f"# {comment(who)}: {dst} via {hop}",
            f"create_route {route} --address-prefix {dst} \\",
            f"    --next-hop-type VirtualAppliance --next-hop-ip-address {hop}",
        ]
    out += _tail("created", len(routes))
    return "\n".join(out) + "\n"


def az_files(cluster: Cluster, options: RenderOptions) -> list[RenderedFile]:
    return [RenderedFile("nosdn-az-routes.sh", render_az(cluster, options), 0o755)]


def aws_files(cluster: Cluster, options: RenderOptions) -> list[RenderedFile]:
    return [RenderedFile("nosdn-aws-routes.sh", render_aws(cluster, options), 0o755)]


def gcloud_files(cluster: Cluster, options: RenderOptions) -> list[RenderedFile]:
    return [RenderedFile("nosdn-gcloud-routes.sh", render_gcloud(cluster, options), 0o755)]
