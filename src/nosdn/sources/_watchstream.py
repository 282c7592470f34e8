"""The watch body of a Kubernetes API response, read as newline-delimited JSON events.

The client library sends the watch request (kubeconfig, TLS, auth); `EventStream` reads the
response body itself: one ``read1`` (one recv at most) per wake-up from the response's
buffered socket file, the chunked framing undone by `Dechunker` with bytes operations, events
split at newlines, as many per read as have queued. A response that is not plainly chunked
(compressed, or of another framing) is read through urllib3's own reader, which goes through
several layers for each chunk's size line, data and CRLF (its cost: bench/README.md). Private
to `nosdn.sources.kubernetes`, which opens the request; `tests/test_watch_stream.py` reads it
over a socket, `tests/test_watch_fixtures.py` over recorded bodies.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import urllib3

from nosdn.sources.errors import ApiError, ApiUnavailableError, WatchSilentError

#: What reading or closing a response may raise (beyond the chunked reader's own).
_ERRORS = (urllib3.exceptions.HTTPError, OSError, ValueError)

#: The most one read of a watch asks for (at most one recv): every event queued by then.
WATCH_READ = 1 << 16
#: A chunk-size line longer than this is no HTTP chunk header.
_MAX_CHUNK_HEADER = 1024


def _body_file(resp: Any) -> Any | None:
    """The buffered socket file under a chunked, unencoded response (None: anything else)."""
    if not getattr(resp, "chunked", False):
        return None
    encoding = str(resp.headers.get("content-encoding", "")).strip().lower()
    if encoding not in ("", "identity"):
        return None
    fp = getattr(getattr(resp, "_fp", None), "fp", None)
    return fp if callable(getattr(fp, "read1", None)) else None


class EventStream:
    """Newline-delimited JSON events read straight from the HTTP response ``resp``.

    The end of the response (the last chunk) ends the stream normally (the caller resumes); a
    read that waits longer than ``deadline`` (the socket's read timeout) raises
    `WatchSilentError`, a broken connection `ApiUnavailableError`; `close` from another
    thread wakes a blocked read and the stream ends. ``on_dead`` is called before the
    silence is raised (the client drops its pooled connections: they lead to the same host).

    ``translate`` turns what urllib3's reader raises into a `nosdn.sources.errors` exception.
    """

    def __init__(
        self,
        resp: Any,
        deadline: float = 0.0,
        on_dead: Callable[[], None] = lambda: None,
        translate: Callable[[BaseException, str], ApiError] = lambda e, what: ApiUnavailableError(
            f"{what}: {type(e).__name__}: {e}"
        ),
    ) -> None:
        self.resp = resp
        self.translate = translate
        self.deadline = deadline
        self.on_dead = on_dead
        self.closed = False
        self._fp = _body_file(resp)
        self._reading = False

    def __iter__(self) -> Iterator[Mapping[str, Any]]:
        loads = json.loads
        for line in self.lines():
            try:
                yield loads(line)
            except ValueError as e:
                raise ApiError(f"watch nodes: an event that is not JSON ({e})") from None

    def lines(self) -> Iterator[bytes]:
        """The raw event lines (without their newline; blank lines skipped)."""
        if self._fp is None:
            return self._urllib3_lines()
        return self._chunked_lines(self._fp)

    def _urllib3_lines(self) -> Iterator[bytes]:
        buf = b""
        try:
            for chunk in self.resp.stream(WATCH_READ, decode_content=True):
                if b"\n" not in chunk:
                    buf += chunk
                    continue
                lines = (buf + chunk).split(b"\n")
                buf = lines.pop()
                for line in lines:
                    if line.strip():
                        yield line
        except urllib3.exceptions.ReadTimeoutError:
            if self.closed:
                return
            raise self._silent() from None
        except _ERRORS as e:
            if self.closed:
                return
            raise self.translate(e, "watch nodes") from None

    def _chunked_lines(self, fp: Any) -> Iterator[bytes]:
        chunks = Dechunker()
        self._reading = True
        try:
            # the first read takes what the client buffered after the headers; later ones
            # go straight to the socket (one recv each), past two layers of Python file code
            read = fp.read1
            sock = getattr(getattr(fp, "raw", None), "_sock", None)
            while not self.closed:
                got = read(WATCH_READ)
                if sock is not None:
                    read = sock.recv
                if not got:
                    if self.closed:
                        return
                    raise ApiUnavailableError("watch nodes: the connection closed mid-stream")
                yield from chunks.feed(got)
                if chunks.ended:
                    return
        except TimeoutError as e:
            if self.closed:
                return
            if e.errno is None:  # the socket's read timeout: the deadline passed
                raise self._silent() from None
            self.on_dead()  # ETIMEDOUT from the kernel: TCP_USER_TIMEOUT or keepalive
            raise ApiUnavailableError(f"watch nodes: the connection timed out ({e})") from None
        except (OSError, ValueError) as e:  # reset, refused, TLS, a file closed under us
            if self.closed:
                return
            raise ApiUnavailableError(f"watch nodes: {type(e).__name__}: {e}") from None
        finally:
            self._reading = False
            self._drop()

    def _silent(self) -> WatchSilentError:
        """Nothing for ``deadline`` seconds: the server ends a live watch sooner."""
        self.on_dead()
        return WatchSilentError(
            f"watch nodes: nothing received for {self.deadline:g} s (no event, no bookmark, "
            "not the end of the watch): the connection is taken for dead"
        )

    def _drop(self) -> None:
        """Close the connection (a watch left half-read must not go back to the pool)."""
        try:
            self.resp.close()
            self.resp.release_conn()
        except (*_ERRORS, RuntimeError):
            pass

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        shutdown = getattr(self.resp, "shutdown", None)
        try:
            if shutdown is not None:
                shutdown()  # wakes a read blocked in another thread
            if self._fp is None:
                self.resp.release_conn()
        except (*_ERRORS, RuntimeError):  # already released: the stream had ended
            pass
        if self._fp is not None and not self._reading:
            self._drop()


class Dechunker:
    """HTTP/1.1 chunked framing undone, bytes in, newline-delimited lines out.

    `feed` takes whatever one read returned (a chunk header cut anywhere, an event spread over
    chunks, many chunks at once) and returns the lines it completed; ``ended`` says the last
    chunk came.
    Chunk extensions are ignored, trailers are not read: the stream ends at the last chunk.
    """

    def __init__(self) -> None:
        self.data = b""  # framing not decoded yet
        self.need = 0  # > 0: chunk data still to come; -1: the CRLF after it; 0: a header
        self.tail = b""  # decoded bytes after the last newline: a line still incomplete
        self.ended = False

    def feed(self, got: bytes) -> list[bytes]:
        data = self.data + got if self.data else got
        need = self.need
        pos = 0
        end = len(data)
        parts: list[bytes] = []
        while pos < end:
            if need > 0:
                stop = pos + need if pos + need < end else end
                parts.append(data[pos:stop])
                need -= stop - pos
                pos = stop
                if need:
                    break
                need = -1
            if need < 0:
                if end - pos < 2:
                    break
                if data[pos : pos + 2] != b"\r\n":
                    raise _bad_chunk(data[pos : pos + 2])
                pos += 2
                need = 0
                continue
            eol = data.find(b"\r\n", pos)
            if eol < 0:
                if end - pos > _MAX_CHUNK_HEADER:
                    raise _bad_chunk(data[pos : pos + 40])
                break
            try:
                size = int(data[pos:eol].split(b";", 1)[0], 16)
            except ValueError:
                raise _bad_chunk(data[pos:eol]) from None
            if size < 0:
                raise _bad_chunk(data[pos:eol])
            pos = eol + 2
            if size == 0:  # the last chunk: the server ended the response
                self.ended = True
                break
            need = size
        self.data = data[pos:] if pos < end else b""
        self.need = need
        lines: list[bytes] = []
        if parts:
            body = parts[0] if len(parts) == 1 else b"".join(parts)
            lines = (self.tail + body if self.tail else body).split(b"\n")
            self.tail = lines.pop()
            lines = [line for line in lines if line.strip()]
        return lines


def _bad_chunk(what: bytes) -> ApiUnavailableError:
    return ApiUnavailableError(f"watch nodes: not HTTP chunked framing near {what[:40]!r}")
