"""The GCE backend against a local REST fake of the Compute API (tests/gce_fake.py).

No emulator exists for Compute Engine, so `gce_fake.GceFake` is a small server with the real
API's paths, JSON and operation behaviour; the backend talks to it through the real
google-cloud-compute REST clients. Every test checks that no request went anywhere but the
configured endpoint: the fake records any request not addressed to it, and the ``no_internet``
guard refuses (and fails the test on) any lookup or connection off this machine.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from typing import Any

import pytest

from gce_fake import GceFake, instance_url, network_url
from no_internet import no_internet
from nosdn.backends.cloud.gce import GceConfig, GceRoutes, name_prefix, route_name
from nosdn.backends.cloud.sync import sync
from nosdn.model import Cluster, Node
from nosdn.problems import ProblemsError
from nosdn.render.cloud import gce_route_name

__all__ = ["no_internet"]

pytestmark = pytest.mark.usefixtures("no_internet")

PROJECT = "proj"
ZONE = "us-central1-a"
CLUSTER = "demo"
POD_CIDR = ipaddress.ip_network("10.244.0.0/16")
GATEWAY = f"https://www.googleapis.com/compute/v1/projects/{PROJECT}/global/gateways/default-internet-gateway"


class World:
    def __init__(self, fake: GceFake) -> None:
        self.fake = fake
        self.ips: dict[str, str] = {}
        fake.project(PROJECT)
        net = network_url(PROJECT, "default")
        # routes every network has, named to sort before ours so ours are on later pages
        fake.add_route(
            PROJECT,
            {"name": "a-default-route", "network": net, "destRange": "0.0.0.0/0",
             "nextHopGateway": GATEWAY},
        )  # fmt: skip
        fake.add_route(
            PROJECT,
            {"name": "a-subnet-route", "network": net, "destRange": "10.128.0.0/20",
             "nextHopNetwork": net},
        )  # fmt: skip
        fake.add_route(
            PROJECT,
            {"name": "a-other-network", "network": network_url(PROJECT, "other"),
             "destRange": "10.244.1.0/24", "nextHopGateway": GATEWAY},
        )  # fmt: skip

    def instance(self, name: str, ip: str, *, can_ip_forward: bool = True) -> None:
        self.fake.add_instance(PROJECT, ZONE, name, ip=ip, can_ip_forward=can_ip_forward)
        self.ips[name] = ip

    def node(self, i: int, instance: str | None = None) -> Node:
        name = f"node{i}"
        inst = instance or name
        if inst not in self.ips:
            self.instance(inst, f"10.128.0.{10 + len(self.ips)}")
        return Node(
            name,
            (ipaddress.ip_address(self.ips[inst]),),
            (ipaddress.ip_network(f"10.244.{i}.0/24"),),
            instance,
        )

    def cluster(self, *nodes: Node) -> Cluster:
        return Cluster(tuple(nodes), (POD_CIDR,), name=CLUSTER)

    def routes(self) -> dict[str, dict[str, Any]]:
        return dict(self.fake.project(PROJECT).routes)

    def by_dst(self, network: str = "default") -> dict[str, str]:
        """destination -> route name, for one network."""
        return {
            r["destRange"]: r["name"]
            for r in self.routes().values()
            if r["network"].endswith(f"/networks/{network}")
        }

    def provider(self, **kw: Any) -> GceRoutes:
        cfg = GceConfig(
            project=PROJECT, zone=ZONE, endpoint=self.fake.url, backoff_initial=0.01, **kw
        )
        return GceRoutes(cfg)


@pytest.fixture
def world() -> Iterator[World]:
    fake = GceFake(page_limit=2)
    try:
        yield World(fake)
        assert fake.violations == [], "requests not addressed to the configured endpoint"
        assert all(path.startswith("/compute/v1/") for _, path in fake.log)
    finally:
        fake.close()


def _three(w: World) -> list[Node]:
    return [w.node(i) for i in (1, 2, 3)]


# --- create, no-op, change, delete ---------------------------------------------------------
def test_first_pass_creates_named_described_routes_to_the_instances(world: World) -> None:
    result = sync(world.provider(), world.cluster(*_three(world)))
    assert result.ok, (result.errors, result.problems, result.conflicts)
    for i in (1, 2, 3):
        name = f"demo-node{i}-10-244-{i}-0-24"
        r = world.routes()[name]
        assert r["destRange"] == f"10.244.{i}.0/24"
        assert r["nextHopInstance"] == instance_url(PROJECT, ZONE, f"node{i}")
        assert r["description"] == f"nosdn: pods of node node{i} in cluster demo"
        assert r["network"] == network_url(PROJECT, "default")
    assert world.fake.writes() == {"insert": 3}
    assert world.by_dst("other")["10.244.1.0/24"] == "a-other-network"


def test_second_pass_lists_every_page_and_writes_nothing(world: World) -> None:
    cluster = world.cluster(*_three(world))
    provider = world.provider()
    sync(provider, cluster)
    world.fake.reset_counts()
    again = sync(provider, cluster)
    # 6 routes at 2 a page: every page is read, and our routes are on the last two
    assert dict(world.fake.counts) == {"list": 3}
    assert dict(again.calls) == {"routes.list": 3}
    assert len(again.tables[0].diff.keep) == 3
    assert again.writes == 0


def test_instance_replaced_is_delete_then_insert_under_the_same_name(world: World) -> None:
    provider = world.provider()
    n1, n2, n3 = _three(world)
    sync(provider, world.cluster(n1, n2, n3))
    world.fake.reset_counts()
    moved = world.node(2, instance="node2-b")
    result = sync(provider, world.cluster(n1, moved, n3))
    assert result.ok
    assert world.fake.writes() == {"delete": 1, "insert": 1}
    r = world.routes()["demo-node2-10-244-2-0-24"]
    assert r["nextHopInstance"] == instance_url(PROJECT, ZONE, "node2-b")
    assert world.routes()["demo-node1-10-244-1-0-24"]["nextHopInstance"].endswith("/node1")


def test_route_to_a_deleted_instance_is_replaced(world: World) -> None:
    provider = world.provider()
    n1, n2, n3 = _three(world)
    sync(provider, world.cluster(n1, n2, n3))
    world.fake.delete_instance(PROJECT, ZONE, "node3")
    assert "warnings" in world.routes()["demo-node3-10-244-3-0-24"]
    result = sync(provider, world.cluster(n1, n2, world.node(3, instance="node3-new")))
    assert result.ok
    r = world.routes()["demo-node3-10-244-3-0-24"]
    assert r["nextHopInstance"].endswith("/node3-new")
    assert "warnings" not in r


def test_node_removed_its_route_is_deleted(world: World) -> None:
    provider = world.provider()
    n1, n2, n3 = _three(world)
    sync(provider, world.cluster(n1, n2, n3))
    world.fake.reset_counts()
    assert sync(provider, world.cluster(n1, n2)).ok
    assert world.fake.writes() == {"delete": 1}
    assert "demo-node3-10-244-3-0-24" not in world.routes()
    assert "a-default-route" in world.routes()


# --- never touching what is not ours --------------------------------------------------------
def test_foreign_routes_survive_every_pass_and_collisions_are_reported(world: World) -> None:
    net = network_url(PROJECT, "default")
    foreign = {
        "peering-to-pods": {
            "destRange": "10.244.3.0/24",
            "nextHopPeering": "peering-1",
        },
        "other-node2-10-244-2-0-24": {
            "destRange": "10.244.2.0/24",
            "nextHopInstance": instance_url(PROJECT, ZONE, "theirs"),
            "description": "nosdn: pods of node node2 in cluster other",
        },
        # our name prefix but not our description: made by hand, not ours
        "demo-by-hand": {"destRange": "10.244.9.0/24", "nextHopIp": "10.128.0.99"},
        # our description but not our name prefix: not ours either
        "copied-demo-node5": {
            "destRange": "10.244.5.0/24",
            "nextHopIp": "10.128.0.98",
            "description": "nosdn: pods of node node5 in cluster demo",
        },
    }
    for name, body in foreign.items():
        world.fake.add_route(PROJECT, {"name": name, "network": net, **body})
    before = {n: dict(world.routes()[n]) for n in foreign}
    provider = world.provider()
    cluster = world.cluster(*_three(world))
    for _ in range(2):
        result = sync(provider, cluster)
        found = {(str(c.wanted.dst), c.found.owner) for _, c in result.conflicts}
        assert found == {
            ("10.244.3.0/24", "route peering-to-pods"),
            ("10.244.2.0/24", "route other-node2-10-244-2-0-24"),
        }
        assert not result.errors
        assert {n: world.routes()[n] for n in foreign} == before
        assert "demo-node1-10-244-1-0-24" in world.routes()
    world.fake.reset_counts()
    sync(provider, world.cluster())  # every node gone: only our one route goes
    assert world.fake.writes() == {"delete": 1}
    assert {n: world.routes()[n] for n in foreign} == before
    assert "a-default-route" in world.routes()


def test_unknown_instance_is_refused_before_any_write(world: World) -> None:
    provider = world.provider()
    nodes = _three(world)
    ghost = Node("node4", (ipaddress.ip_address("10.128.0.50"),), (
        ipaddress.ip_network("10.244.4.0/24"),
    ), "us-central1-a/ghost")  # fmt: skip
    with pytest.raises(ProblemsError, match=r"node node4: instanceId us-central1-a/ghost"):
        sync(provider, world.cluster(*nodes, ghost), strict=True)
    assert world.fake.writes() == {}
    result = sync(provider, world.cluster(*nodes, ghost))
    assert [p.node for p in result.problems] == ["node4"]
    assert world.fake.writes() == {"insert": 3}


def test_ip_forwarding_off_is_reported(world: World) -> None:
    world.instance("node1", "10.128.0.5", can_ip_forward=False)
    result = sync(world.provider(), world.cluster(world.node(1)))
    assert any("IP forwarding off" in n and "node1" in n for n in result.notes)


# --- limits -----------------------------------------------------------------------------
def test_over_quota_only_the_new_routes_that_do_not_fit_are_left_out(world: World) -> None:
    world.fake.project(PROJECT).routes_quota = 5  # 3 routes exist; 3 more would make 6
    provider = world.provider()
    cluster = world.cluster(*_three(world))
    result = sync(provider, cluster)
    assert result.refused
    [short] = result.shortfalls
    assert (short.needed, short.capacity) == (6, 5)
    assert [r.node for r in short.overflow] == ["node3"]
    assert "ROUTES" in str(short)
    assert world.fake.writes() == {"insert": 2}
    world.fake.project(PROJECT).routes_quota = 6
    assert sync(provider, cluster).ok
    assert world.fake.writes() == {"insert": 3}


def test_operation_errors_are_reported_and_the_next_pass_converges(world: World) -> None:
    world.fake.project(PROJECT).routes_quota = 4  # the check is told otherwise: ops fail
    provider = world.provider(capacity=100)
    cluster = world.cluster(*_three(world))
    result = sync(provider, cluster)
    assert result.writes == 1
    assert [e.message.split(":")[0] for _, e in result.errors] == ["QUOTA_EXCEEDED"] * 2
    world.fake.project(PROJECT).routes_quota = 100
    assert sync(provider, cluster).writes == 2
    assert sync(provider, cluster).writes == 0


def test_rate_limits_and_server_errors_are_retried_and_converge(world: World) -> None:
    provider = world.provider()
    cluster = world.cluster(*_three(world))
    world.fake.fail(3, 429)
    world.fake.fail(2, 503)
    result = sync(provider, cluster)
    assert result.ok, result.errors
    assert sum(world.fake.rejected.values()) == 5
    assert sum(n for op, n in result.calls.items() if op.startswith("retry:")) == 5
    assert world.fake.writes() == {"insert": 3}  # a retried insert is never made twice
    world.fake.reset_counts()
    assert sync(provider, cluster).writes == 0
    assert world.fake.writes() == {}


# --- names ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("cluster", "node", "dst"),
    [
        ("demo", "node1", "10.244.1.0/24"),
        ("Prod.EU", "ip-10-0-1-4.eu-west-1.compute.internal", "fd00:10:244:1::/64"),
        ("1st", "n", "10.0.0.0/8"),
        ("c" * 70, "node", "10.244.1.0/24"),
    ],
)
def test_route_names_match_the_renderer_and_keep_the_prefix(
    cluster: str, node: str, dst: str
) -> None:
    name = route_name(cluster, node, dst)
    assert name == gce_route_name(cluster, node, dst)
    assert len(name) <= 63
    assert name.startswith(name_prefix(cluster))


def test_the_guard_refuses_the_real_endpoint(no_internet: list[str]) -> None:
    import socket

    with pytest.raises(OSError, match="test guard"):
        socket.create_connection(("compute.googleapis.com", 443), timeout=1)
    assert no_internet == ["resolve compute.googleapis.com"]
    no_internet.clear()  # seen and expected: the guard's teardown check would fail otherwise


def test_cli_plan_and_apply(world: World, tmp_path: Any) -> None:
    from cloud_cli import run

    nodes = _three(world)
    lines = ["clusterName: demo", "clusterCIDRs: [10.244.0.0/16]", "nodes:"]
    for n in nodes:
        lines += [f"  - name: {n.name}", f"    ip: {n.ips[0]}", f"    podCIDR: {n.pod_cidrs[0]}"]
    inv = tmp_path / "inventory.yaml"
    inv.write_text("\n".join(lines) + "\n")
    args = ["-f", str(inv), "--cloud", "gce", "--gce-project", PROJECT, "--gce-zone", ZONE]
    args += ["--gce-endpoint", world.fake.url]
    plan = run("plan", *args)
    assert plan.exit_code == 0, plan.output
    assert "+ create  network/default  10.244.1.0/24 -> projects/proj/zones/" in plan.output
    assert world.fake.writes() == {}
    applied = run("apply", *args)
    assert applied.exit_code == 0, applied.output
    assert world.fake.writes() == {"insert": 3}
    again = run("apply", *args)
    assert "0 to create, 0 to replace, 0 to delete, 3 in sync" in again.output
    assert "api calls: routes.list 3" in again.output


@pytest.mark.parametrize(
    ("instance_id", "want"),
    [
        (None, "projects/proj/zones/us-central1-a/instances/node1"),
        ("vm-1", "projects/proj/zones/us-central1-a/instances/vm-1"),
        ("europe-west1-b/vm-1", "projects/proj/zones/europe-west1-b/instances/vm-1"),
        ("gce://other/europe-west1-b/vm-1", "projects/other/zones/europe-west1-b/instances/vm-1"),
        (
            "https://www.googleapis.com/compute/v1/projects/p2/zones/z1/instances/vm-2",
            "projects/p2/zones/z1/instances/vm-2",
        ),
        ("Not_A_Name", None),
    ],
)
def test_instance_references(world: World, instance_id: str | None, want: str | None) -> None:
    node = Node("node1", (ipaddress.ip_address("10.128.0.2"),), (), instance_id)
    got = world.provider().instance_path(node)
    if want is None:
        assert not isinstance(got, str)
        assert got.field == "instanceId"
        assert "not a GCE instance name" in got.message
    else:
        assert got == want
