"""The watch reader (`nosdn.sources._watchstream.EventStream`): HTTP chunked framing undone by
hand, tested where it can break.

`Dechunker` is fed every split of a stream (a chunk header, its CRLF, an event cut anywhere,
several events in one chunk, one event over several chunks); the reader as a whole runs
through the real client against a real socket server on the loopback that sends scripted
pieces of a response with pauses between them (so each arrives as its own read): the same
events come out, the end of the response ends the stream normally, silence past the deadline
raises `WatchSilentError` (a dead watch), a connection broken mid-stream raises
`ApiUnavailableError`, and `close()` from another thread wakes a blocked read. The connection's
socket carries TCP keepalive and ``TCP_USER_TIMEOUT``.
"""

from __future__ import annotations

import json
import random
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence

import pytest

from agent_env import in_netns, netns_socket
from conftest import requires_root
from nosdn.sources._watchstream import Dechunker, EventStream
from nosdn.sources.errors import ApiUnavailableError, WatchSilentError
from nosdn.sources.kubernetes import KubeApi, KubeSettings

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


def test_a_line_waits_for_its_newline_and_framing_errors_are_api_errors() -> None:
    d = Dechunker()
    assert d.feed(b"4\r\nab") == []
    assert d.feed(b"c\n\r\n") == [b"abc"]
    assert d.feed(b"2\r\nab\r\n") == []  # "ab" waits for its newline
    assert d.feed(b"2\r\nc\n\r\n") == [b"abc"]
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


def watch(
    server: ScriptedServer, timeout: int = 30, deadline: float = 40
) -> tuple[KubeApi, EventStream]:
    api = KubeApi(KubeSettings(server=f"http://127.0.0.1:{server.port}"))
    stream = api.watch_nodes("", timeout, deadline)
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


def test_silence_past_the_deadline_is_a_dead_watch(servers: list[ScriptedServer]) -> None:
    """A server that sent one event and then nothing (no bookmark, no end) for longer than the
    deadline: the stream raises instead of ending as if the watch had timed out normally."""
    server = ScriptedServer([chunked([LINES[0] + b"\n"], last=False)], then="hold")
    servers.append(server)
    api, stream = watch(server, timeout=30, deadline=0.3)
    got: list[bytes] = []
    try:
        lines = stream.lines()
        got.append(next(lines))
        with pytest.raises(WatchSilentError, match=r"nothing received for 0\.3 s"):
            next(lines)
        assert got == [LINES[0]]
    finally:
        api.close()


def test_api_connections_carry_keepalive_and_user_timeout(
    servers: list[ScriptedServer],
) -> None:
    server = ScriptedServer([], then="hold")
    servers.append(server)
    api = KubeApi(KubeSettings(server=f"http://127.0.0.1:{server.port}", tcp_user_timeout=12))
    stream = api.watch_nodes("", 30, 40)
    try:
        sock = stream._fp.raw._sock
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT) == 12_000
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 4
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL) == 2
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1  # urllib3's own
    finally:
        stream.close()
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


# --- a host that vanishes: the kernel's part (root) -------------------------------------------


@requires_root
@pytest.mark.root
def test_a_silent_peer_is_dropped_by_tcp_user_timeout_before_the_deadline(
    netns: Callable[..., str],
) -> None:
    """Server and client in a namespace of their own; then every packet between them is
    dropped (no FIN, no RST). With a deadline far away, only the kernel (keepalive probes
    unanswered, ``TCP_USER_TIMEOUT``) can end the read: it does, as a broken connection."""
    ns = netns("nosdn-keepalive")
    listener = netns_socket(ns)
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    accepted: list[socket.socket] = []

    def serve() -> None:
        conn, _ = listener.accept()
        accepted.append(conn)
        request = b""
        while b"\r\n\r\n" not in request:
            request += conn.recv(4096)
        conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        conn.sendall(chunked([LINES[0] + b"\n"], last=False))

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    api = KubeApi(KubeSettings(server=f"http://127.0.0.1:{port}", tcp_user_timeout=2))
    with in_netns(ns):  # the client's socket is made here, in the namespace
        stream = api.watch_nodes("", 300, 300)
    outcome: list[BaseException | None] = []

    def read() -> None:
        try:
            for _ in stream.lines():
                pass
            outcome.append(None)
        except BaseException as e:  # looked at below
            outcome.append(e)

    reader = threading.Thread(target=read, daemon=True)
    try:
        server.join(5)
        rules = (
            "table inet vanish {\n"
            f"  chain out {{ type filter hook output priority -300; tcp sport {port} drop; "
            f"tcp dport {port} drop; }}\n"
            "}\n"
        )
        subprocess.run(["ip", "netns", "exec", ns, "nft", "-f", "-"], input=rules, text=True,
                       check=True)  # fmt: skip
        reader.start()
        reader.join(60)
        assert not reader.is_alive(), "the kernel did not drop the silent connection"
        assert len(outcome) == 1
        err = outcome[0]
        assert isinstance(err, ApiUnavailableError)
        assert not isinstance(err, WatchSilentError)  # the kernel's doing, not the deadline
        assert "timed out" in str(err)
    finally:
        stream.close()
        api.close()
        listener.close()
        for c in accepted:
            c.close()
