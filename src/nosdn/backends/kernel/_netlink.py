"""A small raw rtnetlink client: dumps, route lookups and batched writes, in pure Python.

Why not pyroute2: importing it costs ~0.17 s, its ``route('add')`` runs at ~3,400 messages/s
and its dump of 10,000 routes takes 0.66 s; its batch helper hangs when acks overflow its
buffer and its flush lost routes without an error (DESIGN.md, measured here). nosdn's hot path
is "dump the table, diff, write a few thousand routes", so it talks to the kernel directly:

- many messages go into one ``sendmsg``, but never more bytes than the send buffer (a larger
  datagram fails with EMSGSIZE), and never more messages than the receive buffer can hold
  replies for (each reply costs ~830 bytes of it; overflow drops replies with ENOBUFS);
- only the last message of a batch asks for an ack: the kernel still answers every failing
  message with an error, in order, so reading up to the last ack collects every error, each
  matched to its message by sequence number;
- the buffers are raised with ``SO_SNDBUFFORCE``/``SO_RCVBUFFORCE`` (root), else ``SO_*BUF``;
- if replies are lost anyway (ENOBUFS), the batch result says so, and the caller re-dumps to
  learn what really happened instead of trusting the missing answers.

The socket can be opened inside a named network namespace (``/run/netns/NAME``): a netlink
socket stays in the namespace it was created in, so the thread only enters the namespace for the
``socket()`` call. Tests and the lab use that to program namespaces without a subprocess.

Only the message types and attributes nosdn needs are decoded; addresses stay ``bytes``
(the backend turns them into ``ipaddress`` objects).
"""

from __future__ import annotations

import errno
import os
import socket
import struct
from array import array
from bisect import bisect_right
from collections import Counter
from collections.abc import Generator, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TypeAlias, overload

from nosdn.netns import socket_in

# --- constants (linux/netlink.h, linux/rtnetlink.h, linux/nexthop.h, linux/if_addr.h) -------
NETLINK_ROUTE = 0
SOL_NETLINK = 270
NETLINK_CAP_ACK = 10
NETLINK_EXT_ACK = 11
NETLINK_GET_STRICT_CHK = 12
SO_SNDBUFFORCE = 32
SO_RCVBUFFORCE = 33

NLMSG_ERROR = 2
NLMSG_DONE = 3
NLMSG_OVERRUN = 4

NLM_F_REQUEST = 0x1
NLM_F_MULTI = 0x2
NLM_F_ACK = 0x4
NLM_F_DUMP_INTR = 0x10
NLM_F_DUMP = 0x300
NLM_F_REPLACE = 0x100
NLM_F_EXCL = 0x200
NLM_F_CREATE = 0x400
NLM_F_ACK_TLVS = 0x200  # on an NLMSG_ERROR: extended-ack attributes follow
NLMSGERR_ATTR_MSG = 1

RTM_NEWLINK = 16
RTM_GETLINK = 18
RTM_NEWADDR = 20
RTM_GETADDR = 22
RTM_NEWROUTE = 24
RTM_DELROUTE = 25
RTM_GETROUTE = 26
RTM_NEWRULE = 32
RTM_GETRULE = 34
RTM_NEWNEXTHOP = 104
RTM_DELNEXTHOP = 105
RTM_GETNEXTHOP = 106

RTA_DST = 1
RTA_OIF = 4
RTA_GATEWAY = 5
RTA_PRIORITY = 6
RTA_PREFSRC = 7
RTA_MULTIPATH = 9
RTA_TABLE = 15
RTA_VIA = 18
RTA_NH_ID = 30

RTN_UNICAST = 1
RTN_LOCAL = 2
RTN_BROADCAST = 3
RTN_ANYCAST = 4
RTN_MULTICAST = 5
RTN_BLACKHOLE = 6
RTN_UNREACHABLE = 7
RTN_PROHIBIT = 8
RTN_THROW = 9

RT_SCOPE_UNIVERSE = 0
RT_SCOPE_LINK = 253
RTM_F_CLONED = 0x200
RTM_F_LOOKUP_TABLE = 0x1000  # answer with the table the route was found in
RTM_F_FIB_MATCH = 0x2000
RTNH_F_ONLINK = 4

NHA_ID = 1
NHA_GROUP = 2
NHA_GROUP_TYPE = 3
NHA_BLACKHOLE = 4
NHA_OIF = 5
NHA_GATEWAY = 6

IFA_ADDRESS = 1
IFA_LOCAL = 2
IFLA_IFNAME = 3

_HDR = struct.Struct("=IHHII")  # nlmsghdr: len, type, flags, seq, pid
_RTMSG = struct.Struct("=BBBBBBBBI")  # family dst_len src_len tos table protocol scope type flags
_NHMSG = struct.Struct("=BBBBI")  # family scope protocol resvd flags
_IFADDRMSG = struct.Struct("=BBBBI")  # family prefixlen flags scope index
_IFINFOMSG = struct.Struct("=BxHiII")  # family type index flags change
_RTA = struct.Struct("=HH")
#: a whole route-lookup request: nlmsghdr, rtmsg, RTA_DST (by address length)
_LOOKUP = {
    4: struct.Struct("=IHHIIBBBBBBBBIHH4s"),
    16: struct.Struct("=IHHIIBBBBBBBBIHH16s"),
}
_AF = {4: socket.AF_INET, 16: socket.AF_INET6}
_U32 = struct.Struct("=I")
_U16 = struct.Struct("=H")
_ERR = struct.Struct("=i")
_RTNH = struct.Struct("=HBBi")  # rtnexthop: len flags hops ifindex
_NHGRP = struct.Struct("=IBBH")  # nexthop_grp: id weight resvd1 resvd2

#: Bytes of receive buffer one queued reply takes (skb truesize of an ack or error, measured).
REPLY_COST = 1024
#: A route lookup reply is allocated with NLMSG_GOODSIZE: it costs far more receive buffer.
LOOKUP_REPLY_COST = 6144
#: Largest datagram we send: big enough to amortise the syscall, small enough to stay in cache.
MAX_BATCH_BYTES = 1 << 20
#: What we ask for with the *FORCE options (root); the kernel caps plain SO_*BUF at *mem_max.
WANT_SNDBUF = 4 << 20
WANT_RCVBUF = 32 << 20

AF_INET = socket.AF_INET


class DumpInterruptedError(RuntimeError):
    """A streamed dump was interrupted by a change, or lost messages: read it again whole."""


class NetlinkError(OSError):
    """The kernel refused a request (not a batch write: those report per message)."""


def rta(atype: int, payload: bytes) -> bytes:
    """One netlink attribute, padded to 4 bytes."""
    n = 4 + len(payload)
    return _RTA.pack(n, atype) + payload + b"\0" * (-n & 3)


def rta_u32(atype: int, value: int) -> bytes:
    return _RTA.pack(8, atype) + _U32.pack(value)


@dataclass(slots=True)
class RouteMsg:
    """One route as the kernel dumps it (addresses as packed bytes)."""

    family: int
    dst: bytes
    dst_len: int
    table: int
    protocol: int
    scope: int
    type: int
    flags: int
    priority: int = 0
    oif: int = 0
    gateway: bytes | None = None
    nh_id: int = 0
    #: ECMP next hops of a plain multipath route: (gateway, ifindex) each.
    multipath: Sequence[tuple[bytes | None, int]] = ()


@dataclass(slots=True)
class NexthopMsg:
    """One kernel nexthop object: a gateway on a device, or a group of other nexthops."""

    id: int
    family: int
    protocol: int
    gateway: bytes | None = None
    oif: int = 0
    #: member ids of a group (a tuple: one empty list per nexthop was 3 MB at 50,000)
    group: Sequence[int] = ()
    blackhole: bool = False


@dataclass(slots=True)
class AddrMsg:
    family: int
    prefixlen: int
    ifindex: int
    scope: int
    address: bytes


@dataclass(slots=True)
class Lookup:
    """Where the kernel would send a packet to one address (``ip route get``)."""

    error: int = 0  # errno (ENETUNREACH, ...) or 0
    type: int = 0
    oif: int = 0
    gateway: bytes | None = None
    prefsrc: bytes | None = None


#: One write for :meth:`Netlink.write`: (message type, flags, payload after the netlink header).
#: ``NLM_F_REQUEST`` is added; ``NLM_F_ACK`` is managed by the batcher. A plain tuple: a
#: 50,000-route apply makes 100,000 of them.
Request: TypeAlias = tuple[int, int, bytes]


class Requests(Sequence[Request]):
    """Requests for `Netlink.write`, kept as the netlink messages themselves: back to back in
    one buffer (header with sequence number 0, payload, padding), with an offset each.

    Why: a 50,000-route apply makes 100,000 requests. As a tuple and a bytes object each they
    took ~30 MB at once, and ``write`` joined them into datagrams again; here each costs its
    bytes and a 4-byte offset, and ``write`` sends slices of the buffer as they are, only
    writing in the sequence numbers. Read back (``reqs[i]``), a request is a `Request` tuple.
    """

    __slots__ = ("buf", "offsets")

    def __init__(self, requests: Iterable[Request] = ()) -> None:
        self.buf = bytearray()
        self.offsets = array("I")
        for r in requests:
            self.append(r)

    def append(self, req: Request) -> int:
        """Add one request; returns its index."""
        mtype, flags, payload = req
        return self.append_message(
            _HDR.pack(16 + len(payload), mtype, flags | NLM_F_REQUEST, 0, 0) + payload
        )

    def append_message(self, msg: bytes) -> int:
        """Add one whole message (header with ``NLM_F_REQUEST``, sequence number 0)."""
        buf = self.buf
        self.offsets.append(len(buf))
        buf += msg
        if len(msg) & 3:
            buf += bytes(-len(msg) & 3)
        return len(self.offsets) - 1

    def extend(self, other: Requests) -> None:
        base = len(self.buf)
        self.offsets.extend(array("I", (o + base for o in other.offsets)))
        self.buf += other.buf

    def __len__(self) -> int:
        return len(self.offsets)

    @overload
    def __getitem__(self, i: int) -> Request: ...

    @overload
    def __getitem__(self, i: slice) -> list[Request]: ...

    def __getitem__(self, i: int | slice) -> Request | list[Request]:
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(len(self)))]
        off = self.offsets[i]
        length, mtype, flags, _seq, _pid = _HDR.unpack_from(self.buf, off)
        return mtype, flags & ~(NLM_F_REQUEST | NLM_F_ACK), bytes(self.buf[off + 16 : off + length])


@dataclass(slots=True)
class BatchResult:
    """The outcome of :meth:`Netlink.write`: every error matched to its request's index.

    ``lost`` is True when the kernel dropped replies (ENOBUFS) or a batch's final ack never
    came: some errors may be missing, so the caller must re-read the table to converge.
    """

    errors: dict[int, tuple[int, str]] = field(default_factory=dict)
    lost: bool = False
    batches: int = 0


class Netlink:
    """An rtnetlink socket (optionally inside the network namespace ``netns``)."""

    def __init__(self, netns: str | None = None) -> None:
        self.sock = socket_in(netns, socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE)
        s = self.sock
        s.setsockopt(SOL_NETLINK, NETLINK_CAP_ACK, 1)
        s.setsockopt(SOL_NETLINK, NETLINK_EXT_ACK, 1)
        try:
            s.setsockopt(SOL_NETLINK, NETLINK_GET_STRICT_CHK, 1)
            self.strict = True
        except OSError:  # kernels before 4.20: dumps are filtered here instead
            self.strict = False
        self.sndbuf = self._raise_buffer(SO_SNDBUFFORCE, socket.SO_SNDBUF, WANT_SNDBUF)
        self.rcvbuf = self._raise_buffer(SO_RCVBUFFORCE, socket.SO_RCVBUF, WANT_RCVBUF)
        s.bind((0, 0))
        self.pid: int = s.getsockname()[0]
        self.seq = 0
        self._buf = bytearray(1 << 18)  # one datagram from the kernel is at most ~64 KiB

    def _raise_buffer(self, force: int, plain: int, want: int) -> int:
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, force, want)
        except PermissionError:
            self.sock.setsockopt(socket.SOL_SOCKET, plain, want)
        # the kernel reports the doubled value it accounts against; half is what data may use
        return int(self.sock.getsockopt(socket.SOL_SOCKET, plain)) // 2

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Netlink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- receiving -----------------------------------------------------------------------
    def _recv(self, flags: int = 0) -> memoryview:
        n = self.sock.recv_into(self._buf, len(self._buf), flags)
        return memoryview(self._buf)[:n]

    @staticmethod
    def _error(buf: memoryview, off: int, flags: int, length: int) -> tuple[int, str]:
        """(errno, extended-ack message) of an NLMSG_ERROR at ``off`` (0 means an ack)."""
        (code,) = _ERR.unpack_from(buf, off + 16)
        msg = ""
        if code and flags & NLM_F_ACK_TLVS:
            # with NETLINK_CAP_ACK the echoed request is its header only
            a = off + 16 + 4 + 16
            end = off + length
            while a + 4 <= end:
                alen, atype = _RTA.unpack_from(buf, a)
                if alen < 4:
                    break
                if atype == NLMSGERR_ATTR_MSG:
                    msg = bytes(buf[a + 4 : a + alen]).rstrip(b"\0").decode(errors="replace")
                a += (alen + 3) & ~3
        return -code, msg

    def _drain(self) -> None:
        """Discard whatever is queued (answers to requests we gave up on)."""
        while True:
            try:
                self._recv(socket.MSG_DONTWAIT)
            except BlockingIOError:
                return
            except OSError as e:
                if e.errno != errno.ENOBUFS:
                    raise

    def _payloads(self, mtype: int, req: bytes, want: int) -> list[bytes]:
        """The payloads (no netlink header) of the ``want`` messages of a dump, read again in
        full if the kernel says it was interrupted or replies were dropped (ENOBUFS). A list
        of byte strings, no tuple or generator step per message: a pass of the agent reads
        ~10,000 of them."""
        for _attempt in range(5):
            seq = self._send_dump(mtype, req)
            out: list[bytes] = []
            intr = False
            done = False
            while not done:
                try:
                    buf = bytes(self._recv())
                except OSError as e:
                    if e.errno != errno.ENOBUFS:
                        raise
                    intr = True  # part of the dump was dropped: read it all again
                    self._drain()
                    break
                found, done, interrupted, error = self._scan_dump(buf, seq, want)
                if error is not None:
                    raise NetlinkError(error[0], error[1] or os.strerror(error[0]))
                out += found
                intr = intr or interrupted
            if not intr:
                return out
        raise NetlinkError(errno.EINTR, "dump kept being interrupted by concurrent changes")

    def _send_dump(self, mtype: int, req: bytes) -> int:
        """Ask for a dump; returns its sequence number."""
        self.seq += 1
        self.sock.send(
            _HDR.pack(16 + len(req), mtype, NLM_F_REQUEST | NLM_F_DUMP, self.seq, 0) + req
        )
        return self.seq

    def _stream(self, mtype: int, req: bytes, want: int) -> Generator[bytes, None, None]:
        """`_payloads`, one datagram's messages at a time as the kernel sends them, keeping
        none: for a reader that needs only a little of each (a 50,000-route dump is 6 MB of
        messages). An interrupted dump raises `DumpInterruptedError` (read it again with
        `_payloads`); a reader that stops early leaves nothing of the dump behind."""
        seq = self._send_dump(mtype, req)
        done = False
        try:
            while not done:
                try:
                    buf = bytes(self._recv())
                except OSError as e:
                    if e.errno != errno.ENOBUFS:
                        raise
                    self._drain()
                    done = True
                    raise DumpInterruptedError from None
                found, done, intr, error = self._scan_dump(buf, seq, want)
                if error is not None:
                    raise NetlinkError(error[0], error[1] or os.strerror(error[0]))
                if intr:
                    raise DumpInterruptedError  # the rest of the dump is read below
                yield from found
        finally:
            while not done:  # left early or interrupted: read the rest, so no later reader meets it
                done = self._scan_dump(bytes(self._recv()), seq, want)[1]

    def _scan_dump(
        self, buf: bytes, seq: int, want: int
    ) -> tuple[list[bytes], bool, bool, tuple[int, str] | None]:
        """One datagram of a dump: its messages of type ``want``, whether the dump is done,
        whether it was interrupted, and its error if it failed."""
        out: list[bytes] = []
        intr = False
        off, n = 0, len(buf)
        while off + 16 <= n:
            length, t, flags, s, _pid = _HDR.unpack_from(buf, off)
            if length < 16:
                break
            if s == seq:
                intr = intr or bool(flags & NLM_F_DUMP_INTR)
                if t == want:
                    out.append(buf[off + 16 : off + length])
                elif t == NLMSG_DONE:
                    return out, True, intr, None
                elif t == NLMSG_ERROR:
                    return out, True, intr, self._error(memoryview(buf), off, flags, length)
            off += (length + 3) & ~3
        return out, False, intr, None

    def route_stream(self, family: int, table: int) -> Generator[bytes, None, None]:
        """`route_payloads`, one message at a time (see `_stream`)."""
        return self._stream(RTM_GETROUTE, self._route_dump(family, table, 0), RTM_NEWROUTE)

    def _route_dump(self, family: int, table: int | None, protocol: int) -> bytes:
        """A route dump request, filtered by the kernel when it supports strict checking."""
        if not self.strict:
            return _RTMSG.pack(family, 0, 0, 0, 0, 0, 0, 0, 0)
        req = _RTMSG.pack(family, 0, 0, 0, 0, protocol, 0, 0, 0)
        return req + rta_u32(RTA_TABLE, table) if table is not None else req

    # --- dumps -----------------------------------------------------------------------------
    def route_payloads(
        self, family: int, table: int | None = None, protocol: int = 0
    ) -> list[bytes]:
        """The raw messages (rtmsg and attributes, no netlink header) of a route dump, filtered
        by the kernel when it supports strict checking (else NOT filtered: see `parse_route`).

        For callers that cache what they build from each message: an unchanged route is an
        equal byte string from one dump to the next."""
        return self._payloads(RTM_GETROUTE, self._route_dump(family, table, protocol), RTM_NEWROUTE)

    def routes(self, family: int, table: int | None = None, protocol: int = 0) -> list[RouteMsg]:
        """Every route of ``family`` (optionally one table / protocol; filtered by the kernel
        when it supports strict checking, and here in any case). Cached clones are skipped."""
        out: list[RouteMsg] = []
        for p in self.route_payloads(family, table, protocol):
            r = parse_route(p)
            if r is None:
                continue
            if table is not None and r.table != table:
                continue
            if protocol and r.protocol != protocol:
                continue
            out.append(r)
        return out

    def count_nexthop_refs(self, exclude_table: int | None = None) -> Counter[int]:
        """How many routes (of every table but ``exclude_table``, both families) refer to
        each nexthop id directly.

        Only the table and nexthop attributes are looked at (no route is decoded): this
        reads every route of the host, so it must stay cheap."""
        refs: Counter[int] = Counter()
        unpack_rta = _RTA.unpack_from
        unpack_u32 = _U32.unpack_from
        for family in (socket.AF_INET, socket.AF_INET6):
            req = _RTMSG.pack(family, 0, 0, 0, 0, 0, 0, 0, 0)
            for p in self._payloads(RTM_GETROUTE, req, RTM_NEWROUTE):
                if unpack_u32(p, 8)[0] & RTM_F_CLONED:
                    continue
                table = p[4]
                nh_id = 0
                a = 12
                end = len(p)
                while a + 4 <= end:
                    alen, atype = unpack_rta(p, a)
                    if alen < 4:
                        break
                    atype &= 0x3FFF
                    if atype == RTA_TABLE:
                        table = unpack_u32(p, a + 4)[0]
                    elif atype == RTA_NH_ID:
                        nh_id = unpack_u32(p, a + 4)[0]
                    a += (alen + 3) & ~3
                if nh_id and table != exclude_table:
                    refs[nh_id] += 1
        return refs

    def rule_payloads(self, family: int) -> list[bytes]:
        """The raw messages (fib_rule_hdr and attributes) of a policy-rule dump (``ip rule``)."""
        return self._payloads(RTM_GETRULE, _RTMSG.pack(family, 0, 0, 0, 0, 0, 0, 0, 0), RTM_NEWRULE)

    def nexthop_payloads(self) -> list[bytes]:
        """The raw messages of a nexthop dump (see `route_payloads`). Raises NetlinkError
        (EOPNOTSUPP/EINVAL) on kernels without nexthop objects (before 5.3)."""
        return self._payloads(RTM_GETNEXTHOP, _NHMSG.pack(0, 0, 0, 0, 0), RTM_NEWNEXTHOP)

    def nexthops(self) -> list[NexthopMsg]:
        """Every nexthop object. Raises NetlinkError (EOPNOTSUPP/EINVAL) on kernels without
        nexthop objects (before 5.3)."""
        return [parse_nexthop(p) for p in self.nexthop_payloads()]

    def nexthop(self, nh_id: int) -> NexthopMsg | None:
        """One nexthop object by id (``ip nexthop get id N``), or None when there is none: a
        lookup that needs one nexthop need not dump them all (there is one per node)."""
        self.seq += 1
        seq = self.seq
        body = _NHMSG.pack(0, 0, 0, 0, 0) + rta(NHA_ID, struct.pack("=I", nh_id))
        self.sock.send(_HDR.pack(16 + len(body), RTM_GETNEXTHOP, NLM_F_REQUEST, seq, 0) + body)
        while True:
            buf = bytes(self._recv())
            off = 0
            while off + 16 <= len(buf):
                length, t, _flags, s, _pid = _HDR.unpack_from(buf, off)
                if length < 16:
                    break
                if s == seq:
                    if t == RTM_NEWNEXTHOP:
                        return parse_nexthop(buf[off + 16 : off + length])
                    if t == NLMSG_ERROR:
                        return None
                off += (length + 3) & ~3

    def addresses(self) -> list[AddrMsg]:
        """Every address on every interface (IPv4 and IPv6)."""
        out: list[AddrMsg] = []
        for buf in self._payloads(RTM_GETADDR, _IFADDRMSG.pack(0, 0, 0, 0, 0), RTM_NEWADDR):
            end = len(buf)
            fam, plen, _fl, scope, index = _IFADDRMSG.unpack_from(buf, 0)
            local = address = None
            a = 8
            while a + 4 <= end:
                alen, atype = _RTA.unpack_from(buf, a)
                if alen < 4:
                    break
                if atype == IFA_LOCAL:
                    local = bytes(buf[a + 4 : a + alen])
                elif atype == IFA_ADDRESS:
                    address = bytes(buf[a + 4 : a + alen])
                a += (alen + 3) & ~3
            addr = local or address
            if addr is not None:
                out.append(AddrMsg(fam, plen, index, scope, addr))
        return out

    def links(self) -> dict[int, str]:
        """Interface index -> name (in this socket's namespace, unlike if_indextoname)."""
        out: dict[int, str] = {}
        for buf in self._payloads(RTM_GETLINK, _IFINFOMSG.pack(0, 0, 0, 0, 0), RTM_NEWLINK):
            end = len(buf)
            index = _IFINFOMSG.unpack_from(buf, 0)[2]
            a = 16
            while a + 4 <= end:
                alen, atype = _RTA.unpack_from(buf, a)
                if alen < 4:
                    break
                if atype == IFLA_IFNAME:
                    out[index] = bytes(buf[a + 4 : a + alen]).rstrip(b"\0").decode()
                    break
                a += (alen + 3) & ~3
        return out

    # --- lookups -------------------------------------------------------------------------
    def lookup(self, dsts: Sequence[bytes]) -> list[Lookup]:
        """``ip route get`` for many addresses (4 or 16 bytes each), batched; one result each,
        in order. Batches are sized so the replies fit the receive buffer; if replies are
        dropped anyway (ENOBUFS), the unanswered lookups are asked again in smaller batches."""
        results: list[Lookup | None] = [None] * len(dsts)
        per_batch = max(1, min(self.rcvbuf // LOOKUP_REPLY_COST, 4096))
        todo = list(range(len(dsts)))
        while todo:
            dropped = False
            for start in range(0, len(todo), per_batch):
                chunk = todo[start : start + per_batch]
                base = self.seq + 1
                parts: list[bytes] = []
                seq = base
                append = parts.append
                pack4 = _LOOKUP4.pack
                for i in chunk:
                    d = dsts[i]
                    if len(d) == 4:  # only the sequence number and the address vary
                        append(pack4(_LOOKUP4_HEAD, seq, _LOOKUP4_MID, d))
                    else:
                        append(
                            _LOOKUP[16].pack(
                                48, RTM_GETROUTE, NLM_F_REQUEST, seq, 0,
                                socket.AF_INET6, 128, 0, 0, 0, 0, 0, 0, 0, 20, RTA_DST, d,
                            )
                        )  # fmt: skip
                    seq += 1
                self.seq = seq - 1
                self.sock.send(b"".join(parts))
                dropped |= self._collect_lookups(base, chunk, results)
            todo = [i for i in todo if results[i] is None]
            if todo and not dropped:
                raise NetlinkError(errno.EIO, f"{len(todo)} route lookups got no answer")
            per_batch = max(1, per_batch // 4)
        return [r if r is not None else Lookup(errno.EIO) for r in results]

    def fib_match(self, dst: bytes) -> RouteMsg | int:
        """The route of the routing tables the kernel picks for ``dst`` (``ip route get
        fibmatch``: after the policy rules and the longest-prefix match, in whichever table),
        or the errno of the lookup. A destination under a blackhole, unreachable or prohibit
        route has only the errno (EINVAL, EHOSTUNREACH, EACCES): the kernel answers no route."""
        family = socket.AF_INET if len(dst) == 4 else socket.AF_INET6
        self.seq += 1
        seq = self.seq
        flags = RTM_F_FIB_MATCH | RTM_F_LOOKUP_TABLE
        body = _RTMSG.pack(family, len(dst) * 8, 0, 0, 0, 0, 0, 0, flags)
        body += rta(RTA_DST, dst)
        self.sock.send(_HDR.pack(16 + len(body), RTM_GETROUTE, NLM_F_REQUEST, seq, 0) + body)
        while True:
            buf = bytes(self._recv())
            off = 0
            while off + 16 <= len(buf):
                length, t, flags, s, _pid = _HDR.unpack_from(buf, off)
                if length < 16:
                    break
                if s == seq:
                    if t == RTM_NEWROUTE:
                        r = _parse_any(buf[off + 16 : off + length])
                        return r if r is not None else errno.EIO
                    if t == NLMSG_ERROR:
                        return self._error(memoryview(buf), off, flags, length)[0] or errno.EIO
                off += (length + 3) & ~3

    def _collect_lookups(self, base: int, chunk: list[int], results: list[Lookup | None]) -> bool:
        """Read the answers to one batch of lookups; True if the kernel dropped some."""
        pending = n_chunk = len(chunk)
        draining = False
        while pending:
            try:
                buf = self._recv(socket.MSG_DONTWAIT if draining else 0)
            except BlockingIOError:
                return True
            except OSError as e:
                if e.errno != errno.ENOBUFS:
                    raise
                draining = True
                continue
            off = 0
            while off + 16 <= len(buf):
                length, t, flags, s, _pid = _HDR.unpack_from(buf, off)
                if length < 16:
                    break
                k = s - base
                if 0 <= k < n_chunk and results[chunk[k]] is None:
                    pending -= 1
                    if t == RTM_NEWROUTE:
                        res = None
                        if length == _ON_LINK_V4_SIZE:  # the usual answer, in one unpack
                            v = _ON_LINK_V4.unpack_from(buf, off + 16)
                            if v[0] == AF_INET and v[2:5] + v[6:9:2] + v[9:] == _ON_LINK_HEADS:
                                res = Lookup(0, v[1], v[5], None, v[7])
                        if res is None:
                            res = _parse_lookup(buf, off + 16, off + length)
                        results[chunk[k]] = res
                    else:
                        code = self._error(buf, off, flags, length)[0] if t == NLMSG_ERROR else 0
                        results[chunk[k]] = Lookup(code or errno.EIO)
                off += (length + 3) & ~3
        return draining

    # --- batched writes --------------------------------------------------------------------
    def write(self, requests: Sequence[Request]) -> BatchResult:
        """Send ``requests`` in as few datagrams as the buffers allow; return every error.

        Each datagram asks for an ack on its last message only. The kernel handles a datagram
        synchronously inside ``sendmsg``, so once it returns every reply is queued; we read up
        to the final ack. If the kernel dropped replies (ENOBUFS), we drain what is left
        without blocking and mark the result ``lost``. A `Requests` is sent from its own
        buffer; any other sequence is first packed into one.
        """
        reqs = requests if isinstance(requests, Requests) else Requests(requests)
        result = BatchResult()
        max_bytes = max(4096, min(self.sndbuf - 1024, MAX_BATCH_BYTES))
        max_msgs = max(1, self.rcvbuf // REPLY_COST - 1)
        buf, offs = reqs.buf, reqs.offsets
        n, total = len(offs), len(buf)
        put_seq = _U32.pack_into
        view = memoryview(buf)
        try:
            i = 0
            while i < n:
                first, start = i, offs[i]
                j = min(first + max_msgs, n)
                if (offs[j] if j < n else total) - start > max_bytes:
                    # the most whole messages within max_bytes (one, if it alone is larger)
                    j = max(first + 1, bisect_right(offs, start + max_bytes, first + 1, j) - 1)
                end = offs[j] if j < n else total
                base = seq = self.seq + 1
                for k in range(first, j):
                    put_seq(buf, offs[k] + 8, seq)
                    seq += 1
                last = offs[j - 1] + 6
                flags = _U16.unpack_from(buf, last)[0]
                _U16.pack_into(buf, last, flags | NLM_F_ACK)
                self.seq = seq - 1
                try:
                    self.sock.send(view[start:end])
                finally:
                    _U16.pack_into(buf, last, flags)
                result.batches += 1
                self._collect(base, j - first, first, result)
                i = j
        finally:
            view.release()
        return result

    def _collect(self, base: int, count: int, first: int, result: BatchResult) -> None:
        last = base + count - 1
        draining = False
        while True:
            try:
                buf = self._recv(socket.MSG_DONTWAIT if draining else 0)
            except BlockingIOError:
                result.lost = True  # the final ack was dropped with the rest
                return
            except OSError as e:
                if e.errno != errno.ENOBUFS:
                    raise
                result.lost = True
                draining = True
                continue
            off = 0
            while off + 16 <= len(buf):
                length, t, flags, s, _pid = _HDR.unpack_from(buf, off)
                if length < 16:
                    break
                if t == NLMSG_ERROR and base <= s <= last:
                    code, text = self._error(buf, off, flags, length)
                    if code:
                        result.errors[first + s - base] = (code, text or os.strerror(code))
                    if s == last:
                        return
                off += (length + 3) & ~3


#: The IPv4 route messages read by the thousand, as the kernel lays them out (rtmsg, then
#: length, type and value of each attribute), each decoded by one ``unpack``.
_V4_NEXTHOP = struct.Struct("=BBBBBBBBI HHI HH4s HHI HH4s HHI")  # table dst nhid gateway oif
_V4_NEXTHOP_ONLY = struct.Struct("=BBBBBBBBI HHI HH4s HHI")  # table dst nhid (compat mode 0)
_V4_GATEWAY = struct.Struct("=BBBBBBBBI HHI HH4s HH4s HHI")  # table dst gateway oif
_COMMON = {
    st.size: (st, tuple(x for t in types for x in (8, t)))  # every attribute is 8 bytes long
    for st, types in (
        (_V4_NEXTHOP, (RTA_TABLE, RTA_DST, RTA_NH_ID, RTA_GATEWAY, RTA_OIF)),
        (_V4_NEXTHOP_ONLY, (RTA_TABLE, RTA_DST, RTA_NH_ID)),
        (_V4_GATEWAY, (RTA_TABLE, RTA_DST, RTA_GATEWAY, RTA_OIF)),
    )
}


def _parse_common(p: bytes) -> RouteMsg | None:
    """A route message of one of the `_COMMON` layouts, in one ``unpack``; None if it is not
    one of them (`parse_route` then walks its attributes)."""
    layout = _COMMON.get(len(p))
    if layout is None or p[0] != socket.AF_INET:
        return None
    st, heads = layout
    v = st.unpack_from(p)
    if v[8] & RTM_F_CLONED:
        return None
    n = len(v)
    if n == 24:
        if (v[9], v[10], v[12], v[13], v[15], v[16], v[18], v[19], v[21], v[22]) == heads:
            return RouteMsg(
                AF_INET, v[14], v[1], v[11], v[5], v[6], v[7], v[8], 0, v[23], v[20], v[17]
            )
    elif n == 18:
        if (v[9], v[10], v[12], v[13], v[15], v[16]) == heads:
            return RouteMsg(AF_INET, v[14], v[1], v[11], v[5], v[6], v[7], v[8], 0, 0, None, v[17])
    elif (v[9], v[10], v[12], v[13], v[15], v[16], v[18], v[19]) == heads:
        return RouteMsg(AF_INET, v[14], v[1], v[11], v[5], v[6], v[7], v[8], 0, v[20], v[17])
    return None


def parse_route(p: bytes) -> RouteMsg | None:
    """One route message (see `Netlink.route_payloads`); None for a cached clone."""
    common = _parse_common(p)
    return common if common is not None else _parse_any(p)


def _parse_any(p: bytes) -> RouteMsg | None:
    """`parse_route` for any layout: walks the attributes."""
    fam, dlen, _s, _tos, tbl, proto, scope, rtype, rflags = _RTMSG.unpack_from(p, 0)
    if rflags & RTM_F_CLONED:
        return None
    r = RouteMsg(fam, b"", dlen, tbl, proto, scope, rtype, rflags)
    unpack_rta = _RTA.unpack_from
    unpack_u32 = _U32.unpack_from
    a = 12
    end = len(p)
    while a + 4 <= end:
        alen, atype = unpack_rta(p, a)
        if alen < 4:
            break
        atype &= 0x3FFF
        if atype == RTA_DST:
            r.dst = p[a + 4 : a + alen]
        elif atype == RTA_TABLE:
            r.table = unpack_u32(p, a + 4)[0]
        elif atype == RTA_GATEWAY:
            r.gateway = p[a + 4 : a + alen]
        elif atype == RTA_OIF:
            r.oif = unpack_u32(p, a + 4)[0]
        elif atype == RTA_PRIORITY:
            r.priority = unpack_u32(p, a + 4)[0]
        elif atype == RTA_NH_ID:
            r.nh_id = unpack_u32(p, a + 4)[0]
        elif atype == RTA_MULTIPATH:
            r.multipath = _parse_multipath(p, a + 4, a + alen)
        a += (alen + 3) & ~3
    return r


#: An IPv4 nexthop as the kernel dumps it (nhmsg, NHA_ID, NHA_OIF, NHA_GATEWAY), each
#: attribute's (length, type) read as one u32: decoded in one unpack.
_NH_V4 = struct.Struct("=BxBxI II II I4s")


def parse_nexthop(p: bytes) -> NexthopMsg:
    """One nexthop message (see `Netlink.nexthop_payloads`)."""
    if len(p) == _NH_V4.size:
        fam, proto, _f, h_id, nh_id, h_oif, oif, h_gw, gw = _NH_V4.unpack(p)
        if fam == AF_INET and (h_id, h_oif, h_gw) == _NH_V4_HEADS:
            return NexthopMsg(nh_id, fam, proto, gw, oif)
    return _parse_any_nexthop(p)


def _parse_any_nexthop(p: bytes) -> NexthopMsg:
    """`parse_nexthop` for any layout: walks the attributes."""
    fam, _scope, proto, _r, _f = _NHMSG.unpack_from(p, 0)
    nh = NexthopMsg(0, fam, proto)
    a = 8
    end = len(p)
    while a + 4 <= end:
        alen, atype = _RTA.unpack_from(p, a)
        if alen < 4:
            break
        atype &= 0x3FFF
        if atype == NHA_ID:
            nh.id = _U32.unpack_from(p, a + 4)[0]
        elif atype == NHA_GATEWAY:
            nh.gateway = p[a + 4 : a + alen]
        elif atype == NHA_OIF:
            nh.oif = _U32.unpack_from(p, a + 4)[0]
        elif atype == NHA_BLACKHOLE:
            nh.blackhole = True
        elif atype == NHA_GROUP:
            nh.group = [_NHGRP.unpack_from(p, g)[0] for g in range(a + 4, a + alen - 7, 8)]
        a += (alen + 3) & ~3
    return nh


def _parse_multipath(buf: bytes | memoryview, off: int, end: int) -> list[tuple[bytes | None, int]]:
    hops: list[tuple[bytes | None, int]] = []
    while off + 8 <= end:
        hlen, _fl, _hops, ifindex = _RTNH.unpack_from(buf, off)
        if hlen < 8:
            break
        gw: bytes | None = None
        a = off + 8
        while a + 4 <= off + hlen:
            alen, atype = _RTA.unpack_from(buf, a)
            if alen < 4:
                break
            if atype == RTA_GATEWAY:
                gw = bytes(buf[a + 4 : a + alen])
            a += (alen + 3) & ~3
        hops.append((gw, ifindex))
        off += (hlen + 3) & ~3
    return hops


#: The kernel's answer to a lookup of a directly connected IPv4 address, as Linux lays it
#: out: rtmsg, RTA_TABLE, RTA_DST, RTA_OIF, RTA_PREFSRC, RTA_UID, then RTA_CACHEINFO (36 bytes)
#: and no RTA_GATEWAY. Decoded in one unpack; any other answer walks its attributes.
#: Each attribute's (length, type) read as one u32: family, type, then the heads of RTA_TABLE,
#: RTA_DST and RTA_OIF, the interface, the heads of RTA_PREFSRC, the source, RTA_UID, and
#: RTA_CACHEINFO.
_ON_LINK_V4 = struct.Struct("=B6xB4x I4x I4x II I4s I4x I")
_ON_LINK_V4_SIZE = 16 + _ON_LINK_V4.size + 32


def _head(length: int, atype: int) -> int:
    return int(_U32.unpack(_RTA.pack(length, atype))[0])


_NH_V4_HEADS = (_head(8, NHA_ID), _head(8, NHA_OIF), _head(8, NHA_GATEWAY))
_ON_LINK_HEADS = tuple(
    _head(n, t)
    for n, t in ((8, RTA_TABLE), (8, RTA_DST), (8, RTA_OIF), (8, RTA_PREFSRC), (8, 25), (36, 12))
)
#: A lookup request for an IPv4 address: constant bytes around its sequence number and address.
_LOOKUP4 = struct.Struct("=8sI20s4s")
_LOOKUP4_HEAD = struct.pack("=IHH", 36, RTM_GETROUTE, NLM_F_REQUEST)
_LOOKUP4_MID = struct.pack("=IBBBBBBBBIHH", 0, socket.AF_INET, 32, 0, 0, 0, 0, 0, 0, 0, 8, RTA_DST)


def _parse_lookup(buf: bytes | memoryview, off: int, end: int) -> Lookup:
    res = Lookup(0, buf[off + 7])
    a = off + 12
    unpack = _RTA.unpack_from
    while a + 4 <= end:
        alen, atype = unpack(buf, a)
        if alen < 4:
            break
        atype &= 0x3FFF
        if atype == RTA_OIF:
            res.oif = _U32.unpack_from(buf, a + 4)[0]
        elif atype == RTA_GATEWAY:
            res.gateway = bytes(buf[a + 4 : a + alen])
        elif atype == RTA_PREFSRC:
            res.prefsrc = bytes(buf[a + 4 : a + alen])
        a += (alen + 3) & ~3
    return res


# --- message builders --------------------------------------------------------------------
def _family(addr: bytes) -> int:
    return socket.AF_INET if len(addr) == 4 else socket.AF_INET6


_ROUTE_NH = {
    4: struct.Struct("=BBBBBBBBIHH4sHHI"),  # rtmsg, RTA_DST (v4), RTA_NH_ID
    16: struct.Struct("=BBBBBBBBIHH16sHHI"),  # rtmsg, RTA_DST (v6), RTA_NH_ID
}
_NEXTHOP = {
    4: struct.Struct("=BBBBIHHIHH4sHHI"),  # nhmsg, NHA_ID, NHA_GATEWAY (v4), NHA_OIF
    16: struct.Struct("=BBBBIHHIHH16sHHI"),  # nhmsg, NHA_ID, NHA_GATEWAY (v6), NHA_OIF
}
#: The same, header included, for `Requests.append_message` (arguments: length, type, flags,
#: 0, 0, then the payload's).
ROUTE_NH_MSG = {n: struct.Struct("=IHHII" + st.format[1:]) for n, st in _ROUTE_NH.items()}
NEXTHOP_MSG = {n: struct.Struct("=IHHII" + st.format[1:]) for n, st in _NEXTHOP.items()}


def route_msg(
    dst: bytes,
    dst_len: int,
    *,
    table: int,
    protocol: int,
    priority: int = 0,
    nh_id: int = 0,
    gateways: Sequence[tuple[bytes, int]] = (),
) -> bytes:
    """The payload of an RTM_NEWROUTE/RTM_DELROUTE for a unicast route: ``nhid`` if given,
    else one gateway (RTA_GATEWAY + RTA_OIF), else several (RTA_MULTIPATH). A delete with
    none of them matches on destination, table, protocol and metric only."""
    fam = _family(dst)
    if nh_id and table < 256 and not priority:  # the bulk case, packed in one call
        return _ROUTE_NH[len(dst)].pack(
            fam, dst_len, 0, 0, table, protocol, 0, RTN_UNICAST, 0,
            4 + len(dst), RTA_DST, dst, 8, RTA_NH_ID, nh_id,
        )  # fmt: skip
    parts = [
        _RTMSG.pack(fam, dst_len, 0, 0, table if table < 256 else 0, protocol, 0, RTN_UNICAST, 0),
        rta(RTA_DST, dst),
    ]
    if table >= 256:
        parts.append(rta_u32(RTA_TABLE, table))
    if priority:
        parts.append(rta_u32(RTA_PRIORITY, priority))
    if nh_id:
        parts.append(rta_u32(RTA_NH_ID, nh_id))
    elif len(gateways) == 1:
        gw, oif = gateways[0]
        parts.append(rta(RTA_GATEWAY, gw))
        if oif:
            parts.append(rta_u32(RTA_OIF, oif))
    elif gateways:
        hops = []
        for gw, oif in gateways:
            attr = rta(RTA_GATEWAY, gw)
            hops.append(_RTNH.pack(8 + len(attr), 0, 0, oif) + attr)
        parts.append(rta(RTA_MULTIPATH, b"".join(hops)))
    return b"".join(parts)


def nexthop_msg(nh_id: int, *, protocol: int, gateway: bytes, oif: int) -> bytes:
    """The payload of an RTM_NEWNEXTHOP for ``id N via GATEWAY dev OIF proto P``."""
    st = _NEXTHOP.get(len(gateway))
    if st is not None:
        return st.pack(
            _family(gateway), 0, protocol, 0, 0,
            8, NHA_ID, nh_id, 4 + len(gateway), NHA_GATEWAY, gateway, 8, NHA_OIF, oif,
        )  # fmt: skip
    return (
        _NHMSG.pack(_family(gateway), 0, protocol, 0, 0)
        + rta_u32(NHA_ID, nh_id)
        + rta(NHA_GATEWAY, gateway)
        + rta_u32(NHA_OIF, oif)
    )


def nexthop_group_msg(nh_id: int, *, protocol: int, members: Sequence[int]) -> bytes:
    """The payload of an RTM_NEWNEXTHOP for ``id N group A/B/... proto P`` (equal weights)."""
    grp = b"".join(_NHGRP.pack(m, 0, 0, 0) for m in members)
    return _NHMSG.pack(0, 0, protocol, 0, 0) + rta_u32(NHA_ID, nh_id) + rta(NHA_GROUP, grp)


def nexthop_del_msg(nh_id: int) -> bytes:
    return _NHMSG.pack(0, 0, 0, 0, 0) + rta_u32(NHA_ID, nh_id)
