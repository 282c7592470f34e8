"""`nosdn agent` against a real kube-apiserver (root): the agent process in a node namespace,
with the service account and RBAC that `nosdn manifests` prints, and nothing more.

What only a real server can show: that a watch resumes from its resourceVersion instead of
relisting (LISTs counted in the audit log), that the ``NetworkUnavailable`` patch leaves the
kubelet's ``Ready`` condition alone, that ``spec.podCIDRs`` is immutable (a subnet moves by
deleting and recreating the Node), and that the ClusterRole is enough and every rule of it is
needed. The node namespace is cabled to the API server's namespace (`KubeApi.attach`).
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from agent_env import AgentProcess, node_object, nosdn_routes, wait_until
from conftest import ip, requires_root
from kube_api import API_ADDRESS, KubeApi

pytestmark = [pytest.mark.root, pytest.mark.slow, requires_root]

ME = "node1"
AGENT_USER = "system:serviceaccount:kube-system:nosdn-agent"
CIDR = "10.244.0.0/16"


def manifests(*args: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "nosdn", "manifests", "--image", "nosdn:test", *args],
        capture_output=True,
        text=True,
        check=True,
    )
    return proc.stdout


def ready_node(name: str, ips: list[str], cidrs: list[str]) -> dict[str, Any]:
    """A Node as the kubelet leaves it: addresses and a Ready condition with its heartbeat."""
    obj = node_object(name, ips, cidrs)
    obj["metadata"].pop("creationTimestamp", None)
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    obj["status"]["conditions"] = [
        {
            "type": "Ready",
            "status": "True",
            "reason": "KubeletReady",
            "message": "kubelet is posting ready status",
            "lastHeartbeatTime": now,
            "lastTransitionTime": now,
        }
    ]
    return obj


@dataclass
class Env:
    ns: str
    api: KubeApi
    workdir: Path
    kubeconfig: Path
    agents: list[AgentProcess] = field(default_factory=list)

    def agent(self, *args: str, kubeconfig: Path | None = None) -> AgentProcess:
        a = AgentProcess(
            self.ns,
            ME,
            "",
            self.workdir,
            "--cluster-cidr",
            CIDR,
            *args,
            kubeconfig=kubeconfig or self.kubeconfig,
        ).start()
        self.agents.append(a)
        return a

    def ready(self, a: AgentProcess, timeout: float = 30) -> None:
        def ok() -> bool:
            if not a.running():
                raise AssertionError(f"agent exited:\n{a.logs()[-3000:]}")
            return a.get("/readyz")[0] == 200

        wait_until(ok, timeout, 0.1, "agent /readyz")

    def routes(self) -> dict[str, str]:
        return nosdn_routes(self.ns)


@pytest.fixture
def env(kapi: KubeApi, netns: Callable[..., str], tmp_path: Path) -> Iterator[Env]:
    ns = netns("nosdn-ragent")
    ip(ns, "link", "add", "eth0", "type", "veth", "peer", "name", "peer0")
    ip(ns, "link", "set", "eth0", "addrgenmode", "none")
    ip(ns, "link", "set", "peer0", "addrgenmode", "none")
    ip(ns, "link", "set", "peer0", "up")
    ip(ns, "addr", "add", "10.10.0.1/24", "dev", "eth0")
    ip(ns, "link", "set", "eth0", "up")
    kapi.attach(ns)
    kapi.kubectl("apply", "-f", "-", stdin=manifests("--cluster-cidr", CIDR))
    kubeconfig, _ = kapi.service_account("kube-system", "nosdn-agent")
    for obj in (
        ready_node(ME, ["10.10.0.1"], ["10.244.1.0/24"]),
        ready_node("node2", ["10.10.0.2"], ["10.244.2.0/24"]),
        ready_node("node3", ["10.10.0.3"], ["10.244.3.0/24"]),
    ):
        kapi.create_node(obj)
    e = Env(ns, kapi, tmp_path, kubeconfig)
    try:
        yield e
    finally:
        for a in e.agents:
            a.stop(signal.SIGKILL)


def wanted(*ids: int) -> dict[str, str]:
    return {f"10.244.{i}.0/24": f"10.10.0.{i}" for i in ids}


def conditions(api: KubeApi, name: str) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in api.node(name)["status"].get("conditions", [])}


def test_routes_follow_the_nodes_with_the_manifests_permissions(env: Env) -> None:
    api = env.api
    a = env.agent()
    env.ready(a)
    assert env.routes() == wanted(2, 3)
    # NetworkUnavailable set by a patch that leaves the kubelet's Ready condition as it was
    cond = wait_until(
        lambda: conditions(api, ME).get("NetworkUnavailable"), 10, what="NetworkUnavailable"
    )
    assert (cond["status"], cond["reason"]) == ("False", "NosdnIsUp")
    ready = conditions(api, ME)["Ready"]
    assert (ready["status"], ready["reason"]) == ("True", "KubeletReady")

    api.create_node(ready_node("node4", ["10.10.0.4"], ["10.244.4.0/24"]))
    wait_until(lambda: env.routes() == wanted(2, 3, 4), 10, what="node4 added")
    api.patch_node(
        "node2", {"status": {"addresses": [{"type": "InternalIP", "address": "10.10.0.22"}]}}
    )
    wait_until(lambda: env.routes().get("10.244.2.0/24") == "10.10.0.22", 10, what="node2 moved")
    # spec.podCIDR is immutable on a real server: a node changes subnet by coming back anew
    api.delete_node("node3")
    api.create_node(ready_node("node3", ["10.10.0.3"], ["10.244.33.0/24"]))
    wait_until(
        lambda: (
            env.routes()
            == {**wanted(4), "10.244.2.0/24": "10.10.0.22", "10.244.33.0/24": "10.10.0.3"}
        ),
        10,
        what="node3 back with another subnet",
    )
    api.delete_node("node4")
    wait_until(lambda: "10.244.4.0/24" not in env.routes(), 10, what="node4 removed")
    assert "forbidden" not in a.logs().lower(), a.logs()[-2000:]


def test_ended_watches_resume_without_a_relist(env: Env) -> None:
    api = env.api
    lists_before = api.requests("list", user=AGENT_USER)
    watches_before = api.requests("watch", user=AGENT_USER)
    a = env.agent("--watch-timeout", "2")
    env.ready(a)
    time.sleep(7)  # several watches end (the agent asks for 2 s ones)
    api.create_node(ready_node("node5", ["10.10.0.5"], ["10.244.5.0/24"]))
    wait_until(lambda: "10.244.5.0/24" in env.routes(), 10, what="node5 added")
    watches = api.requests("watch", user=AGENT_USER) - watches_before
    lists = api.requests("list", user=AGENT_USER) - lists_before
    assert watches >= 3, f"{watches} watches"
    assert lists == 1, f"{lists} lists for {watches} watches: a relist after an ended watch"


def test_an_api_server_restart_changes_no_route_and_converges_after(env: Env) -> None:
    api = env.api
    a = env.agent()
    env.ready(a)
    assert env.routes() == wanted(2, 3)
    api.stop_apiserver()
    try:
        time.sleep(3)
        assert env.routes() == wanted(2, 3)
    finally:
        api.restart_apiserver()
    api.create_node(ready_node("node6", ["10.10.0.6"], ["10.244.6.0/24"]))
    wait_until(lambda: env.routes() == wanted(2, 3, 6), 20, what="converged after the restart")


def test_every_peer_refused_is_neither_ready_nor_network_available(env: Env) -> None:
    """Dual-stack Nodes and only an IPv4 --cluster-cidr: every peer is refused. The agent must
    not say ready, nor NetworkUnavailable=False, with 0 routes; one routable peer is enough."""
    api = env.api
    for i in (2, 3):
        api.delete_node(f"node{i}")
        api.create_node(
            ready_node(f"node{i}", [f"10.10.0.{i}"], [f"10.244.{i}.0/24", f"fd10:0:0:{i}::/64"])
        )
    a = env.agent()

    def unavailable() -> Any:
        cond = conditions(api, ME).get("NetworkUnavailable")
        return cond if cond and cond["reason"] == "NosdnNoRoutablePeer" else None

    cond = wait_until(unavailable, 20, 0.1, "NetworkUnavailable=True, no routable peer")
    assert cond["status"] == "True"
    assert "no route to any of the 2 other node(s)" in cond["message"]
    # the condition can be posted a moment before the probe leaves "settling after the first
    # pass": wait for the probe to say why, then hold it to 503
    status, body = wait_until(
        lambda: (r := a.get("/readyz"))[1].startswith("no route to any") and r,
        10,
        0.05,
        "/readyz names the missing peers",
    )
    assert (status, body.startswith("no route to any of the 2 other node(s)")) == (503, True)
    assert env.routes() == {}
    assert a.metric("nosdn_peers_routed") == 0
    api.create_node(ready_node("node4", ["10.10.0.4"], ["10.244.4.0/24"]))
    env.ready(a)
    assert env.routes() == wanted(4)
    wait_until(
        lambda: conditions(api, ME)["NetworkUnavailable"]["status"] == "False", 10, what="up"
    )


VANISH_TABLE = "nosdn_test_vanish"


def vanish(ns: str, addr: str) -> None:
    """Drop every packet between namespace ``ns`` and ``addr``, both ways: to TCP the host at
    ``addr`` is gone without a FIN or an RST, as in a failover to another machine."""
    rules = (
        f"table inet {VANISH_TABLE} {{\n"
        f"  chain in {{ type filter hook input priority -300; ip saddr {addr} drop; }}\n"
        f"  chain out {{ type filter hook output priority -300; ip daddr {addr} drop; }}\n"
        "}\n"
    )
    subprocess.run(
        ["ip", "netns", "exec", ns, "nft", "-f", "-"], input=rules, text=True, check=True
    )


def reappear(ns: str) -> None:
    subprocess.run(
        ["ip", "netns", "exec", ns, "nft", "delete", "table", "inet", VANISH_TABLE], check=True
    )


def test_an_api_that_vanishes_silently_is_noticed_within_the_deadline(env: Env) -> None:
    """The API server's host goes silent (no FIN, no RST): the agent's watch must not stay
    ESTABLISHED and trusted. Within the deadline it says disconnected and not ready; once the
    host is back, a relist brings the change made meanwhile."""
    api = env.api
    deadline = 3.0
    a = env.agent("--watch-deadline", str(deadline))
    env.ready(a)
    assert a.metric("nosdn_api_connected") == 1
    # a live server is never taken for dead: it ends each (short) watch before the deadline
    lists = a.metric("nosdn_node_lists")
    time.sleep(2.5 * deadline)
    assert a.metric("nosdn_node_lists") == lists
    assert a.metric("nosdn_api_connected") == 1
    vanish(env.ns, API_ADDRESS)
    try:
        t0 = time.monotonic()
        wait_until(
            lambda: a.metric("nosdn_api_connected") == 0,
            deadline + 4,
            0.1,
            "the agent notices the silent API",
        )
        noticed = time.monotonic() - t0
        status, body = a.get("/readyz")
        assert (status, "not connected to the Kubernetes API" in body) == (503, True), body
        api.create_node(ready_node("node4", ["10.10.0.4"], ["10.244.4.0/24"]))
        assert env.routes() == wanted(2, 3)  # nothing can be seen now
    finally:
        reappear(env.ns)
    wait_until(lambda: env.routes() == wanted(2, 3, 4), 30, 0.1, "node4 after the API is back")
    env.ready(a)
    assert a.metric("nosdn_api_connected") == 1
    assert (a.metric("nosdn_node_lists") or 0) > (lists or 0)  # a relist, not a resumed watch
    assert "taken for dead" in a.logs()
    assert noticed < deadline + 4


def _role_without(manifest: str, resource: str, verb: str) -> str:
    """The manifests with ``verb`` taken off ``resource`` in their ClusterRole and Roles."""
    import yaml

    docs = [d for d in yaml.safe_load_all(manifest) if d]
    for d in docs:
        if d["kind"] in ("ClusterRole", "Role"):
            for rule in d["rules"]:
                if resource in rule["resources"] and verb in rule["verbs"]:
                    rule["verbs"].remove(verb)
            d["rules"] = [r for r in d["rules"] if r["verbs"]]
    return yaml.safe_dump_all(docs)


def _cluster_role_rules(manifest: str) -> list[tuple[str, str]]:
    import yaml

    role = next(d for d in yaml.safe_load_all(manifest) if d and d["kind"] == "ClusterRole")
    return [(res, verb) for r in role["rules"] for res in r["resources"] for verb in r["verbs"]]


def _can_i(api: KubeApi, kubeconfig: Path, namespace: str = "default") -> set[tuple[str, str]]:
    """(resource, verb) pairs ``kubectl auth can-i --list`` grants in ``namespace`` (its Roles
    and every ClusterRole; resource URLs only)."""
    import re

    out = api.kubectl("auth", "can-i", "--list", "-n", namespace, kubeconfig=kubeconfig)
    row = re.compile(r"^(\S+)\s+\[(.*?)\]\s+\[(.*?)\]\s+\[(.*?)\]\s*$")
    granted: set[tuple[str, str]] = set()
    for line in out.splitlines()[1:]:
        m = row.match(line)
        if m and not m.group(2):  # a resource, not a non-resource URL
            granted |= {(m.group(1), verb) for verb in m.group(4).split()}
    return granted


def test_the_cluster_role_grants_nothing_more_than_the_manifests_say(env: Env) -> None:
    api = env.api
    api.call(
        "POST",
        "/api/v1/namespaces/kube-system/serviceaccounts",
        {"metadata": {"name": "nobody"}},
    )
    try:
        nobody, _ = api.service_account("kube-system", "nobody")
        beyond = _can_i(api, env.kubeconfig) - _can_i(api, nobody)
    finally:
        api.call("DELETE", "/api/v1/namespaces/kube-system/serviceaccounts/nobody")
    rules = set(_cluster_role_rules(manifests("--cluster-cidr", CIDR)))
    assert beyond == rules


@pytest.mark.parametrize(
    ("resource", "verb"),
    [
        ("nodes", "list"),
        ("nodes", "watch"),
        ("nodes/status", "patch"),
        ("events", "create"),
    ],
)
def test_each_rule_of_the_cluster_role_is_needed(env: Env, resource: str, verb: str) -> None:
    api = env.api
    api.kubectl(
        "apply", "-f", "-", stdin=_role_without(manifests("--cluster-cidr", CIDR), resource, verb)
    )
    try:
        a = env.agent()
        if resource == "events":  # the agent posts an Event when a Node conflicts with this one
            bad = ready_node("a-thief", ["10.10.0.9"], ["10.244.1.0/24"])
            api.create_node(bad)
        want = f'cannot {verb} resource "{resource}"'
        wait_until(lambda: want in a.logs(), 20, what=f"the agent says it {want}")
    finally:
        api.kubectl("apply", "-f", "-", stdin=manifests("--cluster-cidr", CIDR))


def _bare_node(name: str, addr: str) -> dict[str, Any]:
    obj = ready_node(name, [addr], [])
    obj["spec"] = {}
    return obj


def test_two_allocators_started_together_one_leads_and_no_subnet_is_given_twice(
    kapi: KubeApi, netns: Callable[..., str], tmp_path: Path
) -> None:
    api = kapi
    api.kubectl(
        "apply", "-f", "-", stdin=manifests("--cluster-cidr", CIDR, "--allocate-node-cidrs")
    )
    kubeconfig, _ = api.service_account("kube-system", "nosdn-agent")
    hosts = {}
    for i, name in ((1, "alloc-a"), (2, "alloc-b")):
        ns = netns("nosdn-ralloc")
        ip(ns, "link", "add", "eth0", "type", "veth", "peer", "name", "peer0")
        ip(ns, "link", "set", "peer0", "up")
        ip(ns, "addr", "add", f"10.10.0.{i}/24", "dev", "eth0")
        ip(ns, "link", "set", "eth0", "up")
        api.attach(ns)
        hosts[name] = ns
    agents: list[AgentProcess] = []
    try:
        for round_ in range(3):
            api.delete_all_nodes()
            api.call("DELETE", "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases")
            for i, name in enumerate(hosts, start=1):
                api.create_node(_bare_node(name, f"10.10.0.{i}"))
            for i in range(3, 13):
                api.create_node(_bare_node(f"n{i:02}", f"10.10.0.{i}"))
            agents = [
                AgentProcess(
                    ns,
                    name,
                    "",
                    tmp_path,
                    "--cluster-cidr",
                    CIDR,
                    "--allocate-node-cidrs",
                    kubeconfig=kubeconfig,
                )
                for name, ns in hosts.items()
            ]
            for a in agents:  # as close to the same instant as two processes get
                a.start()

            def allocated() -> dict[str, list[str]]:
                got = {n["metadata"]["name"]: n["spec"].get("podCIDRs") for n in api.nodes()}
                return got if all(got.values()) else {}

            got = wait_until(allocated, 30, 0.2, f"round {round_}: every node allocated")
            subnets = [c for cidrs in got.values() for c in cidrs]
            assert len(subnets) == len(set(subnets)) == 12, got
            leaders = [a for a in agents if a.metric("nosdn_allocator_leader") == 1]
            assert len(leaders) == 1, [a.metric("nosdn_allocator_leader") for a in agents]
            lease = api.call(
                "GET", "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/nosdn-ipam"
            )
            assert leaders[0].node in lease["spec"]["holderIdentity"]
            if round_ < 2:
                for a in agents:
                    a.stop(signal.SIGKILL)
        # the leader stops: the other takes over within the lease duration and allocates
        leader = leaders[0]
        other = next(a for a in agents if a is not leader)
        leader.stop(signal.SIGKILL)
        api.create_node(_bare_node("late", "10.10.0.99"))
        t0 = time.monotonic()
        wait_until(lambda: api.node("late")["spec"].get("podCIDRs"), 30, 0.2, what="late allocated")
        assert time.monotonic() - t0 < 15 + 5  # lease duration, plus a retry and a pass
        assert other.metric("nosdn_allocator_leader") == 1
        late = api.node("late")["spec"]["podCIDRs"][0]
        assert late not in subnets
    finally:
        for a in agents:
            a.stop(signal.SIGKILL)
