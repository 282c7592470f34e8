"""`NexthopTable`'s indexes, kept by `put` and `drop`, answer what a scan of every nexthop would.

The scans are written out here as the definition (they are what planning did before the
indexes): random puts (new ids, replacements that move a nexthop between gateways, groups and
protocols) and drops, with the indexes built at a random point, must agree after each step.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from nosdn.backends.kernel import _netlink as nl
from nosdn.backends.kernel._nexthops import NexthopTable

OURS = 157
GWS = [bytes([10, 0, 0, i]) for i in range(1, 5)]


def scanned(t: NexthopTable, gateways: set[bytes]) -> dict[str, object]:
    by_gw: dict[bytes, int] = {}
    by_group: dict[tuple[int, ...], int] = {}
    for i, nh in t.items():
        if nh.protocol != OURS:
            continue
        if nh.group:
            key = tuple(sorted(nh.group))
            by_group[key] = min(i, by_group.get(key, i))
        elif nh.gateway in gateways and not nh.blackhole:
            by_gw[nh.gateway] = min(i, by_gw.get(nh.gateway, i))
    return {
        "reusable": (by_gw, by_group),
        "owned": {i for i, nh in t.items() if nh.protocol == OURS},
        "in_groups": {m for nh in t.values() for m in nh.group},
        "groups": {i: tuple(nh.group) for i, nh in t.items() if nh.group},
        "next_id": max(t, default=0) + 1,
    }


def indexed(t: NexthopTable, gateways: set[bytes]) -> dict[str, object]:
    return {
        "reusable": t.reusable(gateways, True),
        "owned": set(t.owned()),
        "in_groups": set(t.in_groups()),
        "groups": dict(t.groups()),
        "next_id": t.next_id(),
    }


singles = st.builds(
    lambda i, gw, proto, hole: nl.NexthopMsg(i, 2, proto, gw, 3, (), hole),
    st.integers(1, 12),
    st.sampled_from([*GWS, None]),
    st.sampled_from([OURS, 4]),
    st.booleans(),
)
groups = st.builds(
    lambda i, members, proto: nl.NexthopMsg(i, 2, proto, None, 0, tuple(members)),
    st.integers(13, 16),
    st.lists(st.integers(1, 12), min_size=2, max_size=3, unique=True),
    st.sampled_from([OURS, 4]),
)
steps = st.lists(
    st.one_of(st.tuples(st.just("put"), st.one_of(singles, groups)), st.just(("drop", None))),
    max_size=40,
)


@settings(max_examples=300, deadline=None)
@given(run=steps, build_at=st.integers(0, 40), drop_pick=st.randoms(use_true_random=False))
def test_indexes_agree_with_a_scan_after_every_change(
    run: list[tuple[str, nl.NexthopMsg | None]], build_at: int, drop_pick: object
) -> None:
    t = NexthopTable(OURS)
    for k, (op, nh) in enumerate(run):
        if k == build_at:
            indexed(t, set(GWS))  # the indexes exist from here on, kept by put and drop
        if op == "put":
            assert nh is not None
            t.put(nh)
        elif len(t):
            t.drop(drop_pick.choice(sorted(t)))  # type: ignore[attr-defined]
        if k >= build_at:
            for gws in (set(GWS), {GWS[0]}):
                assert indexed(t, gws) == scanned(t, gws), (k, op, nh)
