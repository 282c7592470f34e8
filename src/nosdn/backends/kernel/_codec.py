"""The rtnetlink messages nosdn reads and writes, declared once, and the codec that reads them.

Why: every message kind (route, nexthop, address, link, route lookup answer) used to have a
hand-written walker with an ``if``/``elif`` per attribute, and each builder its own packing, so
adding an attribute meant finding every copy. Here each kind is a `Message`: its fixed header
(a ``struct`` format and which record field each header field fills) and a table of its
attributes (type -> record field and `Kind`). One walker (`decode`) reads any of them; one
encoder (`attrs`, `encode`) writes attributes from the same table. Adding an attribute is one
line in a table (and a field in the record).

The walker skips attributes the table does not name and stops at the first truncated one
(a length shorter than its head or longer than what is left), keeping what it read so far.

Fast paths stand beside the walker only where ``bench/codec.py`` shows they pay (bench/README.md,
"Attribute codec"). A decoding one is a `Layout`: one exact sequence of attributes of a table,
read in one ``struct`` call; it refuses any other message (the walker then reads it), and
``tests/test_kernel_codec.py`` checks that both give the same answer. The bulk requests of an
apply are packed whole (`ROUTE_NH_MSG`, `NEXTHOP_MSG`), checked against the encoder likewise.

Addresses stay ``bytes`` (the backend turns them into ``ipaddress`` objects).
"""

from __future__ import annotations

import dataclasses
import socket
import struct
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from operator import itemgetter
from typing import Any, Final, Generic, NamedTuple, TypeVar

# --- attribute types and field values (linux/rtnetlink.h, nexthop.h, if_addr.h, if_link.h) --
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

NLMSGERR_ATTR_MSG = 1  # linux/netlink.h: the extended ack's text

IFA_ADDRESS = 1
IFA_LOCAL = 2
IFLA_IFNAME = 3

AF_INET = socket.AF_INET

#: The fixed headers (what precedes the attributes of each message kind).
RTMSG = struct.Struct("=BBBBBBBBI")  # family dst_len src_len tos table protocol scope type flags
NHMSG = struct.Struct("=BBBBI")  # family scope protocol resvd flags
IFADDRMSG = struct.Struct("=BBBBI")  # family prefixlen flags scope index
IFINFOMSG = struct.Struct("=BxHiII")  # family type index flags change
RTA = struct.Struct("=HH")  # an attribute's head: length (head included), type
_RTNH = struct.Struct("=HBBi")  # rtnexthop: len flags hops ifindex
_NHGRP = struct.Struct("=IBBH")  # nexthop_grp: id weight resvd1 resvd2
_U32 = struct.Struct("=I")
_RTA_U32 = struct.Struct("=HHI")


# --- the records the messages decode into --------------------------------------------------
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
    #: member ids of a group (empty by default: a list made for every plain nexthop was
    #: memory for nothing)
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


class Hop(NamedTuple):
    """One next hop of RTA_MULTIPATH (a tuple: equal to ``(gateway, ifindex)``)."""

    gateway: bytes | None = None
    oif: int = 0


class IfAddr(NamedTuple):
    """An address message as sent: `parse_address` keeps IFA_LOCAL, else IFA_ADDRESS."""

    family: int
    prefixlen: int
    scope: int
    ifindex: int
    address: bytes | None = None
    local: bytes | None = None


class Link(NamedTuple):
    ifindex: int
    name: str | None = None


class RouteRef(NamedTuple):
    """Only what says which nexthop a route uses, from which table."""

    table: int
    flags: int
    nh_id: int = 0


class Ack(NamedTuple):
    """An NLMSG_ERROR (an ack when ``code`` is 0), with its extended-ack text if any."""

    code: int
    msg: str | None = None


# --- the declarations ---------------------------------------------------------------------
class Kind(Enum):
    """How an attribute's value is laid out."""

    U32 = "u32"  # a native-endian 32-bit unsigned integer
    BYTES = "bytes"  # raw bytes (addresses)
    FLAG = "flag"  # no value: present means True
    STRING = "string"  # NUL-terminated text
    MULTIPATH = "multipath"  # rtnexthop entries, each with attributes of its own (`HOP`)
    GROUP = "group"  # nexthop_grp entries: the member ids


U32: Final = Kind.U32
BYTES: Final = Kind.BYTES
FLAG: Final = Kind.FLAG
STRING: Final = Kind.STRING
MULTIPATH: Final = Kind.MULTIPATH
GROUP: Final = Kind.GROUP

T = TypeVar("T")


class Message(Generic[T]):
    """One message kind: its header, its attribute table, and the record it decodes into.

    ``header``: the ``struct`` format of the fixed header; ``header_fields``: the record field
    each header field fills (None: not kept). ``attributes``: attribute type -> (record field,
    kind); an attribute may fill the same field as a header field (RTA_TABLE after rtmsg's
    8-bit table) and then wins. ``defaults``: values for record fields that have no default
    of their own and may be absent from a message. The names are checked against the record
    when the table is made (a typo fails at import).
    """

    __slots__ = (
        "_attrs",
        "_blank",
        "_encoders",
        "_header_fields",
        "_start",
        "attributes",
        "by_field",
        "header",
        "make",
    )

    def __init__(
        self,
        record: Callable[..., T],
        header: str,
        header_fields: Sequence[str | None],
        attributes: Mapping[int, tuple[str, Kind]],
        defaults: Mapping[str, object] | None = None,
    ) -> None:
        names, own = _record_fields(record)
        own.update(defaults or {})
        slot = {n: i for i, n in enumerate(names)}
        filled = {f for f in header_fields if f} | {f for f, _ in attributes.values()}
        unknown = filled - slot.keys()
        if unknown:
            raise TypeError(f"{record}: no field {sorted(unknown)}")
        missing = [n for n in names if n not in own and n not in header_fields]
        if missing:
            raise TypeError(f"{record}: fields {missing} need a default")
        self.make = record
        self._header_fields = tuple(header_fields)
        self.header = struct.Struct(header)
        if len(header_fields) != len(self.header.unpack(bytes(self.header.size))):
            raise TypeError(f"{record}: {len(header_fields)} names for header {header!r}")
        self.attributes = dict(attributes)
        self.by_field = {f: (t, k) for t, (f, k) in attributes.items()}
        # resolved once: an Enum member hashes in Python, too slow to look up per attribute
        self._encoders = {f: (t, _ENCODE[k]) for t, (f, k) in attributes.items()}
        self._attrs = {t: (slot[f], k, _DECODE.get(k)) for t, (f, k) in attributes.items()}
        # each record field from the header (its index there) or else its default (indexed
        # after the header's fields): one C call lays out a record's arguments
        n = len(header_fields)
        at = {f: i for i, f in enumerate(header_fields) if f}
        self._blank = tuple(own.get(name) for name in names)
        self._start = itemgetter(*(at.get(name, n + i) for i, name in enumerate(names)))
        if len(names) < 2:
            raise TypeError(f"{record}: a record of one field")  # itemgetter would not give a tuple


def _record_fields(record: Callable[..., Any]) -> tuple[list[str], dict[str, object]]:
    """A record's field names in constructor order, and the defaults it has."""
    if dataclasses.is_dataclass(record):
        fields = dataclasses.fields(record)
        return [f.name for f in fields], {
            f.name: f.default for f in fields if f.default is not dataclasses.MISSING
        }
    return list(getattr(record, "_fields")), dict(getattr(record, "_field_defaults"))  # noqa: B009


# --- the walker -------------------------------------------------------------------------
def decode(msg: Message[T], p: bytes, off: int = 0, end: int | None = None) -> T:
    """The record of the message ``p[off:end]`` (its header, then its attributes), read from
    ``msg``'s tables: unknown attributes are skipped, a truncated one ends the walk."""
    vals = list(msg._start(msg.header.unpack_from(p, off) + msg._blank))
    table = msg._attrs
    unpack_rta = RTA.unpack_from
    unpack_u32 = _U32.unpack_from
    u32 = U32
    a = off + msg.header.size
    end = len(p) if end is None else end
    while a + 4 <= end:
        alen, atype = unpack_rta(p, a)
        if alen < 4 or a + alen > end:
            break  # truncated
        entry = table.get(atype & 0x3FFF)  # without NLA_F_NESTED / NLA_F_NET_BYTEORDER
        if entry is not None:
            slot, kind, read = entry
            if kind is u32:
                if alen >= 8:
                    vals[slot] = unpack_u32(p, a + 4)[0]
            elif read is None:  # BYTES
                vals[slot] = p[a + 4 : a + alen]
            else:
                vals[slot] = read(p, a + 4, a + alen)
        a += (alen + 3) & ~3
    return msg.make(*vals)


def _decode_flag(_p: bytes, _start: int, _end: int) -> bool:
    return True


def _decode_string(p: bytes, start: int, end: int) -> str:
    return bytes(p[start:end]).split(b"\0", 1)[0].decode(errors="replace")


def _decode_multipath(p: bytes, start: int, end: int) -> list[Hop]:
    hops: list[Hop] = []
    while start + _RTNH.size <= end:
        hlen = _RTNH.unpack_from(p, start)[0]
        if hlen < _RTNH.size or start + hlen > end:
            break  # truncated
        hops.append(decode(HOP, p, start, start + hlen))
        start += (hlen + 3) & ~3
    return hops


def _decode_group(p: bytes, start: int, end: int) -> list[int]:
    return [_NHGRP.unpack_from(p, g)[0] for g in range(start, end - _NHGRP.size + 1, _NHGRP.size)]


_DECODE: dict[Kind, Callable[[bytes, int, int], object]] = {
    FLAG: _decode_flag,
    STRING: _decode_string,
    MULTIPATH: _decode_multipath,
    GROUP: _decode_group,
}


# --- the encoder ------------------------------------------------------------------------
def rta(atype: int, payload: bytes) -> bytes:
    """One netlink attribute, padded to 4 bytes."""
    n = 4 + len(payload)
    return RTA.pack(n, atype) + payload + b"\0" * (-n & 3)


def rta_u32(atype: int, value: int) -> bytes:
    return _RTA_U32.pack(8, atype, value)


def attrs(msg: Message[Any], /, **values: object) -> bytes:
    """The attributes of ``msg`` for the given record fields, in the order given; a field
    given as None is left out (so is a FLAG given as False)."""
    return _attrs(msg, values)


def encode(msg: Message[Any], header: Sequence[int], /, **values: object) -> bytes:
    """A whole payload of ``msg``: its header (every header field, in order), then `attrs`."""
    return msg.header.pack(*header) + _attrs(msg, values)


def _attrs(msg: Message[Any], values: dict[str, object]) -> bytes:
    out = b""
    encoders = msg._encoders
    for name, v in values.items():
        if v is not None:
            attr = encoders.get(name)
            if attr is None:
                raise TypeError(f"{msg.make}: no attribute fills {name!r}")
            atype, write = attr
            out += write(atype, v)
    return out


def _encode_u32(atype: int, v: Any) -> bytes:
    return _RTA_U32.pack(8, atype, v)


def _encode_bytes(atype: int, v: Any) -> bytes:
    return rta(atype, v)


def _encode_flag(atype: int, v: Any) -> bytes:
    return RTA.pack(4, atype) if v else b""


def _encode_string(atype: int, v: Any) -> bytes:
    return rta(atype, str(v).encode() + b"\0")


def _encode_multipath(atype: int, v: Any) -> bytes:
    """``v``: (gateway, ifindex) pairs; each becomes an rtnexthop with its own attributes."""
    hops = b""
    for gw, oif in v:
        inner = attrs(HOP, gateway=gw)
        hops += HOP.header.pack(HOP.header.size + len(inner), 0, 0, oif) + inner
    return rta(atype, hops)


def _encode_group(atype: int, v: Any) -> bytes:
    """``v``: member ids, all of weight 1 (the kernel's 0)."""
    return rta(atype, b"".join(_NHGRP.pack(m, 0, 0, 0) for m in v))


_ENCODE: dict[Kind, Callable[[int, object], bytes]] = {
    U32: _encode_u32,
    BYTES: _encode_bytes,
    FLAG: _encode_flag,
    STRING: _encode_string,
    MULTIPATH: _encode_multipath,
    GROUP: _encode_group,
}


# --- the tables -----------------------------------------------------------------------------
#: One next hop inside RTA_MULTIPATH (rtnexthop: len flags hops ifindex, then attributes).
HOP: Message[Hop] = Message(
    Hop,
    _RTNH.format,
    (None, None, None, "oif"),
    {
        RTA_GATEWAY: ("gateway", BYTES),
    },
)

#: A route (RTM_NEWROUTE / RTM_DELROUTE).
ROUTE: Message[RouteMsg] = Message(
    RouteMsg,
    RTMSG.format,
    ("family", "dst_len", None, None, "table", "protocol", "scope", "type", "flags"),
    {
        RTA_DST: ("dst", BYTES),
        RTA_TABLE: ("table", U32),
        RTA_PRIORITY: ("priority", U32),
        RTA_NH_ID: ("nh_id", U32),
        RTA_GATEWAY: ("gateway", BYTES),
        RTA_OIF: ("oif", U32),
        RTA_MULTIPATH: ("multipath", MULTIPATH),
    },
    defaults={"dst": b""},  # a default route has no RTA_DST
)

#: A nexthop object (RTM_NEWNEXTHOP / RTM_DELNEXTHOP).
NEXTHOP: Message[NexthopMsg] = Message(
    NexthopMsg,
    NHMSG.format,
    ("family", None, "protocol", None, None),
    {
        NHA_ID: ("id", U32),
        NHA_GROUP: ("group", GROUP),
        NHA_BLACKHOLE: ("blackhole", FLAG),
        NHA_GATEWAY: ("gateway", BYTES),
        NHA_OIF: ("oif", U32),
    },
    defaults={"id": 0},
)

#: The kernel's answer to a route lookup (``ip route get``): an rtmsg like a route's.
LOOKUP: Message[Lookup] = Message(
    Lookup,
    RTMSG.format,
    (None, None, None, None, None, None, None, "type", None),
    {
        RTA_OIF: ("oif", U32),
        RTA_GATEWAY: ("gateway", BYTES),
        RTA_PREFSRC: ("prefsrc", BYTES),
    },
)

#: A route read only for its nexthop (every route of the host is read so).
ROUTE_REF: Message[RouteRef] = Message(
    RouteRef,
    RTMSG.format,
    (None, None, None, None, "table", None, None, None, "flags"),
    {
        RTA_TABLE: ("table", U32),
        RTA_NH_ID: ("nh_id", U32),
    },
)

#: The kernel's answer to a request (nlmsgerr: the error, then, with NETLINK_CAP_ACK, only
#: the header of the request it answers), with the extended-ack attributes.
ACK: Message[Ack] = Message(
    Ack,
    "=i16x",
    ("code",),
    {
        NLMSGERR_ATTR_MSG: ("msg", STRING),
    },
)

#: An interface address (RTM_NEWADDR).
ADDRESS: Message[IfAddr] = Message(
    IfAddr,
    IFADDRMSG.format,
    ("family", "prefixlen", None, "scope", "ifindex"),
    {
        IFA_ADDRESS: ("address", BYTES),
        IFA_LOCAL: ("local", BYTES),
    },
)

#: An interface (RTM_NEWLINK).
LINK: Message[Link] = Message(
    Link,
    IFINFOMSG.format,
    (None, None, "ifindex", None, None),
    {
        IFLA_IFNAME: ("name", STRING),
    },
)


# --- what the socket reads ------------------------------------------------------------------
def parse_route(p: bytes) -> RouteMsg | None:
    """One route message (see `Netlink.route_payloads`); None for a cached clone."""
    common = _parse_common(p)
    return common if common is not None else _parse_any(p)


def _parse_any(p: bytes) -> RouteMsg | None:
    """`parse_route` by the walker, for any layout."""
    if _U32.unpack_from(p, 8)[0] & RTM_F_CLONED:
        return None
    return decode(ROUTE, p)


def parse_nexthop(p: bytes) -> NexthopMsg:
    """One nexthop message (see `Netlink.nexthop_payloads`)."""
    if len(p) == _NH_V4.size:
        nh = _NH_V4.read(p)
        if nh is not None:
            return nh
    return decode(NEXTHOP, p)


def _parse_any_nexthop(p: bytes) -> NexthopMsg:
    """`parse_nexthop` by the walker, for any layout."""
    return decode(NEXTHOP, p)


def parse_lookup(p: bytes) -> Lookup:
    """The answer to one route lookup (a route message)."""
    return decode(LOOKUP, p)


def parse_address(p: bytes) -> AddrMsg | None:
    """One address message: its local address (IFA_LOCAL, else IFA_ADDRESS); None if none."""
    a = decode(ADDRESS, p)
    addr = a.local or a.address
    if addr is None:
        return None
    return AddrMsg(a.family, a.prefixlen, a.ifindex, a.scope, addr)


def parse_link(p: bytes) -> Link:
    """One link message: its index and name."""
    return decode(LINK, p)


# --- what the socket writes -----------------------------------------------------------------
def _family(addr: bytes) -> int:
    return socket.AF_INET if len(addr) == 4 else socket.AF_INET6


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
    none of them matches on destination, table, protocol and metric only. A table from 256
    on is an RTA_TABLE (rtmsg's table field has 8 bits)."""
    fam = _family(dst)
    gw = oif = hops = None
    if not nh_id and len(gateways) == 1:
        gw, oif = gateways[0]
    elif not nh_id and gateways:
        hops = gateways
    return encode(
        ROUTE,
        (fam, dst_len, 0, 0, table if table < 256 else 0, protocol, 0, RTN_UNICAST, 0),
        dst=dst,
        table=table if table >= 256 else None,
        priority=priority or None,
        nh_id=nh_id or None,
        gateway=gw,
        oif=oif or None,
        multipath=hops,
    )


def nexthop_msg(nh_id: int, *, protocol: int, gateway: bytes, oif: int) -> bytes:
    """The payload of an RTM_NEWNEXTHOP for ``id N via GATEWAY dev OIF proto P``."""
    st = _NEXTHOP.get(len(gateway))
    if st is not None:
        return st.pack(
            _family(gateway), 0, protocol, 0, 0,
            8, NHA_ID, nh_id, 4 + len(gateway), NHA_GATEWAY, gateway, 8, NHA_OIF, oif,
        )  # fmt: skip
    return encode(
        NEXTHOP, (_family(gateway), 0, protocol, 0, 0), id=nh_id, gateway=gateway, oif=oif
    )


def nexthop_group_msg(nh_id: int, *, protocol: int, members: Sequence[int]) -> bytes:
    """The payload of an RTM_NEWNEXTHOP for ``id N group A/B/... proto P`` (equal weights)."""
    return encode(NEXTHOP, (0, 0, protocol, 0, 0), id=nh_id, group=members)


def nexthop_del_msg(nh_id: int) -> bytes:
    return encode(NEXTHOP, (0, 0, 0, 0, 0), id=nh_id)


def lookup_msg(dst: bytes) -> bytes:
    """The payload of an RTM_GETROUTE asking where a packet to ``dst`` would go."""
    return encode(ROUTE, (_family(dst), len(dst) * 8, 0, 0, 0, 0, 0, 0, 0), dst=dst)


# --- fast paths, beside the walker (see the module docstring) --------------------------------
class Layout(Generic[T]):
    """One exact layout of a message kind, read in one ``unpack``: its header (with the
    ``fixed`` header values), then exactly these attributes, in this order, each as (type,
    value size) with its kind from the kind's table (U32, or BYTES of a size that needs no
    padding). `read` refuses any other message of the layout's size (None)."""

    __slots__ = ("_args", "_blank", "_check", "_st", "_want", "make", "size")

    def __init__(
        self, msg: Message[T], fixed: Mapping[str, int], attributes: Sequence[tuple[int, int]]
    ) -> None:
        names, _own = _record_fields(msg.make)
        header_fields = msg._header_fields
        at = {f: i for i, f in enumerate(header_fields) if f}
        check = [header_fields.index(f) for f in fixed]
        want = list(fixed.values())
        fmt = msg.header.format.lstrip("=")
        i = len(header_fields)
        for atype, size in attributes:
            field, kind = msg.attributes[atype]
            if size % 4 or not (kind is BYTES or (kind is U32 and size == 4)):
                raise TypeError(f"attribute {atype}: no fixed layout for {kind} of {size} bytes")
            fmt += " I " + ("I" if kind is U32 else f"{size}s")  # each head read as one u32
            check.append(i)
            want.append(_head(4 + size, atype))
            at[field] = i + 1  # after the header's field of the same name: it wins
            i += 2
        self._st = struct.Struct("=" + fmt)
        self.size = self._st.size
        self._check = itemgetter(*check)
        self._want = tuple(want)
        # the record's arguments up to the last one the layout gives (the constructor fills in
        # the rest), the defaults in between appended to the unpacked values
        last = max(j for j, name in enumerate(names) if name in at)
        between = [j for j in range(last) if names[j] not in at]
        self._blank = tuple(msg._blank[j] for j in between)
        pos = {j: i + k for k, j in enumerate(between)}
        self._args = itemgetter(
            *(at[n] if n in at else pos[j] for j, n in enumerate(names[: last + 1]))
        )
        self.make = msg.make

    def read(self, p: bytes) -> T | None:
        """The record of ``p`` (exactly `size` bytes long) if it has this layout, else None."""
        v = self._st.unpack(p)
        if self._check(v) != self._want:
            return None
        return self.make(*self._args(v + self._blank))


def _head(length: int, atype: int) -> int:
    """An attribute's head (length, type) read as one u32."""
    return int(_U32.unpack(RTA.pack(length, atype))[0])


def _by_size(*layouts: Layout[T]) -> dict[int, Layout[T]]:
    out = {lay.size: lay for lay in layouts}
    if len(out) != len(layouts):
        raise TypeError("two layouts of one size")
    return out


_V4: Final = {"family": AF_INET}

#: The IPv4 route messages read by the thousand, as the kernel lays them out.
_ROUTE_LAYOUTS = _by_size(
    # to a nexthop object, with its gateway and device (nexthop_compat_mode 1, the default)
    Layout(ROUTE, _V4, [(RTA_TABLE, 4), (RTA_DST, 4), (RTA_NH_ID, 4),
                        (RTA_GATEWAY, 4), (RTA_OIF, 4)]),
    # to a nexthop object (nexthop_compat_mode 0)
    Layout(ROUTE, _V4, [(RTA_TABLE, 4), (RTA_DST, 4), (RTA_NH_ID, 4)]),
    # via a gateway
    Layout(ROUTE, _V4, [(RTA_TABLE, 4), (RTA_DST, 4), (RTA_GATEWAY, 4), (RTA_OIF, 4)]),
)  # fmt: skip


def _parse_common(p: bytes) -> RouteMsg | None:
    """A route message of one of the `_ROUTE_LAYOUTS`, in one ``unpack``; None if it is not
    one of them, or a clone (`parse_route` then walks its attributes)."""
    layout = _ROUTE_LAYOUTS.get(len(p))
    if layout is None:
        return None
    r = layout.read(p)
    return None if r is None or r.flags & RTM_F_CLONED else r


#: An IPv4 nexthop as the kernel dumps it.
_NH_V4 = Layout(NEXTHOP, _V4, [(NHA_ID, 4), (NHA_OIF, 4), (NHA_GATEWAY, 4)])

#: A nexthop via a gateway (the payload `nexthop_msg` writes), packed in one call.
_NEXTHOP = {
    4: struct.Struct("=BBBBIHHIHH4sHHI"),  # nhmsg, NHA_ID, NHA_GATEWAY (v4), NHA_OIF
    16: struct.Struct("=BBBBIHHIHH16sHHI"),  # nhmsg, NHA_ID, NHA_GATEWAY (v6), NHA_OIF
}
#: The bulk requests of an apply, netlink header included, each packed in one call straight
#: into `Requests` by the plan's encoder (`_steps.encode`; arguments: length, type, flags,
#: 0, 0, then the payload's): a route to a nexthop object (nlmsghdr, rtmsg, RTA_DST,
#: RTA_NH_ID), and a nexthop via a gateway (nlmsghdr, then `_NEXTHOP`).
ROUTE_NH_MSG = {
    4: struct.Struct("=IHHII BBBBBBBBI HH4s HHI"),
    16: struct.Struct("=IHHII BBBBBBBBI HH16s HHI"),
}
NEXTHOP_MSG = {n: struct.Struct("=IHHII" + st.format[1:]) for n, st in _NEXTHOP.items()}
