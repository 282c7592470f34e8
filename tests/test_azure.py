"""The Azure backend against a local fake of the ARM network API (tests/azure_fake.py).

No emulator exists for Azure networking, so `azure_fake.AzureFake` is a small server with ARM's
paths, JSON, ETags, ``If-Match`` and long-running operations; the backend talks to it through
the real azure-mgmt-network client with a static bearer token. Every test checks that no
request went anywhere but the configured endpoint: the fake records any request not addressed
to it, and the ``no_internet`` guard refuses (and fails the test on) anything off this machine.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from typing import Any

import pytest

from azure_fake import SUB, AzureFake, StaticToken, vm_id, vmss_id
from no_internet import no_internet
from nosdn.backends.cloud.azure import AzureConfig, AzureRoutes, instance_of
from nosdn.backends.cloud.contract import CloudError
from nosdn.backends.cloud.sync import sync
from nosdn.model import Cluster, Node
from nosdn.names import AZURE_NAME, azure_name_prefix, azure_route_name
from nosdn.problems import ProblemsError

__all__ = ["no_internet"]

pytestmark = pytest.mark.usefixtures("no_internet")

RG = "rg-nodes"
TABLE = "rt-nodes"
CLUSTER = "demo"
POD_CIDR = ipaddress.ip_network("10.244.0.0/16")


class World:
    def __init__(self, fake: AzureFake) -> None:
        self.fake = fake
        self.ips: dict[str, str] = {}
        fake.add_table(RG, TABLE)
        # the operator's own routes: a default route and one to an on-prem range
        fake.add_route(RG, TABLE, "to-internet", addressPrefix="0.0.0.0/0", nextHopType="Internet")
        fake.add_route(
            RG,
            TABLE,
            "onprem",
            addressPrefix="192.168.0.0/16",
            nextHopType="VirtualNetworkGateway",
        )

    def vm(self, name: str, ip: str, *, forwarding: bool = False) -> None:
        self.fake.add_nic(RG, f"{name}-nic", vm=vm_id(RG, name), ip=ip, forwarding=forwarding)
        self.ips[name] = ip

    def node(self, i: int, vm: str | None = None) -> Node:
        name = f"node{i}"
        machine = vm or name
        if machine not in self.ips:
            self.vm(machine, f"10.1.0.{10 + len(self.ips)}")
        return Node(
            name,
            (ipaddress.ip_address(self.ips[machine]),),
            (ipaddress.ip_network(f"10.244.{i}.0/24"),),
            vm,
        )

    def cluster(self, *nodes: Node) -> Cluster:
        return Cluster(tuple(nodes), (POD_CIDR,), name=CLUSTER)

    def routes(self, table: str = TABLE) -> dict[str, dict[str, Any]]:
        return self.fake.routes(RG, table)

    def pods(self, table: str = TABLE) -> dict[str, str]:
        """destination -> next hop address of every route to a pod subnet."""
        return {
            p["addressPrefix"]: p.get("nextHopIpAddress", p["nextHopType"])
            for p in self.routes(table).values()
            if p["addressPrefix"].startswith("10.244.")
        }

    def provider(self, *tables: str, **kw: Any) -> AzureRoutes:
        cfg = AzureConfig(
            SUB,
            RG,
            tables or (TABLE,),
            endpoint=self.fake.url,
            polling_interval=0.01,
            backoff=0.01,
            **kw,
        )
        return AzureRoutes(cfg, credential=StaticToken())


@pytest.fixture
def world() -> Iterator[World]:
    fake = AzureFake(page_limit=2)
    try:
        yield World(fake)
        assert fake.violations == [], "requests not addressed to the configured endpoint"
        assert all(path.startswith("/subscriptions/") for _, path in fake.log)
        assert all("api-version=" in path for _, path in fake.log)
    finally:
        fake.close()


def _three(w: World) -> list[Node]:
    return [w.node(i) for i in (1, 2, 3)]


# --- create, no-op, change, delete ---------------------------------------------------------
def test_first_pass_writes_the_table_once_and_turns_on_ip_forwarding(world: World) -> None:
    result = sync(world.provider(), world.cluster(*_three(world)))
    assert result.ok, (result.errors, result.problems, result.conflicts)
    for i in (1, 2, 3):
        r = world.routes()[f"demo_node{i}_10.244.{i}.0_24"]
        assert r["addressPrefix"] == f"10.244.{i}.0/24"
        assert r["nextHopType"] == "VirtualAppliance"
        assert r["nextHopIpAddress"] == world.ips[f"node{i}"]
    assert world.fake.writes() == {"put": 1, "put nic": 3}  # one table write for three routes
    assert result.writes == 3
    nics = world.fake.arm.nics
    assert all(n["properties"]["enableIPForwarding"] for n in nics.values())
    assert sum("turned on IP forwarding" in n for n in result.notes) == 3
    assert world.fake.counts["poll"] >= 4  # every PUT's operation was polled to the end


def test_second_pass_reads_the_table_once_and_writes_nothing(world: World) -> None:
    cluster = world.cluster(*_three(world))
    provider = world.provider()
    sync(provider, cluster)
    world.fake.reset_counts()
    again = sync(provider, cluster)
    assert dict(world.fake.counts) == {"get": 1}
    assert dict(again.calls) == {"routeTables.get": 1}
    assert len(again.tables[0].diff.keep) == 3
    assert again.writes == 0


def test_instance_replaced_is_one_table_write_with_the_new_address(world: World) -> None:
    provider = world.provider()
    n1, n2, n3 = _three(world)
    sync(provider, world.cluster(n1, n2, n3))
    before = {n: r for n, r in world.routes().items() if n != "demo_node2_10.244.2.0_24"}
    world.fake.reset_counts()
    moved = world.node(2, vm="node2-b")  # a new VM, a new address
    result = sync(provider, world.cluster(n1, moved, n3))
    assert result.ok, result.errors
    assert world.fake.writes() == {"put": 1, "put nic": 1}
    assert world.pods()["10.244.2.0/24"] == world.ips["node2-b"]
    after = world.routes()
    assert {n: after[n] for n in before} == before  # the others are untouched


def test_node_removed_its_route_is_deleted_and_only_it(world: World) -> None:
    provider = world.provider()
    n1, n2, n3 = _three(world)
    sync(provider, world.cluster(n1, n2, n3))
    world.fake.reset_counts()
    assert sync(provider, world.cluster(n1, n2)).ok
    assert world.fake.writes() == {"put": 1}
    assert "demo_node3_10.244.3.0_24" not in world.routes()
    assert {"to-internet", "onprem"} <= set(world.routes())


def test_two_tables_each_get_one_write_and_one_read(world: World) -> None:
    world.fake.add_table(RG, "rt-second")
    provider = world.provider(TABLE, "rt-second")
    cluster = world.cluster(*_three(world))
    result = sync(provider, cluster)
    assert result.ok
    assert (
        world.pods()
        == world.pods("rt-second")
        == {f"10.244.{i}.0/24": world.ips[f"node{i}"] for i in (1, 2, 3)}
    )
    assert result.calls["routeTables.createOrUpdate"] == 2
    world.fake.reset_counts()
    sync(provider, cluster)
    assert dict(world.fake.counts) == {"get": 2}


# --- never touching what is not ours --------------------------------------------------------
def test_foreign_routes_survive_every_pass_and_collisions_are_reported(world: World) -> None:
    hop = {"nextHopType": "VirtualAppliance", "nextHopIpAddress": "10.1.0.200"}
    foreign = {
        "firewall-to-pods": {"addressPrefix": "10.244.3.0/24", **hop},
        # another cluster's route to a pod subnet of ours
        "other_node2_10.244.2.0_24": {"addressPrefix": "10.244.2.0/24", **hop},
        # our prefix, but outside the cluster CIDRs: not ours
        "demo_by-hand": {"addressPrefix": "172.16.0.0/24", **hop},
        # a service tag
        "to-storage": {"addressPrefix": "Storage", "nextHopType": "Internet"},
    }
    for name, props in foreign.items():
        world.fake.add_route(RG, TABLE, name, **props)
    before = {n: world.routes()[n] for n in [*foreign, "to-internet", "onprem"]}
    provider = world.provider()
    cluster = world.cluster(*_three(world))
    for _ in range(2):
        result = sync(provider, cluster)
        found = {(str(c.wanted.dst), c.found.owner) for _, c in result.conflicts}
        assert found == {
            ("10.244.3.0/24", "route firewall-to-pods"),
            ("10.244.2.0/24", "route other_node2_10.244.2.0_24"),
        }
        assert not result.errors
        assert {n: world.routes()[n] for n in before} == before
        assert "demo_node1_10.244.1.0_24" in world.routes()
    world.fake.reset_counts()
    sync(provider, world.cluster())  # every node gone: only our one route goes
    assert world.fake.writes() == {"put": 1}
    assert {n: world.routes()[n] for n in before} == before
    assert set(world.routes()) == set(before)


def test_unknown_vm_is_refused_before_any_write(world: World) -> None:
    provider = world.provider()
    nodes = _three(world)
    ghost = Node(
        "node4",
        (ipaddress.ip_address("10.1.0.50"),),
        (ipaddress.ip_network("10.244.4.0/24"),),
        "ghost",
    )
    with pytest.raises(ProblemsError, match=r"node node4: instanceId .*virtualMachines/ghost"):
        sync(provider, world.cluster(*nodes, ghost), strict=True)
    assert world.fake.writes() == {}
    result = sync(provider, world.cluster(*nodes, ghost))
    assert [p.node for p in result.problems] == ["node4"]
    assert world.fake.writes() == {"put": 1, "put nic": 3}
    assert "10.244.4.0/24" not in world.pods()


def test_an_address_not_on_the_vms_nic_is_refused(world: World) -> None:
    n1 = world.node(1)
    wrong = Node("node1", (ipaddress.ip_address("10.1.0.99"),), n1.pod_cidrs, None)
    result = sync(world.provider(), world.cluster(wrong))
    [problem] = result.problems
    assert problem.field == "ip"
    assert "is not an address of NIC node1-nic" in problem.message
    assert world.pods() == {}


# --- capacity ---------------------------------------------------------------------------
def test_over_capacity_only_the_new_routes_that_do_not_fit_are_left_out(world: World) -> None:
    provider = world.provider(capacity=4)  # 2 routes exist; 3 more would make 5
    cluster = world.cluster(*_three(world))
    result = sync(provider, cluster, dry_run=True)
    [short] = result.shortfalls
    assert (short.needed, short.capacity) == (5, 4)
    assert [r.node for r in short.overflow] == ["node3"]
    assert "Routes per route table" in str(short)
    assert world.fake.writes() == {}  # a plan that does not fit is known before any write
    result = sync(provider, cluster)
    assert result.refused
    assert world.fake.writes() == {"put": 1, "put nic": 2}
    assert set(world.pods()) == {"10.244.1.0/24", "10.244.2.0/24"}
    assert sync(world.provider(capacity=5), cluster).ok
    assert set(world.pods()) == {f"10.244.{i}.0/24" for i in (1, 2, 3)}


def test_an_over_full_table_refused_by_azure_is_reported_and_nothing_changes(
    world: World,
) -> None:
    world.fake.route_limit = 3  # Azure's limit is lower than we were told
    result = sync(world.provider(), world.cluster(*_three(world)))
    assert {e.message.split(":")[0] for _, e in result.errors} == {
        "RouteTableRouteCountLimitReached"
    }
    assert world.pods() == {}


# --- concurrency, throttling ------------------------------------------------------------
def test_a_writer_between_read_and_write_412_re_read_and_its_route_survives(
    world: World,
) -> None:
    provider = world.provider()
    cluster = world.cluster(*_three(world))

    def other_writer() -> None:  # between our read and our write: the ETag changes
        world.fake.add_route(
            RG, TABLE, "ops-jump", addressPrefix="172.20.0.0/16", nextHopType="Internet"
        )
        world.fake.add_route(  # and someone takes a pod subnet meanwhile
            RG,
            TABLE,
            "hijack",
            addressPrefix="10.244.3.0/24",
            nextHopType="VirtualAppliance",
            nextHopIpAddress="10.1.0.250",
        )

    world.fake.on_next_put(other_writer)
    result = sync(provider, cluster)
    assert world.fake.rejected["412"] == 1
    assert result.calls["refused:412"] == 1
    assert world.fake.counts["put"] == 2  # the one refused, then one after a fresh read
    routes = world.routes()
    assert routes["ops-jump"]["addressPrefix"] == "172.20.0.0/16"
    assert routes["hijack"]["nextHopIpAddress"] == "10.1.0.250"  # never overwritten
    assert world.pods()["10.244.1.0/24"] == world.ips["node1"]
    [(_, err)] = result.errors
    assert str(err.dst) == "10.244.3.0/24"
    assert "taken by" in err.message
    again = sync(provider, cluster)  # the next pass sees it as a conflict
    assert [str(c.wanted.dst) for _, c in again.conflicts] == ["10.244.3.0/24"]
    assert again.writes == 0


def test_another_operation_in_progress_409_is_retried_and_converges(world: World) -> None:
    provider = world.provider()
    world.fake.busy(2)
    result = sync(provider, world.cluster(*_three(world)))
    assert result.ok, result.errors
    assert world.fake.rejected["busy"] == 2
    assert result.calls["refused:409"] == 2
    assert len(world.pods()) == 3


def test_a_table_that_stays_busy_is_a_failed_write_and_the_next_pass_converges(
    world: World,
) -> None:
    provider = world.provider(write_attempts=2)
    cluster = world.cluster(*_three(world))
    world.fake.busy(2)
    result = sync(provider, cluster)
    assert {e.message.split(":")[0] for _, e in result.errors} == {"AnotherOperationInProgress"}
    assert world.pods() == {}
    assert sync(provider, cluster).ok
    assert len(world.pods()) == 3


def test_throttling_and_server_errors_are_retried_and_converge(world: World) -> None:
    provider = world.provider()
    cluster = world.cluster(*_three(world))
    world.fake.fail(3, 429, retry_after="0")
    world.fake.fail(2, 503)
    result = sync(provider, cluster)
    assert result.ok, result.errors
    assert sum(world.fake.rejected.values()) == 5
    assert sum(n for op, n in result.calls.items() if op.startswith("retry:")) == 5
    world.fake.reset_counts()
    assert sync(provider, cluster).writes == 0
    assert world.fake.writes() == {}


def test_a_polling_url_off_the_endpoint_is_refused(world: World) -> None:
    world.fake.poll_base = "https://management.azure.com"
    result = sync(world.provider(), world.cluster(world.node(1, vm="vm1")))
    assert result.errors or any("could not turn on" in n for n in result.notes)
    assert any("refused a request off the endpoint" in n for n in result.notes)
    assert all("refused a request off the endpoint" in e.message for _, e in result.errors)


# --- credentials and bad input ---------------------------------------------------------
def test_a_wrong_token_is_one_line_naming_subscription_group_and_table(world: World) -> None:
    provider = AzureRoutes(
        AzureConfig(SUB, RG, (TABLE,), endpoint=world.fake.url, backoff=0.01),
        credential=StaticToken("expired"),
    )
    with pytest.raises(CloudError) as e:
        sync(provider, world.cluster(*_three(world)))
    msg = str(e.value)
    assert "\n" not in msg
    assert "authentication failed (StaticToken)" in msg
    assert f"subscription {SUB}, resource group {RG}, route table {TABLE}" in msg
    assert "AZURE_CLIENT_ID" in msg
    assert world.fake.writes() == {}


def test_a_credential_that_cannot_get_a_token_is_one_line(world: World) -> None:
    from azure.core.exceptions import ClientAuthenticationError

    class NoIdentity:
        def get_token(self, *_: Any, **__: Any) -> Any:
            raise ClientAuthenticationError("ManagedIdentityCredential: no managed identity\nmore")

    provider = AzureRoutes(
        AzureConfig(SUB, RG, (TABLE,), endpoint=world.fake.url), credential=NoIdentity()
    )
    with pytest.raises(CloudError, match=r"^Azure authentication failed \(NoIdentity\) .*"):
        sync(provider, world.cluster(*_three(world)))
    assert world.fake.counts == {}


@pytest.mark.parametrize(
    ("env", "want"),
    [
        ({}, "no credential found: no AZURE_TENANT_ID/AZURE_CLIENT_ID/AZURE_CLIENT_SECRET"),
        (
            {"AZURE_CLIENT_SECRET": "s", "AZURE_CLIENT_ID": "c"},
            "service principal: AZURE_CLIENT_SECRET is set but AZURE_TENANT_ID is not",
        ),
        (
            {"AZURE_CLIENT_CERTIFICATE_PATH": "/x.pem"},
            "AZURE_CLIENT_CERTIFICATE_PATH is set but AZURE_TENANT_ID and AZURE_CLIENT_ID are not",
        ),
        (
            {"AZURE_TENANT_ID": "t", "AZURE_CLIENT_ID": "c", "AZURE_CLIENT_SECRET": "s"},
            "service principal c in tenant t: check that its AZURE_CLIENT_SECRET is current",
        ),
        ({"AZURE_TENANT_ID": "t"}, "none of AZURE_CLIENT_SECRET, AZURE_CLIENT_CERTIFICATE_PATH"),
        ({"AZURE_CLIENT_ID": "c"}, "user-assigned identity c (AZURE_CLIENT_ID) assigned"),
        (
            {"AZURE_FEDERATED_TOKEN_FILE": "/var/run/t", "AZURE_CLIENT_ID": "c"},
            "workload identity: AZURE_FEDERATED_TOKEN_FILE is set but AZURE_TENANT_ID is not",
        ),
        (
            {
                "AZURE_FEDERATED_TOKEN_FILE": "/nonexistent/t",
                "AZURE_CLIENT_ID": "c",
                "AZURE_TENANT_ID": "t",
            },
            "the token file /nonexistent/t does not exist",
        ),
    ],
)
def test_the_credential_named_is_the_one_the_environment_points_at(
    env: dict[str, str], want: str
) -> None:
    from nosdn.backends.cloud.azure_auth import missing_credential

    assert want in missing_credential(env)


def test_a_half_configured_service_principal_is_one_line_naming_the_missing_variable(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    from azure.core.exceptions import ClientAuthenticationError

    for k in ("AZURE_TENANT_ID", "AZURE_FEDERATED_TOKEN_FILE", "AZURE_CLIENT_CERTIFICATE_PATH"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("AZURE_CLIENT_ID", "c")
    monkeypatch.setenv("AZURE_CLIENT_SECRET", "s")

    class Chain:  # DefaultAzureCredential's failure: a first line that names nothing
        def get_token(self, *_: Any, **__: Any) -> Any:
            raise ClientAuthenticationError(
                "DefaultAzureCredential failed to retrieve a token from the included "
                "credentials.\nAttempted credentials:\n\tEnvironmentCredential: ..."
            )

    provider = AzureRoutes(
        AzureConfig(SUB, RG, (TABLE,), endpoint=world.fake.url), credential=Chain()
    )
    with pytest.raises(CloudError) as e:
        sync(provider, world.cluster(*_three(world)))
    msg = str(e.value)
    assert "\n" not in msg
    assert f"subscription {SUB}, resource group {RG}, route table {TABLE}" in msg
    assert msg.endswith("AZURE_CLIENT_SECRET is set but AZURE_TENANT_ID is not")
    assert world.fake.counts == {}


def test_an_identity_without_the_role_is_told_the_action_and_the_role(world: World) -> None:
    cluster = world.cluster(*_three(world))
    world.fake.forbidden = {"Microsoft.Network/routeTables/read"}
    with pytest.raises(CloudError) as e:
        sync(world.provider(), cluster)
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.startswith(f"Azure refused reading the route table in subscription {SUB}")
    assert "AuthorizationFailed" in msg
    assert "'Microsoft.Network/routeTables/read'" in msg
    assert "Network Contributor" in msg
    world.fake.forbidden = {
        "Microsoft.Network/routeTables/write",
        "Microsoft.Network/networkInterfaces/write",
    }
    result = sync(world.provider(), cluster)
    assert world.pods() == {}
    assert len(result.errors) == 3
    assert all("Network Contributor" in err.message for _, err in result.errors)
    assert sum("could not turn on IP forwarding" in n for n in result.notes) == 3
    assert not any(n["properties"]["enableIPForwarding"] for n in world.fake.arm.nics.values())


def test_a_wrong_subscription_or_resource_group_is_named_as_such(world: World) -> None:
    other = "11111111-2222-3333-4444-555555555555"
    cases = [
        (AzureConfig(other, RG, (TABLE,)), f"no subscription {other} (SubscriptionNotFound)"),
        (
            AzureConfig(SUB, "rg-typo", (TABLE,)),
            f"no resource group rg-typo in subscription {SUB} (ResourceGroupNotFound)",
        ),
        (AzureConfig(SUB, RG, ("rg-typo/" + TABLE,)), "no resource group rg-typo"),
    ]
    for where, want in cases:
        cfg = AzureConfig(
            where.subscription, where.resource_group, where.route_tables, endpoint=world.fake.url
        )
        with pytest.raises(CloudError) as e:
            sync(AzureRoutes(cfg, credential=StaticToken()), world.cluster(*_three(world)))
        assert want in str(e.value)
    assert world.fake.writes() == {}


def test_a_missing_table_names_it_and_writes_nothing(world: World) -> None:
    with pytest.raises(CloudError, match=r"no route table nope in .*resource group rg-nodes"):
        sync(world.provider("nope"), world.cluster(*_three(world)))
    assert world.fake.writes() == {}


def test_plain_http_is_refused_off_loopback() -> None:
    with pytest.raises(CloudError, match="use https://"):
        AzureRoutes(AzureConfig(SUB, RG, (TABLE,), endpoint="http://management.azure.com"))


# --- names and references -----------------------------------------------------------------
@pytest.mark.parametrize(
    ("cluster", "node", "dst"),
    [
        ("demo", "node1", "10.244.1.0/24"),
        ("Prod.EU", "aks-nodepool1-12345678-vmss000000", "fd00:10:244:1::/64"),
        ("a_b", "n", "10.0.0.0/8"),
        ("c" * 70, "node" * 30, "10.244.1.0/24"),
        ("-x", "n\nx", "10.244.1.0/24"),
    ],
)
def test_route_names_are_valid_azure_names_with_the_cluster_prefix(
    cluster: str, node: str, dst: str
) -> None:
    name = azure_route_name(cluster, node, dst)
    assert AZURE_NAME.fullmatch(name)
    assert len(name) <= 80
    assert name.startswith(azure_name_prefix(cluster))


def test_cluster_prefixes_never_claim_each_other() -> None:
    names = ["a", "a-b", "a_b", "a.b", "ab", "A", "demo", "demo-1"]
    prefixes = {n: azure_name_prefix(n) for n in names}
    assert len(set(prefixes.values())) == len(names)
    for a, pa in prefixes.items():
        for b, pb in prefixes.items():
            if a != b:
                assert not pb.startswith(pa), (a, b)


@pytest.mark.parametrize(
    ("value", "want"),
    [
        ("vm-1", vm_id(RG, "vm-1")),
        ("azure://" + vm_id("other-rg", "vm-2"), vm_id("other-rg", "vm-2")),
        (
            "azure://" + vmss_id("mc_rg", "aks-pool-vmss", 3).lower(),  # ids are case-blind
            vmss_id("mc_rg", "aks-pool-vmss", 3),
        ),
        ("vm 1", None),
        ("vm-1\n", vm_id(RG, "vm-1")),  # stripped, as the other clouds' references are
        ("../../x", None),
    ],
)
def test_instance_references(value: str, want: str | None) -> None:
    got = instance_of(value, SUB, RG)
    assert (got.id if got else None) == want


def test_scale_set_instances_are_found_and_told_how_to_forward(world: World) -> None:
    vm = vmss_id(RG, "pool", 0)
    world.fake.add_nic(RG, "pool-nic", vm=vm, ip="10.1.0.40", scale_set="pool")
    node = Node(
        "vmss-node",
        (ipaddress.ip_address("10.1.0.40"),),
        (ipaddress.ip_network("10.244.7.0/24"),),
        "azure://" + vm,
    )
    result = sync(world.provider(), world.cluster(node))
    assert result.ok, result.problems
    assert world.pods() == {"10.244.7.0/24": "10.1.0.40"}
    assert any("scale set pool" in n and "enableIPForwarding" in n for n in result.notes)
    assert world.fake.writes() == {"put": 1}  # a scale-set NIC is not PUT


# --- the CLI ------------------------------------------------------------------------------
def test_cli_plan_and_apply(tmp_path: Any) -> None:
    """``nosdn plan|apply --cloud azure`` against a fake that wants no token: an http://
    loopback endpoint gets no credentials (DefaultAzureCredential is never asked)."""
    from cloud_cli import run

    fake = AzureFake(token=None)
    try:
        world = World(fake)
        nodes = [world.node(1), world.node(2)]
        # the third is a scale-set instance, named by its providerID (as AKS nodes are)
        vmss = vmss_id(RG.upper(), "aks-pool-vmss", 0)
        fake.add_nic(RG, "pool-nic", vm=vmss, ip="10.1.0.40", scale_set="aks-pool-vmss")
        nodes.append(
            Node(
                "node3",
                (ipaddress.ip_address("10.1.0.40"),),
                (ipaddress.ip_network("10.244.3.0/24"),),
                "azure://" + vmss,
            )
        )
        lines = ["clusterName: demo", "clusterCIDRs: [10.244.0.0/16]", "nodes:"]
        for n in nodes:
            lines += [f"  - name: {n.name}", f"    ip: {n.ips[0]}"]
            lines += [f"    podCIDR: {n.pod_cidrs[0]}"]
            if n.instance_id:
                lines += [f"    instanceId: {n.instance_id}"]
        inv = tmp_path / "inventory.yaml"
        inv.write_text("\n".join(lines) + "\n")
        args = ["-f", str(inv), "--cloud", "azure", "--azure-subscription", SUB]
        args += ["--azure-resource-group", RG, "--route-table", TABLE]
        args += ["--azure-endpoint", fake.url]
        plan = run("plan", *args)
        assert plan.exit_code == 0, plan.output
        assert f"+ create  {TABLE}  10.244.1.0/24 -> {vm_id(RG, 'node1')}" in plan.output
        assert f"+ create  {TABLE}  10.244.3.0/24 -> {vmss} (node node3)" in plan.output
        assert "5 of 400 routes after" in plan.output
        assert fake.writes() == {}
        small = run("plan", *args, "--capacity", "4")  # a plan that does not fit: named
        assert "x refused: rt-nodes would need 5 routes but holds at most 4" in small.output
        assert "'Routes per route table'" in small.output
        assert "--capacity 5" in small.output
        assert fake.writes() == {}
        applied = run("apply", *args)
        assert applied.exit_code == 0, applied.output
        assert fake.writes() == {"put": 1, "put nic": 2}  # a scale-set NIC is not PUT
        assert world.pods()["10.244.3.0/24"] == "10.1.0.40"
        assert "scale set aks-pool-vmss instance 0 (node node3)" in applied.output
        again = run("apply", *args)
        assert "0 to create, 0 to replace, 0 to delete, 3 in sync" in again.output
        assert "api calls: routeTables.get 1" in again.output
        assert fake.violations == []
    finally:
        fake.close()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "--cloud azure needs --azure-subscription"),
        (["--azure-subscription", "x"], "not a subscription id (a UUID)"),
        (["--azure-subscription", SUB], "--cloud azure needs --azure-resource-group"),
        (["--azure-subscription", SUB, "--azure-resource-group", "rg."], "not a resource group"),
        (["--azure-subscription", SUB, "--azure-resource-group", RG], "needs --route-table"),
        (
            ["--azure-subscription", SUB, "--azure-resource-group", RG, "--route-table", "a b"],
            "'a b' is not an Azure route table name",
        ),
        (["--aws-region", "us-east-1"], "--aws-region is for --cloud aws, not azure"),
    ],
)
def test_cli_refuses_bad_options_before_any_call(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch, args: list[str], message: str
) -> None:
    from cloud_cli import run

    for k in ("AZURE_SUBSCRIPTION_ID", "AZURE_RESOURCE_GROUP"):
        monkeypatch.delenv(k, raising=False)
    inv = tmp_path / "inventory.yaml"
    inv.write_text("clusterName: demo\nclusterCIDRs: [10.244.0.0/16]\nnodes: []\n")
    res = run("plan", "-f", str(inv), "--cloud", "azure", *args)
    assert res.exit_code == 2, res.output
    assert message in res.output, res.output
