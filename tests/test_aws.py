"""The AWS backend against a real ``moto_server`` on 127.0.0.1 (real EC2 API shapes and errors).

Every test talks to moto through `aws_moto.Ec2Proxy`, which counts the EC2 actions that reach
the server (how "zero writes" and "one describe" are checked) and injects throttling. The
``no_internet`` guard fails any test that tries to reach an address off this machine, and the
credentials are fake.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from aws_moto import FAKE_ENV, Ec2Proxy, moto_server, reset_moto
from cloud_cli import run as _run
from no_internet import no_internet
from nosdn.backends.cloud.aws import (
    CLUSTER_TAG,
    OWNER_TAG,
    AwsConfig,
    AwsRoutes,
    instance_of,
    parse_route,
)
from nosdn.backends.cloud.contract import CloudError
from nosdn.backends.cloud.sync import sync
from nosdn.model import Cluster, Node
from nosdn.plan import diff
from nosdn.problems import ProblemsError

__all__ = ["no_internet"]  # the guard fixture, used by every test here

pytestmark = pytest.mark.usefixtures("no_internet")

CLUSTER = "demo"
POD_CIDR = ipaddress.ip_network("10.244.0.0/16")


@pytest.fixture(scope="session")
def moto_url() -> Iterator[str]:
    with pytest.MonkeyPatch.context() as mp:
        for k, v in FAKE_ENV.items():
            mp.setenv(k, v)
        with moto_server() as url:
            yield url


@dataclass
class World:
    """A VPC in moto: two route tables tagged for the cluster (A also holds the internet
    gateway's default route), one untagged table, and instances for the nodes."""

    ec2: Any
    proxy: Ec2Proxy
    vpc: str
    subnet: str
    igw: str
    table_a: str
    table_b: str
    untagged: str
    instances: dict[str, str] = field(default_factory=dict)
    ips: dict[str, str] = field(default_factory=dict)

    def launch(self, tags: dict[str, str] | None = None) -> tuple[str, str]:
        kw: dict[str, Any] = {}
        if tags:
            kw["TagSpecifications"] = [
                {
                    "ResourceType": "instance",
                    "Tags": [{"Key": k, "Value": v} for k, v in tags.items()],
                }
            ]
        inst = self.ec2.run_instances(
            ImageId="ami-12c6146b", MinCount=1, MaxCount=1, SubnetId=self.subnet, **kw
        )["Instances"][0]
        return inst["InstanceId"], inst["PrivateIpAddress"]

    def node(self, name: str, i: int, *, with_id: bool = True) -> Node:
        if name not in self.instances:
            self.instances[name], self.ips[name] = self.launch()
        return Node(
            name,
            (ipaddress.ip_address(self.ips[name]),),
            (ipaddress.ip_network(f"10.244.{i}.0/24"),),
            self.instances[name] if with_id else None,
        )

    def cluster(self, *nodes: Node) -> Cluster:
        return Cluster(tuple(nodes), (POD_CIDR,), name=CLUSTER)

    def routes(self, table: str) -> dict[str, str]:
        """destination -> target of every route in a table, read straight from moto."""
        rt = self.ec2.describe_route_tables(RouteTableIds=[table])["RouteTables"][0]
        out = {}
        for r in rt["Routes"]:
            dst = r.get("DestinationCidrBlock") or r.get("DestinationIpv6CidrBlock")
            out[dst] = next(
                r[k]
                for k in ("InstanceId", "GatewayId", "VpcPeeringConnectionId", "NatGatewayId")
                if r.get(k)
            )
        return out

    def instance(self, iid: str) -> dict[str, Any]:
        res = self.ec2.describe_instances(InstanceIds=[iid])["Reservations"]
        return dict(res[0]["Instances"][0])

    def provider(self, **kw: Any) -> AwsRoutes:
        cfg = AwsConfig(region="us-east-1", endpoint_url=self.proxy.url, max_attempts=6, **kw)
        return AwsRoutes(cfg)


@pytest.fixture
def world(moto_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    import boto3

    for k, v in FAKE_ENV.items():
        monkeypatch.setenv(k, v)
    reset_moto(moto_url)
    ec2 = boto3.client("ec2", endpoint_url=moto_url, region_name="us-east-1")
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
    igw = ec2.create_internet_gateway()["InternetGateway"]["InternetGatewayId"]
    ec2.attach_internet_gateway(InternetGatewayId=igw, VpcId=vpc)
    tag = [{"Key": CLUSTER_TAG.format(CLUSTER), "Value": "owned"}]
    spec = [{"ResourceType": "route-table", "Tags": tag}]
    a = ec2.create_route_table(VpcId=vpc, TagSpecifications=spec)["RouteTable"]["RouteTableId"]
    b = ec2.create_route_table(VpcId=vpc, TagSpecifications=spec)["RouteTable"]["RouteTableId"]
    other = ec2.create_route_table(VpcId=vpc)["RouteTable"]["RouteTableId"]
    ec2.create_route(RouteTableId=a, DestinationCidrBlock="0.0.0.0/0", GatewayId=igw)
    proxy = Ec2Proxy(moto_url)
    try:
        yield World(ec2, proxy, vpc, subnet, igw, a, b, other)
    finally:
        proxy.close()


def _nodes(w: World, n: int = 3, **kw: Any) -> list[Node]:
    return [w.node(f"node{i}", i, **kw) for i in range(1, n + 1)]


# --- create, no-op, change, delete ---------------------------------------------------------
def test_first_pass_creates_every_route_in_every_tagged_table(world: World) -> None:
    cluster = world.cluster(*_nodes(world))
    result = sync(world.provider(), cluster)
    assert result.ok, (result.errors, result.conflicts, result.problems)
    for table in (world.table_a, world.table_b):
        routes = world.routes(table)
        for i in (1, 2, 3):
            assert routes[f"10.244.{i}.0/24"] == world.instances[f"node{i}"]
    assert world.routes(world.table_a)["0.0.0.0/0"] == world.igw
    assert not any(d.startswith("10.244.") for d in world.routes(world.untagged))
    assert world.proxy.actions["CreateRoute"] == 6
    for iid in world.instances.values():
        inst = world.instance(iid)
        assert inst["SourceDestCheck"] is False
        assert {"Key": OWNER_TAG, "Value": CLUSTER} in inst["Tags"]


def test_second_pass_makes_one_describe_and_no_write(world: World) -> None:
    cluster = world.cluster(*_nodes(world))
    provider = world.provider()
    sync(provider, cluster)
    world.proxy.reset_counts()
    again = sync(provider, cluster)
    assert again.ok
    assert again.writes == 0
    assert dict(world.proxy.actions) == {"DescribeRouteTables": 1}
    assert dict(again.calls) == {"DescribeRouteTables": 1}
    assert all(len(t.diff.keep) == 3 for t in again.tables)


def test_every_page_of_route_tables_is_read(world: World) -> None:
    world.proxy.route_table_page = 1  # one table per page: two pages
    cluster = world.cluster(*_nodes(world))
    provider = world.provider()
    result = sync(provider, cluster)
    assert sorted(t.table.table_id for t in result.tables) == sorted([world.table_a, world.table_b])
    assert "10.244.3.0/24" in world.routes(world.table_b)
    world.proxy.reset_counts()
    assert sync(provider, cluster).writes == 0
    assert dict(world.proxy.actions) == {"DescribeRouteTables": 2}


def test_instance_replaced_is_one_replace_per_table(world: World) -> None:
    nodes = _nodes(world)
    provider = world.provider()
    sync(provider, world.cluster(*nodes))
    old = world.instances["node2"]
    new, ip = world.launch()
    world.instances["node2"], world.ips["node2"] = new, ip  # old one keeps running
    world.proxy.reset_counts()
    result = sync(provider, world.cluster(nodes[0], world.node("node2", 2), nodes[2]))
    assert result.ok
    route_writes = {a: n for a, n in world.proxy.writes().items() if "Route" in a}
    assert route_writes == {"ReplaceRoute": 2}
    for table in (world.table_a, world.table_b):
        routes = world.routes(table)
        assert routes["10.244.2.0/24"] == new
        assert routes["10.244.1.0/24"] == world.instances["node1"]
    assert old != new
    assert world.instance(new)["SourceDestCheck"] is False
    world.proxy.reset_counts()
    assert sync(provider, world.cluster(*[world.node(f"node{i}", i) for i in (1, 2, 3)])).ok
    assert world.proxy.writes() == {}


def test_route_to_terminated_instance_is_replaced(world: World) -> None:
    nodes = _nodes(world)
    provider = world.provider()
    sync(provider, world.cluster(*nodes))
    # a node was rebuilt outside nosdn: its old instance is gone, the inventory names a new one
    world.ec2.terminate_instances(InstanceIds=[world.instances["node3"]])
    world.instances["node3"], world.ips["node3"] = world.launch()
    result = sync(provider, world.cluster(*nodes[:2], world.node("node3", 3)))
    assert result.ok
    assert world.routes(world.table_b)["10.244.3.0/24"] == world.instances["node3"]


def test_node_removed_its_routes_are_deleted(world: World) -> None:
    nodes = _nodes(world)
    provider = world.provider()
    sync(provider, world.cluster(*nodes))
    world.proxy.reset_counts()
    result = sync(provider, world.cluster(*nodes[:2]))
    assert result.ok
    assert world.proxy.writes() == {"DeleteRoute": 2}
    for table in (world.table_a, world.table_b):
        assert "10.244.3.0/24" not in world.routes(table)
        assert "10.244.2.0/24" in world.routes(table)
    assert world.routes(world.table_a)["0.0.0.0/0"] == world.igw


def test_nodes_without_instance_id_are_found_by_address(world: World) -> None:
    nodes = [world.node(f"node{i}", i, with_id=False) for i in range(1, 8)]
    provider = world.provider(page_size=5)
    result = sync(provider, world.cluster(*nodes))
    assert result.ok, result.problems
    routes = world.routes(world.table_a)
    for i in range(1, 8):
        assert routes[f"10.244.{i}.0/24"] == world.instances[f"node{i}"]


def test_tables_given_by_id(world: World) -> None:
    cluster = world.cluster(*_nodes(world, 2))
    result = sync(world.provider(route_tables=(world.untagged,)), cluster)
    assert result.ok
    assert [t.table.table_id for t in result.tables] == [world.untagged]
    assert "10.244.1.0/24" in world.routes(world.untagged)
    assert "10.244.1.0/24" not in world.routes(world.table_a)


# --- never touching what is not ours --------------------------------------------------------
def test_foreign_routes_survive_every_pass_and_collisions_are_reported(world: World) -> None:
    ec2 = world.ec2
    peer_vpc = ec2.create_vpc(CidrBlock="10.1.0.0/16")["Vpc"]["VpcId"]
    pcx = ec2.create_vpc_peering_connection(VpcId=world.vpc, PeerVpcId=peer_vpc)[
        "VpcPeeringConnection"
    ]["VpcPeeringConnectionId"]
    theirs, _ = world.launch({CLUSTER_TAG.format("other"): "owned"})
    # a peering route to node3's pod subnet, another cluster's pod route to node2's subnet,
    # and another cluster's route outside our cluster CIDR
    ec2.create_route(
        RouteTableId=world.table_a, DestinationCidrBlock="10.244.3.0/24", VpcPeeringConnectionId=pcx
    )
    ec2.create_route(
        RouteTableId=world.table_b, DestinationCidrBlock="10.244.2.0/24", InstanceId=theirs
    )
    ec2.create_route(
        RouteTableId=world.table_b, DestinationCidrBlock="10.245.7.0/24", InstanceId=theirs
    )
    before_a, before_b = world.routes(world.table_a), world.routes(world.table_b)
    provider = world.provider()
    cluster = world.cluster(*_nodes(world))
    for _ in range(2):
        result = sync(provider, cluster)
        found = {(t, str(c.wanted.dst), c.found.owner) for t, c in result.conflicts}
        assert found == {
            (world.table_a, "10.244.3.0/24", pcx),
            (world.table_b, "10.244.2.0/24", theirs),
        }
        assert not result.ok
        assert not result.errors
        after_a, after_b = world.routes(world.table_a), world.routes(world.table_b)
        assert after_a["0.0.0.0/0"] == world.igw
        assert after_a["10.244.3.0/24"] == pcx
        assert after_b["10.244.2.0/24"] == theirs
        assert after_b["10.245.7.0/24"] == theirs
        assert after_a["10.244.1.0/24"] == world.instances["node1"]
        assert after_b["10.244.3.0/24"] == world.instances["node3"]
    assert before_a["10.244.3.0/24"] == pcx
    assert before_b["10.244.2.0/24"] == theirs
    # nodes leaving does not make their foreign look-alikes ours
    world.proxy.reset_counts()
    sync(provider, world.cluster())
    assert world.routes(world.table_a)["10.244.3.0/24"] == pcx
    assert world.routes(world.table_b)["10.244.2.0/24"] == theirs
    assert world.routes(world.table_b)["10.245.7.0/24"] == theirs
    assert world.proxy.writes() == {"DeleteRoute": 4}


def test_unresolvable_node_keeps_its_route_and_strict_refuses(world: World) -> None:
    nodes = _nodes(world)
    provider = world.provider()
    sync(provider, world.cluster(*nodes))
    broken = Node(nodes[1].name, nodes[1].ips, nodes[1].pod_cidrs, "not-an-instance")
    cluster = world.cluster(nodes[0], broken, nodes[2])
    world.proxy.reset_counts()
    with pytest.raises(ProblemsError) as e:
        sync(provider, cluster, strict=True)
    assert "node node2: instanceId not-an-instance" in str(e.value)
    assert world.proxy.writes() == {}
    result = sync(provider, cluster)
    assert [p.node for p in result.problems] == ["node2"]
    assert world.proxy.writes() == {}
    assert world.routes(world.table_a)["10.244.2.0/24"] == world.instances["node2"]
    # an instance id that does not exist: refused before the first write, route left alone
    gone = Node(nodes[1].name, nodes[1].ips, nodes[1].pod_cidrs, "i-0123456789abcdef0")
    result = sync(provider, world.cluster(nodes[0], gone, nodes[2]))
    assert "no such EC2 instance" in result.problems[0].message
    assert world.proxy.writes() == {}
    assert world.routes(world.table_b)["10.244.2.0/24"] == world.instances["node2"]


# --- limits -----------------------------------------------------------------------------
def test_over_capacity_only_the_new_routes_that_do_not_fit_are_left_out(world: World) -> None:
    cluster = world.cluster(*_nodes(world))
    # table A holds local + internet gateway: 3 pod routes make 5; table B would hold 4
    result = sync(world.provider(capacity=4), cluster)
    assert result.refused
    [short] = result.shortfalls
    assert (short.table, short.needed, short.capacity) == (world.table_a, 5, 4)
    assert [r.node for r in short.overflow] == ["node3"]
    assert "ask for a quota of at least 5" in str(short)
    assert "10.244.3.0/24 (node node3)" in str(short)
    # what fits is written: two routes in A, all three in B
    assert world.proxy.writes()["CreateRoute"] == 5
    assert "10.244.3.0/24" not in world.routes(world.table_a)
    assert world.routes(world.table_b)["10.244.3.0/24"] == world.instances["node3"]
    assert world.instance(world.instances["node3"])["SourceDestCheck"] is False  # B needs it
    ok = sync(world.provider(capacity=5), cluster)
    assert ok.ok
    assert ok.writes == 1


def test_a_full_table_still_takes_replacements_and_deletions(world: World) -> None:
    nodes = _nodes(world)
    assert sync(world.provider(capacity=5), world.cluster(*nodes)).ok  # table A: 5 of 5
    world.proxy.reset_counts()
    # node2's instance is replaced (same subnet, new instance), node3 leaves, node4 joins
    del world.instances["node2"]
    replaced = world.node("node2", 2)
    joined = world.node("node4", 4)
    result = sync(world.provider(capacity=5), world.cluster(nodes[0], replaced, joined))
    assert result.ok, (result.shortfalls, result.errors)
    assert world.routes(world.table_a)["10.244.2.0/24"] == world.instances["node2"]
    assert world.routes(world.table_a)["10.244.4.0/24"] == world.instances["node4"]
    assert "10.244.3.0/24" not in world.routes(world.table_a)
    # one more joiner does not fit table A: only it is left out, the rest is in sync
    fifth = world.node("node5", 5)
    result = sync(world.provider(capacity=5), world.cluster(nodes[0], replaced, joined, fifth))
    assert [r.node for s in result.shortfalls for r in s.overflow] == ["node5"]
    assert world.routes(world.table_b)["10.244.5.0/24"] == world.instances["node5"]


def test_throttling_and_server_errors_are_retried_and_converge(world: World) -> None:
    cluster = world.cluster(*_nodes(world))
    world.proxy.fail(2, "DescribeRouteTables", internal=True)
    world.proxy.fail(2, "CreateRoute")
    world.proxy.fail(1, "ModifyInstanceAttribute")
    provider = world.provider()
    result = sync(provider, cluster)
    assert result.ok, result.errors
    assert world.proxy.pending_failures == 0
    assert world.proxy.rejected == {
        "DescribeRouteTables": 2,
        "CreateRoute": 2,
        "ModifyInstanceAttribute": 1,
    }
    assert result.calls["retry:CreateRoute"] == 2
    assert result.calls["CreateRoute"] == 6
    assert world.proxy.actions["CreateRoute"] == 6
    for table in (world.table_a, world.table_b):
        assert world.routes(table)["10.244.2.0/24"] == world.instances["node2"]
    world.proxy.reset_counts()
    assert sync(provider, cluster).writes == 0
    assert world.proxy.writes() == {}


def test_dry_run_writes_nothing(world: World) -> None:
    cluster = world.cluster(*_nodes(world))
    result = sync(world.provider(), cluster, dry_run=True)
    assert [len(t.diff.add) for t in result.tables] == [3, 3]
    assert world.proxy.writes() == {}
    assert all(t.applied is None for t in result.tables)
    assert result.dry_run
    assert result.writes == 0


def test_no_tagged_table_is_an_error_naming_the_tag(world: World) -> None:
    cluster = Cluster((), (POD_CIDR,), name="nobody")
    with pytest.raises(CloudError, match=r"kubernetes.io/cluster/nobody"):
        sync(world.provider(), cluster)


# --- parsing (real EC2 answer shapes) ------------------------------------------------------
def test_blackhole_route_is_ours_and_gets_replaced() -> None:
    node = Node("n1", (ipaddress.ip_address("10.0.1.4"),), (ipaddress.ip_network("10.244.1.0/24"),))
    cluster = Cluster((node,), (POD_CIDR,), name=CLUSTER)
    raw = {
        "DestinationCidrBlock": "10.244.1.0/24",
        "NetworkInterfaceId": "eni-0a1b2c3d4e5f60718",
        "Origin": "CreateRoute",
        "State": "blackhole",
    }
    got = parse_route("rtb-1", raw, cluster, {"i-0123456789abcdef0": node}, set())
    assert got is not None
    assert got.owned
    assert got.via == ()
    d = diff([_want(node)], [got])
    assert len(d.change) == 1
    assert not d.conflicts
    # an active route to an interface nosdn did not set is someone else's
    active = {**raw, "State": "active"}
    got = parse_route("rtb-1", active, cluster, {}, set())
    assert got is not None
    assert not got.owned
    assert got.owner == "eni-0a1b2c3d4e5f60718"


def _want(node: Node) -> Any:
    from nosdn.model import ROUTER
    from nosdn.plan import desired_routes

    return desired_routes(Cluster((node,), (POD_CIDR,)), ROUTER)[0]


@pytest.mark.parametrize(
    ("value", "want"),
    [
        ("i-0123456789abcdef0", "i-0123456789abcdef0"),
        ("i-0123abcd", "i-0123abcd"),
        ("aws:///us-east-1a/i-0123456789abcdef0", "i-0123456789abcdef0"),
        ("aws://us-east-1a/i-0123456789abcdef0", None),
        ("i-xyz", None),
        ("node1", None),
    ],
)
def test_instance_ids_and_provider_ids(value: str, want: str | None) -> None:
    assert instance_of(value) == want


# --- the command line -------------------------------------------------------------------
def _inventory(tmp_path: Any, nodes: list[Node], extra: str = "") -> str:
    lines = [f"clusterName: {CLUSTER}", "clusterCIDRs: [10.244.0.0/16]", "nodes:"]
    for n in nodes:
        lines += [
            f"  - name: {n.name}",
            f"    ip: {n.ips[0]}",
            f"    podCIDR: {n.pod_cidrs[0]}",
            f"    instanceId: {n.instance_id}",
        ]
    path = tmp_path / "inventory.yaml"
    path.write_text("\n".join(lines) + "\n" + extra)
    return str(path)


def test_cli_plan_lists_each_create_per_table_and_writes_nothing(
    world: World, tmp_path: Any
) -> None:
    inv = _inventory(tmp_path, _nodes(world))
    res = _run("plan", "-f", inv, "--cloud", "aws", "--aws-endpoint", world.proxy.url)
    assert res.exit_code == 0, res.output
    for table in (world.table_a, world.table_b):
        line = f"+ create  {table}  10.244.2.0/24 -> {world.instances['node2']} (node node2)"
        assert line in res.output
        assert f"aws {table}: 3 to create, 0 to replace, 0 to delete" in res.output
    assert world.proxy.writes() == {}


def test_cli_apply_then_noop_in_json(world: World, tmp_path: Any) -> None:
    import json

    inv = _inventory(tmp_path, _nodes(world))
    args = ("apply", "-f", inv, "--cloud", "aws", "--aws-endpoint", world.proxy.url)
    first = _run(*args)
    assert first.exit_code == 0, first.output
    assert world.proxy.actions["CreateRoute"] == 6
    world.proxy.reset_counts()
    again = _run(*args, "-o", "json")
    assert again.exit_code == 0, again.output
    data = json.loads(again.output)
    assert data["apiCalls"] == {"DescribeRouteTables": 1}
    assert [t["inSync"] for t in data["tables"]] == [3, 3]
    assert world.proxy.writes() == {}


def test_cli_apply_over_capacity_exits_1_and_writes_only_what_fits(
    world: World, tmp_path: Any
) -> None:
    inv = _inventory(tmp_path, _nodes(world))
    res = _run(
        "apply", "-f", inv, "--cloud", "aws", "--aws-endpoint", world.proxy.url, "--capacity", "4"
    )
    assert res.exit_code == 1
    assert f"x refused: {world.table_a} would need 5 routes but holds at most 4" in res.output
    assert "1 new route(s) left out: 10.244.3.0/24 (node node3)" in res.output
    assert world.proxy.writes()["CreateRoute"] == 5
    assert "10.244.3.0/24" not in world.routes(world.table_a)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--cloud", "aws", "--node", "node1"), "--node is for this host's kernel table"),
        (("--aws-region", "us-east-1"), "--aws-region needs --cloud"),
        (("--cloud", "aws", "--route-table", "main"), "--route-table main: not a route table"),
        (("--cloud", "aws", "--gce-zone", "z"), "--gce-zone is for --cloud gce"),
    ],
)
def test_cli_refuses_options_of_the_other_mode(
    world: World, tmp_path: Any, args: tuple[str, ...], message: str
) -> None:
    inv = _inventory(tmp_path, _nodes(world, 1))
    res = _run("apply", "-f", inv, "--aws-endpoint", world.proxy.url, *args)
    assert res.exit_code == 2
    assert message in res.output
    assert world.proxy.actions == {}


def test_cli_apply_bad_instance_exits_2_before_any_write(world: World, tmp_path: Any) -> None:
    nodes = _nodes(world, 2)
    nodes[1] = Node(nodes[1].name, nodes[1].ips, nodes[1].pod_cidrs, "i-0123456789abcdef0")
    inv = _inventory(tmp_path, nodes)
    res = _run("apply", "-f", inv, "--cloud", "aws", "--aws-endpoint", world.proxy.url)
    assert res.exit_code == 2
    assert "node node2: instanceId i-0123456789abcdef0" in res.output
    assert "nothing was written" in res.output
    assert world.proxy.writes() == {}


def test_ipv6_pod_subnets(world: World) -> None:
    v6 = ipaddress.ip_network("fd00:244::/56")
    iid, ip = world.launch()
    node = Node(
        "node1",
        (ipaddress.ip_address(ip), ipaddress.ip_address("fd00:10::4")),
        (ipaddress.ip_network("10.244.1.0/24"), ipaddress.ip_network("fd00:244:0:1::/64")),
        iid,
    )
    cluster = Cluster((node,), (POD_CIDR, v6), name=CLUSTER)
    provider = world.provider()
    assert sync(provider, cluster).ok
    assert world.routes(world.table_a)["fd00:244:0:1::/64"] == iid
    world.proxy.reset_counts()
    assert sync(provider, cluster).writes == 0
    assert world.proxy.writes() == {}
    assert sync(provider, Cluster((), (POD_CIDR, v6), name=CLUSTER)).ok
    assert "fd00:244:0:1::/64" not in world.routes(world.table_a)


def test_cli_conflict_is_shown_by_plan_and_fails_apply(world: World, tmp_path: Any) -> None:
    peer = world.ec2.create_vpc(CidrBlock="10.1.0.0/16")["Vpc"]["VpcId"]
    pcx = world.ec2.create_vpc_peering_connection(VpcId=world.vpc, PeerVpcId=peer)[
        "VpcPeeringConnection"
    ]["VpcPeeringConnectionId"]
    world.ec2.create_route(
        RouteTableId=world.table_b, DestinationCidrBlock="10.244.1.0/24", VpcPeeringConnectionId=pcx
    )
    inv = _inventory(tmp_path, _nodes(world, 2))
    args = ("-f", inv, "--cloud", "aws", "--aws-endpoint", world.proxy.url)
    plan = _run("plan", *args)
    assert plan.exit_code == 0, plan.output
    assert f"! conflict {world.table_b} 10.244.1.0/24: routed by {pcx}, left alone" in plan.output
    applied = _run("apply", *args)
    assert applied.exit_code == 1
    assert world.routes(world.table_b)["10.244.1.0/24"] == pcx
    assert world.routes(world.table_a)["10.244.1.0/24"] == world.instances["node1"]


def test_region_from_aws_region(monkeypatch: pytest.MonkeyPatch) -> None:
    """AWS_REGION (what the AWS CLI v2 and EKS pods set) is read, not only botocore's
    AWS_DEFAULT_REGION; with neither, the error names both. No request is made."""
    for name in ("AWS_DEFAULT_REGION", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    assert AwsRoutes(AwsConfig()).client.meta.region_name == "eu-west-1"
    assert AwsRoutes(AwsConfig(region="us-east-2")).client.meta.region_name == "us-east-2"
    monkeypatch.delenv("AWS_REGION")
    with pytest.raises(CloudError, match="AWS_REGION \\(or AWS_DEFAULT_REGION"):
        AwsRoutes(AwsConfig())
