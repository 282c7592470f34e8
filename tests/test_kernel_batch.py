"""Bulk writes through the raw netlink client: every reply checked, no error ever lost (root).

The traps (DESIGN.md): a datagram larger than the send buffer fails with EMSGSIZE; replies beyond
the receive buffer are dropped with ENOBUFS while the routes still install. These tests install
20,000 routes with thousands of failures spread through them, and force both traps on purpose.
"""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Callable
from ipaddress import IPv4Address, IPv4Network, ip_address

import pytest

from conftest import ip, requires_root
from nosdn.backends.kernel import KernelBackend
from nosdn.backends.kernel import _netlink as nl
from nosdn.model import Cluster, Node, Target
from nosdn.plan import desired_routes, diff

pytestmark = [pytest.mark.root, requires_root]

PEERS = 20_000


def big_cluster(peers: int) -> Cluster:
    """n0 (10.0.0.1) plus ``peers`` nodes on 10.0.0.0/16, each with a /26 of 100.64.0.0/10."""
    base_ip = int(IPv4Address("10.0.0.1"))
    base_net = int(IPv4Address("100.64.0.0"))
    nodes = [
        Node(
            f"n{i}",
            (IPv4Address(base_ip + i),),
            (IPv4Network((base_net + 64 * i, 26)),),
        )
        for i in range(peers + 1)
    ]
    return Cluster(tuple(nodes))


@pytest.fixture
def host(netns: Callable[..., str]) -> str:
    ns = netns("nosdn-kbatch")
    ip(ns, "link", "add", "br0", "type", "bridge")
    ip(ns, "link", "set", "br0", "up")
    ip(ns, "addr", "add", "10.0.0.1/16", "dev", "br0")
    return ns


def ip_batch(ns: str, lines: list[str]) -> None:
    subprocess.run(
        ["ip", "-n", ns, "-batch", "-"], input="\n".join(lines) + "\n", text=True, check=True
    )


def count_ours(ns: str) -> int:
    out = ip(ns, "route", "show", "proto", "157")
    return sum(1 for ln in out.splitlines() if ln and not ln[0].isspace())


def test_20000_routes_every_failure_reported_with_its_node(host: str) -> None:
    c = cluster = big_cluster(PEERS)
    target = Target.for_node("n0")
    with KernelBackend(netns=host) as b:
        d = diff(desired_routes(cluster, target), b.routes())
        assert len(d.add) == PEERS
        # between our read and our write, someone else takes every 4th prefix (5,000 of them:
        # twenty times what the default receive buffer holds replies for)
        taken = d.add[::4]
        ip_batch(host, [f"route add {r.dst} via 10.0.255.254 proto static" for r in taken])
        res = b.apply(d)
    assert len(res.errors) == len(taken)
    assert {(e.dst, e.node) for e in res.errors} == {(r.dst, r.node) for r in taken}
    assert all("exists" in e.message.lower() for e in res.errors), res.errors[0]
    assert count_ours(host) == PEERS - len(taken)
    # the foreign routes are untouched, and the next pass sees them as conflicts, writes nothing
    assert ip(host, "route", "show", str(taken[-1].dst)).startswith(
        f"{taken[-1].dst} via 10.0.255.254"
    )
    with KernelBackend(netns=host) as b:
        d2 = diff(desired_routes(c, target), b.routes())
        assert d2.writes == 0
        assert len(d2.conflicts) == len(taken)


def test_dropped_replies_are_noticed_and_checked_against_the_table(host: str) -> None:
    """Force ENOBUFS: a tiny receive buffer the batcher does not know about. The kernel drops
    most error replies; the backend must notice, re-read the table and still report every
    route that did not install."""
    cluster = big_cluster(3000)
    target = Target.for_node("n0")
    with KernelBackend(netns=host) as b:
        d = diff(desired_routes(cluster, target), b.routes())
        taken = d.add[1::3]
        ip_batch(host, [f"route add {r.dst} via 10.0.255.254 proto static" for r in taken])
        b.nl.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # ~4 replies
        res = b.apply(d)
        assert any("ENOBUFS" in n for n in b.notes), "the overflow was not noticed"
    assert {(e.dst, e.node) for e in res.errors} == {(r.dst, r.node) for r in taken}
    assert count_ours(host) == 3000 - len(taken)


def test_batches_never_exceed_the_send_buffer(host: str) -> None:
    """A small send buffer splits the writes into many datagrams instead of EMSGSIZE."""
    with nl.Netlink(host) as link:
        link.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
        link.sndbuf = link.sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) // 2
        gw = ip_address("10.0.0.2").packed
        reqs = [
            (
                nl.RTM_NEWROUTE,
                nl.NLM_F_CREATE | nl.NLM_F_EXCL,
                nl.route_msg(
                    IPv4Address(int(IPv4Address("100.64.0.0")) + 256 * i).packed,
                    24,
                    table=254,
                    protocol=157,
                    gateways=[(gw, 0)],
                ),
            )
            for i in range(4000)
        ]
        res = link.write(reqs)
    assert res.errors == {}
    assert not res.lost
    assert res.batches >= sum(16 + len(r[2]) for r in reqs) // link.sndbuf
    assert res.batches > 1
    assert count_ours(host) == 4000


def test_every_error_of_one_huge_batch_comes_back(host: str) -> None:
    """10,000 deletes of routes that do not exist: 10,000 errors, each matched by sequence."""
    with nl.Netlink(host) as link:
        reqs = [
            (
                nl.RTM_DELROUTE,
                0,
                nl.route_msg(
                    IPv4Address(int(IPv4Address("100.64.0.0")) + 256 * i).packed,
                    24,
                    table=254,
                    protocol=157,
                ),
            )
            for i in range(10_000)
        ]
        res = link.write(reqs)
    assert not res.lost
    assert sorted(res.errors) == list(range(10_000))
    assert {code for code, _ in res.errors.values()} == {3}  # ESRCH
