"""`nosdn agent` end to end (root): the real agent process in a node namespace, the emulator on
that namespace's loopback, the real kernel table.

Each test makes one namespace (unique name, removed with everything running in it): ``eth0``
(a veth whose peer stays in the same namespace, MTU 1400) holds the node's 10.10.0.1/24, so
peers 10.10.0.2.. are on-link; the emulator serves the Nodes on 127.0.0.1:18080 of that same
namespace (see `agent_env` for why nothing runs in the machine's own namespace). The agent runs
with a 2 s resync and 5 s watch timeout so outages and relists happen within a test's time.
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from agent_env import AgentProcess, Emulator, ip_json, node_object, nosdn_routes, wait_until
from conftest import ip, requires_root

pytestmark = [pytest.mark.root, pytest.mark.slow, requires_root]

ME = "node1"


def peers(n: int, start: int = 2) -> list[dict[str, object]]:
    return [
        node_object(f"node{i}", [f"10.10.0.{i}"], [f"10.244.{i}.0/24"]) for i in range(start, n + 1)
    ]


def wanted(*ids: int) -> dict[str, str]:
    return {f"10.244.{i}.0/24": f"10.10.0.{i}" for i in ids}


def written(monitor_output: str) -> list[str]:
    """The lines of ``ip monitor route nexthop`` output that someone wrote: the kernel's own
    routes (an IPv6 link-local address finishing DAD on the test's veth) may show up anytime."""
    return [ln for ln in monitor_output.splitlines() if ln.strip() and "proto kernel" not in ln]


@dataclass
class NodeEnv:
    ns: str
    emu: Emulator
    workdir: Path
    agents: list[AgentProcess] = field(default_factory=list)

    def agent(self, *args: str) -> AgentProcess:
        a = AgentProcess(self.ns, ME, self.emu.url, self.workdir, *args).start()
        self.agents.append(a)
        return a

    def ready(self, a: AgentProcess, timeout: float = 20) -> None:
        def ok() -> bool:
            if not a.running():
                raise AssertionError(f"agent exited:\n{a.logs()[-3000:]}")
            return a.get("/readyz")[0] == 200

        wait_until(ok, timeout, 0.1, "agent /readyz")

    def routes(self) -> dict[str, str]:
        return nosdn_routes(self.ns)


@pytest.fixture
def env(netns: Callable[..., str], tmp_path: Path) -> Iterator[NodeEnv]:
    ns = netns("nosdn-agent")
    ip(ns, "link", "add", "eth0", "mtu", "1400", "type", "veth", "peer", "name", "peer0")
    # no IPv6 link-local addresses: their DAD finishing mid-test adds kernel routes that
    # `ip monitor` would show while a test asserts that nothing was written
    ip(ns, "link", "set", "eth0", "addrgenmode", "none")
    ip(ns, "link", "set", "peer0", "addrgenmode", "none")
    ip(ns, "link", "set", "peer0", "up")
    ip(ns, "addr", "add", "10.10.0.1/24", "dev", "eth0")
    ip(ns, "link", "set", "eth0", "up")
    me = node_object(ME, ["10.10.0.1"], ["10.244.1.0/24"])
    emu = Emulator(ns, workdir=tmp_path, seed=[me, *peers(3)]).start()
    e = NodeEnv(ns, emu, tmp_path)
    try:
        yield e
    finally:
        for a in e.agents:
            a.stop(signal.SIGKILL)
        emu.kill()


def test_routes_follow_nodes_added_changed_deleted(env: NodeEnv) -> None:
    a = env.agent()
    env.ready(a)
    assert env.routes() == wanted(2, 3)
    # the node's own chores: CNI conflist with the interface's MTU, the Node condition
    conf = a.cni.read_text()
    assert '"subnet": "10.244.1.0/24"' in conf
    assert '"mtu": 1400' in conf
    cond = wait_until(
        lambda: [
            c
            for c in env.emu.node(ME)["status"].get("conditions", [])
            if c["type"] == "NetworkUnavailable"
        ],
        5,
        what="NetworkUnavailable condition",
    )
    assert (cond[0]["status"], cond[0]["reason"]) == ("False", "NosdnIsUp")

    env.emu.create_node(node_object("node4", ["10.10.0.4"], ["10.244.4.0/24"]))
    wait_until(lambda: env.routes() == wanted(2, 3, 4), 5, what="node4 added")
    # address change: one nexthop replaced in place, the route keeps pointing at it
    nh_before = {r["dst"]: r.get("nhid") for r in ip_json(env.ns, "route", "show", "proto", "157")}
    env.emu.patch_node(
        "node2", {"status": {"addresses": [{"type": "InternalIP", "address": "10.10.0.22"}]}}
    )
    wait_until(lambda: env.routes().get("10.244.2.0/24") == "10.10.0.22", 5, what="node2 moved")
    nh_after = {r["dst"]: r.get("nhid") for r in ip_json(env.ns, "route", "show", "proto", "157")}
    assert nh_after["10.244.2.0/24"] == nh_before["10.244.2.0/24"]
    # subnet change
    env.emu.patch_node(
        "node3", {"spec": {"podCIDR": "10.244.33.0/24", "podCIDRs": ["10.244.33.0/24"]}}
    )
    wait_until(
        lambda: "10.244.33.0/24" in env.routes() and "10.244.3.0/24" not in env.routes(),
        5,
        what="node3's subnet moved",
    )
    env.emu.delete_node("node4")
    wait_until(lambda: "10.244.4.0/24" not in env.routes(), 5, what="node4 removed")
    assert env.routes() == {"10.244.2.0/24": "10.10.0.22", "10.244.33.0/24": "10.10.0.3"}


def test_one_bad_node_object_moves_no_route(env: NodeEnv) -> None:
    a = env.agent()
    env.ready(a)
    assert env.routes() == wanted(2, 3)
    # each of these, with a name sorting first, took routes from the established nodes before
    bad = [
        node_object("a-cover", ["10.10.0.50"], ["10.244.0.0/16"]),
        node_object("a-default", ["10.10.0.51"], ["0.0.0.0/0"]),
        node_object("a-dup", ["10.10.0.52"], ["10.244.2.0/24"]),
        node_object("a-mine", ["10.10.0.53"], ["10.244.1.0/24"]),
        node_object("a-addr", ["10.10.0.3"], ["10.244.60.0/24"]),
    ]
    for obj in bad:
        env.emu.create_node(obj)
    # a good node created after them still gets its route: the agent saw every event
    env.emu.create_node(node_object("node4", ["10.10.0.4"], ["10.244.4.0/24"]))
    wait_until(lambda: env.routes() == wanted(2, 3, 4), 5, what="node4 added")
    time.sleep(0.5)
    assert env.routes() == wanted(2, 3, 4)
    # and a restart, with nothing routed in memory, keeps them too (the creation times decide)
    a.stop(signal.SIGTERM)
    b = env.agent()
    env.ready(b)
    time.sleep(0.5)
    assert env.routes() == wanted(2, 3, 4)


def test_malformed_status_addresses_blind_the_agent_to_no_other_node(env: NodeEnv) -> None:
    """Node objects whose status.addresses has a shape no kubelet writes (the emulator stores
    anything): each is skipped and reported, and the watch keeps bringing the other nodes."""
    a = env.agent()
    env.ready(a)
    shapes: list[object] = [
        "10.10.0.40",
        40,
        {"type": "InternalIP", "address": "10.10.0.41"},
        ["10.10.0.42"],
        [{"type": "InternalIP"}],
        [{"type": "InternalIP", "address": 43}],
    ]
    for i, shape in enumerate(shapes):
        obj = node_object(f"odd{i}", [], [f"10.244.{40 + i}.0/24"])
        obj["status"]["addresses"] = shape
        env.emu.create_node(obj)
    env.emu.create_node(node_object("node4", ["10.10.0.4"], ["10.244.4.0/24"]))
    wait_until(lambda: env.routes() == wanted(2, 3, 4), 5, what="node4 after the odd nodes")
    # an established node turning odd loses its route alone; the others keep changing
    env.emu.patch_node("node3", {"status": {"addresses": "10.10.0.3"}})
    env.emu.patch_node(
        "node2", {"status": {"addresses": [{"type": "InternalIP", "address": "10.10.0.22"}]}}
    )
    want = {"10.244.2.0/24": "10.10.0.22", "10.244.4.0/24": "10.10.0.4"}
    wait_until(lambda: env.routes() == want, 5, what="node2 moved, node3 skipped")
    assert a.metric("nosdn_api_connected") == 1
    assert a.metric("nosdn_node_lists") == 1  # never relisted: the watch went on
    logs = a.logs()
    for i in range(len(shapes)):
        assert f"node odd{i}: status.addresses" in logs, logs[-3000:]
    assert "node node3: status.addresses (a string) is not a list" in logs


def test_status_only_events_cause_no_kernel_work(env: NodeEnv) -> None:
    a = env.agent()
    env.ready(a)
    writes = a.metric("nosdn_route_writes_total")
    monitor = subprocess.Popen(
        ["ip", "-n", env.ns, "monitor", "route", "nexthop"], stdout=subprocess.PIPE, text=True
    )
    try:
        for i in range(20):
            env.emu.patch_node(
                "node2",
                {
                    "status": {
                        "conditions": [{"type": "Ready", "status": "True", "message": f"beat {i}"}]
                    }
                },
            )
        wait_until(
            lambda: (
                (a.metric('nosdn_node_events_total{relevant="false",type="MODIFIED"}') or 0) >= 20
            ),
            5,
            what="20 status-only events seen",
        )
        time.sleep(0.5)
    finally:
        monitor.terminate()
        out, _ = monitor.communicate(timeout=5)
    assert a.metric("nosdn_route_writes_total") == writes
    assert written(out) == []


def test_api_outage_changes_nothing_and_converges_after(env: NodeEnv) -> None:
    a = env.agent()
    env.ready(a)
    assert env.routes() == wanted(2, 3)
    env.emu.kill()
    wait_until(lambda: a.metric("nosdn_api_connected") == 0, 20, what="agent notices the outage")
    # several resyncs with the API gone: the last known state stays, and is still repaired
    ip(env.ns, "route", "del", "10.244.3.0/24")
    wait_until(lambda: env.routes() == wanted(2, 3), 3, what="repair during the outage")
    time.sleep(4.5)
    assert env.routes() == wanted(2, 3)
    assert a.running()
    # the API returns with a different world: node3 gone, node2 moved, node5 new
    me = node_object(ME, ["10.10.0.1"], ["10.244.1.0/24"])
    n2 = node_object("node2", ["10.10.0.12"], ["10.244.2.0/24"])
    n5 = node_object("node5", ["10.10.0.5"], ["10.244.5.0/24"])
    env.emu.start([me, n2, n5])
    wait_until(
        lambda: env.routes() == {"10.244.2.0/24": "10.10.0.12", "10.244.5.0/24": "10.10.0.5"},
        30,
        what="convergence after the outage",
    )
    assert a.metric("nosdn_api_connected") == 1


def test_restart_deletes_no_route(env: NodeEnv) -> None:
    env.emu.kill()
    env.emu.start([node_object(ME, ["10.10.0.1"], ["10.244.1.0/24"]), *peers(8)])
    a = env.agent()
    env.ready(a)
    before = env.routes()
    assert before == wanted(*range(2, 9))
    nexthops = ip_json(env.ns, "nexthop", "show")
    monitor = subprocess.Popen(
        ["ip", "-n", env.ns, "monitor", "route", "nexthop"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert a.stop(signal.SIGTERM) == 0  # a clean stop leaves everything
        assert env.routes() == before
        b = env.agent()
        env.ready(b)
        passes = b.metric("nosdn_reconcile_passes_total") or 0
        wait_until(
            lambda: (b.metric("nosdn_reconcile_passes_total") or 0) >= passes + 2, 10, what="passes"
        )
        b.stop(signal.SIGKILL)  # a crash leaves everything too
        c = env.agent()
        env.ready(c)
        time.sleep(0.5)
    finally:
        monitor.terminate()
        out, _ = monitor.communicate(timeout=5)
    assert "Deleted" not in out, out
    assert written(out) == [], f"a restart wrote to the kernel:\n{out}"
    assert env.routes() == before
    assert ip_json(env.ns, "nexthop", "show") == nexthops


def test_repairs_within_a_second(env: NodeEnv) -> None:
    a = env.agent("--resync", "60")  # only the netlink monitor can be this fast
    env.ready(a)
    want = wanted(2, 3)
    ip(env.ns, "route", "del", "10.244.2.0/24")
    t = time.monotonic()
    wait_until(lambda: env.routes() == want, 1.0, 0.01, "route deleted by hand restored")
    route_repair = time.monotonic() - t
    nhid = next(r["nhid"] for r in ip_json(env.ns, "route", "show", "proto", "157"))
    ip(env.ns, "nexthop", "del", "id", str(nhid))  # takes its routes with it
    t = time.monotonic()
    wait_until(lambda: env.routes() == want, 1.0, 0.01, "nexthop deleted by hand restored")
    nhid = next(r["nhid"] for r in ip_json(env.ns, "route", "show", "proto", "157"))
    ip(env.ns, "nexthop", "replace", "id", str(nhid), "via", "10.10.0.9", "dev", "eth0")
    t = time.monotonic()  # one of ours taken over (proto unspec) and pointed elsewhere
    wait_until(lambda: env.routes() == want, 1.0, 0.01, "nexthop replaced by hand repaired")
    ip(env.ns, "link", "set", "eth0", "down")
    wait_until(lambda: env.routes() == {}, 2, 0.01, "the kernel drops routes of a down link")
    ip(env.ns, "link", "set", "eth0", "up")
    t = time.monotonic()
    wait_until(lambda: env.routes() == want, 1.0, 0.01, "routes back after the link came up")
    flap_repair = time.monotonic() - t
    assert route_repair < 1.0
    assert flap_repair < 1.0


def test_a_route_taken_over_by_hand_is_reported_at_once_and_ours_back_when_it_goes(
    env: NodeEnv,
) -> None:
    """``ip route replace`` with another protocol takes one of our prefixes over: a conflict,
    reported, never overwritten; its removal lets ours back in. With a 10-minute resync only
    the netlink monitor's nudge can explain a reaction within two seconds."""
    a = env.agent("--resync", "600")
    env.ready(a)
    ip(env.ns, "route", "replace", "10.244.2.0/24", "via", "10.10.0.9", "proto", "static")
    wait_until(lambda: a.metric("nosdn_route_conflicts") == 1, 2, 0.02, "conflict reported")
    assert "conflict: route to 10.244.2.0/24 (pods of node node2) is owned by static" in a.logs()
    assert env.routes() == wanted(3)
    found = ip_json(env.ns, "route", "show", "10.244.2.0/24")
    assert [(r.get("gateway"), r.get("protocol")) for r in found] == [("10.10.0.9", "static")]
    ip(env.ns, "route", "del", "10.244.2.0/24", "proto", "static")
    wait_until(lambda: env.routes() == wanted(2, 3), 2, 0.02, "ours back after the foreign went")
    assert a.metric("nosdn_route_conflicts") == 0
    # a foreign route to a prefix nobody wants is none of our business: no pass for it
    passes = a.metric("nosdn_reconcile_passes_total")
    ip(env.ns, "route", "add", "192.0.2.0/24", "via", "10.10.0.9", "proto", "static")
    ip(env.ns, "route", "del", "192.0.2.0/24", "proto", "static")
    time.sleep(0.5)
    assert a.metric("nosdn_reconcile_passes_total") == passes


def test_emptied_node_list_is_refused_until_a_list_confirms_it(env: NodeEnv) -> None:
    env.emu.kill()
    me = node_object(ME, ["10.10.0.1"], ["10.244.1.0/24"])
    env.emu.start([me, *peers(5)])
    a = env.agent("--deletion-hold", "0")  # confirmed by the next list, not after a hold
    env.ready(a)
    assert env.routes() == wanted(2, 3, 4, 5)
    # the API comes back with only this node, and cannot be listed a second time
    env.emu.kill()
    env.emu.start([me], max_node_lists=1)
    wait_until(lambda: (a.metric("nosdn_deletions_held") or 0) == 4, 20, what="deletions held")
    time.sleep(3)  # more than a resync: still refused
    assert env.routes() == wanted(2, 3, 4, 5)
    assert (a.metric("nosdn_deletions_refused_total") or 0) >= 4
    assert "holding 4 route removals" in a.logs()
    events = [e for e in env.emu.events() if e["reason"] == "RouteDeletionsRefused"]
    assert events
    assert events[0]["involvedObject"]["name"] == ME
    # a list that works confirms the shrink: now the routes go
    env.emu.kill()
    env.emu.start([me])
    wait_until(lambda: env.routes() == {}, 30, what="confirmed deletions")
    assert a.metric("nosdn_deletions_held") == 0


def test_a_burst_of_deletions_is_held_beyond_the_share_until_released(env: NodeEnv) -> None:
    # 150 peers; 90% of them deleted within milliseconds: the DELETED events reach the agent
    # over several passes, each under the share; the window adds them up
    env.emu.kill()
    me = node_object(ME, ["10.10.0.1"], ["10.244.1.0/24"])
    env.emu.start([me, *peers(151)])
    a = env.agent("--deletion-window", "60", "--deletion-hold", "300")
    env.ready(a, timeout=60)
    wait_until(lambda: len(env.routes()) == 150, 30, what="150 routes")
    for i in range(17, 152):
        env.emu.delete_node(f"node{i}")
    wait_until(lambda: (a.metric("nosdn_deletions_held") or 0) > 0, 20, what="removals held")
    time.sleep(3)  # more than a resync and several passes: the hold stands
    left = len(env.routes())
    assert left >= 75, f"{150 - left} of 150 routes removed, beyond the share of 50%"
    assert wanted(*range(2, 17)).items() <= env.routes().items()
    assert "nosdn.io/release-deletions" in a.logs()
    # an operator's release lets the held removals go at once
    env.emu.patch_node(ME, {"metadata": {"annotations": {"nosdn.io/release-deletions": "1"}}})
    try:
        wait_until(lambda: env.routes() == wanted(*range(2, 17)), 20, what="released removals")
    except AssertionError as e:
        raise AssertionError(f"{e}: {len(env.routes())} routes; log:\n{a.logs()[-4000:]}") from None
    wait_until(lambda: a.metric("nosdn_deletions_held") == 0, 5, what="no removal held")


def test_egress_masquerade_reaches_outside(netns: Callable[..., str], tmp_path: Path) -> None:
    """pod -> node -> outside: the outside has no route to pods, so only masquerade works."""
    node, pod, outside = netns("nosdn-eg"), netns("nosdn-egpod"), netns("nosdn-egout")
    ip(node, "link", "add", "eth0", "type", "veth", "peer", "name", "peer0")
    ip(node, "link", "set", "peer0", "up")
    ip(node, "addr", "add", "10.10.0.1/24", "dev", "eth0")
    ip(node, "link", "set", "eth0", "up")
    ip(node, "link", "add", "cni0", "type", "veth", "peer", "name", "eth0", "netns", pod)
    ip(node, "addr", "add", "10.244.1.1/24", "dev", "cni0")
    ip(node, "link", "set", "cni0", "up")
    ip(pod, "addr", "add", "10.244.1.2/24", "dev", "eth0")
    ip(pod, "link", "set", "eth0", "up")
    ip(pod, "route", "add", "default", "via", "10.244.1.1")
    ip(node, "link", "add", "up0", "type", "veth", "peer", "name", "eth0", "netns", outside)
    ip(node, "addr", "add", "192.0.2.1/24", "dev", "up0")
    ip(node, "link", "set", "up0", "up")
    ip(outside, "addr", "add", "192.0.2.2/24", "dev", "eth0")
    ip(outside, "link", "set", "eth0", "up")

    def ping() -> bool:
        argv = ["ip", "netns", "exec", pod, "ping", "-n", "-c", "1", "-W", "1", "192.0.2.2"]
        return subprocess.run(argv, capture_output=True, check=False).returncode == 0

    seed = [
        node_object(ME, ["10.10.0.1"], ["10.244.1.0/24"]),
        node_object("node2", ["10.10.0.2"], ["10.244.2.0/24"]),
    ]
    emu = Emulator(node, workdir=tmp_path, seed=seed).start()
    agents: list[AgentProcess] = []
    try:
        a = AgentProcess(node, ME, emu.url, tmp_path, "--cluster-cidr", "10.244.0.0/16").start()
        agents.append(a)
        wait_until(lambda: a.get("/readyz")[0] == 200, 20, what="agent ready")
        wait_until(lambda: (a.metric("nosdn_egress_rules_writes_total") or 0) >= 1, 5, what="nft")
        assert ping(), "pod could not reach the outside through masquerade"
        table = subprocess.run(
            ["ip", "netns", "exec", node, "nft", "list", "table", "inet", "nosdn"],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        assert "10.244.0.0/16" in table
        assert "masquerade" in table
        a.stop()
        assert ping(), "a stopped agent must leave its rules"
        b = AgentProcess(node, ME, emu.url, tmp_path, "--masquerade=false").start()
        agents.append(b)
        wait_until(lambda: b.get("/readyz")[0] == 200, 20, what="agent ready")
        wait_until(
            lambda: subprocess.run(
                ["ip", "netns", "exec", node, "nft", "list", "table", "inet", "nosdn"],
                capture_output=True, check=False,
            ).returncode != 0,
            5,
            what="table removed with --masquerade=false",
        )  # fmt: skip
        assert not ping(), "without masquerade the outside cannot answer a pod"
    finally:
        for ag in agents:
            ag.stop(signal.SIGKILL)
        emu.kill()


def test_allocator_gives_subnets_and_offlink_nodes_are_reported(env: NodeEnv) -> None:
    env.emu.kill()
    seed = [
        node_object(ME, ["10.10.0.1"]),  # no pod subnet yet
        node_object("node2", ["10.10.0.2"], ["10.244.2.0/24"]),
        node_object("node3", ["10.10.0.3"]),
        node_object("far", ["192.168.5.9"], ["10.244.9.0/24"]),  # not on any link of ours
    ]
    env.emu.start(seed)
    a = env.agent("--allocate-node-cidrs", "--cluster-cidr", "10.244.0.0/16")
    env.ready(a)

    def cidrs() -> dict[str, list[str]]:
        return {n["metadata"]["name"]: n["spec"].get("podCIDRs", []) for n in env.emu.nodes()}

    got = wait_until(lambda: all(cidrs().values()) and cidrs(), 10, what="subnets allocated")
    assert got["node2"] == ["10.244.2.0/24"]  # never moved
    assert len({c for v in got.values() for c in v}) == 4
    assert all(c[0].startswith("10.244.") and c[0].endswith("/24") for c in got.values())
    want = {got["node2"][0], got["node3"][0]}  # `far` is skipped
    wait_until(lambda: set(env.routes()) == want, 5, what="routes to allocated subnets")
    wait_until(a.cni.exists, 5, what="conflist once node1 has a subnet")
    assert f'"subnet": "{got[ME][0]}"' in a.cni.read_text()
    lease = env.emu.call(
        "GET", "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/nosdn-ipam"
    )
    assert lease["spec"]["holderIdentity"].startswith(f"{ME}_")
    assert a.metric("nosdn_allocator_leader") == 1
    reasons = wait_until(
        lambda: {e["reason"] for e in env.emu.events()} >= {"NodeOffLink"} and env.emu.events(),
        5,
        what="NodeOffLink event",
    )
    far = next(e for e in reasons if e["reason"] == "NodeOffLink")
    assert "node far (192.168.5.9)" in far["message"]
    assert a.metric("nosdn_offlink_nodes") == 1
