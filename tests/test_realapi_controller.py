"""`nosdn controller` against a real kube-apiserver (root): controller processes in a namespace
cabled to the API server, with the service account and RBAC that `nosdn manifests --controller`
prints, and EC2 from `moto_server`.

What only a real server can show: that two replicas started at the same instant never both
lead (the Lease is a compare-and-swap on its resourceVersion, which kmock does not do), that the
``RouteCreated`` patch leaves the kubelet's ``Ready`` condition alone, and that the ClusterRole
and the Lease Role are enough and every rule of them is needed.

moto_server runs in the machine's loopback as in the other AWS tests; the controller reaches it
through a counting proxy whose listening socket is made inside the controller's namespace, so
that namespace has no route anywhere but the API's bridge.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from agent_env import http_request, wait_until
from aws_moto import FAKE_ENV, Ec2Proxy, free_port, moto_server, reset_moto
from conftest import ip, requires_root
from kube_api import KubeApi
from test_realapi_agent import _can_i, _cluster_role_rules, _role_without, ready_node

pytestmark = [pytest.mark.root, pytest.mark.slow, requires_root]

CIDR = "10.244.0.0/16"
CLUSTER = "demo"
TAG = f"kubernetes.io/cluster/{CLUSTER}"
LEASE = "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/nosdn-controller"
LEASE_TIMING = {"duration": 3.0, "renew": 2.0, "retry": 0.5}


def manifests(*args: str) -> str:
    proc = subprocess.run(
        [
            sys.executable, "-m", "nosdn", "manifests", "--image", "nosdn:test",
            "--controller", "--cloud", "aws", "--aws-region", "us-east-1",
            "--cluster-cidr", CIDR, "--cluster-name", CLUSTER, *args,
        ],
        capture_output=True,
        text=True,
        check=True,
    )  # fmt: skip
    return proc.stdout


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    with moto_server() as url:
        yield url


class Controller:
    """One `nosdn controller` process in the controller namespace."""

    def __init__(self, env: Env, name: str, kubeconfig: Path) -> None:
        self.env = env
        self.name = name
        self.port = free_port()
        self.log = env.workdir / f"{name}.log"
        self.argv = [
            "ip", "netns", "exec", env.ns,
            sys.executable, "-m", "nosdn", "controller",
            "--cloud", "aws", "--aws-region", "us-east-1", "--aws-endpoint", env.proxy.url,
            "--kubeconfig", str(kubeconfig),
            "--cluster-cidr", CIDR, "--cluster-name", CLUSTER,
            "--identity", name,
            "--lease-duration", str(LEASE_TIMING["duration"]),
            "--lease-renew-deadline", str(LEASE_TIMING["renew"]),
            "--lease-retry-period", str(LEASE_TIMING["retry"]),
            "--resync", "1", "--watch-timeout", "30",
            "--metrics-address", f"127.0.0.1:{self.port}",
            "--log-level", "debug",
        ]  # fmt: skip
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Controller:
        with open(self.log, "ab") as errors:
            self.proc = subprocess.Popen(
                self.argv, stdout=subprocess.DEVNULL, stderr=errors, env={**os.environ, **FAKE_ENV}
            )
        return self

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def logs(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def metric(self, name: str) -> float | None:
        try:
            status, body = http_request(self.env.ns, self.port, "GET", "/metrics", timeout=2)
        except OSError:
            return None
        if status != 200:
            return None
        for line in body.decode().splitlines():
            if line.startswith(name) and line[len(name)] in " {":
                return float(line.rsplit(" ", 1)[1])
        return None

    def leads(self) -> bool:
        return self.metric("nosdn_controller_leader") == 1


@dataclass
class Env:
    ns: str
    api: KubeApi
    ec2: Any
    proxy: Ec2Proxy
    workdir: Path
    kubeconfig: Path
    subnet: str
    tables: tuple[str, str]
    instances: dict[str, str] = field(default_factory=dict)
    controllers: list[Controller] = field(default_factory=list)

    def controller(self, name: str, kubeconfig: Path | None = None) -> Controller:
        c = Controller(self, name, kubeconfig or self.kubeconfig)
        self.controllers.append(c)
        return c

    def node(self, i: int) -> dict[str, Any]:
        """A Node as the kubelet leaves it, for a new EC2 instance."""
        inst = self.ec2.run_instances(
            ImageId="ami-12c6146b", MinCount=1, MaxCount=1, SubnetId=self.subnet
        )["Instances"][0]
        name = f"node{i}"
        self.instances[name] = inst["InstanceId"]
        obj = ready_node(name, [inst["PrivateIpAddress"]], [f"10.244.{i}.0/24"])
        obj["spec"]["providerID"] = f"aws:///us-east-1a/{inst['InstanceId']}"
        return obj

    def pod_routes(self, table: str) -> dict[str, str]:
        rt = self.ec2.describe_route_tables(RouteTableIds=[table])["RouteTables"][0]
        return {
            r["DestinationCidrBlock"]: r.get("InstanceId", "")
            for r in rt["Routes"]
            if r.get("DestinationCidrBlock", "").startswith("10.244.")
        }

    def converged(self, *ids: int) -> bool:
        want = {f"10.244.{i}.0/24": self.instances[f"node{i}"] for i in ids}
        return all(self.pod_routes(t) == want for t in self.tables)

    def conditions(self, name: str) -> dict[str, dict[str, Any]]:
        return {c["type"]: c for c in self.api.node(name)["status"].get("conditions", [])}

    def route_created(self, name: str) -> bool:
        c = self.conditions(name).get("NetworkUnavailable")
        return c is not None and (c["status"], c["reason"]) == ("False", "RouteCreated")


@pytest.fixture
def env(
    kapi: KubeApi,
    moto_url: str,
    netns: Callable[..., str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Env]:
    import boto3

    for k, v in FAKE_ENV.items():
        monkeypatch.setenv(k, v)
    reset_moto(moto_url)
    ec2 = boto3.client("ec2", endpoint_url=moto_url, region_name="us-east-1")
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
    spec = [{"ResourceType": "route-table", "Tags": [{"Key": TAG, "Value": "owned"}]}]
    tables = tuple(
        ec2.create_route_table(VpcId=vpc, TagSpecifications=spec)["RouteTable"]["RouteTableId"]
        for _ in range(2)
    )
    ns = netns("nosdn-rctl")
    ip(ns, "link", "set", "lo", "up")
    kapi.attach(ns)
    proxy = Ec2Proxy(moto_url, netns=ns)  # listens on the controller namespace's loopback
    kapi.kubectl("apply", "-f", "-", stdin=manifests())
    kubeconfig, _ = kapi.service_account("kube-system", "nosdn-controller")
    e = Env(ns, kapi, ec2, proxy, tmp_path, kubeconfig, subnet, (tables[0], tables[1]))
    try:
        yield e
    finally:
        for c in e.controllers:
            c.stop(signal.SIGKILL)
        proxy.close()


# --- tests -------------------------------------------------------------------------------------
def test_routes_and_route_created_with_the_manifests_permissions_ready_untouched(env: Env) -> None:
    for i in (1, 2, 3):
        env.api.create_node(env.node(i))
    c = env.controller("ctl-a").start()
    wait_until(lambda: env.converged(1, 2, 3), 30, what=f"routes\n{c.logs()[-2000:]}")
    wait_until(
        lambda: all(env.route_created(f"node{i}") for i in (1, 2, 3)), 15, what="RouteCreated"
    )
    for i in (1, 2, 3):
        assert env.conditions(f"node{i}")["Ready"]["status"] == "True"  # the kubelet's, kept
    # a node leaves: its routes go, nothing else changes
    env.proxy.reset_counts()
    env.api.delete_node("node2")
    wait_until(lambda: env.converged(1, 3), 15, what="node2's routes removed")
    time.sleep(2)
    assert env.proxy.writes() == {"DeleteRoute": 2}
    assert "forbidden" not in c.logs().lower()


def test_two_replicas_started_together_one_leads_each_time_and_the_other_takes_over(
    env: Env,
) -> None:
    for i in (1, 2):
        env.api.create_node(env.node(i))
    for round_ in range(3):
        env.api.call("DELETE", LEASE.rsplit("/", 1)[0])  # every Lease: none left to expire
        pair = [env.controller(f"ctl-{round_}-{x}") for x in "ab"]
        for c in pair:  # as close to the same instant as two processes get
            c.start()
        wait_until(lambda: any(x.leads() for x in pair), 30, what=f"round {round_}: a leader")  # noqa: B023
        time.sleep(2 * LEASE_TIMING["retry"])
        assert [c.leads() for c in pair].count(True) == 1, [
            c.metric("nosdn_controller_leader") for c in pair
        ]
        holder = env.api.call("GET", LEASE)["spec"]["holderIdentity"]
        leader = next(c for c in pair if c.leads())
        assert holder == leader.name
        wait_until(lambda: env.converged(1, 2), 20, what=f"round {round_}: routes")
        if round_ == 2:  # the leader killed: the other leads within the lease duration
            other = next(c for c in pair if c is not leader)
            leader.stop(signal.SIGKILL)
            killed = time.monotonic()
            wait_until(other.leads, LEASE_TIMING["duration"] + 5, 0.1, what="takeover")
            took = time.monotonic() - killed
            assert took < LEASE_TIMING["duration"] + 2 * LEASE_TIMING["retry"] + 1, took
            env.proxy.reset_counts()
            env.api.create_node(env.node(3))
            wait_until(lambda: env.converged(1, 2, 3), 20, what="the new leader routes")
        for c in pair:
            c.stop()


def test_the_roles_grant_nothing_more_than_the_manifests_say(env: Env) -> None:
    api = env.api
    api.call(
        "POST", "/api/v1/namespaces/kube-system/serviceaccounts", {"metadata": {"name": "nobody"}}
    )
    try:
        nobody, _ = api.service_account("kube-system", "nobody")
        beyond = _can_i(api, env.kubeconfig, "kube-system") - _can_i(api, nobody, "kube-system")
    finally:
        api.call("DELETE", "/api/v1/namespaces/kube-system/serviceaccounts/nobody")
    assert beyond == set(_cluster_role_rules(manifests())) | {
        ("leases.coordination.k8s.io", "create"),
        ("leases.coordination.k8s.io", "get"),
        ("leases.coordination.k8s.io", "patch"),
    }


@pytest.mark.parametrize(
    ("resource", "verb"),
    [
        ("nodes", "list"),
        ("nodes", "watch"),
        ("nodes/status", "patch"),
        ("events", "create"),
        ("leases", "create"),
        ("leases", "get"),
        ("leases", "patch"),
    ],
)
def test_each_rule_of_the_roles_is_needed(env: Env, resource: str, verb: str) -> None:
    api = env.api
    api.kubectl("apply", "-f", "-", stdin=_role_without(manifests(), resource, verb))
    try:
        for i in (1, 2):
            api.create_node(env.node(i))
        c = env.controller("ctl-a").start()
        if resource == "events":  # the controller posts an Event on a node it skips
            wait_until(lambda: env.converged(1, 2), 30, what="routes")
            ghost = ready_node("a-ghost", ["10.0.1.250"], ["10.244.9.0/24"])
            ghost["spec"]["providerID"] = f"aws:///us-east-1a/{env.instances['node1']}"
            api.create_node(ghost)
        want = f'cannot {verb} resource "{resource}"'
        try:
            wait_until(lambda: want in c.logs(), 30, what=f"the controller says it {want}")
        except AssertionError as e:
            raise AssertionError(f"{e}; its log ends:\n{c.logs()[-3000:]}") from None
    finally:
        api.kubectl("apply", "-f", "-", stdin=manifests())
