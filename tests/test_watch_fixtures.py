"""The watch reader (`nosdn.sources._watchstream.EventStream`) and the reflector over recorded
watch bodies (``tests/watch_fixtures/*.reads``).

Each fixture is a chunked watch response body written the way kube-apiserver writes one (Go's
compact JSON, one event per line, one line per chunk or several; its BOOKMARK and its 410
Status object), made by hand rather than captured, cut into the reads a client gets, the reads
separated by a form feed (JSON text never holds one raw). The cuts fall where a reader breaks:
inside a chunk's size line, inside an event's JSON, between a chunk's data and its CRLF, an
event over two chunks, several events in one chunk. The fixtures hold heartbeats (status-only:
no change, no nudge), an address change, an ADDED, a BOOKMARK (it advances the resourceVersion
and reaches no cache), a DELETED and an ERROR 410 (the reflector lists again).
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from nosdn.sources._watchstream import EventStream
from nosdn.sources.cache import NodeCache
from nosdn.sources.errors import ApiUnavailableError, WatchExpiredError
from nosdn.sources.reflector import Reflector

FIXTURES = Path(__file__).parent / "watch_fixtures"


def reads(name: str) -> list[bytes]:
    return (FIXTURES / f"{name}.reads").read_bytes().split(b"\f")


class Recorded:
    """A chunked HTTP response whose body file hands out the recorded reads, one per call."""

    chunked = True
    headers: dict[str, str] = {}  # noqa: RUF012 - read only

    def __init__(self, pieces: list[bytes]) -> None:
        self.pieces = list(pieces)
        self.closed = False
        self._fp = SimpleNamespace(fp=SimpleNamespace(read1=self.read1))

    def read1(self, size: int) -> bytes:
        assert size > 0
        return self.pieces.pop(0) if self.pieces else b""

    def close(self) -> None:
        self.closed = True

    def release_conn(self) -> None:
        pass


def summary(events: list[Any]) -> list[tuple[str, str]]:
    """(type, name or, for a BOOKMARK, resourceVersion; for an ERROR its code)."""
    out = []
    for e in events:
        obj = e["object"]
        if e["type"] == "ERROR":
            out.append(("ERROR", str(obj["code"])))
        elif e["type"] == "BOOKMARK":
            out.append(("BOOKMARK", obj["metadata"]["resourceVersion"]))
        else:
            out.append((e["type"], obj["metadata"]["name"]))
    return out


EXPECTED = {
    "heartbeats": [("MODIFIED", "a"), ("MODIFIED", "b"), ("MODIFIED", "a")],
    "bookmark": [
        ("MODIFIED", "a"),
        ("MODIFIED", "b"),
        ("ADDED", "c"),
        ("MODIFIED", "a"),
        ("BOOKMARK", "1010"),
    ],
    "expired": [("MODIFIED", "a"), ("DELETED", "b"), ("ERROR", "410")],
}


def test_every_fixture_is_listed_here() -> None:
    assert sorted(p.stem for p in FIXTURES.glob("*.reads")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_recorded_reads_give_the_events(name: str) -> None:
    pieces = reads(name)
    assert len(pieces) > 1, "a fixture is cut into several reads"
    resp = Recorded(pieces)
    assert summary(list(EventStream(resp))) == EXPECTED[name]
    assert resp.pieces == []  # read to the last chunk, nothing left over
    assert resp.closed  # a finished watch closes its connection


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_the_cuts_do_not_matter(name: str) -> None:
    """The same body in one read and one byte per read gives the same events."""
    body = b"".join(reads(name))
    assert summary(list(EventStream(Recorded([body])))) == EXPECTED[name]
    one_by_one = [body[i : i + 1] for i in range(len(body))]
    assert summary(list(EventStream(Recorded(one_by_one)))) == EXPECTED[name]


def test_a_body_cut_before_its_last_chunk_is_a_broken_connection() -> None:
    body = b"".join(reads("heartbeats"))
    stream = EventStream(Recorded([body[: body.rindex(b"0\r\n\r\n")]]))
    with pytest.raises(ApiUnavailableError, match="closed mid-stream"):
        list(stream)


# --- the reflector over the fixtures ----------------------------------------------------------


def listed(name: str, ip: str, cidr: str) -> dict[str, Any]:
    """A Node as the list before the watch had it: what the fixtures' heartbeats repeat."""
    return {
        "kind": "Node",
        "metadata": {
            "name": name,
            "resourceVersion": "1000",
            "creationTimestamp": "2026-01-01T00:00:00Z",
        },
        "spec": {"podCIDR": cidr, "podCIDRs": [cidr], "providerID": f"kind://{name}"},
        "status": {
            "addresses": [
                {"type": "InternalIP", "address": ip},
                {"type": "Hostname", "address": name},
            ]
        },
    }


LIST = [listed("a", "10.0.0.1", "10.244.1.0/24"), listed("b", "10.0.0.2", "10.244.2.0/24")]


class Api:
    """Lists `LIST` (at resourceVersion 1000, then 1500); each watch is the next fixture (then
    an empty one that ends at once); a second list stops the reflector's run."""

    def __init__(self, *fixtures: str) -> None:
        self.fixtures = list(fixtures)
        self.lists = 0
        self.watched_from: list[str] = []
        self.reflector: Reflector | None = None

    def list_nodes(self) -> tuple[list[dict[str, Any]], str]:
        self.lists += 1
        if self.lists > 1 and self.reflector is not None:
            self.reflector._stop.set()  # the relist is what the test waits for
        return json.loads(json.dumps(LIST)), "1000" if self.lists == 1 else "1500"

    def watch_nodes(self, rv: str, timeout_seconds: int, deadline: float) -> EventStream:
        self.watched_from.append(rv)
        pieces = reads(self.fixtures.pop(0)) if self.fixtures else [b"0\r\n\r\n"]
        return EventStream(Recorded(pieces))


def reflector(api: Api) -> tuple[Reflector, NodeCache, list[str]]:
    nudges: list[str] = []
    cache = NodeCache(on_change=nudges.append)
    r = Reflector(api, cache)
    api.reflector = r
    cache.replace(api.list_nodes()[0])
    nudges.clear()
    return r, cache, nudges


def addresses(cache: NodeCache) -> dict[str, list[str]]:
    return {n.name: [str(a) for a in n.node.ips] for n in cache.snapshot().nodes}


def test_heartbeats_change_nothing_and_an_address_change_does() -> None:
    r, cache, nudges = reflector(Api("heartbeats"))
    generation = cache.generation
    assert r._watch("1000") == "1003"  # the last event's resourceVersion
    # two heartbeats: counted, ignored, no nudge; then a's new address: one change, one nudge
    assert cache.events["MODIFIED"] == 3
    assert cache.ignored["MODIFIED"] == 2
    assert nudges == ["node"]
    assert cache.generation == generation + 1
    assert cache.changes_since(generation, cache.generation) == {"a"}
    assert addresses(cache) == {"a": ["10.0.0.9"], "b": ["10.0.0.2"]}


def test_a_bookmark_advances_the_resource_version_and_reaches_no_cache() -> None:
    r, cache, nudges = reflector(Api("bookmark"))
    assert r._watch("1000") == "1010"
    assert "BOOKMARK" not in cache.events
    assert cache.ignored["MODIFIED"] == 2  # the heartbeats of a and b
    assert nudges == ["node", "node"]  # c added, a's address
    assert addresses(cache) == {"a": ["10.0.0.9"], "b": ["10.0.0.2"], "c": ["10.0.0.3"]}


def test_error_410_after_a_delete_lists_again() -> None:
    api = Api("expired")
    r, cache, _ = reflector(api)
    with pytest.raises(WatchExpiredError):
        r._watch("1000")
    assert addresses(cache) == {"a": ["10.0.0.9"]}  # the events before the error were applied
    api.fixtures = ["expired"]
    api.lists = 0
    api.watched_from = []
    r.run()  # lists, watches into the 410, lists again (which stops the run)
    assert api.lists == 2
    assert api.watched_from == ["1000", "1500"]  # the watch after the 410 starts from the list
    assert r.errors == 0  # an expired watch is no failure: no backoff, no disconnect
    assert addresses(cache) == {"a": ["10.0.0.1"], "b": ["10.0.0.2"]}  # the list's state again
