"""AWS VPC route tables as a nosdn backend (boto3; the only module that imports it).

Each managed route table is a `nosdn.backends.base.Backend`; `AwsRoutes` is the
`nosdn.backends.cloud.contract.CloudProvider` that finds them and the nodes' instances, and
`nosdn.backends.cloud.sync.sync` runs the pass. Why it looks the way it does:

- Several tables: one per AZ or subnet is common. They are found by the tag the Kubernetes AWS
  cloud provider uses (``kubernetes.io/cluster/<name>``), or given by id. One paged
  ``DescribeRouteTables`` reads all of them, routes included: a pass that finds every table in
  sync makes that one call and nothing else (when every node names its instance).
- Ownership. AWS routes carry no tags, so a route is nosdn's when its destination lies in the
  cluster CIDRs *and* it points at an instance of this cluster: a current node's instance, an
  instance tagged for the cluster (``kubernetes.io/cluster/<name>``, or ``nosdn.io/cluster`` which
  nosdn puts on every instance it routes to), or an instance that is gone (a blackhole route
  left by a terminated instance, which is replaced or removed). The local route, gateways,
  peerings, NAT and transit gateways, another cluster's instances and anything outside the
  cluster CIDRs are someone else's: a conflict when they route a pod subnet, never touched.
- Writes: ``ReplaceRoute`` changes a next hop in place (no gap), deletes run before creates
  so a full table frees room first. Every instance a new route points at has its
  source/destination check turned off (else EC2 drops the pods' packets).
- Retries: botocore's ``standard`` mode retries throttling (``RequestLimitExceeded``) and 5xx
  with exponential backoff and full jitter; a write that still fails is reported per route and
  the next pass converges (writes are computed from a fresh read every pass).
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from nosdn.backends.base import ApplyResult, WriteError
from nosdn.backends.cloud.contract import CloudError, CloudTable
from nosdn.model import Cluster, Diff, InstalledRoute, IPNetwork, Node
from nosdn.problems import Problem

CLUSTER_TAG = "kubernetes.io/cluster/{}"
OWNER_TAG = "nosdn.io/cluster"
DEFAULT_CAPACITY = 50
QUOTA_HINT = "AWS Service Quotas: Amazon VPC 'Routes per route table' (L-93826ACB), up to 1,000"
_INSTANCE = re.compile(r"^i-(?:[0-9a-f]{8}|[0-9a-f]{17})$")
_PROVIDER_ID = re.compile(r"^aws://(?:/[^/]*)?/(i-[0-9a-f]+)$")
_GONE = {"terminated", "shutting-down"}
_LIVE_STATES = ["pending", "running", "stopping", "stopped"]
_PROPAGATED = "EnableVgwRoutePropagation"
_TARGET_KEYS = (
    "InstanceId",
    "NetworkInterfaceId",
    "VpcPeeringConnectionId",
    "GatewayId",
    "NatGatewayId",
    "TransitGatewayId",
    "LocalGatewayId",
    "CarrierGatewayId",
    "EgressOnlyInternetGatewayId",
    "CoreNetworkArn",
)


def instance_of(value: str) -> str | None:
    """The EC2 instance id in an inventory ``instanceId`` or a Kubernetes ``providerID``
    (``aws:///us-east-1a/i-0abc...``), or None if it is neither."""
    value = value.strip()
    m = _PROVIDER_ID.match(value)
    iid = m.group(1) if m else value
    return iid if _INSTANCE.match(iid) else None


@dataclass(frozen=True, slots=True)
class AwsConfig:
    """Where and how to reach EC2. Region, endpoint and credentials default to the usual AWS
    environment (``AWS_REGION``, ``AWS_ENDPOINT_URL``, ``AWS_PROFILE``, instance role, ...)."""

    region: str | None = None
    endpoint_url: str | None = None
    #: Manage these tables; empty: every table tagged ``kubernetes.io/cluster/<cluster name>``.
    route_tables: tuple[str, ...] = ()
    capacity: int = DEFAULT_CAPACITY
    #: botocore retry mode: ``standard`` (backoff with jitter) or ``adaptive`` (that, plus a
    #: client-side rate limit that slows down when EC2 throttles: for big initial syncs).
    retry_mode: str = "standard"
    max_attempts: int = 10
    page_size: int = 100
    connect_timeout: float = 5.0
    read_timeout: float = 30.0


def _dst(raw: dict[str, Any]) -> IPNetwork | None:
    import ipaddress

    text = raw.get("DestinationCidrBlock") or raw.get("DestinationIpv6CidrBlock")
    if not text:
        return None  # a prefix-list route: never a pod subnet
    try:
        return ipaddress.ip_network(text)
    except ValueError:
        return None


def _target(raw: dict[str, Any]) -> str:
    for key in _TARGET_KEYS:
        if raw.get(key):
            return str(raw[key])
    return "unknown target"


def _in(dst: IPNetwork, cidrs: Iterable[IPNetwork]) -> bool:
    return any(dst.version == c.version and dst.subnet_of(c) for c in cidrs)  # type: ignore[arg-type]


def parse_route(
    table_id: str,
    raw: dict[str, Any],
    cluster: Cluster,
    node_of: dict[str, Node],
    ours: set[str],
) -> InstalledRoute | None:
    """One route of a ``DescribeRouteTables`` answer as nosdn sees it.

    ``node_of`` maps the cluster's instances to their nodes; ``ours`` holds other instances
    that belong to the cluster (tagged for it, or gone). The route's ``via`` is the address of
    the node whose instance it points at, or empty when that is no current node: the diff then
    sees a wrong next hop and replaces it.
    """
    dst = _dst(raw)
    if dst is None:
        return None
    target = _target(raw)
    instance = raw.get("InstanceId")
    blackhole = raw.get("State") == "blackhole"
    owned = _in(dst, cluster.cluster_cidrs) and (
        (blackhole and (instance or raw.get("NetworkInterfaceId")))
        or (instance is not None and (instance in node_of or instance in ours))
    )
    node = node_of.get(instance or "") if not blackhole else None
    gw = node.ip_for(dst.version) if node is not None else None
    label = target + (f" (node {node.name})" if node is not None else "")
    if blackhole:
        label += " blackhole"
    return InstalledRoute(
        dst,
        (gw,) if gw is not None else (),
        bool(owned),
        "nosdn" if owned else target,
        f"{dst} -> {label} in {table_id}",
        table_id,
    )


def _dst_args(dst: IPNetwork) -> dict[str, str]:
    key = "DestinationCidrBlock" if dst.version == 4 else "DestinationIpv6CidrBlock"
    return {key: str(dst)}


class AwsRouteTable:
    """One managed route table, as read at the start of the pass."""

    name = "aws"
    quota_hint = QUOTA_HINT

    def __init__(
        self,
        client: Any,
        table_id: str,
        *,
        installed: list[InstalledRoute],
        instances: dict[str, str],
        capacity: int,
        used: int,
    ) -> None:
        self._client = client
        self.table_id = table_id
        self._installed = installed
        self._instances = instances
        self.capacity: int | None = capacity
        self.used = used

    def routes(self) -> list[InstalledRoute]:
        return list(self._installed)

    def _write(
        self, result: ApplyResult, action: str, dst: IPNetwork, node: str | None, **kw: Any
    ) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        call = {
            "remove": self._client.delete_route,
            "change": self._client.replace_route,
            "add": self._client.create_route,
        }[action]
        try:
            call(RouteTableId=self.table_id, **_dst_args(dst), **kw)
        except ClientError as e:
            code = e.response.get("Error", {}).get("Code", "")
            if action == "remove" and code == "InvalidRoute.NotFound":
                return  # already gone: the goal is reached
            msg = e.response.get("Error", {}).get("Message", str(e))
            result.errors.append(WriteError(dst, node, action, f"{code}: {msg}"))
            return
        except BotoCoreError as e:
            result.errors.append(WriteError(dst, node, action, str(e)))
            return
        result.writes += 1

    def apply(self, diff: Diff) -> ApplyResult:
        result = ApplyResult()
        for old in diff.remove:
            self._write(result, "remove", old.dst, None)
        for ch in diff.change:
            iid = self._instances.get(ch.new.node or "")
            if iid is None:
                result.errors.append(
                    WriteError(ch.new.dst, ch.new.node, "change", "node has no instance")
                )
                continue
            self._write(result, "change", ch.new.dst, ch.new.node, InstanceId=iid)
        for new in diff.add:
            iid = self._instances.get(new.node or "")
            if iid is None:
                result.errors.append(WriteError(new.dst, new.node, "add", "node has no instance"))
                continue
            self._write(result, "add", new.dst, new.node, InstanceId=iid)
        return result


class AwsRoutes:
    """The AWS side of a pass: EC2 client, instance lookups, table discovery."""

    name = "aws"

    def __init__(self, config: AwsConfig, client: Any | None = None) -> None:
        self.config = config
        self.calls: Counter[str] = Counter()
        self.client = client if client is not None else self._make_client()
        self._fresh = False
        self._cluster_name = ""
        self._target_info: dict[str, dict[str, Any]] = {}
        self._known: dict[str, dict[str, Any]] = {}
        events = self.client.meta.events
        events.register("before-call.ec2", self._on_call)
        events.register("before-send.ec2", self._on_send)

    def _make_client(self) -> Any:
        import boto3
        from botocore.config import Config

        # botocore reads AWS_DEFAULT_REGION (and the config file) but not AWS_REGION, which
        # the AWS CLI v2, the other SDKs and EKS pods' environment use
        region = self.config.region or os.environ.get("AWS_REGION") or None
        session = boto3.session.Session(region_name=region)
        if not session.region_name:
            raise CloudError(
                "no AWS region: pass --aws-region REGION, or set AWS_REGION (or "
                "AWS_DEFAULT_REGION, or region in the AWS config file)"
            )
        cfg = Config(
            retries={"mode": self.config.retry_mode, "max_attempts": self.config.max_attempts},
            connect_timeout=self.config.connect_timeout,
            read_timeout=self.config.read_timeout,
            user_agent_appid="nosdn",
        )
        return session.client("ec2", endpoint_url=self.config.endpoint_url, config=cfg)

    # counting: one entry per logical call, plus ``retry:<op>`` for every extra attempt
    def _on_call(self, model: Any, **_: Any) -> None:
        self.calls[model.name] += 1
        self._fresh = True

    def _on_send(self, event_name: str, **_: Any) -> None:
        if self._fresh:
            self._fresh = False
        else:
            self.calls["retry:" + event_name.rsplit(".", 1)[-1]] += 1

    @property
    def region(self) -> str:
        return str(self.client.meta.region_name)

    def _read(self, what: str, op: str, **kw: Any) -> Iterator[dict[str, Any]]:
        """Every page of a describe call; any failure becomes a `CloudError`."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            yield from self.client.get_paginator(op).paginate(**kw)
        except ClientError as e:
            err = e.response.get("Error", {})
            raise CloudError(f"{what}: {err.get('Code')}: {err.get('Message')}") from e
        except BotoCoreError as e:
            raise CloudError(f"{what}: {e}") from e

    def _describe_instances(self, filters: list[dict[str, Any]]) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        for page in self._read(
            "reading EC2 instances",
            "describe_instances",
            Filters=filters,
            PaginationConfig={"PageSize": max(5, min(self.config.page_size, 1000))},
        ):
            for res in page.get("Reservations", []):
                found.extend(res.get("Instances", []))
        return found

    def _instances_by_id(self, ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        wanted = sorted(set(ids))
        out: dict[str, dict[str, Any]] = {}
        for i in range(0, len(wanted), 200):
            for inst in self._describe_instances(
                [{"Name": "instance-id", "Values": wanted[i : i + 200]}]
            ):
                out[inst["InstanceId"]] = inst
        return out

    # --- CloudProvider -----------------------------------------------------------------
    def resolve(self, cluster: Cluster) -> tuple[dict[str, str], list[Problem]]:
        instances: dict[str, str] = {}
        problems: list[Problem] = []
        by_ip: dict[str, str] = {}
        for n in cluster.nodes:
            if not n.pod_cidrs:
                continue
            if n.instance_id:
                iid = instance_of(n.instance_id)
                if iid is None:
                    problems.append(
                        Problem(
                            n.name,
                            "instanceId",
                            n.instance_id,
                            "is not an EC2 instance id or AWS providerID",
                            "write i- and 8 or 17 hex digits (or aws:///ZONE/i-...), or remove "
                            "it to look the instance up by the node's address",
                        )
                    )
                else:
                    instances[n.name] = iid
                continue
            ip = n.ip_for(4)
            if ip is None:
                problems.append(
                    Problem(
                        n.name,
                        "instanceId",
                        "(none)",
                        "is missing and the node has no IPv4 address to find its instance by",
                        "add instanceId: i-... to the node",
                    )
                )
            else:
                by_ip[str(ip)] = n.name
        if by_ip:
            self._lookup_by_ip(by_ip, instances, problems)
        owners: dict[str, list[str]] = {}
        for node, iid in instances.items():
            owners.setdefault(iid, []).append(node)
        for iid, nodes in owners.items():
            if len(nodes) > 1:
                for node in nodes:
                    del instances[node]
                    problems.append(
                        Problem(
                            node,
                            "instanceId",
                            iid,
                            f"is also the instance of {', '.join(x for x in nodes if x != node)}",
                            "every node is its own instance; fix the inventory",
                        )
                    )
        return instances, problems

    def _lookup_by_ip(
        self, by_ip: dict[str, str], instances: dict[str, str], problems: list[Problem]
    ) -> None:
        ips = sorted(by_ip)
        found: dict[str, list[str]] = {}
        for i in range(0, len(ips), 200):
            for inst in self._describe_instances(
                [
                    {"Name": "private-ip-address", "Values": ips[i : i + 200]},
                    {"Name": "instance-state-name", "Values": _LIVE_STATES},
                ]
            ):
                found.setdefault(inst.get("PrivateIpAddress", ""), []).append(inst["InstanceId"])
        for ip, node in by_ip.items():
            ids = found.get(ip, [])
            if len(ids) == 1:
                instances[node] = ids[0]
                continue
            why = (
                f"is missing and no EC2 instance in {self.region} has private address {ip}"
                if not ids
                else f"is missing and several instances have address {ip}: {', '.join(ids)}"
            )
            problems.append(Problem(node, "instanceId", "(none)", why, "add instanceId: i-..."))

    def tables(self, cluster: Cluster, instances: dict[str, str]) -> list[CloudTable]:
        self._cluster_name = cluster.name
        tag = CLUSTER_TAG.format(cluster.name)
        if self.config.route_tables:
            pages = self._read(
                "reading route tables " + ", ".join(self.config.route_tables),
                "describe_route_tables",
                RouteTableIds=list(self.config.route_tables),
            )
        else:
            pages = self._read(
                f"reading the route tables tagged {tag}",
                "describe_route_tables",
                Filters=[{"Name": "tag-key", "Values": [tag]}],
                PaginationConfig={"PageSize": max(5, min(self.config.page_size, 100))},
            )
        raw_tables = [t for page in pages for t in page.get("RouteTables", [])]
        if not raw_tables:
            raise CloudError(
                f"no route table in {self.region} is tagged {tag}: tag the cluster's route "
                "tables (any value) or name them with --route-table rtb-..."
            )
        node_of: dict[str, Node] = {}
        for n in cluster.nodes:
            if n.name in instances:
                node_of[instances[n.name]] = n
        ours = self._ours(raw_tables, cluster, node_of)
        result: list[CloudTable] = []
        for t in sorted(raw_tables, key=lambda t: str(t["RouteTableId"])):
            tid = str(t["RouteTableId"])
            routes = t.get("Routes", [])
            installed = [
                r for raw in routes if (r := parse_route(tid, raw, cluster, node_of, ours))
            ]
            used = sum(1 for raw in routes if raw.get("Origin") != _PROPAGATED)
            result.append(
                AwsRouteTable(
                    self.client,
                    tid,
                    installed=installed,
                    instances=instances,
                    capacity=self.config.capacity,
                    used=used,
                )
            )
        return result

    def _ours(
        self, tables: list[dict[str, Any]], cluster: Cluster, node_of: dict[str, Node]
    ) -> set[str]:
        """Instances that are not current nodes but that routes in the cluster CIDRs point at,
        told apart (one lookup) into this cluster's old or gone instances and others'.

        The same call also fetches the nodes' instances that no route points at yet (those a
        new route will point at, whose source/destination check must be off), so a pass that
        replaces an instance makes one ``DescribeInstances``, not two.
        """
        targeted = {raw.get("InstanceId") for t in tables for raw in t.get("Routes", [])}
        unknown = {
            raw["InstanceId"]
            for t in tables
            for raw in t.get("Routes", [])
            if raw.get("InstanceId")
            and raw["InstanceId"] not in node_of
            and raw.get("State") != "blackhole"
            and (dst := _dst(raw)) is not None
            and _in(dst, cluster.cluster_cidrs)
        }
        self._known = {}
        if not unknown:
            return set()
        self._known = self._instances_by_id(unknown | (set(node_of) - targeted))
        tag = CLUSTER_TAG.format(cluster.name)
        ours: set[str] = set()
        for iid in unknown:
            inst = self._known.get(iid)
            if inst is None or inst.get("State", {}).get("Name") in _GONE:
                ours.add(iid)
                continue
            tags = {t.get("Key"): t.get("Value") for t in inst.get("Tags", [])}
            if tag in tags or tags.get(OWNER_TAG) == cluster.name:
                ours.add(iid)
        return ours

    def check_targets(self, targets: dict[str, str]) -> tuple[list[Problem], list[str]]:
        missing = set(targets.values()) - set(self._known)
        info = {**self._known, **(self._instances_by_id(missing) if missing else {})}
        self._target_info = info
        problems: list[Problem] = []
        notes: list[str] = []
        for node, iid in sorted(targets.items()):
            inst = info.get(iid)
            state = inst.get("State", {}).get("Name") if inst else None
            if inst is None:
                problems.append(
                    Problem(
                        node,
                        "instanceId",
                        iid,
                        f"no such EC2 instance in {self.region}",
                        "fix instanceId, or remove it to look the instance up by address",
                    )
                )
            elif state in _GONE:
                problems.append(
                    Problem(
                        node, "instanceId", iid, f"is {state}", "name the node's current instance"
                    )
                )
            elif state in ("stopping", "stopped"):
                notes.append(f"instance {iid} (node {node}) is {state}: its route is a blackhole")
        return problems, notes

    def prepare_targets(self, targets: dict[str, str]) -> list[str]:
        from botocore.exceptions import BotoCoreError, ClientError

        notes: list[str] = []
        untagged: list[str] = []
        tag = CLUSTER_TAG.format(self._cluster_name)
        for node, iid in sorted(targets.items()):
            inst = self._target_info.get(iid, {})
            tags = {t.get("Key"): t.get("Value") for t in inst.get("Tags", [])}
            if tag not in tags and tags.get(OWNER_TAG) != self._cluster_name:
                untagged.append(iid)
            if inst.get("SourceDestCheck") is False:
                continue
            try:
                self.client.modify_instance_attribute(
                    InstanceId=iid, SourceDestCheck={"Value": False}
                )
                notes.append(f"turned off the source/destination check of {iid} (node {node})")
            except (ClientError, BotoCoreError) as e:
                notes.append(
                    f"could not turn off the source/destination check of {iid} (node {node}); "
                    f"EC2 will drop its pods' traffic: {e}"
                )
        if untagged:
            try:
                self.client.create_tags(
                    Resources=untagged, Tags=[{"Key": OWNER_TAG, "Value": self._cluster_name}]
                )
            except (ClientError, BotoCoreError) as e:
                notes.append(f"could not tag {', '.join(untagged)} {OWNER_TAG}: {e}")
        return notes
