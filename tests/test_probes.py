"""The probes' pure parts: ICMP packets, which peers a batch picks, doctor's lines."""

from __future__ import annotations

import re
import threading
import time
from ipaddress import ip_address, ip_network

import pytest

from nosdn.agent.config import AgentConfig
from nosdn.agent.metrics import AgentMetrics
from nosdn.agent.probes import (
    FIRST_LIST_POLL,
    Pinger,
    Prober,
    _checksum,
    echo_request,
    parse_reply,
)
from nosdn.daemon.config import ConfigError
from nosdn.diagnose.checks_probes import check_probes
from nosdn.diagnose.facts import Facts
from nosdn.model import Node
from nosdn.sources.nodes import NodeInfo


def test_echo_request_checksums_to_zero_and_replies_parse() -> None:
    pkt = echo_request(4, 0x1234, 7, b"nosdn-probe")
    assert _checksum(pkt) == 0
    reply = bytes([0]) + pkt[1:]  # type 0: an echo reply
    ip_header = bytes([0x45]) + bytes(19)
    assert parse_reply(4, ip_header + reply) == (0x1234, 7)
    assert parse_reply(4, ip_header + pkt) is None  # a request is no reply
    assert parse_reply(6, bytes([129, 0, 0, 0, 0x12, 0x34, 0, 9])) == (0x1234, 9)
    assert parse_reply(4, b"short") is None


def nodes(n: int) -> list[NodeInfo]:
    return [
        NodeInfo(
            f"node{i}",
            Node(f"node{i}", (ip_address(f"10.10.0.{i}"),), (ip_network(f"10.244.{i}.0/24"),)),
        )
        for i in range(1, n + 1)
    ]


def test_a_batch_rotates_through_every_peer_and_retries_failing_ones_first() -> None:
    p = Prober(lambda: nodes(11), "node1", AgentMetrics(), pinger=Pinger(), batch=4)
    p.peers = {}
    seen: list[list[str]] = []

    class Fake(Pinger):
        """Answers every probe but node5's (no socket: the batch logic only)."""

        def ping(self, pairs, timeout):  # type: ignore[no-untyped-def]
            seen.append([str(d) for _, d in pairs])
            return [None if str(d) == "10.244.5.1" else 0.001 for _, d in pairs]

    p.pinger = Fake()
    for _ in range(4):
        p.step()
    # 10 peers, 4 per batch: every peer within 3 batches; node5 is retried first once lost
    assert {d for b in seen[:3] for d in b} == {f"10.244.{i}.1" for i in range(2, 12)}
    assert seen[2][0] == "10.244.5.1"
    assert seen[3][0] == "10.244.5.1"
    assert all(len(b) == 4 for b in seen)
    assert p.report()["unreachable"][0]["peer"] == "node5"


def test_doctor_names_the_peer_and_the_cause() -> None:
    assert check_probes(Facts())[0].status == "skip"
    report = {
        "peers": 3,
        "reachable": 2,
        "unknown": 0,
        "unreachable": [
            {
                "peer": "node3",
                "src": "10.244.1.1",
                "dst": "10.244.3.1",
                "since": 0,
                "cause": "route missing here: no route to 10.244.3.0/24",
            }
        ],
    }
    (line,) = check_probes(Facts(probes=report))
    assert line.status == "fail"
    assert line.id == "probes.node3"
    assert "node3 does not answer over the pod path (10.244.1.1 -> 10.244.3.1)" in line.saw
    assert line.saw.endswith("route missing here: no route to 10.244.3.0/24")
    good = check_probes(Facts(probes={**report, "reachable": 3, "unreachable": []}))
    assert [(r.status, r.saw) for r in good] == [("ok", "3 of 3 peers answer over the pod path")]


def test_a_node_change_rebuilds_that_nodes_target_only() -> None:
    cluster = nodes(6)
    p = Prober(lambda: cluster, "node1", AgentMetrics(), pinger=Pinger(), batch=1)
    first = p._targets(cluster)
    moved = NodeInfo(
        "node4", Node("node4", (ip_address("10.10.9.4"),), (ip_network("10.244.4.0/24"),))
    )
    cluster = [*cluster[:3], moved, *cluster[4:]]
    again = p._targets(cluster)
    assert again["node4"].node_ip == ip_address("10.10.9.4")
    assert all(again[n] is first[n] for n in ("node2", "node3", "node5", "node6"))
    me = NodeInfo("node1", Node("node1", (ip_address("10.10.0.1"),), (ip_network("10.9.1.0/24"),)))
    mine = p._targets([me, *cluster[1:]])  # this node's own subnet changed: every source did
    assert {str(t.src) for t in mine.values()} == {"10.9.1.1"}


def test_while_every_peer_fails_the_rotation_still_goes_round() -> None:
    p = Prober(lambda: nodes(21), "node1", AgentMetrics(), pinger=Pinger(), batch=4)
    seen: list[list[str]] = []

    class Dead(Pinger):
        """Nothing answers (this node cut off): no socket, the batch logic only."""

        def ping(self, pairs, timeout):  # type: ignore[no-untyped-def]
            seen.append([str(d) for _, d in pairs])
            return [None] * len(pairs)

    p.pinger = Dead()
    for _ in range(12):
        p.step()
    assert all(len(b) == 4 for b in seen)
    # every peer is probed at least twice (and so confirmed unreachable) within 12 batches
    counts = {d: sum(d in b for b in seen) for d in {f"10.244.{i}.1" for i in range(2, 22)}}
    assert min(counts.values()) >= 2, counts
    assert p.report()["reachable"] == 0
    assert len(p.report()["unreachable"]) == 20


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"probe_interval": 0.5}, "--probe-interval 0.5: use at least 1 second (0: off)"),
        ({"probe_batch": 0}, "--probe-batch 0: use 1..10000"),
        ({"probe_timeout": 6.0}, "--probe-timeout 6: use 0.05..10 s, at most half"),
        ({"probe_series": -1}, "--probe-series -1: use 0 or more"),
    ],
)
def test_bad_probe_settings_are_refused(kw: dict[str, float], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        AgentConfig(node_name="node1", **kw)  # type: ignore[arg-type]
    AgentConfig(node_name="node1", probe_interval=0, probe_timeout=6.0)  # off: no bound


def test_the_first_interval_waits_for_the_first_list_of_nodes() -> None:
    """The thread starts with the agent, before the list: probing an empty cluster there and
    then sleeping a whole interval would leave a new agent blind for that interval."""
    listed: list[NodeInfo] = []
    pinged = threading.Event()

    class Fake(Pinger):
        def ping(self, pairs, timeout):  # type: ignore[no-untyped-def]
            pinged.set()
            return [0.001 for _ in pairs]

    p = Prober(lambda: listed, "node1", AgentMetrics(), pinger=Fake(), interval=3600)
    p.start()
    try:
        time.sleep(3 * FIRST_LIST_POLL)
        assert not pinged.is_set()
        listed.extend(nodes(3))
        assert pinged.wait(10 * FIRST_LIST_POLL), "no probe after the list, one interval early"
        assert p.report()["reachable"] == 2
    finally:
        p.stop()
