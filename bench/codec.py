"""Benchmark: the table-driven netlink codec against each fast path beside it (no root).

Builds realistic messages with the codec's own encoder, in the layouts the kernel sends
(route and nexthop dumps, the answer to a lookup of an on-link address), and times, in one
process, the generic walker / encoder against each fast path on the same messages: decoding
IPv4 routes to nexthop objects (both ``nexthop_compat_mode`` layouts), IPv4 nexthops and
lookup answers, and encoding route + nexthop requests and lookup requests. Each figure is the
median of ``--runs`` runs (variants alternating, the cyclic collector off as in the one-shot
CLI), with the fast path's saving put beside the operations users feel: what a cold apply of
10,000 routes, a no-op re-apply of 10,000 and an agent's table read of 5,000 routes do.

A fast path that was removed is kept here (``removed_*``), exactly as it was, so its figure
can be measured again.

    PYTHONPATH=src .venv/bin/python bench/codec.py [--n 50000] [--runs 7]
"""

from __future__ import annotations

import argparse
import gc
import socket
import statistics
import struct
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from nosdn.backends.kernel import _codec as c
from nosdn.backends.kernel import _netlink as nl

#: The operations users feel, and how many messages of each kind they handle. Wall times are
#: this project's figures (bench/README.md: "Kernel apply", "Node agent"; issue 12).
COLD_APPLY_MS = 100.0  # a cold apply of 10,000 routes, in process: 10,000 routes + nexthops
NOOP_APPLY_MS = 210.0  # `nosdn apply` with nothing to do, 10,000 routes (whole command)
AGENT_READ = 5_000  # routes (and nexthops) an agent pass reads at 5,000 nodes
AGENT_PASS_MS = 50.0  # the agent's CPU per node change at 5,000 nodes (the low end)


def timed(fn: Callable[[], object], runs: int) -> float:
    """Median seconds of ``runs`` calls of ``fn``."""
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def side_by_side(variants: dict[str, Callable[[], object]], runs: int) -> dict[str, float]:
    """Each variant's median, the variants alternating run by run (a busy machine slows them
    alike)."""
    for fn in variants.values():
        fn()  # warm up
    samples: dict[str, list[float]] = {k: [] for k in variants}
    for _ in range(runs):
        for k, fn in variants.items():
            samples[k].append(timed(fn, 1))
    return {k: statistics.median(v) for k, v in samples.items()}


# --- messages as the kernel lays them out ---------------------------------------------------
def v4(i: int, base: int) -> bytes:
    return struct.pack("!I", base + i)


def route_dump(n: int, compat: bool) -> list[bytes]:
    """IPv4 routes to nexthop objects as a dump gives them: RTA_TABLE, RTA_DST, RTA_NH_ID,
    and with ``nexthop_compat_mode`` 1 (the default) the nexthop's RTA_GATEWAY and RTA_OIF."""
    out = []
    for i in range(n):
        head = (socket.AF_INET, 24, 0, 0, 254, 157, 0, c.RTN_UNICAST, 0)
        dst, gw = v4(i << 8, 0x0A000000), v4(i, 0x64400001)
        if compat:
            out.append(c.encode(c.ROUTE, head, table=254, dst=dst, nh_id=i + 1, gateway=gw, oif=3))
        else:
            out.append(c.encode(c.ROUTE, head, table=254, dst=dst, nh_id=i + 1))
    return out


def nexthop_dump(n: int) -> list[bytes]:
    """IPv4 nexthops as a dump gives them: NHA_ID, NHA_OIF, NHA_GATEWAY."""
    head = (socket.AF_INET, 0, 157, 0, 0)
    return [c.encode(c.NEXTHOP, head, id=i + 1, oif=3, gateway=v4(i, 0x64400001)) for i in range(n)]


def lookup_answers(n: int) -> list[bytes]:
    """The answer to a lookup of an on-link IPv4 address: RTA_TABLE, RTA_DST, RTA_OIF,
    RTA_PREFSRC, RTA_UID and RTA_CACHEINFO (the last two unknown to the codec's tables)."""
    src = v4(0, 0x64400000)
    out = []
    for i in range(n):
        head = (socket.AF_INET, 32, 0, 0, 254, 0, c.RT_SCOPE_UNIVERSE, c.RTN_UNICAST, 0)
        known = c.encode(c.ROUTE, head, table=254, dst=v4(i, 0x64400001), oif=3)
        out.append(known + c.attrs(c.LOOKUP, prefsrc=src) + c.rta_u32(25, 0) + c.rta(12, bytes(32)))
    return out


# --- fast paths removed from the code, kept as they were to measure them again ---------------
_LOOKUP4 = struct.Struct("=8sI20s4s")
_LOOKUP4_HEAD = struct.pack("=IHH", 36, nl.RTM_GETROUTE, nl.NLM_F_REQUEST)
_LOOKUP4_MID = struct.pack(
    "=IBBBBBBBBIHH", 0, socket.AF_INET, 32, 0, 0, 0, 0, 0, 0, 0, 8, c.RTA_DST
)


def removed_lookup_requests(dsts: list[bytes]) -> bytes:
    """`Netlink.lookup`'s IPv4 request, packed in one call (removed)."""
    pack4 = _LOOKUP4.pack
    return b"".join(pack4(_LOOKUP4_HEAD, seq, _LOOKUP4_MID, d) for seq, d in enumerate(dsts))


#: The kernel's answer to a lookup of a directly connected IPv4 address (see `lookup_answers`),
#: each attribute's (length, type) read as one u32 (removed).
_ON_LINK_V4 = struct.Struct("=B6xB4x I4x I4x II I4s I4x I")
_ON_LINK_V4_SIZE = _ON_LINK_V4.size + 32


def _head(length: int, atype: int) -> int:
    return int(struct.unpack("=I", struct.pack("=HH", length, atype))[0])


_ON_LINK_HEADS = tuple(
    _head(n, t)
    for n, t in ((8, c.RTA_TABLE), (8, c.RTA_DST), (8, c.RTA_OIF), (8, c.RTA_PREFSRC), (8, 25),
                 (36, 12))
)  # fmt: skip


def removed_parse_lookup(p: bytes) -> c.Lookup:
    """`parse_lookup` with the on-link answer in one unpack (removed)."""
    if len(p) == _ON_LINK_V4_SIZE:
        v = _ON_LINK_V4.unpack_from(p)
        if v[0] == socket.AF_INET and v[2:5] + v[6:9:2] + v[9:] == _ON_LINK_HEADS:
            return c.Lookup(0, v[1], v[5], None, v[7])
    return c.decode(c.LOOKUP, p)


_ROUTE_NH = {4: struct.Struct("=BBBBBBBBIHH4sHHI"), 16: struct.Struct("=BBBBBBBBIHH16sHHI")}


def removed_route_payloads(n: int) -> list[bytes]:
    """`route_msg`'s bulk case (a route to a nexthop, main-range table, no metric) packed in one
    call (removed: `_steps.encode` packs that case itself, header and all)."""
    out = []
    for i in range(n):
        dst = v4(i << 8, 0x0A000000)
        out.append(_ROUTE_NH[4].pack(
            socket.AF_INET, 24, 0, 0, 254, 157, 0, c.RTN_UNICAST, 0,
            8, c.RTA_DST, dst, 8, c.RTA_NH_ID, i + 1,
        ))  # fmt: skip
    return out


def route_payloads(n: int) -> list[bytes]:
    return [
        c.route_msg(v4(i << 8, 0x0A000000), 24, table=254, protocol=157, nh_id=i + 1)
        for i in range(n)
    ]


def generic_lookup_requests(dsts: list[bytes]) -> bytes:
    """`Netlink.lookup`'s request as it is now: the codec's payload and a netlink header."""
    parts = []
    hdr = struct.Struct("=IHHII").pack
    for seq, d in enumerate(dsts):
        body = c.lookup_msg(d)
        parts.append(hdr(16 + len(body), nl.RTM_GETROUTE, nl.NLM_F_REQUEST, seq, 0))
        parts.append(body)
    return b"".join(parts)


# --- the request encoders -----------------------------------------------------------------
def encode_generic(n: int) -> nl.Requests:
    """A nexthop and a route to it per gateway, each through the generic encoder."""
    reqs = nl.Requests()
    append = reqs.append
    new = nl.NLM_F_CREATE | nl.NLM_F_EXCL
    for i in range(n):
        gw = v4(i, 0x64400001)
        nh = c.encode(c.NEXTHOP, (socket.AF_INET, 0, 157, 0, 0), id=i + 1, gateway=gw, oif=3)
        append((nl.RTM_NEWNEXTHOP, new, nh))
        head = (socket.AF_INET, 24, 0, 0, 254, 157, 0, c.RTN_UNICAST, 0)
        rt = c.encode(c.ROUTE, head, dst=v4(i << 8, 0x0A000000), nh_id=i + 1)
        append((nl.RTM_NEWROUTE, new, rt))
    return reqs


def encode_builders(n: int) -> nl.Requests:
    """The same through `nexthop_msg` / `route_msg`."""
    reqs = nl.Requests()
    append = reqs.append
    new = nl.NLM_F_CREATE | nl.NLM_F_EXCL
    for i in range(n):
        nh = nl.nexthop_msg(i + 1, protocol=157, gateway=v4(i, 0x64400001), oif=3)
        append((nl.RTM_NEWNEXTHOP, new, nh))
        rt = nl.route_msg(v4(i << 8, 0x0A000000), 24, table=254, protocol=157, nh_id=i + 1)
        append((nl.RTM_NEWROUTE, new, rt))
    return reqs


def encode_packed(n: int) -> nl.Requests:
    """The same as `_steps.encode` writes it: header and payload in one ``pack`` each
    (`NEXTHOP_MSG`, `ROUTE_NH_MSG`), straight into the request buffer."""
    reqs = nl.Requests()
    add = reqs.append_message
    nh_st, rt_st = nl.NEXTHOP_MSG[4], nl.ROUTE_NH_MSG[4]
    flags = nl.NLM_F_REQUEST | nl.NLM_F_CREATE | nl.NLM_F_EXCL
    for i in range(n):
        add(nh_st.pack(
            nh_st.size, nl.RTM_NEWNEXTHOP, flags, 0, 0, socket.AF_INET, 0, 157, 0, 0,
            8, c.NHA_ID, i + 1, 8, c.NHA_GATEWAY, v4(i, 0x64400001), 8, c.NHA_OIF, 3,
        ))  # fmt: skip
        add(rt_st.pack(
            rt_st.size, nl.RTM_NEWROUTE, flags, 0, 0,
            socket.AF_INET, 24, 0, 0, 254, 157, 0, c.RTN_UNICAST, 0,
            8, c.RTA_DST, v4(i << 8, 0x0A000000), 8, c.RTA_NH_ID, i + 1,
        ))  # fmt: skip
    return reqs


def removed_walker(p: bytes) -> c.RouteMsg | None:
    """The hand-written route walker the table-driven one replaced (one ``if`` per attribute),
    to show what reading from the tables costs (multipath left out: not in these messages)."""
    fam, dlen, _s, _tos, tbl, proto, scope, rtype, rflags = c.RTMSG.unpack_from(p, 0)
    if rflags & c.RTM_F_CLONED:
        return None
    r = c.RouteMsg(fam, b"", dlen, tbl, proto, scope, rtype, rflags)
    unpack_rta = c.RTA.unpack_from
    unpack_u32 = struct.Struct("=I").unpack_from
    a = 12
    end = len(p)
    while a + 4 <= end:
        alen, atype = unpack_rta(p, a)
        if alen < 4:
            break
        atype &= 0x3FFF
        if atype == c.RTA_DST:
            r.dst = p[a + 4 : a + alen]
        elif atype == c.RTA_TABLE:
            r.table = unpack_u32(p, a + 4)[0]
        elif atype == c.RTA_GATEWAY:
            r.gateway = p[a + 4 : a + alen]
        elif atype == c.RTA_OIF:
            r.oif = unpack_u32(p, a + 4)[0]
        elif atype == c.RTA_PRIORITY:
            r.priority = unpack_u32(p, a + 4)[0]
        elif atype == c.RTA_NH_ID:
            r.nh_id = unpack_u32(p, a + 4)[0]
        a += (alen + 3) & ~3
    return r


_V4_NEXTHOP = struct.Struct("=BBBBBBBBI HHI HH4s HHI HH4s HHI")  # table dst nhid gateway oif
_V4_NEXTHOP_ONLY = struct.Struct("=BBBBBBBBI HHI HH4s HHI")  # table dst nhid
_V4_GATEWAY = struct.Struct("=BBBBBBBBI HHI HH4s HH4s HHI")  # table dst gateway oif
_COMMON = {
    st.size: (st, tuple(x for t in types for x in (8, t)))
    for st, types in (
        (_V4_NEXTHOP, (c.RTA_TABLE, c.RTA_DST, c.RTA_NH_ID, c.RTA_GATEWAY, c.RTA_OIF)),
        (_V4_NEXTHOP_ONLY, (c.RTA_TABLE, c.RTA_DST, c.RTA_NH_ID)),
        (_V4_GATEWAY, (c.RTA_TABLE, c.RTA_DST, c.RTA_GATEWAY, c.RTA_OIF)),
    )
}


def removed_parse_common(p: bytes) -> c.RouteMsg | None:
    """The hand-written IPv4 route layouts the declared `Layout`s replaced (one unpack each,
    its values picked by index)."""
    layout = _COMMON.get(len(p))
    if layout is None or p[0] != socket.AF_INET:
        return None
    st, heads = layout
    v = st.unpack_from(p)
    if v[8] & c.RTM_F_CLONED:
        return None
    n = len(v)
    af = socket.AF_INET
    if n == 24:
        if (v[9], v[10], v[12], v[13], v[15], v[16], v[18], v[19], v[21], v[22]) == heads:
            return c.RouteMsg(
                af, v[14], v[1], v[11], v[5], v[6], v[7], v[8], 0, v[23], v[20], v[17]
            )
    elif n == 18:
        if (v[9], v[10], v[12], v[13], v[15], v[16]) == heads:
            return c.RouteMsg(af, v[14], v[1], v[11], v[5], v[6], v[7], v[8], 0, 0, None, v[17])
    elif (v[9], v[10], v[12], v[13], v[15], v[16], v[18], v[19]) == heads:
        return c.RouteMsg(af, v[14], v[1], v[11], v[5], v[6], v[7], v[8], 0, v[20], v[17])
    return None


_NH_V4 = struct.Struct("=BxBxI II II I4s")
_NH_V4_HEADS = (_head(8, c.NHA_ID), _head(8, c.NHA_OIF), _head(8, c.NHA_GATEWAY))


def removed_parse_nexthop(p: bytes) -> c.NexthopMsg:
    """The hand-written IPv4 nexthop layout the declared `Layout` replaced."""
    if len(p) == _NH_V4.size:
        fam, proto, _f, h_id, nh_id, h_oif, oif, h_gw, gw = _NH_V4.unpack(p)
        if fam == socket.AF_INET and (h_id, h_oif, h_gw) == _NH_V4_HEADS:
            return c.NexthopMsg(nh_id, fam, proto, gw, oif)
    return c.decode(c.NEXTHOP, p)


def v6_route_dump(n: int) -> list[bytes]:
    """IPv6 routes to nexthop objects (no fast path): RTA_TABLE, RTA_DST, RTA_PRIORITY,
    RTA_NH_ID, RTA_GATEWAY, RTA_OIF, then RTA_PREF and RTA_CACHEINFO (unknown to the tables)."""
    out = []
    for i in range(n):
        head = (socket.AF_INET6, 64, 0, 0, 254, 157, 0, c.RTN_UNICAST, 0)
        dst = bytes([0xFD, 0x17]) + struct.pack("!IIIH", 0, i, 0, 0)
        gw = bytes([0xFD, 0]) + struct.pack("!IIIH", 0, 0, i, 1)
        known = c.encode(
            c.ROUTE, head, table=254, dst=dst, priority=1024, nh_id=i + 1, gateway=gw, oif=3
        )
        out.append(known + c.rta(20, b"\0") + c.rta(12, bytes(32)))
    return out


def encode_v6_nexthops(n: int, payload: Callable[[int, bytes], bytes]) -> list[bytes]:
    gws = [bytes([0xFD, 0]) + struct.pack("!IIIH", 0, 0, i, 1) for i in range(n)]
    return [payload(i + 1, gw) for i, gw in enumerate(gws)]


def generic_v6_nexthop(nh_id: int, gw: bytes) -> bytes:
    return c.encode(c.NEXTHOP, (socket.AF_INET6, 0, 157, 0, 0), id=nh_id, gateway=gw, oif=3)


def packed_v6_nexthop(nh_id: int, gw: bytes) -> bytes:
    """`nexthop_msg`'s IPv6 payload packed in one call (`_steps.encode` writes IPv6 nexthops
    through `nexthop_msg`)."""
    return c.nexthop_msg(nh_id, protocol=157, gateway=gw, oif=3)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=50_000, help="messages of each kind")
    ap.add_argument("--runs", type=int, default=7)
    args = ap.parse_args()
    n, runs = args.n, args.runs

    compat, plain = route_dump(n, True), route_dump(n, False)
    v6 = v6_route_dump(n)
    nexthops = nexthop_dump(n)
    answers = lookup_answers(n)
    dsts = [v4(i, 0x64400001) for i in range(n)]
    # both give the same answer on every message, before anything is timed
    for dump in (compat, plain):
        assert [c.parse_route(p) for p in dump] == [c._parse_any(p) for p in dump]
        assert all(c._parse_common(p) is not None for p in dump)
    assert [c._parse_any(p) for p in v6] == [removed_walker(p) for p in v6]
    assert [c.parse_route(p) for p in compat] == [removed_parse_common(p) for p in compat]
    assert [c.parse_route(p) for p in plain] == [removed_parse_common(p) for p in plain]
    assert [c.parse_nexthop(p) for p in nexthops] == [removed_parse_nexthop(p) for p in nexthops]
    assert [c.parse_nexthop(p) for p in nexthops] == [c.decode(c.NEXTHOP, p) for p in nexthops]
    assert all(len(p) == c._NH_V4.size for p in nexthops)
    assert [c.parse_lookup(p) for p in answers] == [removed_parse_lookup(p) for p in answers]
    assert all(len(p) == _ON_LINK_V4_SIZE for p in answers)
    assert route_payloads(n) == removed_route_payloads(n)
    assert removed_lookup_requests(dsts) == generic_lookup_requests(dsts)
    assert encode_generic(n).buf == encode_builders(n).buf == encode_packed(n).buf
    assert encode_v6_nexthops(n, generic_v6_nexthop) == encode_v6_nexthops(n, packed_v6_nexthop)

    gc.disable()
    rows: list[tuple[str, str, float, float, str]] = []

    def compare(
        what: str,
        fast_name: str,
        variants: tuple[Callable[[], object], Callable[[], object]],
        contexts: list[tuple[int, float, str]],
    ) -> None:
        """One row: the generic variant against the fast one, and for each context (how many
        messages, the operation's ms, what it is) the saving as a share of the operation."""
        t = side_by_side({"generic": variants[0], "fast": variants[1]}, runs)
        per = (t["generic"] - t["fast"]) / n  # seconds saved per message
        shares = "; ".join(
            f"{count:,} in {what_op} ({ms:.0f} ms): {per * count * 1e3:.1f} ms, "
            f"{per * count * 1e3 / ms:.1%}"
            for count, ms, what_op in contexts
        )
        rows.append((what, fast_name, t["generic"] / n, t["fast"] / n, shares))

    noop = (10_000, NOOP_APPLY_MS, "a no-op apply")
    agent = (AGENT_READ, AGENT_PASS_MS, "an agent table read, vs CPU per change")
    cold = (10_000, COLD_APPLY_MS, "a cold apply")
    cold_asked = (10_000, COLD_APPLY_MS, "a cold apply if every gateway were asked")
    compare(
        "decode IPv4 route, nexthop, compat mode 1",
        "_parse_common (declared layouts)",
        (lambda: [c._parse_any(p) for p in compat], lambda: [c.parse_route(p) for p in compat]),
        [noop, agent],
    )
    compare(
        "decode IPv4 route, nexthop, compat mode 0",
        "_parse_common (declared layouts)",
        (lambda: [c._parse_any(p) for p in plain], lambda: [c.parse_route(p) for p in plain]),
        [noop, agent],
    )
    compare(
        "decode IPv4 route, nexthop, compat mode 1: declared layout",
        "removed hand-written _parse_common",
        (
            lambda: [c.parse_route(p) for p in compat],
            lambda: [removed_parse_common(p) for p in compat],
        ),
        [noop, agent],
    )
    compare(
        "decode IPv4 nexthop: declared layout",
        "removed hand-written _NH_V4",
        (
            lambda: [c.parse_nexthop(p) for p in nexthops],
            lambda: [removed_parse_nexthop(p) for p in nexthops],
        ),
        [noop, agent],
    )
    compare(
        "a route's nexthop, for `count_nexthop_refs`",
        "_ROUTE_LAYOUTS before ROUTE_REF",
        (
            lambda: [c.decode(c.ROUTE_REF, p) for p in compat],
            lambda: [c._parse_common(p) or c.decode(c.ROUTE_REF, p) for p in compat],
        ),
        [(AGENT_READ, AGENT_PASS_MS, "a removal's nexthop collection")],
    )
    compare(
        "decode IPv6 route (no fast path)",
        "removed hand-written walker",
        (lambda: [c._parse_any(p) for p in v6], lambda: [removed_walker(p) for p in v6]),
        [noop, agent],
    )
    compare(
        "decode IPv4 nexthop",
        "_NH_V4 (a declared layout)",
        (
            lambda: [c.decode(c.NEXTHOP, p) for p in nexthops],
            lambda: [c.parse_nexthop(p) for p in nexthops],
        ),
        [noop, agent],
    )
    compare(
        "decode on-link lookup answer",
        "removed _ON_LINK_V4",
        (
            lambda: [c.parse_lookup(p) for p in answers],
            lambda: [removed_parse_lookup(p) for p in answers],
        ),
        [cold_asked],
    )
    compare(
        "encode IPv4 lookup request",
        "removed _LOOKUP4",
        (lambda: generic_lookup_requests(dsts), lambda: removed_lookup_requests(dsts)),
        [cold_asked],
    )
    compare(
        "encode IPv4 nexthop + route request",
        "NEXTHOP_MSG/ROUTE_NH_MSG (_steps)",
        (lambda: encode_generic(n), lambda: encode_packed(n)),
        [cold],
    )
    compare(
        "encode route payload, bulk case",
        "removed _ROUTE_NH in route_msg",
        (lambda: route_payloads(n), lambda: removed_route_payloads(n)),
        [(0, COLD_APPLY_MS, "a cold apply (the plan packs this case itself)")],
    )
    compare(
        "encode IPv6 nexthop payload",
        "nexthop_msg packed (_NEXTHOP[16])",
        (
            lambda: encode_v6_nexthops(n, generic_v6_nexthop),
            lambda: encode_v6_nexthops(n, packed_v6_nexthop),
        ),
        [(10_000, 2 * COLD_APPLY_MS, "a dual-stack cold apply of 2 x 10,000")],
    )
    gc.enable()

    print(f"{n:,} messages each, median of {runs} runs (alternating), µs per message\n")
    print(
        "| what | fast path (or: the other one) | generic (or: this one) | fast | ratio | saves |"
    )
    print("|---|---|---|---|---|---|")
    for what, name, g, f, shares in rows:
        print(f"| {what} | `{name}` | {g * 1e6:.2f} | {f * 1e6:.2f} | {g / f:.2f}x | {shares} |")
    print(
        f"\nContext: a cold apply of 10,000 routes ~{COLD_APPLY_MS:.0f} ms (in process), "
        f"a no-op apply of 10,000 ~{NOOP_APPLY_MS:.0f} ms (whole command), an agent pass at "
        f"5,000 nodes ~{AGENT_PASS_MS:.0f} ms of CPU per change (it reads the table only after "
        "a change it did not make, and decodes only messages that changed)."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
