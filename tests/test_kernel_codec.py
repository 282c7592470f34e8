"""The netlink message codec (`backends.kernel._codec`), without a kernel (no root).

Every message kind round-trips through the one encoder and the one walker; each fast path
(IPv4 routes and nexthops as dumped) gives the walker's answer on every layout it accepts and
refuses the ones it must not read;
unknown attributes are skipped and a truncated message ends the walk without an error; the
builders write the bytes they always wrote.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nosdn.backends.kernel import _codec as c
from nosdn.backends.kernel import _netlink as nl

AF4, AF6 = socket.AF_INET, socket.AF_INET6
u32 = st.integers(0, 2**32 - 1)
u8 = st.integers(0, 255)
addr4 = st.binary(min_size=4, max_size=4)
addr6 = st.binary(min_size=16, max_size=16)


def rtmsg(
    family: int = AF4,
    dst_len: int = 24,
    *,
    table: int = 254,
    protocol: int = 157,
    scope: int = 0,
    rtype: int = c.RTN_UNICAST,
    flags: int = 0,
) -> tuple[int, ...]:
    return (family, dst_len, 0, 0, table, protocol, scope, rtype, flags)


# --- round trips: every kind, every attribute ------------------------------------------------
@settings(max_examples=200)
@given(
    v6=st.booleans(),
    dst_len=u8,
    table=u32,
    protocol=u8,
    scope=u8,
    rtype=u8,
    priority=u32,
    oif=u32,
    nh_id=u32,
    gateway=st.none() | addr4,
    hops=st.lists(st.tuples(st.none() | addr4 | addr6, st.integers(0, 2**31 - 1)), max_size=4),
)
def test_route_round_trip(
    *,
    v6: bool,
    dst_len: int,
    table: int,
    protocol: int,
    scope: int,
    rtype: int,
    priority: int,
    oif: int,
    nh_id: int,
    gateway: bytes | None,
    hops: list[tuple[bytes | None, int]],
) -> None:
    dst = bytes(range(16)) if v6 else bytes([10, 1, 2, 0])
    family = AF6 if v6 else AF4
    p = c.encode(
        c.ROUTE,
        rtmsg(family, dst_len, table=table & 0xFF, protocol=protocol, scope=scope, rtype=rtype),
        dst=dst,
        table=table,
        priority=priority,
        nh_id=nh_id,
        gateway=gateway,
        oif=oif,
        multipath=hops or None,
    )
    want = c.RouteMsg(
        family,
        dst,
        dst_len,
        table,
        protocol,
        scope,
        rtype,
        0,
        priority,
        oif,
        gateway,
        nh_id,
        hops or (),
    )
    assert c.decode(c.ROUTE, p) == want
    assert nl.parse_route(p) == want  # through the fast path's refusal, or the fast path


@settings(max_examples=100)
@given(
    family=st.sampled_from([AF4, AF6]),
    protocol=u8,
    nh_id=u32,
    gateway=st.none() | addr4 | addr6,
    oif=u32,
    group=st.lists(u32, max_size=8),
    blackhole=st.booleans(),
)
def test_nexthop_round_trip(
    *,
    family: int,
    protocol: int,
    nh_id: int,
    gateway: bytes | None,
    oif: int,
    group: list[int],
    blackhole: bool,
) -> None:
    p = c.encode(
        c.NEXTHOP,
        (family, 0, protocol, 0, 0),
        id=nh_id,
        group=group or None,
        blackhole=blackhole,
        gateway=gateway,
        oif=oif,
    )
    want = c.NexthopMsg(nh_id, family, protocol, gateway, oif, group or (), blackhole)
    assert c.decode(c.NEXTHOP, p) == want
    assert nl.parse_nexthop(p) == want


@given(rtype=u8, oif=u32, gateway=st.none() | addr4, prefsrc=st.none() | addr4 | addr6)
def test_lookup_round_trip(
    rtype: int, oif: int, gateway: bytes | None, prefsrc: bytes | None
) -> None:
    p = c.encode(c.LOOKUP, rtmsg(rtype=rtype), oif=oif, gateway=gateway, prefsrc=prefsrc)
    assert c.parse_lookup(p) == c.Lookup(0, rtype, oif, gateway, prefsrc)


def test_address_keeps_the_local_address_else_the_address() -> None:
    head = (AF4, 24, 0, c.RT_SCOPE_UNIVERSE, 7)
    mine, peer = bytes([10, 0, 0, 1]), bytes([10, 0, 0, 9])
    both = c.encode(c.ADDRESS, head, address=peer, local=mine)
    assert c.parse_address(both) == c.AddrMsg(AF4, 24, 7, 0, mine)
    only = c.encode(c.ADDRESS, head, address=peer)
    assert c.parse_address(only) == c.AddrMsg(AF4, 24, 7, 0, peer)
    assert c.parse_address(c.encode(c.ADDRESS, head)) is None


def test_link_name() -> None:
    p = c.encode(c.LINK, (0, 1, 12, 0, 0), name="br0")
    assert p.endswith(b"br0\0")
    assert c.parse_link(p) == c.Link(12, "br0")
    assert c.parse_link(c.encode(c.LINK, (0, 1, 12, 0, 0))) == c.Link(12, None)


def test_ack_text() -> None:
    echoed = bytes(16)  # with NETLINK_CAP_ACK, the request's header only
    err = struct.pack("=i", -22) + echoed
    assert c.decode(c.ACK, err) == c.Ack(-22)
    text = err + c.attrs(c.ACK, msg="Nexthop has invalid gateway")
    assert c.decode(c.ACK, text) == c.Ack(-22, "Nexthop has invalid gateway")


def test_route_ref_reads_only_table_and_nexthop() -> None:
    p = c.encode(c.ROUTE, rtmsg(table=0, flags=c.RTM_F_CLONED), dst=b"\0" * 4, table=1000,
                 nh_id=5, gateway=b"\1" * 4)  # fmt: skip
    assert c.decode(c.ROUTE_REF, p) == c.RouteRef(1000, c.RTM_F_CLONED, 5)


def test_a_default_route_has_no_destination() -> None:
    p = c.encode(c.ROUTE, rtmsg(dst_len=0), gateway=bytes([10, 0, 0, 254]), oif=2)
    assert c.decode(c.ROUTE, p).dst == b""


# --- the builders: the bytes they always wrote ------------------------------------------------
G4, G6 = bytes([10, 0, 0, 2]), bytes.fromhex("fd000000000000000000000000000002")
D4, D6 = bytes([172, 17, 2, 0]), bytes.fromhex("fd170000000000000000000000000000")

#: What the hand-written builders wrote before the codec (recorded from them).
BUILT = {
    "route nhid": (
        lambda: c.route_msg(D4, 24, table=254, protocol=157, nh_id=7),
        "02180000fe9d00010000000008000100ac11020008001e0007000000",
    ),
    "route nhid big table metric": (
        lambda: c.route_msg(D6, 64, table=1000, protocol=157, priority=1024, nh_id=7),
        "0a400000009d00010000000014000100fd17000000000000000000000000000008000f00e80300000800"
        "06000004000008001e0007000000",
    ),
    "route one gateway": (
        lambda: c.route_msg(D4, 24, table=254, protocol=157, gateways=[(G4, 3)]),
        "02180000fe9d00010000000008000100ac110200080005000a0000020800040003000000",
    ),
    "route multipath": (
        lambda: c.route_msg(
            D4, 24, table=100, protocol=157, gateways=[(G4, 3), (bytes([10, 0, 0, 3]), 4)]
        ),
        "02180000649d00010000000008000100ac110200240009001000000003000000080005000a0000021000"
        "000004000000080005000a000003",
    ),
    "route delete": (
        lambda: c.route_msg(D4, 24, table=254, protocol=157, priority=5),
        "02180000fe9d00010000000008000100ac1102000800060005000000",
    ),
    "nexthop v4": (
        lambda: c.nexthop_msg(9, protocol=157, gateway=G4, oif=3),
        "02009d00000000000800010009000000080006000a0000020800050003000000",
    ),
    "nexthop v6": (
        lambda: c.nexthop_msg(9, protocol=157, gateway=G6, oif=3),
        "0a009d0000000000080001000900000014000600fd0000000000000000000000000000020800050003000000",
    ),
    "group": (
        lambda: c.nexthop_group_msg(12, protocol=157, members=[1, 2, 3]),
        "00009d0000000000080001000c0000001c000200010000000000000002000000000000000300000000000000",
    ),
    "delete nexthop": (lambda: c.nexthop_del_msg(12), "0000000000000000080001000c000000"),
}


@pytest.mark.parametrize("case", BUILT)
def test_builders_write_what_they_always_wrote(case: str) -> None:
    build, want = BUILT[case]
    assert build().hex() == want


def test_the_packed_requests_are_the_encoders_bytes() -> None:
    """`ROUTE_NH_MSG` / `NEXTHOP_MSG` (packed header and all by the plan's encoder) are the
    generic encoder's message, byte for byte."""
    hdr = struct.Struct("=IHHII")
    for dst, gw in ((D4, G4), (D6, G6)):
        n = len(dst)
        route = c.encode(c.ROUTE, rtmsg(_family(dst), 8 * n), dst=dst, nh_id=7)
        st_r = c.ROUTE_NH_MSG[n]
        assert st_r.pack(
            st_r.size, nl.RTM_NEWROUTE, 5, 0, 0, *rtmsg(_family(dst), 8 * n),
            4 + n, c.RTA_DST, dst, 8, c.RTA_NH_ID, 7,
        ) == hdr.pack(16 + len(route), nl.RTM_NEWROUTE, 5, 0, 0) + route  # fmt: skip
        nh = c.encode(c.NEXTHOP, (_family(gw), 0, 157, 0, 0), id=9, gateway=gw, oif=3)
        st_n = c.NEXTHOP_MSG[n]
        assert st_n.pack(
            st_n.size, nl.RTM_NEWNEXTHOP, 5, 0, 0, _family(gw), 0, 157, 0, 0,
            8, c.NHA_ID, 9, 4 + n, c.NHA_GATEWAY, gw, 8, c.NHA_OIF, 3,
        ) == hdr.pack(16 + len(nh), nl.RTM_NEWNEXTHOP, 5, 0, 0) + nh  # fmt: skip


def _family(addr: bytes) -> int:
    return AF4 if len(addr) == 4 else AF6


def test_lookup_request() -> None:
    assert c.lookup_msg(G4) == c.RTMSG.pack(AF4, 32, 0, 0, 0, 0, 0, 0, 0) + c.rta(c.RTA_DST, G4)
    assert c.lookup_msg(G6)[:2] == bytes([AF6, 128])


# --- the fast paths agree with the walker ------------------------------------------------------
def dumped_route(
    head: tuple[int, ...],
    *,
    table: int,
    dst: bytes,
    nh_id: int | None = None,
    gw: bytes | None = None,
    oif: int | None = None,
) -> bytes:
    """A route as the kernel dumps it: RTA_TABLE, RTA_DST, then RTA_NH_ID and/or the gateway."""
    return c.encode(c.ROUTE, head, table=table, dst=dst, nh_id=nh_id, gateway=gw, oif=oif)


route_heads = st.tuples(
    st.just(AF4), u8, u8, u8, u8, u8, u8, u8, u32.filter(lambda f: not f & c.RTM_F_CLONED)
)
LAYOUTS = ["nexthop, compat mode 1", "nexthop, compat mode 0", "gateway"]


@settings(max_examples=300)
@given(
    layout=st.sampled_from(LAYOUTS),
    head=route_heads,
    table=u32,
    dst=addr4,
    nh_id=u32,
    gw=addr4,
    oif=u32,
)
def test_common_route_layouts_decode_like_the_walker(
    *, layout: str, head: tuple[int, ...], table: int, dst: bytes, nh_id: int, gw: bytes, oif: int
) -> None:
    if layout == LAYOUTS[0]:
        p = dumped_route(head, table=table, dst=dst, nh_id=nh_id, gw=gw, oif=oif)
    elif layout == LAYOUTS[1]:
        p = dumped_route(head, table=table, dst=dst, nh_id=nh_id)
    else:
        p = dumped_route(head, table=table, dst=dst, gw=gw, oif=oif)
    fast = c._parse_common(p)
    assert fast is not None  # taken
    assert fast == c._parse_any(p)


NOT_COMMON = {
    # a metric after the gateway's device: one attribute more
    "extra attribute": c.encode(
        c.ROUTE, rtmsg(), table=254, dst=D4, nh_id=7, gateway=G4, oif=3, priority=5
    ),
    # the layout's length, another attribute in a slot (RTA_PRIORITY where RTA_OIF is)
    "other attribute type": c.encode(
        c.ROUTE, rtmsg(), table=254, dst=D4, nh_id=7, gateway=G4, priority=3
    ),
    "attributes in another order": c.encode(c.ROUTE, rtmsg(), dst=D4, table=254, nh_id=7),
    "IPv6": c.encode(c.ROUTE, rtmsg(AF6, 64), table=254, dst=D6, nh_id=7),
    # IPv6 family in a message of an IPv4 layout's length
    "IPv6 family, IPv4 length": c.encode(c.ROUTE, rtmsg(AF6), table=254, dst=D4, nh_id=7),
    "cloned": c.encode(c.ROUTE, rtmsg(flags=c.RTM_F_CLONED), table=254, dst=D4, nh_id=7),
    "multipath": c.encode(
        c.ROUTE, rtmsg(), table=254, dst=D4, multipath=[(G4, 3), (bytes([10, 0, 0, 3]), 4)]
    ),
    "an attribute of another length": c.encode(
        c.ROUTE, rtmsg(), table=254, dst=D4, nh_id=7, gateway=b"\1\2\3\4\5\6\7\x08"
    )[:-4]
    + c.rta_u32(c.RTA_OIF, 3)[4:],
}


@pytest.mark.parametrize("case", NOT_COMMON)
def test_other_route_layouts_are_refused_and_walked(case: str) -> None:
    p = NOT_COMMON[case]
    assert c._parse_common(p) is None
    assert c.parse_route(p) == c._parse_any(p)
    if case == "cloned":
        assert c.parse_route(p) is None
    if case == "extra attribute":
        assert c.parse_route(p) == c.RouteMsg(AF4, D4, 24, 254, 157, 0, 1, 0, 5, 3, G4, 7)


@given(family=st.just(AF4), protocol=u8, nh_id=u32, oif=u32, gw=addr4)
def test_ipv4_nexthop_layout_decodes_like_the_walker(
    family: int, protocol: int, nh_id: int, oif: int, gw: bytes
) -> None:
    p = c.encode(c.NEXTHOP, (family, 0, protocol, 0, 0), id=nh_id, oif=oif, gateway=gw)
    assert len(p) == c._NH_V4.size  # the fast path's layout
    assert (
        c.parse_nexthop(p) == c.decode(c.NEXTHOP, p) == c.NexthopMsg(nh_id, AF4, protocol, gw, oif)
    )


NH_NOT_V4 = {
    "request order": c.encode(c.NEXTHOP, (AF4, 0, 157, 0, 0), id=1, gateway=G4, oif=3),
    "IPv6": c.encode(c.NEXTHOP, (AF6, 0, 157, 0, 0), id=1, oif=3, gateway=G6),
    "IPv6 family, IPv4 length": c.encode(c.NEXTHOP, (AF6, 0, 157, 0, 0), id=1, oif=3, gateway=G4),
    "a group, same length": c.encode(c.NEXTHOP, (0, 0, 157, 0, 0), id=1, group=[5], blackhole=True),
    "blackhole": c.encode(c.NEXTHOP, (AF4, 0, 157, 0, 0), id=1, blackhole=True),
}


@pytest.mark.parametrize("case", NH_NOT_V4)
def test_other_nexthop_layouts_are_walked(case: str) -> None:
    p = NH_NOT_V4[case]
    assert c.parse_nexthop(p) == c.decode(c.NEXTHOP, p)
    if case == "a group, same length":
        assert len(p) == c._NH_V4.size
        assert c.parse_nexthop(p).group == [5]


def on_link_answer(rtype: int, oif: int, dst: bytes, src: bytes) -> bytes:
    """The kernel's answer to a lookup of an on-link IPv4 address, as Linux lays it out."""
    return (
        c.encode(c.ROUTE, rtmsg(AF4, 32, rtype=rtype), table=254, dst=dst, oif=oif)
        + c.attrs(c.LOOKUP, prefsrc=src)
        + c.rta_u32(25, 0)  # RTA_UID
        + c.rta(12, bytes(32))  # RTA_CACHEINFO
    )


@given(rtype=u8, oif=u32, dst=addr4, src=addr4)
def test_an_on_link_answer_is_read_past_what_the_table_does_not_name(
    rtype: int, oif: int, dst: bytes, src: bytes
) -> None:
    assert c.parse_lookup(on_link_answer(rtype, oif, dst, src)) == c.Lookup(
        0, rtype, oif, None, src
    )


def test_an_answer_through_a_gateway() -> None:
    plain = on_link_answer(c.RTN_UNICAST, 3, G4, G4)
    via = plain[:-44] + c.rta(c.RTA_GATEWAY, G4) + plain[-36:]
    assert c.parse_lookup(via) == c.Lookup(0, c.RTN_UNICAST, 3, G4, G4)


# --- the walker: unknown attributes, flags in the type, truncation ------------------------------
def test_unknown_attributes_are_skipped() -> None:
    plain = c.encode(c.ROUTE, rtmsg(), dst=D4, nh_id=7)
    odd = c.RTMSG.pack(*rtmsg()) + c.rta(99, b"xyz") + plain[12:] + c.rta(250, bytes(9))
    assert c.decode(c.ROUTE, odd) == c.decode(c.ROUTE, plain)


def test_nested_and_byte_order_flags_are_ignored_in_the_type() -> None:
    hops = c.attrs(c.ROUTE, multipath=[(G4, 3)])
    flagged = struct.pack("=HH", len(hops), 0x8000 | c.RTA_MULTIPATH) + hops[4:]
    r = c.decode(c.ROUTE, c.RTMSG.pack(*rtmsg()) + flagged)
    assert r.multipath == [(G4, 3)]


def test_a_u32_attribute_too_short_is_skipped() -> None:
    p = c.RTMSG.pack(*rtmsg()) + c.rta(c.RTA_OIF, b"\1\2") + c.rta_u32(c.RTA_NH_ID, 4)
    r = c.decode(c.ROUTE, p)
    assert (r.oif, r.nh_id) == (0, 4)


FULL = c.encode(
    c.ROUTE, rtmsg(), dst=D4, table=1000, priority=9, nh_id=7, gateway=G4, oif=3,
    multipath=[(G4, 3), (None, 5)],
)  # fmt: skip


@pytest.mark.parametrize("cut", range(c.RTMSG.size, len(FULL)))
def test_a_truncated_message_stops_the_walk_cleanly(cut: int) -> None:
    """Cut anywhere: no error, every attribute whole before the cut is read, none after."""
    r = c.decode(c.ROUTE, FULL[:cut])
    whole = c.decode(c.ROUTE, FULL)
    for name in ("dst", "table", "priority", "nh_id", "gateway", "oif", "multipath"):
        got = getattr(r, name)
        assert got == getattr(whole, name) or got == getattr(c.decode(c.ROUTE, FULL[:12]), name)
    assert c.parse_route(FULL[:cut]) == r


def test_truncated_inside_the_multipath_keeps_the_whole_hops() -> None:
    hops = [(G4, 3), (bytes([10, 0, 0, 3]), 4)]
    inner = c.attrs(c.ROUTE, multipath=hops)[4:]
    one_and_a_half = c.RTMSG.pack(*rtmsg()) + c.rta(c.RTA_MULTIPATH, inner[:-6])
    assert c.decode(c.ROUTE, one_and_a_half).multipath == hops[:1]


@pytest.mark.parametrize("bad", [b"\0\0\1\0", b"\2\0\1\0", b"\xff\0\1\0"])
def test_an_impossible_attribute_length_ends_the_walk(bad: bytes) -> None:
    """Shorter than its head (0, 2) or longer than the message (255): read no further."""
    p = c.RTMSG.pack(*rtmsg()) + c.rta_u32(c.RTA_NH_ID, 4) + bad + c.rta_u32(c.RTA_OIF, 3)
    r = c.decode(c.ROUTE, p)
    assert (r.nh_id, r.oif) == (4, 0)


# --- the tables are checked when they are made -----------------------------------------------
@dataclass(slots=True)
class Rec:
    a: int
    b: int = 0


def test_a_table_naming_a_missing_field_fails_when_made() -> None:
    with pytest.raises(TypeError, match="no field"):
        c.Message(Rec, "=I", ("a",), {1: ("mtu", c.U32)})


def test_a_field_without_a_default_must_be_given_one() -> None:
    with pytest.raises(TypeError, match="need a default"):
        c.Message(Rec, "=I", (None,), {1: ("b", c.U32)})
    c.Message(Rec, "=I", (None,), {1: ("b", c.U32)}, defaults={"a": 0})


def test_the_header_names_every_field_of_its_struct() -> None:
    with pytest.raises(TypeError, match="names for header"):
        c.Message(Rec, "=II", ("a",), {})


def test_one_line_adds_an_attribute() -> None:
    """A second table over the same record: decode and encode follow it."""
    two = c.Message(Rec, "=I", ("a",), {1: ("b", c.U32)})
    p = c.encode(two, (5,), b=6)
    assert c.decode(two, p) == Rec(5, 6)


def test_the_encoder_refuses_a_field_without_an_attribute() -> None:
    with pytest.raises(TypeError, match="no attribute fills 'mtu'"):
        c.attrs(c.ROUTE, mtu=1500)


def test_the_encoder_leaves_out_none_and_a_false_flag() -> None:
    assert c.attrs(c.ROUTE, dst=None, oif=None) == b""
    assert c.attrs(c.NEXTHOP, blackhole=False) == b""
    assert c.attrs(c.NEXTHOP, blackhole=True) == struct.pack("=HH", 4, c.NHA_BLACKHOLE)


def test_every_table_field_exists_on_its_record() -> None:
    """The tables as declared: each attribute type once, each kind a Kind."""
    tables: list[c.Message[Any]] = [
        c.ROUTE, c.NEXTHOP, c.LOOKUP, c.ADDRESS, c.LINK, c.ACK, c.ROUTE_REF, c.HOP,
    ]  # fmt: skip
    for t in tables:
        assert all(isinstance(k, c.Kind) for _, k in t.attributes.values())


def test_count_nexthop_refs_reads_every_layout() -> None:
    """The usual IPv4 layouts through the fast path, any other through `ROUTE_REF`: clones
    and the excluded table are not counted, a table from 256 on is read from RTA_TABLE."""
    v4 = [
        dumped_route(rtmsg(table=254), table=254, dst=D4, nh_id=1, gw=G4, oif=3),
        dumped_route(rtmsg(table=100), table=100, dst=D4, nh_id=1),
        dumped_route(rtmsg(table=0), table=1000, dst=D4, nh_id=2),  # excluded
        dumped_route(rtmsg(flags=c.RTM_F_CLONED), table=254, dst=D4, nh_id=3),
        c.encode(c.ROUTE, rtmsg(), table=254, dst=D4, priority=9, nh_id=3),  # not a layout
    ]
    v6 = [c.encode(c.ROUTE, rtmsg(AF6, 64, table=0), table=300, dst=D6, nh_id=1)]
    link = nl.Netlink.__new__(nl.Netlink)
    link._payloads = lambda _t, req, _w: v4 if req[0] == AF4 else v6  # type: ignore[method-assign]
    assert link.count_nexthop_refs(exclude_table=1000) == {1: 3, 3: 1}
    assert link.count_nexthop_refs() == {1: 3, 2: 1, 3: 1}
