"""The watch reader (`nosdn.sources.kubernetes._WatchStream`): HTTP chunked framing undone by
hand, tested where it can break.

`Dechunker` is fed every split of a stream (a chunk header, its CRLF, an event cut anywhere,
several events in one chunk, one event over several chunks); the reader as a whole runs
through the real client against a real socket server on the loopback that sends scripted
pieces of a response with pauses between them (so each arrives as its own read): the same
events come out, a read timeout ends the stream normally, a connection broken mid-stream
raises `ApiUnavailableError`, and `close()` from another thread wakes a blocked read.
"""

from __future__ import annotations

import json
import random
import socket
import struct
import threading
import time
from collections.abc import Iterator, Sequence

import pytest

from nosdn.sources.errors import ApiUnavailableError
from nosdn.sources.kubernetes import Dechunker, KubeApi, KubeSettings, _WatchStream

EVENTS = [
    {"type": "ADDED", "object": {"metadata": {"name": f"n{i}"}, "x": "y" * (i * 37)}}
    for i in range(6)
]
LINES = [json.dumps(e).encode() for e in EVENTS]


def chunked(payloads: Sequence[bytes], last: bool = True) -> bytes:
    out = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in payloads)
    return out + (b"0\r\n\r\n" if last else b"")


def awkward_stream() -> bytes:
    """Events framed every way a server may: one per chunk, two in one chunk, one over three
    chunks (cut inside the JSON and right before its newline), an extension, upper-case hex."""
    a, b, c, d, e, f = (line + b"\n" for line in LINES)
    return (
        chunked([a], last=False)
        + chunked([b + c], last=False)
        + chunked([d[:5], d[5:-1], d[-1:]], last=False)
        + b"%X;name=value\r\n%s\r\n" % (len(e), e)
        + chunked([f])
    )


def decode(pieces: Sequence[bytes]) -> tuple[list[bytes], bool]:
    d = Dechunker()
    out: list[bytes] = []
    for p in pieces:
        out += d.feed(p)
        if d.ended:
            break
    return out, d.ended


def test_every_single_split_gives_the_same_lines() -> None:
    stream = awkward_stream()
    assert decode([stream]) == (LINES, True)
    for i in range(1, len(stream)):
        assert decode([stream[:i], stream[i:]]) == (LINES, True), f"split at {i}"


def test_random_many_way_splits_and_byte_by_byte() -> None:
    stream = awkward_stream()
    rng = random.Random(4)
    for _ in range(300):
        cuts = sorted(rng.sample(range(1, len(stream)), rng.randint(2, 30)))
        pieces = [stream[i:j] for i, j in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
        assert decode(pieces) == (LINES, True), cuts
    assert decode([stream[i : i + 1] for i in range(len(stream))]) == (LINES, True)


def test_idle_only_between_whole_lines_and_framing_errors_are_api_errors() -> None:
    d = Dechunker()
    assert d.feed(b"4\r\nab") == []
    assert not d.idle
    assert d.feed(b"c\n\r\n") == [b"abc"]
    assert d.idle
    assert d.feed(b"3\r\nab\r\n") == []
    assert not d.idle  # "ab" waits for its newline
    for bad in (b"zz\r\n", b"3\r\nabcXY", b"-3\r\nabc\r\n", b"1" * 2000):
        with pytest.raises(ApiUnavailableError, match="chunked"):
            Dechunker().feed(bad)


# --- the reader over a real socket ---------------------------------------------------------


class ScriptedServer:
    """Answers one HTTP request on 127.0.0.1 with a chunked response written piece by piece
    (``pause`` seconds apart, Nagle off), then holds or breaks the connection."""

    def __init__(self, pieces: Sequence[bytes], *, pause: float = 0.03, then: str = "hold"):
        self.pieces = pieces
        self.pause = pause
        self.then = then
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.listener.accept()
        with conn:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            request = b""
            while b"\r\n\r\n" not in request:
                request += conn.recv(4096)
            conn.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n"
            )
            for p in self.pieces:
                time.sleep(self.pause)
                conn.sendall(p)
            if self.then == "break":
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            elif self.then == "hold":
                self.done.wait(10)

    def close(self) -> None:
        self.done.set()
        self.listener.close()
        self.thread.join(5)


def watch(server: ScriptedServer, timeout: int = 30) -> tuple[KubeApi, _WatchStream]:
    api = KubeApi(KubeSettings(server=f"http://127.0.0.1:{server.port}"))
    stream = api.watch_nodes("", timeout)
    assert stream._fp is not None  # the hand-made reader, not urllib3's
    return api, stream


@pytest.fixture
def servers() -> Iterator[list[ScriptedServer]]:
    made: list[ScriptedServer] = []
    yield made
    for s in made:
        s.close()


def test_awkward_pieces_over_a_socket(servers: list[ScriptedServer]) -> None:
    stream_bytes = awkward_stream()
    a = LINES[0] + b"\n"
    head = b"%x\r\n" % len(a)
    pieces = [
        head[:1],  # a chunk header split across reads
        head[1:] + a[:10],
        a[10:] + b"\r",  # the CRLF after the data split too
        b"\n",
        stream_bytes[len(head) + len(a) + 2 :],  # everything else at once
    ]
    server = ScriptedServer(pieces, then="close")
    servers.append(server)
    api, stream = watch(server)
    try:
        assert list(stream.lines()) == LINES  # ends normally at the last chunk
    finally:
        api.close()


def test_one_event_per_write_takes_the_short_path_and_parses(
    servers: list[ScriptedServer],
) -> None:
    a, b, c, d, e, f = (line + b"\n" for line in LINES)
    pieces = [chunked([x], last=False) for x in (a, b)]
    pieces += [chunked([c + d], last=False)]  # looks like the usual read, holds two events
    pieces += [chunked([x], last=False) for x in (e, f)] + [b"0\r\n\r\n"]
    server = ScriptedServer(pieces, pause=0.01, then="close")
    servers.append(server)
    api, stream = watch(server)
    try:
        assert [e["metadata"]["name"] for e in (ev["object"] for ev in stream)] == [
            f"n{i}" for i in range(6)
        ]
    finally:
        api.close()


def test_read_timeout_ends_the_stream_normally(
    servers: list[ScriptedServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    import nosdn.sources.kubernetes as kube

    monkeypatch.setattr(kube, "WATCH_GRACE", 0.3)
    server = ScriptedServer([chunked([LINES[0] + b"\n"], last=False)], then="hold")
    servers.append(server)
    api, stream = watch(server, timeout=0)
    try:
        t = time.monotonic()
        assert list(stream.lines()) == [LINES[0]]
        assert 0.2 < time.monotonic() - t < 5
    finally:
        api.close()


@pytest.mark.parametrize("where", ["between events", "inside an event"])
def test_a_broken_connection_raises_api_unavailable(
    servers: list[ScriptedServer], where: str
) -> None:
    first = chunked([LINES[0] + b"\n"], last=False)
    cut = b"" if where == "between events" else chunked([LINES[1] + b"\n"], last=False)[:50]
    server = ScriptedServer([first, cut], then="break")
    servers.append(server)
    api, stream = watch(server)
    got: list[bytes] = []
    try:
        lines = stream.lines()
        got.append(next(lines))
        with pytest.raises(ApiUnavailableError, match="watch nodes"):
            next(lines)
        assert got == [LINES[0]]
    finally:
        api.close()


def test_close_from_another_thread_wakes_a_blocked_read(servers: list[ScriptedServer]) -> None:
    server = ScriptedServer([chunked([LINES[0] + b"\n"], last=False)], then="hold")
    servers.append(server)
    api, stream = watch(server)
    got: list[bytes] = []
    errors: list[BaseException] = []

    def read() -> None:
        try:
            got.extend(stream.lines())
        except BaseException as e:  # reported below
            errors.append(e)

    reader = threading.Thread(target=read)
    reader.start()
    try:
        deadline = time.monotonic() + 5
        while not got and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.1)  # now blocked in recv
        stream.close()
        reader.join(3)
        assert not reader.is_alive(), "close() did not wake the read"
        assert got == [LINES[0]]
        assert errors == []
    finally:
        api.close()


def test_closed_before_reading_releases_the_connection(servers: list[ScriptedServer]) -> None:
    server = ScriptedServer([], then="hold")
    servers.append(server)
    api, stream = watch(server)
    try:
        stream.close()
        assert list(stream.lines()) == []
        assert stream.resp.closed
    finally:
        api.close()
