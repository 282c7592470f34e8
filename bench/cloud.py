"""Benchmark: the AWS backend against moto_server, next to a baseline run side by side.

Measures (AWS, the default), on one VPC with ``--tables`` route tables tagged for the cluster:

- EC2 API calls of a pass that finds everything in sync (target: one describe per table);
- API calls (and route writes) when one node's instance is replaced (target: one route write
  per table) and when one node is added;
- wall time and API calls of the initial sync of ``--nodes`` nodes (capacity raised to fit).

The baseline is what a script does (the post's "Kubernetes the hard way" loop): for every pod
subnet and table, one ``DescribeRouteTables`` filtered on the destination, then a
``CreateRoute`` or ``ReplaceRoute`` if it is missing or wrong. Both run against the same
moto_server on 127.0.0.1 (fake credentials; nothing leaves the machine), each on a fresh VPC.
Wall times are moto's, a local Python server: on AWS each call takes tens of milliseconds more,
so the call counts are the figures that carry over.

    .venv/bin/python bench/cloud.py [--nodes 500] [--tables 2]

``--cloud azure`` measures the Azure backend the same way, against the ARM network fake
(tests/azure_fake.py: no Azure networking emulator exists) served on 127.0.0.1 from a child
process, so the fake's CPU is not the backend's. The baseline there is the per-route script:
for every pod subnet and table, ``az network route-table route show`` (one GET of the route),
then ``route create`` (one PUT of the route, a long-running operation) if it is missing or wrong.
Every request either side sends is counted, operation polling included; polls are made 10 ms
apart on both sides (ARM asks for seconds between polls, which would only measure the sleep).

    PYTHONPATH=src .venv/bin/python bench/cloud.py --cloud azure [--nodes 500] [--tables 2]
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

os.environ.update(
    {
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": "/dev/null",
        "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
        "AWS_EC2_METADATA_DISABLED": "true",
    }
)

import boto3  # imported after the fake credentials are in place

from nosdn.backends.cloud.aws import CLUSTER_TAG, AwsConfig, AwsRoutes
from nosdn.backends.cloud.sync import sync
from nosdn.model import ROUTER, Cluster, Node
from nosdn.plan import desired_routes

CLUSTER = "bench"


def start_moto() -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    exe = Path(sys.executable).with_name("moto_server")
    proc = subprocess.Popen(
        [str(exe), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(f"{url}/moto-api/", timeout=1).read()
            return proc, url
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise SystemExit("moto_server did not start") from None
            time.sleep(0.1)


def launch(ec2: Any, subnet: str, n: int) -> list[dict[str, Any]]:
    """``n`` instances tagged for the cluster, as Kubernetes' AWS instances are."""
    tags = [{"Key": CLUSTER_TAG.format(CLUSTER), "Value": "owned"}]
    return list(
        ec2.run_instances(
            ImageId="ami-12c6146b",
            MinCount=n,
            MaxCount=n,
            SubnetId=subnet,
            TagSpecifications=[{"ResourceType": "instance", "Tags": tags}],
        )["Instances"]
    )


class Counted:
    """An EC2 client that counts its calls by operation."""

    def __init__(self, url: str) -> None:
        self.client = boto3.client("ec2", endpoint_url=url, region_name="us-east-1")
        self.calls: Counter[str] = Counter()
        self.client.meta.events.register(
            "before-call.ec2", lambda model, **_: self.calls.update([model.name])
        )


def make_vpc(ec2: Any, nodes: int, tables: int) -> tuple[Cluster, list[str]]:
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.0.0/20")["Subnet"]["SubnetId"]
    spec = [
        {
            "ResourceType": "route-table",
            "Tags": [{"Key": CLUSTER_TAG.format(CLUSTER), "Value": "1"}],
        }
    ]
    ids = [
        ec2.create_route_table(VpcId=vpc, TagSpecifications=spec)["RouteTable"]["RouteTableId"]
        for _ in range(tables)
    ]
    insts = launch(ec2, subnet, nodes)
    made = [
        Node(
            f"node-{i}",
            (ipaddress.ip_address(inst["PrivateIpAddress"]),),
            (ipaddress.ip_network(f"10.{100 + (i >> 8)}.{i & 255}.0/24"),),
            inst["InstanceId"],
        )
        for i, inst in enumerate(insts)
    ]
    return Cluster(tuple(made), (ipaddress.ip_network("10.100.0.0/14"),), name=CLUSTER), ids


def baseline_pass(c: Counted, cluster: Cluster, tables: list[str]) -> int:
    """The script way: per route and table, describe that destination, then write if needed."""
    writes = 0
    inst = {n.name: n.instance_id for n in cluster.nodes}
    for table in tables:
        for r in desired_routes(cluster, ROUTER):
            found = c.client.describe_route_tables(
                RouteTableIds=[table],
                Filters=[{"Name": "route.destination-cidr-block", "Values": [str(r.dst)]}],
            )["RouteTables"]
            routes = [
                x for t in found for x in t["Routes"] if x.get("DestinationCidrBlock") == str(r.dst)
            ]
            want = inst[r.node or ""]
            if not routes:
                c.client.create_route(
                    RouteTableId=table, DestinationCidrBlock=str(r.dst), InstanceId=want
                )
                writes += 1
            elif routes[0].get("InstanceId") != want:
                c.client.replace_route(
                    RouteTableId=table, DestinationCidrBlock=str(r.dst), InstanceId=want
                )
                writes += 1
    return writes


def replaced(cluster: Cluster, ec2: Any, subnet_of: str) -> Cluster:
    """The cluster with node-1's instance replaced by a new one."""
    inst = launch(ec2, subnet_of, 1)[0]
    nodes = list(cluster.nodes)
    old = nodes[1]
    nodes[1] = Node(
        old.name,
        (ipaddress.ip_address(inst["PrivateIpAddress"]),),
        old.pod_cidrs,
        inst["InstanceId"],
    )
    return Cluster(tuple(nodes), cluster.cluster_cidrs, name=cluster.name)


def grown(cluster: Cluster, ec2: Any, subnet: str) -> Cluster:
    inst = launch(ec2, subnet, 1)[0]
    n = len(cluster.nodes)
    extra = Node(
        f"node-{n}",
        (ipaddress.ip_address(inst["PrivateIpAddress"]),),
        (ipaddress.ip_network(f"10.{100 + (n >> 8)}.{n & 255}.0/24"),),
        inst["InstanceId"],
    )
    return Cluster((*cluster.nodes, extra), cluster.cluster_cidrs, name=cluster.name)


def _route_writes(calls: Counter[str]) -> int:
    return sum(n for op, n in calls.items() if op in ("CreateRoute", "ReplaceRoute", "DeleteRoute"))


def _fmt(calls: Counter[str]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(calls.items()) if not k.startswith("retry:"))


def run(nodes: int, tables: int) -> None:
    proc, url = start_moto()
    try:
        rows: list[tuple[str, str, str, str]] = []
        # --- nosdn ---
        setup = boto3.client("ec2", endpoint_url=url, region_name="us-east-1")
        cluster, _ = make_vpc(setup, nodes, tables)
        subnet = setup.describe_subnets()["Subnets"][-1]["SubnetId"]
        provider = AwsRoutes(
            AwsConfig(region="us-east-1", endpoint_url=url, capacity=max(50, nodes + 10))
        )
        t0 = time.perf_counter()
        first = sync(provider, cluster)
        t_sync = time.perf_counter() - t0
        assert first.ok, (first.errors, first.shortfalls)
        noop = sync(provider, cluster)
        t0 = time.perf_counter()
        sync(provider, cluster)
        t_noop = time.perf_counter() - t0
        changed = replaced(cluster, setup, subnet)
        change = sync(provider, changed)
        add = sync(provider, grown(changed, setup, subnet))

        # --- baseline (fresh VPC in the same server) ---
        base = Counted(url)
        bcluster, btables = make_vpc(base.client, nodes, tables)
        base.calls.clear()
        t0 = time.perf_counter()
        baseline_pass(base, bcluster, btables)
        b_sync = time.perf_counter() - t0
        b_first = Counter(base.calls)
        base.calls.clear()
        t0 = time.perf_counter()
        baseline_pass(base, bcluster, btables)
        b_noop_t = time.perf_counter() - t0
        b_noop = Counter(base.calls)
        base.calls.clear()
        baseline_pass(base, replaced(bcluster, base.client, subnet), btables)
        b_change = Counter(base.calls)

        print(
            f"AWS backend vs per-route script, {nodes} nodes, {tables} route tables (moto_server)"
        )
        rows.append(
            (
                "no-op pass: API calls",
                str(sum(noop.calls.values())),
                str(sum(b_noop.values())),
                f"{sum(b_noop.values()) / max(1, sum(noop.calls.values())):.1f}",
            )
        )
        rows.append(
            (
                "no-op pass: wall time",
                f"{t_noop:.3f} s",
                f"{b_noop_t:.3f} s",
                f"{b_noop_t / t_noop:.1f}",
            )
        )
        rows.append(
            (
                "1 instance replaced: route writes",
                str(_route_writes(change.calls)),
                str(_route_writes(b_change)),
                f"{_route_writes(b_change) / max(1, _route_writes(change.calls)):.1f}",
            )
        )
        rows.append(
            (
                "1 instance replaced: API calls",
                str(sum(change.calls.values())),
                str(sum(b_change.values())),
                f"{sum(b_change.values()) / max(1, sum(change.calls.values())):.1f}",
            )
        )
        rows.append(
            (
                f"initial sync of {nodes}: wall time",
                f"{t_sync:.2f} s",
                f"{b_sync:.2f} s",
                f"{b_sync / t_sync:.2f}",
            )
        )
        rows.append(
            (
                f"initial sync of {nodes}: API calls",
                str(sum(first.calls.values())),
                str(sum(b_first.values())),
                f"{sum(b_first.values()) / sum(first.calls.values()):.2f}",
            )
        )
        w = max(len(r[0]) for r in rows)
        print(f"{'':{w}}  {'nosdn':>12}  {'baseline':>12}  baseline/nosdn")
        for label, ours, theirs, ratio in rows:
            print(f"{label:{w}}  {ours:>12}  {theirs:>12}  {ratio}")
        print()
        print(f"no-op pass calls:        {_fmt(noop.calls)}")
        print(f"instance replaced calls: {_fmt(change.calls)}")
        print(f"node added calls:        {_fmt(add.calls)}")
        print(f"initial sync calls:      {_fmt(first.calls)}")
        print(
            "(the baseline never turns off the source/destination check: nosdn's initial sync "
            "makes one ModifyInstanceAttribute per instance more)"
        )
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


# --- Azure ------------------------------------------------------------------------------------
AZ_RG = "rg-bench"
TESTS = Path(__file__).resolve().parent.parent / "tests"


def _fake_process(conn: Any, kw: dict[str, Any]) -> None:
    """The child: one `azure_fake.AzureFake`, driven by (method, args, kwargs) messages."""
    sys.path.insert(0, str(TESTS))
    from azure_fake import AzureFake

    fake = AzureFake(**kw)
    conn.send(fake.url)
    while True:
        name, args, kwargs = conn.recv()
        if name == "close":
            fake.close()
            conn.send(None)
            return
        value = getattr(fake, name)
        conn.send(value(*args, **kwargs) if callable(value) else value)


class RemoteFake:
    """The ARM fake in a child process; attribute calls go over a pipe."""

    def __init__(self, **kw: Any) -> None:
        import multiprocessing

        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_fake_process, args=(child, kw), daemon=True)
        self._proc.start()
        self.url: str = self._conn.recv()

    def call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        self._conn.send((name, args, kwargs))
        return self._conn.recv()

    def close(self) -> None:
        self.call("close")
        self._proc.join(10)


def _az_ip(i: int) -> str:
    return f"10.1.{(i + 10) >> 8}.{(i + 10) & 255}"


def _az_vm(fake: RemoteFake, sub: str, name: str, ip: str) -> str:
    vm = f"/subscriptions/{sub}/resourceGroups/{AZ_RG}/providers/Microsoft.Compute"
    vm += f"/virtualMachines/{name}"
    fake.call("add_nic", AZ_RG, f"{name}-nic", vm=vm, ip=ip)
    return vm


def _az_node(i: int, vm: str, ip: str) -> Node:
    return Node(
        f"node-{i}",
        (ipaddress.ip_address(ip),),
        (ipaddress.ip_network(f"10.{100 + (i >> 8)}.{i & 255}.0/24"),),
        vm,
    )


def az_baseline_pass(client: Any, cluster: Cluster, tables: list[str]) -> int:
    """The script way: per route and table, show the route, then create it if needed."""
    from azure.core.exceptions import ResourceNotFoundError
    from azure.mgmt.network.models import Route

    from nosdn.names import azure_route_name

    writes = 0
    for table in tables:
        for r in desired_routes(cluster, ROUTER):
            name = azure_route_name(cluster.name, r.node or "", str(r.dst))
            want = str(r.via[0])
            try:
                got = client.routes.get(AZ_RG, table, name).as_dict()
            except ResourceNotFoundError:
                got = None
            props = (got or {}).get("properties", got or {})
            if (
                got is None
                or props.get("next_hop_ip_address", props.get("nextHopIpAddress")) != want
            ):
                body = Route(
                    {
                        "properties": {
                            "addressPrefix": str(r.dst),
                            "nextHopType": "VirtualAppliance",
                            "nextHopIpAddress": want,
                        }
                    }
                )
                client.routes.begin_create_or_update(AZ_RG, table, name, body).result()
                writes += 1
    return writes


def _az_writes(calls: Counter[str]) -> int:
    return sum(n for op, n in calls.items() if op.endswith("createOrUpdate"))


def _az_table_writes(calls: Counter[str]) -> int:
    return calls["routeTables.createOrUpdate"] + calls["routes.createOrUpdate"]


def run_azure(nodes: int, tables: int) -> None:
    from nosdn.backends.cloud.azure import AzureConfig, AzureRoutes

    sub = "00000000-0000-0000-0000-00000000cafe"
    # an http:// loopback endpoint: no credentials sent; the quota raised to fit, as on AWS
    fake = RemoteFake(token=None, route_limit=max(400, nodes + 10))
    try:
        ours = [f"rt-{t}" for t in range(tables)]
        theirs = [f"rt-script-{t}" for t in range(tables)]
        for t in ours + theirs:
            fake.call("add_table", AZ_RG, t)
            fake.call(  # the operator's own route, in every table
                "add_route",
                AZ_RG,
                t,
                "to-internet",
                addressPrefix="0.0.0.0/0",
                nextHopType="Internet",
            )
        made = [
            _az_node(i, _az_vm(fake, sub, f"vm-{i}", _az_ip(i)), _az_ip(i)) for i in range(nodes)
        ]
        cidrs = (ipaddress.ip_network("10.100.0.0/14"),)
        cluster = Cluster(tuple(made), cidrs, name=CLUSTER)

        def provider(names: list[str]) -> AzureRoutes:
            return AzureRoutes(
                AzureConfig(
                    sub,
                    AZ_RG,
                    tuple(names),
                    endpoint=fake.url,
                    capacity=max(400, nodes + 10),
                    polling_interval=0.01,
                )
            )

        p = provider(ours)
        t0 = time.perf_counter()
        first = sync(p, cluster)
        t_sync = time.perf_counter() - t0
        assert first.ok, (first.errors[:3], first.shortfalls, first.problems[:3])
        sync(p, cluster)
        t0 = time.perf_counter()
        noop = sync(p, cluster)
        t_noop = time.perf_counter() - t0
        assert noop.writes == 0

        def replace(c: Cluster, i: int, vm: str) -> Cluster:
            ip = _az_ip(nodes + i)
            ns = list(c.nodes)
            ns[i] = _az_node(i, _az_vm(fake, sub, vm, ip), ip)
            return Cluster(tuple(ns), cidrs, name=CLUSTER)

        changed = replace(cluster, 1, "vm-1-b")
        change = sync(p, changed)
        assert change.ok, change.errors[:3]
        ip = _az_ip(2 * nodes)
        extra = _az_node(nodes, _az_vm(fake, sub, f"vm-{nodes}", ip), ip)
        add = sync(p, Cluster((*changed.nodes, extra), cidrs, name=CLUSTER))
        assert add.ok, add.errors[:3]

        # --- the per-route script, on its own tables, counted the same way ---
        base = provider(theirs)
        base.calls.clear()
        t0 = time.perf_counter()
        az_baseline_pass(base.client, cluster, theirs)
        b_sync = time.perf_counter() - t0
        b_first = Counter(base.calls)
        base.calls.clear()
        t0 = time.perf_counter()
        az_baseline_pass(base.client, cluster, theirs)
        b_noop_t = time.perf_counter() - t0
        b_noop = Counter(base.calls)
        base.calls.clear()
        az_baseline_pass(base.client, replace(cluster, 1, "vm-1-c"), theirs)
        b_change = Counter(base.calls)

        def total(c: Counter[str]) -> int:
            return sum(n for op, n in c.items() if not op.startswith("refused:"))

        print(
            f"Azure backend vs per-route script, {nodes} nodes, {tables} route tables "
            "(the ARM fake, tests/azure_fake.py, in a child process)"
        )
        rows = [
            (
                "no-op pass: API calls",
                str(total(noop.calls)),
                str(total(b_noop)),
                f"{total(b_noop) / max(1, total(noop.calls)):.1f}",
            ),
            (
                "no-op pass: wall time",
                f"{t_noop:.3f} s",
                f"{b_noop_t:.3f} s",
                f"{b_noop_t / t_noop:.1f}",
            ),
            (
                "1 VM replaced: table writes (PUTs)",
                str(_az_table_writes(change.calls)),
                str(_az_table_writes(b_change)),
                f"{_az_table_writes(b_change) / max(1, _az_table_writes(change.calls)):.1f}",
            ),
            (
                "1 VM replaced: API calls",
                str(total(change.calls)),
                str(total(b_change)),
                f"{total(b_change) / max(1, total(change.calls)):.1f}",
            ),
            (
                f"initial sync of {nodes}: table writes (PUTs)",
                str(_az_table_writes(first.calls)),
                str(_az_table_writes(b_first)),
                f"{_az_table_writes(b_first) / max(1, _az_table_writes(first.calls)):.1f}",
            ),
            (
                f"initial sync of {nodes}: API calls",
                str(total(first.calls)),
                str(total(b_first)),
                f"{total(b_first) / max(1, total(first.calls)):.2f}",
            ),
            (
                f"initial sync of {nodes}: wall time",
                f"{t_sync:.2f} s",
                f"{b_sync:.2f} s",
                f"{b_sync / t_sync:.2f}",
            ),
        ]
        w = max(len(r[0]) for r in rows)
        print(f"{'':{w}}  {'nosdn':>12}  {'baseline':>12}  baseline/nosdn")
        for label, a, b, ratio in rows:
            print(f"{label:{w}}  {a:>12}  {b:>12}  {ratio}")
        print()
        print(f"no-op pass calls:   {_fmt(noop.calls)}")
        print(f"VM replaced calls:  {_fmt(change.calls)}")
        print(f"node added calls:   {_fmt(add.calls)}")
        print(f"initial sync calls: {_fmt(first.calls)}")
        print(f"script, VM replaced: {_fmt(b_change)}")
        print(f"script, initial:     {_fmt(b_first)}")
        print(
            "(the script never turns on IP forwarding: nosdn's initial sync makes one NIC "
            "createOrUpdate per VM more, each a long-running operation)"
        )
    finally:
        fake.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--cloud", choices=("aws", "azure"), default="aws")
    ap.add_argument("--nodes", type=int, default=500)
    ap.add_argument("--tables", type=int, default=2)
    args = ap.parse_args()
    if args.cloud == "azure":
        run_azure(args.nodes, args.tables)
    else:
        run(args.nodes, args.tables)


if __name__ == "__main__":
    main()
