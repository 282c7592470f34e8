"""Watching the kernel: repair within a second what someone else (or a link flap) broke.

A periodic resync alone leaves a window of up to its period in which pods are unreachable after
``ip route del`` or a link going down (the kernel drops gateway routes and nexthops of a down
link and does not restore them when it comes back). flannel's host-gw waits 10 s there
(flannel #1070). The monitor subscribes to rtnetlink notifications and nudges the loop when:

- a route of our protocol is deleted from our table, or a nexthop of our protocol is deleted;
- a nexthop is added or replaced with another protocol (``ip nexthop replace id N ...``
  without ``proto`` takes one of ours over: its routes now go elsewhere);
- a route of another protocol to a prefix we want is added, replaced or deleted in our table
  (``ip route replace PREFIX via X proto static`` takes one of ours over: a conflict to report
  at once, never to overwrite; its later removal lets ours back in). ``wanted`` answers for
  the prefix; routes of other protocols to prefixes we do not want (BIRD's, DHCP's) cost a
  set lookup and no pass;
- a route of the ``kernel`` protocol changes (connected networks come and go with links and
  addresses, and decide which next hops are on-link);
- a link or an address is added, removed or changes state.

Additions and replacements *with our protocol* are ignored: they are the echo of our own
writes, and reacting to them would cost a second, empty pass after every change. So is every
notification of a write our own writing socket made (``writer``: the kernel stamps each
notification with the port id of the socket whose request caused it): the removal of a route
of a node that left, and of its nexthop, would otherwise cost a full pass after each. Someone
writing routes with nosdn's own protocol number is caught by the periodic resync.

The monitor also keeps what the agent remembers of the kernel honest (`KernelCache`: whether
a peer is on-link is asked once and reused pass after pass): ``invalidate`` is called on
anything that can change an answer: a link or address event, and any route or nexthop event
that is not the echo of our own writes (another protocol, or another table: lookups follow
policy rules to every table). The agent makes that a note for its next pass, so the cache is
only ever touched from the agent's own loop.

Notifications are only parsed down to the few header bytes that decide this; the pass that
follows re-reads everything. A receive-buffer overflow (ENOBUFS: a burst too big to queue) is
not an error: events were lost, so the loop is nudged and re-reads everything anyway.
"""

from __future__ import annotations

import errno
import logging
import socket
import struct
import threading
from collections.abc import Callable

from nosdn.netns import socket_in

log = logging.getLogger("nosdn.agent.monitor")

SOL_NETLINK = 270
NETLINK_ADD_MEMBERSHIP = 1
RTNLGRP_LINK = 1
RTNLGRP_IPV4_IFADDR = 5
RTNLGRP_IPV4_ROUTE = 7
RTNLGRP_IPV6_IFADDR = 9
RTNLGRP_IPV6_ROUTE = 11
RTNLGRP_NEXTHOP = 32
GROUPS = (
    RTNLGRP_LINK,
    RTNLGRP_IPV4_IFADDR,
    RTNLGRP_IPV4_ROUTE,
    RTNLGRP_IPV6_IFADDR,
    RTNLGRP_IPV6_ROUTE,
    RTNLGRP_NEXTHOP,
)
RTM_NEWLINK, RTM_DELLINK = 16, 17
RTM_NEWADDR, RTM_DELADDR = 20, 21
RTM_NEWROUTE, RTM_DELROUTE = 24, 25
RTM_NEWNEXTHOP, RTM_DELNEXTHOP = 104, 105
RTPROT_KERNEL = 2
RTA_DST = 1
RTA_TABLE = 15
AF_INET, AF_INET6 = 2, 10
#: Whether a prefix is one we want: (IP version, prefix length, address as an int).
Wanted = Callable[[int, int, int], bool]
_HDR = struct.Struct("=IHHII")


def classify(
    buf: bytes, protocol: int, table: int, wanted: Wanted | None = None, writer: int = 0
) -> str | None:
    """The nudge reason for one datagram of notifications, or None if none matters (those of
    the requests of port id ``writer``, our own, never matter)."""
    off = 0
    reason: str | None = None
    n = len(buf)
    while off + 16 <= n:
        length, mtype, _flags, _seq, pid = _HDR.unpack_from(buf, off)
        if length < 16:
            break
        if writer and pid == writer:
            off += (length + 3) & ~3
            continue
        body = off + 16
        if mtype in (RTM_NEWROUTE, RTM_DELROUTE) and length >= 28:
            rt_table = buf[body + 4]
            proto = buf[body + 5]
            if rt_table == 252:  # RT_TABLE_COMPAT: the real id is in RTA_TABLE
                rt_table = _table_attr(buf, body + 12, off + length) or rt_table
            if rt_table == table:
                if proto == protocol and mtype == RTM_DELROUTE:
                    return "netlink-route"
                if proto == RTPROT_KERNEL:
                    reason = reason or "netlink-connected"
                elif proto != protocol and wanted is not None:
                    prefix = _prefix(buf, body, off + length)
                    if prefix is not None and wanted(*prefix):
                        return "netlink-foreign"
        elif mtype in (RTM_NEWNEXTHOP, RTM_DELNEXTHOP) and length >= 24:
            ours = buf[body + 2] == protocol
            if ours == (mtype == RTM_DELNEXTHOP):
                return "netlink-nexthop"
        elif mtype in (RTM_NEWLINK, RTM_DELLINK):
            reason = "netlink-link"
        elif mtype in (RTM_NEWADDR, RTM_DELADDR):
            reason = reason or "netlink-addr"
        off += (length + 3) & ~3
    return reason


def invalidates_lookups(buf: bytes, protocol: int, table: int) -> bool:
    """Whether one datagram of notifications may change where the kernel sends a next hop:
    everything but routes and nexthops of our own protocol (in our table, for routes)."""
    off = 0
    n = len(buf)
    while off + 16 <= n:
        length, mtype, _flags, _seq, _pid = _HDR.unpack_from(buf, off)
        if length < 16:
            break
        body = off + 16
        if mtype in (RTM_NEWROUTE, RTM_DELROUTE) and length >= 28:
            rt_table = buf[body + 4]
            if rt_table == 252:
                rt_table = _table_attr(buf, body + 12, off + length) or rt_table
            if buf[body + 5] != protocol or rt_table != table:
                return True
        elif mtype in (RTM_NEWNEXTHOP, RTM_DELNEXTHOP) and length >= 24:
            if buf[body + 2] != protocol:
                return True
        elif mtype in (RTM_NEWLINK, RTM_DELLINK, RTM_NEWADDR, RTM_DELADDR):
            return True
        off += (length + 3) & ~3
    return False


def _prefix(buf: bytes, body: int, end: int) -> tuple[int, int, int] | None:
    """(IP version, prefix length, address) of a route message (None: no RTA_DST, or not
    IPv4/IPv6)."""
    family, dst_len = buf[body], buf[body + 1]
    size = 4 if family == AF_INET else 16 if family == AF_INET6 else 0
    a = body + 12
    while size and a + 4 <= end:
        alen, atype = struct.unpack_from("=HH", buf, a)
        if alen < 4:
            break
        if atype == RTA_DST and alen == 4 + size:
            return (4 if size == 4 else 6), dst_len, int.from_bytes(buf[a + 4 : a + alen])
        a += (alen + 3) & ~3
    return None


def _table_attr(buf: bytes, a: int, end: int) -> int | None:
    while a + 4 <= end:
        alen, atype = struct.unpack_from("=HH", buf, a)
        if alen < 4:
            break
        if atype == RTA_TABLE and alen >= 8:
            return int(struct.unpack_from("=I", buf, a + 4)[0])
        a += (alen + 3) & ~3
    return None


class NetlinkMonitor:
    """Calls ``nudge(reason)`` for kernel changes that may need a pass, and ``invalidate()``
    (before the nudge) for those that may change a next-hop lookup (from its own thread);
    ``wanted`` says which prefixes are ours to watch in other protocols' routes."""

    def __init__(
        self,
        nudge: Callable[[str], None],
        *,
        protocol: int,
        table: int,
        netns: str | None = None,
        invalidate: Callable[[], None] = lambda: None,
        wanted: Wanted | None = None,
        writer: int = 0,
    ) -> None:
        self.nudge = nudge
        self.invalidate = invalidate
        self.wanted = wanted
        self.writer = writer
        self.protocol = protocol
        self.table = table
        self.sock = socket_in(netns, socket.AF_NETLINK, socket.SOCK_RAW, 0)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        self.sock.bind((0, 0))
        for group in GROUPS:
            try:
                self.sock.setsockopt(SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, group)
            except OSError as e:  # RTNLGRP_NEXTHOP needs Linux 5.3
                log.info("netlink group %d not available: %s", group, e)
        self.sock.settimeout(0.5)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self.run, name="nosdn-netlink", daemon=True)
        self.overflows = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self.sock.close()

    def run(self) -> None:
        buf = bytearray(1 << 16)
        while not self._stop.is_set():
            try:
                n = self.sock.recv_into(buf)
            except TimeoutError:
                continue
            except OSError as e:
                if e.errno == errno.ENOBUFS:
                    self.overflows += 1
                    self.invalidate()
                    self.nudge("netlink-overflow")
                    continue
                if self._stop.is_set():
                    return
                log.error("netlink monitor failed: %s; relying on the periodic resync", e)
                return
            data = bytes(buf[:n])
            if invalidates_lookups(data, self.protocol, self.table):
                self.invalidate()
            reason = classify(data, self.protocol, self.table, self.wanted, self.writer)
            if reason is not None:
                self.nudge(reason)
