"""The Kubernetes node source: Node parsing, the cache's cheap path, the list+watch loop (with
fakes for what the emulator cannot do: 410, clean watch ends), the real client against the
`kmock` emulator (a process on this namespace's loopback; no root needed), and the Lease
elector.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Mapping
from ipaddress import ip_address, ip_network
from pathlib import Path
from typing import Any

import pytest

from agent_env import Emulator, node_object, wait_until
from nosdn.sources.cache import NodeCache
from nosdn.sources.errors import (
    ApiUnavailableError,
    ConflictError,
    WatchExpiredError,
    WatchSilentError,
)
from nosdn.sources.kubernetes import KubeApi, KubeSettings
from nosdn.sources.leader import LeaderElector
from nosdn.sources.nodes import AddressPolicy, choose_addresses, fingerprint, node_info
from nosdn.sources.reflector import Backoff, Reflector, server_timeout

# --- parsing --------------------------------------------------------------------------------


def addrs(*pairs: tuple[str, str]) -> list[dict[str, str]]:
    return [{"type": t, "address": a} for t, a in pairs]


def test_address_policy_picks_by_type_order_then_list_order_per_family() -> None:
    found = addrs(
        ("Hostname", "n1"),
        ("ExternalIP", "203.0.113.7"),
        ("InternalIP", "10.0.0.7"),
        ("InternalIP", "10.0.0.8"),
        ("ExternalIP", "2001:db8::7"),
    )
    ips, problems = choose_addresses(
        "n1", [(a["type"], a["address"]) for a in found], AddressPolicy()
    )
    assert ips == (ip_address("10.0.0.7"), ip_address("2001:db8::7"))
    assert problems == []
    ext_first = AddressPolicy(("ExternalIP", "InternalIP"))
    ips, _ = choose_addresses("n1", [(a["type"], a["address"]) for a in found], ext_first)
    assert ips[0] == ip_address("203.0.113.7")


def test_address_cidr_picks_the_address_on_the_routing_network() -> None:
    pairs = [("InternalIP", "192.168.9.7"), ("InternalIP", "10.0.0.7")]
    policy = AddressPolicy(cidrs=(ip_network("10.0.0.0/24"),))
    ips, _ = choose_addresses("n1", pairs, policy)
    assert ips == (ip_address("10.0.0.7"),)


def test_pod_cidrs_fallback_and_bad_values_are_reported_not_used() -> None:
    old = {"metadata": {"name": "a"}, "spec": {"podCIDR": "10.244.1.0/24"},
           "status": {"addresses": addrs(("InternalIP", "10.0.0.1"))}}  # fmt: skip
    info = node_info(fingerprint(old), "a", AddressPolicy())
    assert info.node.pod_cidrs == (ip_network("10.244.1.0/24"),)
    bad = node_object("b", ["10.0.0.2"], ["10.244.2.1/24"])  # host bits set
    info = node_info(fingerprint(bad), "b", AddressPolicy())
    assert info.node.pod_cidrs == ()
    assert "node b: spec.podCIDRs '10.244.2.1/24'" in info.problems[0]
    noaddr = node_object("c", [], ["10.244.3.0/24"])
    info = node_info(fingerprint(noaddr), "c", AddressPolicy())
    assert "node c: status.addresses has no address of type InternalIP" in info.problems[0]


# --- the cache ------------------------------------------------------------------------------


def test_status_only_events_change_nothing_and_nudge_nobody() -> None:
    nudges: list[str] = []
    cache = NodeCache(on_change=nudges.append)
    cache.replace([node_object("a", ["10.0.0.1"], ["10.244.1.0/24"])])
    gen = cache.generation
    nudges.clear()
    beat = node_object("a", ["10.0.0.1"], ["10.244.1.0/24"])
    beat["status"]["conditions"] = [{"type": "Ready", "status": "False"}]
    beat["metadata"]["annotations"] = {"x": "y"}
    assert cache.apply("MODIFIED", beat) is False
    assert cache.generation == gen
    assert nudges == []
    assert cache.ignored["MODIFIED"] == 1
    moved = node_object("a", ["10.0.0.9"], ["10.244.1.0/24"])
    assert cache.apply("MODIFIED", moved) is True
    assert cache.generation == gen + 1
    assert nudges == ["node"]
    assert cache.snapshot().node("a").node.ips == (ip_address("10.0.0.9"),)  # type: ignore[union-attr]


def test_a_list_replaces_everything_and_counts_relists() -> None:
    cache = NodeCache()
    cache.replace([node_object(n, ["10.0.0.1"], ["10.244.1.0/24"]) for n in ("a", "b")])
    cache.replace([node_object("b", ["10.0.0.1"], ["10.244.1.0/24"])])
    snap = cache.snapshot()
    assert [n.name for n in snap.nodes] == ["b"]
    assert snap.relists == 2
    assert snap.synced
    assert cache.apply("DELETED", node_object("zz", [])) is False


ODD_ADDRESSES: list[Any] = [
    "10.0.0.9",  # a string, not a list
    7,
    {"type": "InternalIP", "address": "10.0.0.9"},  # one object, not a list of them
    ["10.0.0.9"],  # items that are no objects
    [None, 5, [1]],
    [{"type": "InternalIP"}],  # no address
    [{"type": "InternalIP", "address": 10}],
    [{"type": "InternalIP", "address": {"ip": "10.0.0.9"}}],
    [{"type": ["InternalIP"], "address": "10.0.0.9"}],
    True,
]


@pytest.mark.parametrize("addresses", ODD_ADDRESSES, ids=repr)
def test_malformed_addresses_are_reported_for_that_node_only(addresses: Any) -> None:
    odd = node_object("odd", [], ["10.244.9.0/24"])
    odd["status"]["addresses"] = addresses
    good = node_object("good", ["10.0.0.2"], ["10.244.2.0/24"])
    cache = NodeCache()
    cache.replace([odd, good])  # a list holding it
    snap = cache.snapshot()
    assert snap.node("good").node.ips == (ip_address("10.0.0.2"),)  # type: ignore[union-attr]
    info = snap.node("odd")
    assert info is not None
    assert info.node.ips == ()
    assert any(p.startswith("node odd: status.addresses") for p in info.problems), info.problems
    later = node_object("later", ["10.0.0.3"], ["10.244.3.0/24"])
    assert cache.apply("MODIFIED", odd) is False  # a watch event holding it: unchanged
    assert cache.apply("ADDED", later) is True  # and the next one still goes through
    assert snap.node("later") is None
    assert cache.snapshot().node("later") is not None


def test_a_good_entry_beside_bad_ones_is_used_and_the_rest_reported() -> None:
    odd = node_object("odd", [], ["10.244.9.0/24"])
    odd["status"]["addresses"] = ["junk", {"type": "InternalIP", "address": "10.0.0.9"}, {}]
    info = node_info(fingerprint(odd), "odd", AddressPolicy())
    assert info.node.ips == (ip_address("10.0.0.9"),)
    assert [p.split(";")[0] for p in info.problems] == [
        "node odd: status.addresses[0] (a string) is not an object",
        "node odd: status.addresses[2] (an object) has no address",
    ]


@pytest.mark.parametrize(
    "obj",
    [
        {"metadata": {"name": "x"}, "spec": "10.244.9.0/24"},
        {"metadata": {"name": "x"}, "spec": {"podCIDRs": "10.244.9.0/24"}},
        {"metadata": {"name": "x"}, "spec": {"podCIDRs": 5}},
        {"metadata": {"name": "x"}, "spec": {"podCIDRs": [5]}},
        {"metadata": {"name": "x"}, "spec": {"podCIDR": ["10.244.9.0/24"]}},
        {"metadata": {"name": "x"}, "spec": {"providerID": {"a": 1}}},
        {"metadata": {"name": "x"}, "status": "up"},
        {"metadata": {"name": "x"}, "status": {"conditions": "Ready"}},
        {"metadata": "x"},
        {"metadata": {"name": 5}},
        "a node",
        [1, 2],
    ],
    ids=repr,
)
def test_no_node_shape_stops_a_list_or_a_watch(obj: Any) -> None:
    good = node_object("good", ["10.0.0.2"], ["10.244.2.0/24"])
    for cache in (NodeCache(), NodeCache(condition="Ready"), NodeCache(self_name="x")):
        cache.replace([obj, good])
        assert cache.snapshot().node("good") is not None
        cache.apply("MODIFIED", obj)
        assert cache.apply("ADDED", node_object("b", ["10.0.0.3"], ["10.244.3.0/24"]))
        x = cache.snapshot().node("x")
        # nothing of the wrong shape is used: no subnet, no instance, no name but a string
        assert x is None or (x.node.pod_cidrs == () and x.node.instance_id is None)
        assert [n.name for n in cache.snapshot().nodes if n.name not in ("x", "b")] == ["good"]


# --- the list + watch loop, with a fake API -----------------------------------------------


class FakeStream:
    def __init__(self, events: list[Any], hold: threading.Event | None = None) -> None:
        self.events = events
        self.hold = hold
        self.closed = threading.Event()

    def __iter__(self) -> Iterator[Mapping[str, Any]]:
        for e in self.events:
            if isinstance(e, Exception):
                raise e
            yield e
        if self.hold is not None:
            while not self.closed.wait(0.01):
                pass
            raise ApiUnavailableError("closed")

    def close(self) -> None:
        self.closed.set()


class FakeApi:
    """Scripted answers: each list returns the next list, each watch the next stream."""

    def __init__(self, lists: list[Any], watches: list[Any]) -> None:
        self.lists = lists
        self.watches = watches
        self.calls: list[str] = []
        self.timeouts: list[tuple[int, float]] = []

    def list_nodes(self) -> tuple[list[Mapping[str, Any]], str]:
        self.calls.append("list")
        item = self.lists.pop(0) if self.lists else []
        if isinstance(item, Exception):
            raise item
        return item, f"rv{len(self.calls)}"

    def watch_nodes(self, rv: str, timeout: int, deadline: float) -> FakeStream:
        self.calls.append(f"watch {rv}")
        self.timeouts.append((timeout, deadline))
        if not self.watches:
            return FakeStream([], threading.Event())
        item = self.watches.pop(0)
        if isinstance(item, Exception):
            raise item
        return item


def ev(etype: str, obj: dict[str, Any], rv: str) -> dict[str, Any]:
    obj = {**obj, "metadata": {**obj["metadata"], "resourceVersion": rv}}
    return {"type": etype, "object": obj}


def run_reflector(api: FakeApi, cache: NodeCache, until: Any) -> Reflector:
    r = Reflector(api, cache, watch_timeout=1, backoff=Backoff(0.01, 0.02))
    r.start()
    try:
        wait_until(until, 5, 0.01)
    finally:
        r.stop()
    return r


def test_watch_resumes_from_the_last_version_and_relists_on_410() -> None:
    a = node_object("a", ["10.0.0.1"], ["10.244.1.0/24"])
    b = node_object("b", ["10.0.0.2"], ["10.244.2.0/24"])
    bookmark = {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "9"}}}
    gone = {"type": "ERROR", "object": {"code": 410, "message": "too old"}}
    api = FakeApi(
        lists=[[a], [a, b]],
        watches=[FakeStream([ev("MODIFIED", a, "7"), bookmark]), FakeStream([gone])],
    )
    cache = NodeCache()
    run_reflector(api, cache, lambda: cache.snapshot().relists == 2)
    assert api.calls[:4] == ["list", "watch rv1", "watch 9", "list"]
    assert [n.name for n in cache.snapshot().nodes] == ["a", "b"]


def test_api_failures_keep_the_last_state_back_off_and_relist() -> None:
    a = node_object("a", ["10.0.0.1"], ["10.244.1.0/24"])
    states: list[bool] = []
    cache = NodeCache()
    cache.set_listener(lambda why: states.append(cache.snapshot().connected))
    api = FakeApi(
        lists=[[a], ApiUnavailableError("refused"), ApiUnavailableError("refused"), [a]],
        watches=[ApiUnavailableError("reset")],
    )
    r = run_reflector(api, cache, lambda: cache.snapshot().relists == 2)
    assert r.errors == 3
    assert api.calls[:5] == ["list", "watch rv1", "list", "list", "list"]
    assert False in states  # marked disconnected meanwhile
    assert [n.name for n in cache.snapshot().nodes] == ["a"]
    assert cache.snapshot().connected


def test_a_silent_watch_is_dead_disconnected_and_relisted() -> None:
    a = node_object("a", ["10.0.0.1"], ["10.244.1.0/24"])
    b = node_object("b", ["10.0.0.2"], ["10.244.2.0/24"])
    whys: list[str] = []
    cache = NodeCache()
    cache.set_listener(whys.append)
    silent = WatchSilentError("watch nodes: nothing received for 40 s")
    api = FakeApi(lists=[[a], [a, b]], watches=[FakeStream([ev("MODIFIED", a, "7"), silent])])
    r = run_reflector(api, cache, lambda: cache.snapshot().relists == 2)
    assert api.calls[:3] == ["list", "watch rv1", "list"]  # relisted, not resumed from "7"
    assert r.silent_watches == 1
    assert r.last_error == str(silent)
    # reported disconnected from the silence until the relist
    assert [w for w in whys if w.endswith("connected")][:3] == [
        "connected",
        "disconnected",
        "connected",
    ]
    assert cache.snapshot().connected
    assert [n.name for n in cache.snapshot().nodes] == ["a", "b"]


def test_each_watch_asks_the_server_to_end_it_well_before_the_deadline() -> None:
    """kube-apiserver sends a bookmark 2 s before a watch's own timeout and ends it then: a
    timeout under the deadline means a live server is never silent for that long."""
    for watch_timeout, deadline in ((300, 40.0), (30, 40.0), (5, 40.0), (300, 3.0), (1, 2.0)):
        got = {server_timeout(watch_timeout, deadline) for _ in range(200)}
        top = max(1, min(watch_timeout, int(deadline * 3 / 4)))
        assert max(got) <= top <= deadline * 3 / 4 or top == 1
        assert min(got) >= max(1, top * 3 // 4)
    assert {server_timeout(300, 40.0) for _ in range(500)} == set(range(22, 31))  # jittered
    api = FakeApi(lists=[[]], watches=[])
    r = Reflector(api, NodeCache(), watch_timeout=300, deadline=12)
    r.start()
    try:
        wait_until(lambda: api.timeouts, 5, 0.01)
    finally:
        r.stop()
    timeout, deadline = api.timeouts[0]
    assert (deadline, 6 <= timeout <= 9) == (12, True)


def test_request_relist_interrupts_a_quiet_watch() -> None:
    a = node_object("a", ["10.0.0.1"], ["10.244.1.0/24"])
    api = FakeApi(lists=[[a], [a]], watches=[])
    cache = NodeCache()
    r = Reflector(api, cache, watch_timeout=60, backoff=Backoff(0.01, 0.02))
    r.start()
    try:
        wait_until(lambda: "watch rv1" in api.calls, 5, 0.01)
        r.request_relist()
        wait_until(lambda: cache.snapshot().relists == 2, 2, 0.01, "relist")
        assert r.errors == 0
    finally:
        r.stop()


# --- the real client against the emulator ---------------------------------------------------


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[Emulator]:
    seed = [node_object("n1", ["10.0.0.1"], ["10.244.1.0/24"])]
    emu = Emulator(None, port=0, workdir=tmp_path, seed=seed)
    emu.port = _free_port()
    emu.start()
    try:
        yield emu
    finally:
        emu.kill()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_client_lists_watches_patches_against_the_emulator(emulator: Emulator) -> None:
    api = KubeApi(KubeSettings(server=emulator.url))
    items, rv = api.list_nodes()
    assert [i["metadata"]["name"] for i in items] == ["n1"]
    assert rv == "..."  # kmock has no resourceVersion
    cache = NodeCache(self_name="n1")
    r = Reflector(api, cache, watch_timeout=2)
    r.start()
    try:
        wait_until(lambda: cache.snapshot().connected, 5)
        emulator.create_node(node_object("n2", ["10.0.0.2"], ["10.244.2.0/24"]))
        wait_until(lambda: cache.snapshot().node("n2") is not None, 5, what="n2 via watch")
        api.patch_node_status(
            "n1", {"status": {"conditions": [{"type": "NetworkUnavailable", "status": "False"}]}}
        )
        wait_until(lambda: cache.self_object and cache.self_object["status"].get("conditions"), 5)
        assert cache.snapshot().node("n1").node.ips == (ip_address("10.0.0.1"),)  # type: ignore[union-attr]
        emulator.delete_node("n2")
        wait_until(lambda: cache.snapshot().node("n2") is None, 5, what="n2 deleted via watch")
        # the watch outlives its timeout: ends, is resumed, and kmock replays every object
        time.sleep(2 + 5 + 0.5)
        assert r.watch_restarts >= 1
        assert r.errors == 0
        assert cache.ignored["ADDED"] >= 1  # the replay changed nothing
    finally:
        r.stop()
        api.close()


def test_client_errors_become_source_errors(tmp_path: Path) -> None:
    api = KubeApi(KubeSettings(server=f"http://127.0.0.1:{_free_port()}", connect_timeout=1))
    with pytest.raises(ApiUnavailableError, match="list nodes"):
        api.list_nodes()


# --- leader election ------------------------------------------------------------------------


def test_lease_goes_to_one_candidate_and_passes_on_release_or_expiry(emulator: Emulator) -> None:
    api = KubeApi(KubeSettings(server=emulator.url))
    now = [0.0]
    a = LeaderElector(api, "kube-system", "nosdn-ipam", "a", clock=lambda: now[0])
    b = LeaderElector(api, "kube-system", "nosdn-ipam", "b", clock=lambda: now[0])
    assert a.try_acquire_or_renew()
    assert not b.try_acquire_or_renew()
    now[0] += 10
    assert a.try_acquire_or_renew()  # renewing
    assert not b.try_acquire_or_renew()  # b saw a renew: its clock starts again
    now[0] += 14
    assert not b.try_acquire_or_renew()
    now[0] += 2  # a silent for 16 s > 15 s lease
    assert b.try_acquire_or_renew()
    lease = api.get_lease("kube-system", "nosdn-ipam")
    assert lease is not None
    assert lease["spec"]["holderIdentity"] == "b"
    assert lease["spec"]["leaseTransitions"] == 1
    b.release()
    assert a.try_acquire_or_renew()  # released: no need to wait for expiry
    api.close()


class ConflictingLeases:
    """A Lease API whose every update loses the race (what a real server answers with 409)."""

    def get_lease(self, ns: str, name: str) -> Mapping[str, Any] | None:
        return {"metadata": {"resourceVersion": "5"}, "spec": {"holderIdentity": ""}}

    def create_lease(self, ns: str, lease: Mapping[str, Any]) -> Mapping[str, Any]:
        raise ConflictError("exists")

    def update_lease(
        self, ns: str, name: str, lease: Mapping[str, Any], rv: str
    ) -> Mapping[str, Any]:
        assert rv == "5"  # the version read is sent along
        raise ConflictError("changed since read")


def test_losing_the_update_race_is_not_leading() -> None:
    assert not LeaderElector(ConflictingLeases(), "ns", "l", "me").try_acquire_or_renew()


def test_expired_watch_error_is_its_own_type() -> None:
    assert WatchExpiredError().status == 410


@pytest.mark.parametrize(
    "text",
    [
        '{"kind":"NodeList","apiVersion":"v1","metadata":{"resourceVersion":"42","continue":"c"},'
        '"items":[{"metadata":{"name":"a","labels":{"items":"x"}}},{"metadata":{"name":"b"}}]}',
        '{"metadata": {"resourceVersion": "42", "continue": "c"}, "items": [ {"metadata":'
        ' {"name": "a", "labels": {"items": "x"}}} ,\n {"metadata": {"name": "b"}} ] }',
        '{"items":[{"metadata":{"name":"a","labels":{"items":"x"}}},{"metadata":{"name":"b"}}],'
        '"metadata":{"resourceVersion":"42","continue":"c"}}',
    ],
)
def test_list_pages_are_decoded_one_item_at_a_time(text: str) -> None:
    from nosdn.sources.kubernetes import split_list

    items, meta = split_list(text.encode())
    assert meta == {"resourceVersion": "42", "continue": "c"}
    assert [i["metadata"]["name"] for i in items] == ["a", "b"]


def test_a_list_that_breaks_half_way_changes_nothing() -> None:
    cache = NodeCache()
    cache.replace([node_object("a", ["10.0.0.1"], ["10.244.1.0/24"])])

    def broken() -> Iterator[dict[str, Any]]:
        yield node_object("b", ["10.0.0.2"], ["10.244.2.0/24"])
        raise ApiUnavailableError("page 2 failed")

    with pytest.raises(ApiUnavailableError):
        cache.replace(broken())
    snap = cache.snapshot()
    assert [n.name for n in snap.nodes] == ["a"]
    assert snap.relists == 1


def test_lists_are_paged(emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    import nosdn.sources.kubernetes as kube

    for i in (2, 3):
        emulator.create_node(node_object(f"n{i}", [f"10.0.0.{i}"], [f"10.244.{i}.0/24"]))
    monkeypatch.setattr(kube, "LIST_PAGE", 1)
    api = KubeApi(KubeSettings(server=emulator.url))
    items, _ = api.list_nodes()
    assert sorted(i["metadata"]["name"] for i in items) == ["n1", "n2", "n3"]
    api.close()
