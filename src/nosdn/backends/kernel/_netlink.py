"""A small raw rtnetlink client: dumps, route lookups and batched writes, in pure Python.

Why not pyroute2: its import, its one-message-at-a-time writes and its dumps were each a large
share of an apply (figures: bench/README.md, "Figures behind the code"); its batch helper hangs
when acks overflow its buffer and its flush lost routes without an error (DESIGN.md). nosdn's
hot path is "dump the table, diff, write a few thousand routes", so it talks to the kernel
directly:

- many messages go into one ``sendmsg``, but never more bytes than the send buffer (a larger
  datagram fails with EMSGSIZE), and never more messages than the receive buffer can hold
  replies for (each reply costs ~830 bytes of it; overflow drops replies with ENOBUFS);
- only the last message of a batch asks for an ack: the kernel still answers every failing
  message with an error, in order, so reading up to the last ack collects every error, each
  matched to its message by sequence number;
- the buffers are raised with ``SO_SNDBUFFORCE``/``SO_RCVBUFFORCE`` (root), else ``SO_*BUF``;
- if replies are lost anyway (ENOBUFS), the batch result says so, and the caller re-dumps to
  learn what really happened instead of trusting the missing answers;
- on request (``echo``), every write carries ``NLM_F_ECHO`` and the kernel's own account of
  it (the message it multicasts) is collected, so a caller keeping a view of the table can
  fold that in instead of dumping the table again.

The socket can be opened inside a named network namespace (``/run/netns/NAME``): a netlink
socket stays in the namespace it was created in, so the thread only enters the namespace for the
``socket()`` call. Tests and the lab use that to program namespaces without a subprocess.

The messages themselves (their headers, attribute tables, records, parsers and builders) are
declared in `_codec`; this module keeps the socket, the dumps, the batching and the matching of
errors to requests.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
from array import array
from bisect import bisect_right
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TypeAlias, overload

from nosdn.backends.kernel._codec import (
    _NH_V4,
    ACK,
    AF_INET,
    IFA_ADDRESS,
    IFA_LOCAL,
    IFADDRMSG,
    IFINFOMSG,
    IFLA_IFNAME,
    NEXTHOP,
    NEXTHOP_MSG,
    NHA_BLACKHOLE,
    NHA_GATEWAY,
    NHA_GROUP,
    NHA_GROUP_TYPE,
    NHA_ID,
    NHA_OIF,
    NHMSG,
    ROUTE,
    ROUTE_NH_MSG,
    ROUTE_REF,
    RT_SCOPE_LINK,
    RT_SCOPE_UNIVERSE,
    RTA_DST,
    RTA_GATEWAY,
    RTA_MULTIPATH,
    RTA_NH_ID,
    RTA_OIF,
    RTA_PREFSRC,
    RTA_PRIORITY,
    RTA_TABLE,
    RTA_VIA,
    RTM_F_CLONED,
    RTM_F_FIB_MATCH,
    RTM_F_LOOKUP_TABLE,
    RTMSG,
    RTN_ANYCAST,
    RTN_BLACKHOLE,
    RTN_BROADCAST,
    RTN_LOCAL,
    RTN_MULTICAST,
    RTN_PROHIBIT,
    RTN_THROW,
    RTN_UNICAST,
    RTN_UNREACHABLE,
    RTNH_F_ONLINK,
    AddrMsg,
    Lookup,
    NexthopMsg,
    RouteMsg,
    RouteRef,
    _parse_any,
    _parse_any_nexthop,
    _parse_common,
    decode,
    encode,
    lookup_msg,
    nexthop_del_msg,
    nexthop_group_msg,
    nexthop_msg,
    parse_address,
    parse_link,
    parse_lookup,
    parse_nexthop,
    parse_route,
    route_msg,
    rta,
    rta_u32,
)
from nosdn.netns import socket_in

#: The names of `_codec` that the backend has always found here (the messages themselves:
#: constants, records, parsers, builders), and the fast paths beside the walker that
#: tests/test_kernel_backend.py compares.
__all__ = [
    "AF_INET",
    "IFA_ADDRESS",
    "IFA_LOCAL",
    "IFLA_IFNAME",
    "NEXTHOP_MSG",
    "NHA_BLACKHOLE",
    "NHA_GATEWAY",
    "NHA_GROUP",
    "NHA_GROUP_TYPE",
    "NHA_ID",
    "NHA_OIF",
    "ROUTE_NH_MSG",
    "RTA_DST",
    "RTA_GATEWAY",
    "RTA_MULTIPATH",
    "RTA_NH_ID",
    "RTA_OIF",
    "RTA_PREFSRC",
    "RTA_PRIORITY",
    "RTA_TABLE",
    "RTA_VIA",
    "RTM_F_CLONED",
    "RTM_F_FIB_MATCH",
    "RTM_F_LOOKUP_TABLE",
    "RTNH_F_ONLINK",
    "RTN_ANYCAST",
    "RTN_BLACKHOLE",
    "RTN_BROADCAST",
    "RTN_LOCAL",
    "RTN_MULTICAST",
    "RTN_PROHIBIT",
    "RTN_THROW",
    "RTN_UNICAST",
    "RTN_UNREACHABLE",
    "RT_SCOPE_LINK",
    "RT_SCOPE_UNIVERSE",
    "_NH_V4",
    "AddrMsg",
    "Lookup",
    "NexthopMsg",
    "RouteMsg",
    "_parse_any",
    "_parse_any_nexthop",
    "_parse_common",
    "nexthop_del_msg",
    "nexthop_group_msg",
    "nexthop_msg",
    "parse_nexthop",
    "parse_route",
    "route_msg",
    "rta",
    "rta_u32",
]

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
NLM_F_ECHO = 0x8
NLM_F_DUMP_INTR = 0x10
NLM_F_DUMP = 0x300
NLM_F_REPLACE = 0x100
NLM_F_EXCL = 0x200
NLM_F_CREATE = 0x400
NLM_F_ACK_TLVS = 0x200  # on an NLMSG_ERROR: extended-ack attributes follow

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


_HDR = struct.Struct("=IHHII")  # nlmsghdr: len, type, flags, seq, pid
_U32 = struct.Struct("=I")
_U16 = struct.Struct("=H")
_ERR = struct.Struct("=i")

#: Bytes of receive buffer one queued reply takes (skb truesize of an ack or error, measured).
REPLY_COST = 1024
#: A route lookup reply is allocated with NLMSG_GOODSIZE: it costs far more receive buffer.
LOOKUP_REPLY_COST = 6144
#: Largest datagram we send: big enough to amortise the syscall, small enough to stay in cache.
MAX_BATCH_BYTES = 1 << 20
#: What we ask for with the *FORCE options (root); the kernel caps plain SO_*BUF at *mem_max.
WANT_SNDBUF = 4 << 20
WANT_RCVBUF = 32 << 20


class NetlinkError(OSError):
    """The kernel refused a request (not a batch write: those report per message)."""


#: One write for :meth:`Netlink.write`: (message type, flags, payload after the netlink header).
#: ``NLM_F_REQUEST`` is added; ``NLM_F_ACK`` is managed by the batcher. A plain tuple: a
#: 50,000-route apply makes 100,000 of them.
Request: TypeAlias = tuple[int, int, bytes]


class Requests(Sequence[Request]):
    """Requests for `Netlink.write`, kept as the netlink messages themselves: back to back in
    one buffer (header with sequence number 0, payload, padding), with an offset each.

    Why: a 50,000-route apply makes 100,000 requests. As a tuple and a bytes object each they
    were most of the apply's peak memory, and ``write`` joined them into datagrams again; here
    each costs its
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
    #: With ``echo``: what the kernel said it did, (message type, payload) in the order it
    #: did it (the messages it multicasts, in dump format: a route or nexthop put or delete,
    #: and the routes a nexthop replace moved when nexthop_compat_mode is on).
    echoes: list[tuple[int, bytes]] = field(default_factory=list)
    #: how many requests were echoed (a write the kernel found already done echoes nothing)
    echoed: int = 0


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
        if not (code and flags & NLM_F_ACK_TLVS):
            return -code, ""
        return -code, decode(ACK, bytes(buf[off + 16 : off + length])).msg or ""

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

    def _route_dump(self, family: int, table: int | None, protocol: int) -> bytes:
        """A route dump request, filtered by the kernel when it supports strict checking."""
        if not self.strict:
            return RTMSG.pack(family, 0, 0, 0, 0, 0, 0, 0, 0)
        req = RTMSG.pack(family, 0, 0, 0, 0, protocol, 0, 0, 0)
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

        This reads every route of the host, so it must stay cheap: the usual IPv4 layouts are
        read in one unpack, any other route only for its table and nexthop (`ROUTE_REF`)."""
        refs: Counter[int] = Counter()
        for family in (socket.AF_INET, socket.AF_INET6):
            req = RTMSG.pack(family, 0, 0, 0, 0, 0, 0, 0, 0)
            for p in self._payloads(RTM_GETROUTE, req, RTM_NEWROUTE):
                r: RouteMsg | RouteRef | None = _parse_common(p)
                if r is None:
                    r = decode(ROUTE_REF, p)
                if r.nh_id and r.table != exclude_table and not r.flags & RTM_F_CLONED:
                    refs[r.nh_id] += 1
        return refs

    def rule_payloads(self, family: int) -> list[bytes]:
        """The raw messages (fib_rule_hdr and attributes) of a policy-rule dump (``ip rule``)."""
        return self._payloads(RTM_GETRULE, RTMSG.pack(family, 0, 0, 0, 0, 0, 0, 0, 0), RTM_NEWRULE)

    def nexthop_payloads(self) -> list[bytes]:
        """The raw messages of a nexthop dump (see `route_payloads`). Raises NetlinkError
        (EOPNOTSUPP/EINVAL) on kernels without nexthop objects (before 5.3)."""
        return self._payloads(RTM_GETNEXTHOP, NHMSG.pack(0, 0, 0, 0, 0), RTM_NEWNEXTHOP)

    def nexthops(self) -> list[NexthopMsg]:
        """Every nexthop object. Raises NetlinkError (EOPNOTSUPP/EINVAL) on kernels without
        nexthop objects (before 5.3)."""
        return [parse_nexthop(p) for p in self.nexthop_payloads()]

    def nexthop(self, nh_id: int) -> NexthopMsg | None:
        """One nexthop object by id (``ip nexthop get id N``), or None when there is none: a
        lookup that needs one nexthop need not dump them all (there is one per node)."""
        self.seq += 1
        seq = self.seq
        body = encode(NEXTHOP, (0, 0, 0, 0, 0), id=nh_id)
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
        found = self._payloads(RTM_GETADDR, IFADDRMSG.pack(0, 0, 0, 0, 0), RTM_NEWADDR)
        return [a for p in found if (a := parse_address(p)) is not None]

    def links(self) -> dict[int, str]:
        """Interface index -> name (in this socket's namespace, unlike if_indextoname)."""
        out: dict[int, str] = {}
        for p in self._payloads(RTM_GETLINK, IFINFOMSG.pack(0, 0, 0, 0, 0), RTM_NEWLINK):
            link = parse_link(p)
            if link.name is not None:
                out[link.ifindex] = link.name
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
                for i in chunk:
                    body = lookup_msg(dsts[i])
                    parts.append(_HDR.pack(16 + len(body), RTM_GETROUTE, NLM_F_REQUEST, seq, 0))
                    parts.append(body)
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
        body = encode(ROUTE, (family, len(dst) * 8, 0, 0, 0, 0, 0, 0, flags), dst=dst)
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
                        r = parse_route(buf[off + 16 : off + length])
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
                        results[chunk[k]] = parse_lookup(bytes(buf[off + 16 : off + length]))
                    else:
                        code = self._error(buf, off, flags, length)[0] if t == NLMSG_ERROR else 0
                        results[chunk[k]] = Lookup(code or errno.EIO)
                off += (length + 3) & ~3
        return draining

    # --- batched writes --------------------------------------------------------------------
    def write(self, requests: Sequence[Request], *, echo: bool = False) -> BatchResult:
        """Send ``requests`` in as few datagrams as the buffers allow; return every error.

        ``echo``: send each with ``NLM_F_ECHO`` and collect what the kernel echoes in
        `BatchResult.echoes` (a caller that keeps a view of the table folds them in instead
        of dumping it again). Each echo takes receive buffer like a reply, so batches are
        smaller; one-shot commands do not ask for it.

        Each datagram asks for an ack on its last message only. The kernel handles a datagram
        synchronously inside ``sendmsg``, so once it returns every reply is queued; we read up
        to the final ack. If the kernel dropped replies (ENOBUFS), we drain what is left
        without blocking and mark the result ``lost``. A `Requests` is sent from its own
        buffer; any other sequence is first packed into one.
        """
        reqs = requests if isinstance(requests, Requests) else Requests(requests)
        result = BatchResult()
        max_bytes = max(4096, min(self.sndbuf - 1024, MAX_BATCH_BYTES))
        max_msgs = max(1, self.rcvbuf // (REPLY_COST * (2 if echo else 1)) - 1)
        echoes = result.echoes if echo else None
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
                if echo:
                    _set_flag(buf, offs, first, j, NLM_F_ECHO)
                last = offs[j - 1] + 6
                flags = _U16.unpack_from(buf, last)[0]
                _U16.pack_into(buf, last, flags | NLM_F_ACK)
                self.seq = seq - 1
                try:
                    self.sock.send(view[start:end])
                finally:
                    _U16.pack_into(buf, last, flags)
                    if echo:
                        _set_flag(buf, offs, first, j, NLM_F_ECHO, on=False)
                result.batches += 1
                self._collect(base, j - first, first, result, echoes)
                i = j
        finally:
            view.release()
        return result

    def _collect(
        self,
        base: int,
        count: int,
        first: int,
        result: BatchResult,
        echoes: list[tuple[int, bytes]] | None = None,
    ) -> None:
        """Read the replies to one datagram up to its final ack: errors into ``result``, and
        (``echoes``) every other message answering one of its requests, as sent."""
        last = base + count - 1
        echoed = -1  # the sequence number of the last request echoed
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
                elif echoes is not None and base <= s <= last:
                    echoes.append((t, bytes(buf[off + 16 : off + length])))
                    if s != echoed:  # a request's echoes come together, before the next's
                        echoed = s
                        result.echoed += 1
                off += (length + 3) & ~3


def _set_flag(
    buf: bytearray, offs: array[int], first: int, end: int, flag: int, *, on: bool = True
) -> None:
    """Set (or clear) ``flag`` in the header of messages ``first`` to ``end`` of a buffer."""
    unpack, pack = _U16.unpack_from, _U16.pack_into
    for k in range(first, end):
        at = offs[k] + 6
        flags = unpack(buf, at)[0]
        pack(buf, at, flags | flag if on else flags & ~flag)
