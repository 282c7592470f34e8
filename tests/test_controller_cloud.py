"""The cloud route controller against real APIs on 127.0.0.1: the `kmock` Kubernetes emulator
(as a process, tests/kmockd.py), ``moto_server`` for EC2 and the GCE Compute fake.

Each replica is a whole `nosdn.controller.run.Running` (node watch, Lease elector, HTTP server,
condition and event writers, loop) in a thread of this process, built from its config exactly as
``nosdn controller`` builds it, and talks to EC2 through its own counting proxy
(`aws_moto.Ec2Proxy`): what a replica sent to the cloud is counted outside the replica, so "only
the leader writes" and "nothing was written" are measured, not reported. Lease timings are
short (3 s lease, 2 s renew deadline, 0.5 s retry) so takeovers happen within a test.

kmock has no resourceVersion, so the Lease's compare-and-swap is not enforced there (see
`nosdn.sources.leader`); the replicas here start one after the other, never racing for a free
Lease in the same instant. The ``no_internet`` guard fails any test whose SDKs try to leave this
machine.
"""

from __future__ import annotations

import ipaddress
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from agent_env import Emulator, http_request, node_object, wait_until
from aws_moto import FAKE_ENV, Ec2Proxy, free_port, moto_server, reset_moto
from gce_fake import GceFake, instance_url, network_url
from no_internet import no_internet
from nosdn.backends.cloud.aws import CLUSTER_TAG
from nosdn.backends.cloud.factory import Cloud, CloudOptions
from nosdn.controller.config import ControllerConfig
from nosdn.controller.run import Running, lease_settings
from nosdn.sources.kubernetes import KubeApi, KubeSettings

__all__ = ["no_internet"]

pytestmark = pytest.mark.usefixtures("no_internet")

CLUSTER = "demo"
POD_CIDR = ipaddress.ip_network("10.244.0.0/16")
LEASE = "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/nosdn-controller"
TIMING: dict[str, Any] = {
    "lease_duration": 3.0,
    "renew_deadline": 2.0,
    "retry_period": 0.5,
    "resync": 1.0,
    "watch_timeout": 5,
}


# --- the replicas ------------------------------------------------------------------------------
class Replica:
    """One controller replica in a thread of this process."""

    def __init__(self, name: str, api_url: str, cloud: CloudOptions, **cfg: Any) -> None:
        self.name = name
        config = ControllerConfig(
            cloud,
            (POD_CIDR,),
            cluster_name=CLUSTER,
            identity=name,
            metrics_address="127.0.0.1:0",
            **{**TIMING, **cfg},
        )
        settings = KubeSettings(server=api_url)
        self.running = Running(config, KubeApi(settings), KubeApi(lease_settings(settings, config)))
        self.thread = threading.Thread(target=self.running.run, name=f"replica-{name}", daemon=True)

    def start(self) -> Replica:
        self.thread.start()
        return self

    def stop(self, *, crash: bool = False) -> None:
        """A clean stop releases the Lease; a crash leaves it to expire."""
        if not self.thread.is_alive():
            return
        if crash:
            self.running.elector.release = lambda: None  # type: ignore[method-assign]
        self.running.stop()
        self.thread.join(timeout=20)
        assert not self.thread.is_alive(), f"replica {self.name} did not stop"

    def leads(self) -> bool:
        return self.running.elector.holds()

    def get(self, path: str) -> tuple[int, str]:
        assert self.running.server is not None
        status, body = http_request(None, self.running.server.port, "GET", path, timeout=5)
        return status, body.decode()

    def metric(self, name: str) -> float:
        _, text = self.get("/metrics")
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith(name) and line[len(name)] in " {"
        )


@pytest.fixture
def replicas() -> Iterator[list[Replica]]:
    made: list[Replica] = []
    try:
        yield made
    finally:
        for r in made:
            r.stop()


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[Emulator]:
    emu = Emulator(None, host="127.0.0.1", port=free_port(), workdir=tmp_path).start([])
    try:
        yield emu
    finally:
        emu.kill()


def holder(emu: Emulator) -> str:
    try:
        return str(emu.call("GET", LEASE)["spec"].get("holderIdentity") or "")
    except RuntimeError:
        return ""


def condition(emu: Emulator, node: str) -> tuple[str, str] | None:
    for c in emu.node(node).get("status", {}).get("conditions") or ():
        if c.get("type") == "NetworkUnavailable":
            return c["status"], c["reason"]
    return None


# --- the AWS world -----------------------------------------------------------------------------
@pytest.fixture(scope="session")
def moto_url() -> Iterator[str]:
    with pytest.MonkeyPatch.context() as mp:
        for k, v in FAKE_ENV.items():
            mp.setenv(k, v)
        with moto_server() as url:
            yield url


@dataclass
class Aws:
    """A VPC in moto with two route tables tagged for the cluster (A holds the internet
    gateway's default route) and one untagged; a counting proxy per replica."""

    ec2: Any
    url: str
    subnet: str
    igw: str
    table_a: str
    table_b: str
    untagged: str
    proxies: list[Ec2Proxy] = field(default_factory=list)
    instances: dict[str, str] = field(default_factory=dict)

    def proxy(self) -> Ec2Proxy:
        p = Ec2Proxy(self.url)
        self.proxies.append(p)
        return p

    def options(self, proxy: Ec2Proxy) -> CloudOptions:
        return CloudOptions(Cloud.aws, aws_region="us-east-1", aws_endpoint=proxy.url)

    def node(self, i: int) -> dict[str, Any]:
        """A Node object for a new instance: InternalIP and providerID from EC2."""
        inst = self.ec2.run_instances(
            ImageId="ami-12c6146b", MinCount=1, MaxCount=1, SubnetId=self.subnet
        )["Instances"][0]
        name = f"node{i}"
        self.instances[name] = inst["InstanceId"]
        obj = node_object(name, [inst["PrivateIpAddress"]], [f"10.244.{i}.0/24"])
        obj["spec"]["providerID"] = f"aws:///us-east-1a/{inst['InstanceId']}"
        return obj

    def routes(self, table: str) -> dict[str, str]:
        """destination -> target of every route in a table, read straight from moto."""
        rt = self.ec2.describe_route_tables(RouteTableIds=[table])["RouteTables"][0]
        out: dict[str, str] = {}
        for r in rt["Routes"]:
            dst = r.get("DestinationCidrBlock") or r.get("DestinationIpv6CidrBlock")
            out[dst] = next(r[k] for k in ("InstanceId", "GatewayId") if r.get(k))
        return out

    def pod_routes(self, table: str) -> dict[str, str]:
        return {d: t for d, t in self.routes(table).items() if d.startswith("10.244.")}

    def wanted(self, *ids: int) -> dict[str, str]:
        return {f"10.244.{i}.0/24": self.instances[f"node{i}"] for i in ids}


@pytest.fixture
def aws(moto_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Aws]:
    import boto3

    for k, v in FAKE_ENV.items():
        monkeypatch.setenv(k, v)
    reset_moto(moto_url)
    ec2 = boto3.client("ec2", endpoint_url=moto_url, region_name="us-east-1")
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
    igw = ec2.create_internet_gateway()["InternetGateway"]["InternetGatewayId"]
    ec2.attach_internet_gateway(InternetGatewayId=igw, VpcId=vpc)
    spec = [
        {
            "ResourceType": "route-table",
            "Tags": [{"Key": CLUSTER_TAG.format(CLUSTER), "Value": "owned"}],
        }
    ]
    a = ec2.create_route_table(VpcId=vpc, TagSpecifications=spec)["RouteTable"]["RouteTableId"]
    b = ec2.create_route_table(VpcId=vpc, TagSpecifications=spec)["RouteTable"]["RouteTableId"]
    other = ec2.create_route_table(VpcId=vpc)["RouteTable"]["RouteTableId"]
    ec2.create_route(RouteTableId=a, DestinationCidrBlock="0.0.0.0/0", GatewayId=igw)
    world = Aws(ec2, moto_url, subnet, igw, a, b, other)
    try:
        yield world
    finally:
        for p in world.proxies:
            p.close()


def converged(aws: Aws, *ids: int) -> bool:
    want = aws.wanted(*ids)
    return aws.pod_routes(aws.table_a) == want and aws.pod_routes(aws.table_b) == want


# --- tests -------------------------------------------------------------------------------------
def test_routes_in_every_tagged_table_route_created_and_only_the_leader_writes(
    aws: Aws, emulator: Emulator, replicas: list[Replica]
) -> None:
    for i in (1, 2, 3):
        emulator.create_node(aws.node(i))
    # someone else's route to node3's subnet in table B: a conflict, reported, never touched
    aws.ec2.create_route(
        RouteTableId=aws.table_b, DestinationCidrBlock="10.244.3.0/24", GatewayId=aws.igw
    )
    pa, pb = aws.proxy(), aws.proxy()
    a = Replica("ctl-a", emulator.url, aws.options(pa)).start()
    replicas.append(a)
    wait_until(lambda: holder(emulator) == "ctl-a", 10, what="ctl-a leads")
    b = Replica("ctl-b", emulator.url, aws.options(pb)).start()
    replicas.append(b)

    wait_until(lambda: aws.pod_routes(aws.table_a) == aws.wanted(1, 2, 3), 15, what="table A")
    wait_until(
        lambda: all(condition(emulator, f"node{i}") == ("False", "RouteCreated") for i in (1, 2)),
        10,
        what="RouteCreated on node1 and node2",
    )
    wait_until(
        lambda: condition(emulator, "node3") == ("True", "NosdnRouteConflict"), 10, what="node3"
    )
    assert aws.pod_routes(aws.table_b) == {**aws.wanted(1, 2), "10.244.3.0/24": aws.igw}
    assert aws.routes(aws.table_a)["0.0.0.0/0"] == aws.igw
    assert not aws.pod_routes(aws.untagged)
    events = [e for e in emulator.events() if e.get("reason") == "RouteConflict"]
    assert events
    assert events[0]["involvedObject"]["name"] == "node3"
    assert events[0]["source"]["component"] == "nosdn-controller"

    wait_until(lambda: b.running.cache.snapshot().synced, 10, what="the follower's cache")
    time.sleep(3 * TIMING["resync"])  # several resyncs of both replicas
    assert pa.writes()["CreateRoute"] == 5
    assert pb.actions == {}  # the follower never called the cloud, not even to read
    assert a.metric("nosdn_controller_leader") == 1
    assert b.metric("nosdn_controller_leader") == 0
    assert b.get("/readyz") == (200, "standby (cache synced)\n")
    assert a.get("/healthz")[0] == 200
    assert a.metric("nosdn_route_conflicts") == 1
    pa.reset_counts()
    time.sleep(2 * TIMING["resync"])
    assert pa.writes() == {}  # in sync: resyncs only read
    assert pa.actions["DescribeRouteTables"] >= 1


@pytest.mark.parametrize("crash", [False, True], ids=["clean-stop", "crash"])
def test_the_other_replica_takes_over_within_the_lease_duration(
    aws: Aws, emulator: Emulator, replicas: list[Replica], crash: bool
) -> None:
    for i in (1, 2):
        emulator.create_node(aws.node(i))
    pa, pb = aws.proxy(), aws.proxy()
    a = Replica("ctl-a", emulator.url, aws.options(pa)).start()
    replicas.append(a)
    wait_until(lambda: converged(aws, 1, 2), 15, what="ctl-a converges")
    b = Replica("ctl-b", emulator.url, aws.options(pb)).start()
    replicas.append(b)
    wait_until(lambda: b.running.cache.snapshot().synced, 10, what="the follower's cache")
    assert holder(emulator) == "ctl-a"

    a.stop(crash=crash)
    stopped = time.monotonic()
    writes_a = sum(pa.writes().values())
    emulator.create_node(aws.node(3))
    wait_until(b.leads, TIMING["lease_duration"] + 3, interval=0.05, what="ctl-b leads")
    took = time.monotonic() - stopped
    wait_until(lambda: converged(aws, 1, 2, 3), 10, what="ctl-b converges")
    wait_until(lambda: condition(emulator, "node3") == ("False", "RouteCreated"), 10, what="node3")
    assert holder(emulator) == "ctl-b"
    limit = TIMING["lease_duration"] + 2 * TIMING["retry_period"] if crash else 2.0
    assert took < limit, f"took over after {took:.1f} s"
    assert sum(pa.writes().values()) == writes_a  # the old leader wrote nothing more
    assert pb.writes()["CreateRoute"] == 2  # node3's route, in both tables


def test_a_deleted_node_loses_its_route_and_nothing_else_changes(
    aws: Aws, emulator: Emulator, replicas: list[Replica]
) -> None:
    for i in (1, 2, 3):
        emulator.create_node(aws.node(i))
    p = aws.proxy()
    replicas.append(Replica("ctl-a", emulator.url, aws.options(p)).start())
    wait_until(lambda: converged(aws, 1, 2, 3), 15, what="converged")
    p.reset_counts()
    emulator.delete_node("node2")
    wait_until(lambda: converged(aws, 1, 3), 10, what="node2's routes removed")
    time.sleep(2 * TIMING["resync"])
    assert p.writes() == {"DeleteRoute": 2}
    assert aws.routes(aws.table_a)["0.0.0.0/0"] == aws.igw


def test_one_bad_node_object_moves_no_route_in_the_tables(
    aws: Aws, emulator: Emulator, replicas: list[Replica]
) -> None:
    for i in (1, 2, 3):
        emulator.create_node(aws.node(i))
    p = aws.proxy()
    replicas.append(Replica("ctl-a", emulator.url, aws.options(p)).start())
    wait_until(lambda: converged(aws, 1, 2, 3), 15, what="converged")
    p.reset_counts()
    # a real instance, a name sorting first, and the whole cluster CIDR as its subnet
    cover = aws.node(9)
    cover["metadata"]["name"] = "a-cover"
    cover["spec"]["podCIDRs"] = ["10.244.0.0/16"]
    cover["spec"]["podCIDR"] = "10.244.0.0/16"
    emulator.create_node(cover)
    wait_until(
        lambda: condition(emulator, "a-cover") == ("True", "NosdnInvalidNode"),
        10,
        what="the newcomer flagged",
    )
    time.sleep(2 * TIMING["resync"])
    assert converged(aws, 1, 2, 3)
    assert p.writes() == {}
    assert condition(emulator, "node2") == ("False", "RouteCreated")


def test_a_new_node_claiming_an_instance_is_flagged_never_the_established_one(
    aws: Aws, emulator: Emulator, replicas: list[Replica]
) -> None:
    for i in (1, 2):
        emulator.create_node(aws.node(i))
    p = aws.proxy()
    replicas.append(Replica("ctl-a", emulator.url, aws.options(p)).start())
    wait_until(lambda: converged(aws, 1, 2), 15, what="converged")
    wait_until(lambda: condition(emulator, "node2") == ("False", "RouteCreated"), 10, what="node2")
    p.reset_counts()
    # a Node object left over (or forged) for node2's instance, under a name sorting first
    ghost = node_object("a-ghost", ["10.0.1.250"], ["10.244.9.0/24"])
    ghost["spec"]["providerID"] = f"aws:///us-east-1a/{aws.instances['node2']}"
    emulator.create_node(ghost)
    wait_until(
        lambda: condition(emulator, "a-ghost") == ("True", "NosdnInvalidNode"),
        10,
        what="the newcomer flagged",
    )
    time.sleep(2 * TIMING["resync"])
    assert condition(emulator, "node2") == ("False", "RouteCreated")
    assert converged(aws, 1, 2)
    assert p.writes() == {}
    skipped = [e for e in emulator.events() if e.get("reason") == "NodeSkipped"]
    assert [e["involvedObject"]["name"] for e in skipped] == ["a-ghost"]
    assert "is also node node2's instance" in skipped[0]["message"]


def test_a_burst_of_deletions_is_held_beyond_the_share_until_released(
    aws: Aws, emulator: Emulator, replicas: list[Replica]
) -> None:
    for i in range(1, 21):
        emulator.create_node(aws.node(i))
    p = aws.proxy()
    a = Replica("ctl-a", emulator.url, aws.options(p), deletion_hold=300.0).start()
    replicas.append(a)
    wait_until(lambda: converged(aws, *range(1, 21)), 30, what="20 routes in both tables")
    for i in range(3, 21):  # 90% of the nodes gone within milliseconds
        emulator.delete_node(f"node{i}")
    wait_until(lambda: a.metric("nosdn_deletions_held") > 0, 15, what="removals held")
    time.sleep(3 * TIMING["resync"])
    for table in (aws.table_a, aws.table_b):
        left = len(aws.pod_routes(table))
        assert left >= 10, f"{table}: {20 - left} of 20 routes removed, beyond the share of 50%"
        assert aws.wanted(1, 2).items() <= aws.pod_routes(table).items()
    events = [e for e in emulator.events() if e.get("reason") == "RouteDeletionsRefused"]
    assert events
    assert "nosdn.io/release-deletions" in events[0]["message"]
    emulator.call(
        "PATCH",
        LEASE,
        {"metadata": {"annotations": {"nosdn.io/release-deletions": "1"}}},
        "application/merge-patch+json",
    )
    wait_until(lambda: converged(aws, 1, 2), 15, what="released removals")
    wait_until(lambda: a.metric("nosdn_deletions_held") == 0, 5, what="no removal held")


def test_a_silent_api_is_noticed_within_the_watch_deadline(
    aws: Aws, emulator: Emulator, replicas: list[Replica]
) -> None:
    emulator.create_node(aws.node(1))
    p = aws.proxy()
    r = Replica(
        "ctl-a", emulator.url, aws.options(p), watch_deadline=3.0, renew_deadline=30.0,
        lease_duration=40.0,
    ).start()  # fmt: skip
    replicas.append(r)
    wait_until(lambda: converged(aws, 1), 15, what="converged")
    wait_until(lambda: r.get("/readyz")[0] == 200, 10, what="ready")
    emulator.pause()  # SIGSTOP: the connection stays open, nothing comes
    try:
        stopped = time.monotonic()
        wait_until(lambda: r.get("/readyz")[0] == 503, 10, 0.1, what="not ready")
        took = time.monotonic() - stopped
        assert took < 3.0 + 2 * TIMING["resync"] + 1, took
        assert "unreachable" in r.get("/readyz")[1]
        wait_until(lambda: r.metric("nosdn_api_connected") == 0, 5, what="disconnected")
    finally:
        emulator.resume()
    wait_until(lambda: r.get("/readyz")[0] == 200, 20, what="ready again")
    assert r.metric("nosdn_api_connected") == 1


def test_no_writes_while_the_kubernetes_api_is_away(
    aws: Aws, emulator: Emulator, replicas: list[Replica]
) -> None:
    for i in (1, 2):
        emulator.create_node(aws.node(i))
    p = aws.proxy()
    r = Replica("ctl-a", emulator.url, aws.options(p)).start()
    replicas.append(r)
    wait_until(lambda: converged(aws, 1, 2), 15, what="converged")
    emulator.pause()  # SIGSTOP: connections hang, nothing answers
    try:
        wait_until(lambda: not r.leads(), TIMING["renew_deadline"] + 3, what="no lease")
        p.reset_counts()
        aws.ec2.delete_route(RouteTableId=aws.table_a, DestinationCidrBlock="10.244.1.0/24")
        time.sleep(max(TIMING["lease_duration"], 4 * TIMING["resync"]))
        assert p.actions == {}  # not even a read
        assert "10.244.1.0/24" not in aws.routes(aws.table_a)
        assert r.get("/healthz")[0] == 200  # the loop is alive, only waiting
    finally:
        emulator.resume()
    wait_until(lambda: converged(aws, 1, 2), 20, what="repaired once the API is back")
    assert p.writes()["CreateRoute"] == 1


# --- GCE -----------------------------------------------------------------------------------------
def test_gce_routes_named_for_the_cluster_and_route_created(
    emulator: Emulator, replicas: list[Replica]
) -> None:
    """The GCE fake (no Compute emulator exists, see tests/gce_fake.py) behind one replica."""
    project, zone = "proj", "us-central1-a"
    fake = GceFake()
    try:
        fake.project(project)
        for i in (1, 2):
            ip = f"10.128.0.{10 + i}"
            fake.add_instance(project, zone, f"gke-node{i}", ip=ip)
            obj = node_object(f"node{i}", [ip], [f"10.244.{i}.0/24"])
            obj["spec"]["providerID"] = f"gce://{project}/{zone}/gke-node{i}"
            emulator.create_node(obj)
        opts = CloudOptions(Cloud.gce, gce_project=project, gce_endpoint=fake.url)
        replicas.append(Replica("ctl-a", emulator.url, opts).start())

        def routes() -> dict[str, str]:
            return {
                r["destRange"]: r["nextHopInstance"]
                for r in fake.project(project).routes.values()
                if r["network"] == network_url(project, "default")
            }

        want = {f"10.244.{i}.0/24": instance_url(project, zone, f"gke-node{i}") for i in (1, 2)}
        wait_until(lambda: routes() == want, 15, what="GCE routes")
        wait_until(
            lambda: all(
                condition(emulator, f"node{i}") == ("False", "RouteCreated") for i in (1, 2)
            ),
            10,
            what="RouteCreated",
        )
        names = sorted(fake.project(project).routes)
        assert all(n.startswith(f"{CLUSTER}-") for n in names), names
        fake.reset_counts()
        time.sleep(2 * TIMING["resync"])
        assert fake.writes() == {}
        assert fake.violations == []
    finally:
        fake.close()


# --- as deployed: `nosdn controller` processes ---------------------------------------------------
class Process:
    """`nosdn controller --cloud aws` as its own process (what the Deployment runs)."""

    def __init__(self, name: str, api_url: str, proxy: Ec2Proxy, workdir: Path) -> None:
        self.name = name
        self.port = free_port()
        self.log = workdir / f"{name}.log"
        self.argv = [
            sys.executable, "-m", "nosdn", "controller",
            "--cloud", "aws", "--aws-region", "us-east-1", "--aws-endpoint", proxy.url,
            "--kube-server", api_url,
            "--cluster-cidr", str(POD_CIDR), "--cluster-name", CLUSTER,
            "--identity", name,
            "--lease-duration", "3", "--lease-renew-deadline", "2", "--lease-retry-period", "0.5",
            "--resync", "1", "--watch-timeout", "5",
            "--metrics-address", f"127.0.0.1:{self.port}",
            "--log-level", "debug",
        ]  # fmt: skip
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Process:
        with open(self.log, "ab") as errors:
            self.proc = subprocess.Popen(
                self.argv, stdout=subprocess.DEVNULL, stderr=errors, env={**os.environ, **FAKE_ENV}
            )
        return self

    def ready(self) -> tuple[int, str]:
        try:
            status, body = http_request(None, self.port, "GET", "/readyz", timeout=2)
        except OSError as e:
            return 0, str(e)
        return status, body.decode()

    def stop(self, sig: int = signal.SIGTERM) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        rc = self.proc.returncode
        self.proc = None
        return rc


def test_processes_take_over_after_a_kill_and_release_the_lease_on_sigterm(
    aws: Aws, emulator: Emulator, tmp_path: Path
) -> None:
    for i in (1, 2):
        emulator.create_node(aws.node(i))
    pa, pb = aws.proxy(), aws.proxy()
    a = Process("ctl-a", emulator.url, pa, tmp_path).start()
    b = Process("ctl-b", emulator.url, pb, tmp_path)
    try:
        wait_until(lambda: converged(aws, 1, 2), 30, what=f"ctl-a converges ({a.log})")
        assert holder(emulator) == "ctl-a"
        b.start()
        wait_until(lambda: b.ready() == (200, "standby (cache synced)\n"), 30, what="ctl-b waits")
        assert a.stop(signal.SIGKILL) == -signal.SIGKILL
        killed = time.monotonic()
        writes_a = sum(pa.writes().values())
        emulator.create_node(aws.node(3))
        wait_until(lambda: holder(emulator) == "ctl-b", 10, what="ctl-b takes the lease")
        took = time.monotonic() - killed
        wait_until(lambda: converged(aws, 1, 2, 3), 10, what="ctl-b converges")
        assert took < TIMING["lease_duration"] + 2 * TIMING["retry_period"] + 1
        assert sum(pa.writes().values()) == writes_a
        assert pb.writes()["CreateRoute"] == 2
        assert b.stop(signal.SIGTERM) == 0
        assert holder(emulator) == ""  # released: the next replica need not wait
        assert converged(aws, 1, 2, 3)  # stopping removes nothing
    finally:
        a.stop(signal.SIGKILL)
        b.stop(signal.SIGKILL)


# --- Azure ---------------------------------------------------------------------------------------
def test_azure_two_replicas_only_the_leader_writes_one_put_per_table(
    emulator: Emulator, replicas: list[Replica]
) -> None:
    """The ARM fake (no Azure networking emulator exists, see tests/azure_fake.py) behind two
    replicas; it counts every request, so "only the leader writes" is measured at the fake."""
    from azure_fake import SUB, AzureFake, vm_id, vmss_id

    fake = AzureFake(token=None)  # an http:// loopback endpoint gets no credentials
    try:
        fake.add_table("rg", "rt")
        fake.add_route("rg", "rt", "operator", addressPrefix="0.0.0.0/0", nextHopType="Internet")
        # node1 a plain VM, node2 a scale-set instance (AKS's providerID, resource group in
        # lower case as the cloud provider writes it)
        machines = {1: vm_id("rg", "vm1"), 2: vmss_id("rg", "pool-vmss", 4)}
        for i, machine in machines.items():
            ip = f"10.1.0.{10 + i}"
            if i == 2:
                fake.add_nic("RG", "pool-nic", vm=machine, ip=ip, scale_set="pool-vmss")
            else:
                fake.add_nic("rg", f"vm{i}-nic", vm=machine, ip=ip)
            obj = node_object(f"node{i}", [ip], [f"10.244.{i}.0/24"])
            obj["spec"]["providerID"] = "azure://" + machine
            emulator.create_node(obj)
        opts = CloudOptions(
            Cloud.azure,
            route_tables=("rt",),
            azure_subscription=SUB,
            azure_resource_group="rg",
            azure_endpoint=fake.url,
        )
        a = Replica("ctl-a", emulator.url, opts).start()
        replicas.append(a)
        wait_until(lambda: holder(emulator) == "ctl-a", 10, what="ctl-a leads")
        b = Replica("ctl-b", emulator.url, opts).start()
        replicas.append(b)

        def pods() -> dict[str, str]:
            return {
                p["addressPrefix"]: p.get("nextHopIpAddress", "")
                for p in fake.routes("rg", "rt").values()
                if p["addressPrefix"].startswith("10.244.")
            }

        want = {f"10.244.{i}.0/24": f"10.1.0.{10 + i}" for i in (1, 2)}
        wait_until(lambda: pods() == want, 15, what="Azure routes")
        wait_until(
            lambda: all(
                condition(emulator, f"node{i}") == ("False", "RouteCreated") for i in (1, 2)
            ),
            10,
            what="RouteCreated",
        )
        wait_until(lambda: b.running.cache.snapshot().synced, 10, what="the follower's cache")
        assert all(n["properties"]["enableIPForwarding"] for n in fake.arm.nics.values())
        assert "operator" in fake.routes("rg", "rt")
        assert all(n.startswith(f"{CLUSTER}_") for n in fake.routes("rg", "rt") if n != "operator")
        assert fake.counts["put"] == 1  # both routes in one table write
        assert fake.counts["put nic"] == 1  # the VM's NIC; a scale set's is not PUT
        assert fake.counts["list"] >= 2  # the group's NICs and the scale set's
        fake.reset_counts()
        time.sleep(3 * TIMING["resync"])  # several resyncs of both replicas
        assert fake.writes() == {}  # in sync: only reads
        assert fake.counts["get"] >= 1
        assert b.metric("nosdn_controller_leader") == 0
        assert a.metric("nosdn_controller_leader") == 1
        assert fake.violations == []
    finally:
        fake.close()
