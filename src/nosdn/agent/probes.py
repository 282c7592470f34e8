"""Datapath probes: does a packet from this node's pods reach each peer's pods, and back?

Routes being programmed (``nosdn_routes_programmed``) does not prove that packets flow: a
firewall, a peer's missing route back, a peer's pod bridge gone or someone else's route can
each break the pod path with every route of ours in place. So the agent sends an ICMP echo
from its own pod bridge address (the pods' gateway, the first address of its pod subnet) to
each peer's, the very path pod traffic takes: through nosdn's route here, the peer's answer
through the peer's route back.

Cheap at 5,000 nodes: each interval probes a bounded batch of peers, rotating through all of
them (peers that did not answer last time first, so a failure is confirmed and a recovery seen
within one interval); one raw socket per family, bound to the bridge address, sends the whole
batch and collects the answers (no process per probe). A peer is unreachable after
``confirm`` lost probes in a row; per-peer series are bounded (``max_series``, unreachable
peers first) since 5,000 agents times 5,000 peers would be 25 million series.

A peer turning unreachable is a Warning Event and a line in ``/probes`` (read by `nosdn
doctor`), with the likely cause: this node's route to the peer's pod subnet (missing, someone
else's, not via the peer), else whether the peer answers on its node address at all (down, or
the node network drops it), else the far side (the peer's route back, its pod bridge or
forwarding, or a firewall dropping pod traffic).

The pod bridge must exist for its address to answer: the agent makes it (the bridge the
conflist names, with its gateway address, exactly as the CNI ``bridge`` plugin would on the
first pod) so that a node without pods yet is not reported unreachable.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import select
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from nosdn.agent.metrics import AgentMetrics
from nosdn.model import InstalledRoute, IPAddress, IPNetwork
from nosdn.netns import socket_in
from nosdn.sources.nodes import NodeInfo

log = logging.getLogger("nosdn.agent.probes")

ICMP_ECHO, ICMP_ECHOREPLY = 8, 0
ICMP6_ECHO, ICMP6_ECHOREPLY = 128, 129


@dataclass(frozen=True)
class Target:
    """One peer to probe: from this node's pod bridge address to the peer's."""

    peer: str
    src: IPAddress
    dst: IPAddress
    #: the peer's node address of the same family (for the cause of a failure)
    node_ip: IPAddress | None
    subnet: IPNetwork
    #: this node's own pod subnet of that family (the bridge address's network)
    own: IPNetwork


def bridge_address(net: IPNetwork) -> IPAddress:
    """The pods' gateway in ``net``: the first host, as ``host-local`` hands it to the bridge."""
    return net.network_address + 1 if net.num_addresses > 2 else net.network_address


def targets(nodes: Sequence[NodeInfo], self_name: str) -> list[Target]:
    """A target per peer with a pod subnet in a family this node has one of (IPv4 first)."""
    me = next((n for n in nodes if n.name == self_name), None)
    mine = own_subnets(me)
    if not mine:
        return []
    out = []
    for info in nodes:
        if info.name != self_name:
            t = target(mine, info)
            if t is not None:
                out.append(t)
    return out


def own_subnets(me: NodeInfo | None) -> dict[int, IPNetwork]:
    """This node's pod subnet per family (the first of each)."""
    if me is None:
        return {}
    return {net.version: net for net in reversed(me.node.pod_cidrs)}


def target(mine: dict[int, IPNetwork], info: NodeInfo) -> Target | None:
    for net in sorted(info.node.pod_cidrs, key=lambda n: n.version):
        own = mine.get(net.version)
        if own is None:
            continue
        ip = next((a for a in info.node.ips if a.version == net.version), None)
        return Target(info.name, bridge_address(own), bridge_address(net), ip, net, own)
    return None


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    s = (s >> 16) + (s & 0xFFFF)
    s += s >> 16
    return int(~s & 0xFFFF)


def echo_request(version: int, ident: int, seq: int, payload: bytes) -> bytes:
    """An ICMP (v4) or ICMPv6 echo request (the kernel fills in the ICMPv6 checksum)."""
    if version == 6:
        return struct.pack("!BBHHH", ICMP6_ECHO, 0, 0, ident, seq) + payload
    head = struct.pack("!BBHHH", ICMP_ECHO, 0, 0, ident, seq)
    csum = _checksum(head + payload)
    return struct.pack("!BBHHH", ICMP_ECHO, 0, csum, ident, seq) + payload


def parse_reply(version: int, packet: bytes) -> tuple[int, int] | None:
    """(ident, seq) of an echo reply as a raw socket gives it (IPv4 with its IP header)."""
    if version == 4:
        if len(packet) < 20:
            return None
        packet = packet[(packet[0] & 0x0F) * 4 :]
    if len(packet) < 8:
        return None
    kind, code, _c, ident, seq = struct.unpack_from("!BBHHH", packet)
    if code != 0 or kind != (ICMP6_ECHOREPLY if version == 6 else ICMP_ECHOREPLY):
        return None
    return ident, seq


#: Receive buffer of a probe socket: a batch's answers arrive together (at the default
#: 212,992 bytes about 250 of them fit; each takes ~770 bytes of buffer).
RCVBUF = 4 << 20
#: Echoes sent between two reads of the answers already there (a batch of thousands would
#: otherwise overflow even the raised buffer).
SEND_CHUNK = 256


def _raise_rcvbuf(s: socket.socket, size: int) -> None:
    try:
        s.setsockopt(socket.SOL_SOCKET, 33, size)  # SO_RCVBUFFORCE (root: over rmem_max)
    except OSError:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)


class Pinger:
    """ICMP echo over raw sockets (``NET_RAW``), one per source address, in ``netns``."""

    def __init__(self, netns: str | None = None) -> None:
        self.netns = netns
        self.ident = os.getpid() & 0xFFFF
        self.seq = 0
        self._socks: dict[IPAddress, socket.socket] = {}
        self.payload = b"nosdn-probe"
        self.sent = 0

    def _socket(self, src: IPAddress) -> socket.socket:
        s = self._socks.get(src)
        if s is None:
            fam, proto = (
                (socket.AF_INET6, socket.IPPROTO_ICMPV6)
                if src.version == 6
                else (socket.AF_INET, socket.IPPROTO_ICMP)
            )
            s = socket_in(self.netns, fam, socket.SOCK_RAW, proto)
            try:
                s.bind((str(src), 0))  # the source, and only replies to it are received
                s.setblocking(False)
                _raise_rcvbuf(s, RCVBUF)
            except OSError:
                s.close()
                raise
            self._socks[src] = s
        return s

    def close(self) -> None:
        for s in self._socks.values():
            s.close()
        self._socks.clear()

    def ping(
        self, pairs: Sequence[tuple[IPAddress, IPAddress]], timeout: float
    ) -> list[float | int | None]:
        """Echo to each (src, dst) at once; per pair the round trip in seconds, the errno
        sending failed with (no route: ENETUNREACH, ...), or None: no answer in ``timeout``."""
        out: list[float | int | None] = [None] * len(pairs)
        pending: dict[tuple[IPAddress, int], tuple[int, float]] = {}
        socks: dict[int, tuple[socket.socket, IPAddress]] = {}
        for i, (src, dst) in enumerate(pairs):
            if i and i % SEND_CHUNK == 0:
                self._collect(socks, pending, out, time.monotonic() + 0.001)
            try:
                s = self._socket(src)
            except OSError as e:
                out[i] = e.errno or -1
                continue
            socks[s.fileno()] = (s, src)
            self.seq = (self.seq + 1) & 0xFFFF
            packet = echo_request(dst.version, self.ident, self.seq, self.payload)
            try:
                s.sendto(packet, (str(dst), 0))
            except OSError as e:
                out[i] = e.errno or -1
                continue
            self.sent += 1
            pending[(src, self.seq)] = (i, time.monotonic())
        self._collect(socks, pending, out, time.monotonic() + timeout)
        return out

    def _collect(
        self,
        socks: dict[int, tuple[socket.socket, IPAddress]],
        pending: dict[tuple[IPAddress, int], tuple[int, float]],
        out: list[float | int | None],
        deadline: float,
    ) -> None:
        """Read answers until every pending echo has one or ``deadline`` passes."""
        while pending:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            ready, _, _ = select.select(list(socks), [], [], left)
            now = time.monotonic()
            for fd in ready:
                s, src = socks[fd]
                while True:
                    try:
                        packet = s.recv(2048)
                    except BlockingIOError:
                        break
                    got = parse_reply(src.version, packet)
                    if got is None or got[0] != self.ident:
                        continue
                    hit = pending.pop((src, got[1]), None)
                    if hit is not None:
                        out[hit[0]] = now - hit[1]


#: Seconds between two looks for the first list of nodes (`Prober._run`).
FIRST_LIST_POLL = 0.2


@dataclass
class PeerState:
    target: Target
    reachable: bool | None = None
    lost: int = 0
    rtt: float | None = None
    cause: str = ""
    since: float = field(default_factory=time.time)


def _no_source(res: float | int | None) -> bool:
    """The probe could not be sent for want of its source address (no pod bridge here)."""
    return isinstance(res, int) and res == errno.EADDRNOTAVAIL


#: The cause of a failure, for a target (the kernel's view from this node).
Diagnose = Callable[[Target, "int | None"], str]


class Prober:
    """Probes ``batch`` peers every ``interval`` seconds (`step`), in its own thread."""

    def __init__(
        self,
        nodes: Callable[[], Sequence[NodeInfo]],
        node_name: str,
        metrics: AgentMetrics,
        *,
        pinger: Pinger,
        events: Any = None,
        diagnose: Diagnose | None = None,
        ensure_bridge: Callable[[Sequence[Target]], None] | None = None,
        interval: float = 10.0,
        batch: int = 64,
        timeout: float = 1.0,
        confirm: int = 2,
        max_series: int = 200,
    ) -> None:
        self.nodes = nodes
        self.node_name = node_name
        self.metrics = metrics
        self.pinger = pinger
        self.events = events
        self.diagnose = diagnose
        self.ensure_bridge = ensure_bridge
        self.interval = interval
        self.batch = batch
        self.timeout = timeout
        self.confirm = confirm
        self.max_series = max_series
        self.peers: dict[str, PeerState] = {}
        self._cursor = 0
        self._fail_cursor = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._series: set[str] = set()
        self._nodes_seen: object = None
        self._me: NodeInfo | None = None
        self._memo: dict[str, tuple[NodeInfo, Target | None]] = {}
        self._order: list[str] = []
        self.answered = metrics.probes.labels("answered")
        self.lost_counter = metrics.probes.labels("lost")

    # --- one interval ------------------------------------------------------------------------
    def pick(self, order: Sequence[str]) -> list[str]:
        """This interval's peers, ``batch`` at most: first the ones whose last probe was lost
        (up to half the batch, in turns when there are more), then the next ones of the
        rotation, so that the whole cluster is still gone through while many peers fail."""
        failing = [p for p in order if self.peers[p].lost > 0]
        room = max(1, self.batch // 2)
        if len(failing) > room:
            k = self._fail_cursor % len(failing)
            failing = (failing[k:] + failing[:k])[:room]
            self._fail_cursor = k + room
        chosen = failing
        seen = set(chosen)
        n = len(order)
        start = self._cursor % n if n else 0
        i = 0
        while len(chosen) < min(self.batch, n) and i < n:
            p = order[(start + i) % n]
            i += 1
            if p not in seen:
                chosen.append(p)
                seen.add(p)
        self._cursor = (start + i) % n if n else 0
        return chosen

    def _targets(self, nodes: Sequence[NodeInfo]) -> dict[str, Target]:
        """`targets`, reusing the target of every NodeInfo the cache kept (the cache makes a
        new one only for a node whose routing input changed): a change costs its node only."""
        me = next((n for n in nodes if n.name == self.node_name), None)
        if me is not self._me:
            self._me, self._memo = me, {}
        mine = own_subnets(me)
        memo = self._memo
        out: dict[str, Target] = {}
        if not mine:
            return out
        for info in nodes:
            if info.name == self.node_name:
                continue
            hit = memo.get(info.name)
            if hit is not None and hit[0] is info:
                t = hit[1]
            else:
                t = target(mine, info)
                memo[info.name] = (info, t)
            if t is not None:
                out[info.name] = t
        if len(memo) > len(nodes):
            self._memo = {n.name: memo[n.name] for n in nodes if n.name in memo}
        return out

    def _sync(self, current: dict[str, Target]) -> None:
        with self._lock:
            for gone in set(self.peers) - set(current):
                del self.peers[gone]
            for name, t in current.items():
                st = self.peers.get(name)
                if st is None or (st.target is not t and st.target != t):
                    self.peers[name] = PeerState(t)
            self._order = sorted(self.peers)

    def step(self) -> None:
        nodes = self.nodes()
        if nodes is not self._nodes_seen:  # the cache's snapshot: the same object until a change
            self._nodes_seen = nodes
            self._sync(self._targets(nodes))
        chosen = self.pick(self._order)
        if chosen:
            states = [self.peers[p] for p in chosen]
            results = self.pinger.ping([(s.target.src, s.target.dst) for s in states], self.timeout)
            missing = [s.target for s, r in zip(states, results, strict=True) if _no_source(r)]
            if missing and self.ensure_bridge is not None:
                # no pod bridge address here yet: make it, and probe next interval (no verdict)
                self.ensure_bridge(missing)
            for st, res in zip(states, results, strict=True):
                if not _no_source(res):
                    self._update(st, res)
        self.publish()

    def _update(self, st: PeerState, res: float | int | None) -> None:
        if isinstance(res, float):
            self.answered.inc()
            self.metrics.probe_rtt.observe(res)
            st.rtt, st.lost = res, 0
            if st.reachable is not True:
                if st.reachable is False and self.events is not None:
                    self.events.record(
                        "Normal",
                        "PeerReachable",
                        f"{st.target.peer} answers again over the pod path "
                        f"({st.target.src} -> {st.target.dst})",
                    )
                st.reachable, st.cause, st.since = True, "", time.time()
            return
        self.lost_counter.inc()
        st.lost += 1
        st.rtt = None
        if st.lost < self.confirm or st.reachable is False:
            return
        errno_ = res if isinstance(res, int) else None
        cause = self.diagnose(st.target, errno_) if self.diagnose is not None else ""
        st.reachable, st.cause, st.since = False, cause, time.time()
        msg = (
            f"{st.target.peer} does not answer over the pod path "
            f"({st.target.src} -> {st.target.dst}, {st.lost} probes lost)"
            + (f": {cause}" if cause else "")
        )
        log.warning("probes: %s", msg, extra={"peer": st.target.peer})
        if self.events is not None:
            self.events.record("Warning", "PeerUnreachable", msg)

    def publish(self) -> None:
        m = self.metrics
        with self._lock:
            states = list(self.peers.values())
        up = sum(1 for s in states if s.reachable is True)
        down = sum(1 for s in states if s.reachable is False)
        m.probe_peers.labels("reachable").set(up)
        m.probe_peers.labels("unreachable").set(down)
        m.probe_peers.labels("unknown").set(len(states) - up - down)
        known = [s for s in states if s.reachable is not None]
        known.sort(key=lambda s: (s.reachable is True, s.target.peer))
        show = {s.target.peer: s for s in known[: self.max_series]}
        for gone in self._series - set(show):
            m.probe_peer_reachable.remove(gone)
        for name, s in show.items():
            m.probe_peer_reachable.labels(name).set(1 if s.reachable else 0)
        self._series = set(show)

    # --- what doctor reads --------------------------------------------------------------------
    def report(self) -> dict[str, Any]:
        """For ``/probes``: every peer not known reachable, and the counts."""
        with self._lock:
            states = list(self.peers.values())
        bad = [s for s in states if s.reachable is False]
        return {
            "interval": self.interval,
            "batch": self.batch,
            "peers": len(states),
            "reachable": sum(1 for s in states if s.reachable is True),
            "unknown": sum(1 for s in states if s.reachable is None),
            "unreachable": [
                {
                    "peer": s.target.peer,
                    "src": str(s.target.src),
                    "dst": str(s.target.dst),
                    "lost": s.lost,
                    "since": s.since,
                    "cause": s.cause,
                }
                for s in sorted(bad, key=lambda s: s.target.peer)
            ],
        }

    def report_json(self) -> bytes:
        return (json.dumps(self.report(), indent=1) + "\n").encode()

    # --- thread ------------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="nosdn-probes", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        # The first interval waits for the first list of nodes (the thread starts with the
        # agent, before it): probing then, not up to one interval later, and building every
        # target during the agent's start rather than in its first quiet minute.
        while not self.nodes() and not self._stop.wait(FIRST_LIST_POLL):
            pass
        while not self._stop.is_set():
            began = time.monotonic()
            try:
                self.step()
            except Exception:  # a probe failure must never take the agent down
                log.exception("probes: one interval failed")
            self._stop.wait(max(0.0, self.interval - (time.monotonic() - began)))

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.pinger.close()


# --- the kernel's side: the bridge, and the cause of a failure ----------------------------------
def ensure_bridge(netns: str | None, bridge: str) -> Callable[[Sequence[Target]], None]:
    """Make the pod bridge with its gateway address(es) when missing (what the ``bridge``
    plugin does on a node's first pod), so this node's bridge address answers peers' probes.
    Called only when binding to the address failed (it is not there): ``ip`` runs then only."""

    def ensure(ts: Sequence[Target]) -> None:
        for src, own in sorted({(t.src, t.own) for t in ts}, key=str):
            _run(netns, ["ip", "link", "add", bridge, "type", "bridge"])  # fails if it exists
            _run(netns, ["ip", "link", "set", bridge, "up"])
            proc = _run(netns, ["ip", "addr", "add", f"{src}/{own.prefixlen}", "dev", bridge])
            if proc.returncode == 0:
                log.info("probes: gave pod bridge %s its address %s/%d", bridge, src, own.prefixlen)
            else:
                log.warning("probes: cannot address pod bridge %s: %s", bridge, proc.stderr.strip())

    return ensure


def _run(netns: str | None, argv: list[str]) -> subprocess.CompletedProcess[str]:
    full = argv if netns is None else ["ip", "netns", "exec", netns, *argv]
    return subprocess.run(full, capture_output=True, text=True, check=False, timeout=10)


#: What a failed route lookup means (`KernelBackend.route_used`: the kernel names no route
#: for a blackhole, unreachable or prohibit one, only their errno).
_NO_ROUTE = {
    errno.ENETUNREACH: "no route",
    errno.EINVAL: "a blackhole route",
    errno.EHOSTUNREACH: "an unreachable route",
    errno.EACCES: "a prohibit route",
}


#: Where the kernel sends a packet to an address: (route, table) or the lookup's errno
#: (`nosdn.backends.kernel.KernelBackend.route_used`).
RouteUsed = Callable[[IPAddress], "tuple[InstalledRoute, int] | int"]


def kernel_diagnosis(
    route_used: Callable[[], RouteUsed],
    pinger: Pinger,
    node_ips: Callable[[], Sequence[IPAddress]],
    *,
    timeout: float = 1.0,
) -> Diagnose:
    """The likely cause of a lost probe: this node's route first, then the peer's node
    address (the underlay), else the far side. ``route_used`` is made in the probe thread
    (a netlink socket of its own: the loop's is not shared between threads)."""
    lookup: list[RouteUsed] = []

    def diagnose(t: Target, send_errno: int | None) -> str:
        if not lookup:
            lookup.append(route_used())
        r = lookup[0](t.dst)
        if isinstance(r, int):
            what = _NO_ROUTE.get(r, f"no route ({os.strerror(r)})")
            return f"route missing here: {what} for {t.subnet}"
        route, _table = r
        if route.kind not in ("", "unicast"):
            return f"route missing here: {t.subnet} meets a {route.kind} route ({route.detail})"
        if t.node_ip is not None and t.node_ip not in route.via and not route.owned:
            where = f"this node routes {t.dst} by someone else's route ({route.detail})"
            if route.via:
                return where + f", not via {t.peer}'s address {t.node_ip}"
            return where
        if send_errno is not None:
            return f"sending failed here: {os.strerror(send_errno)}"
        mine = next(
            (ip for ip in node_ips() if t.node_ip and ip.version == t.node_ip.version), None
        )
        if t.node_ip is None or mine is None:
            return (
                f"the route here is in place ({route.detail}): {t.peer}'s route back to "
                f"{t.own}, its pod bridge or forwarding, or a firewall"
            )
        (answer,) = pinger.ping([(mine, t.node_ip)], timeout)
        if not isinstance(answer, float):
            return (
                f"{t.peer} does not answer on its node address {t.node_ip} either: the node "
                "is down, or the node network (or a firewall) drops ICMP"
            )
        return (
            f"{t.peer} answers on its node address {t.node_ip} but not on its pod bridge "
            f"{t.dst}, and the route here is in place ({route.detail}): {t.peer}'s route back "
            f"to {t.own}, its pod bridge or IP forwarding, or a firewall dropping pod traffic"
        )

    return diagnose
