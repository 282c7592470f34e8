"""List, then watch, forever: the Node cache kept equal to the API server, with backoff.

The shape is client-go's reflector, reduced to what nosdn needs:

- start with a complete list (paged), replace the cache with it, then watch from the list's
  resourceVersion; a watch that ends normally (the server's timeout) resumes from the last
  resourceVersion seen (events and BOOKMARKs both advance it);
- 410 Gone (the resourceVersion is too old) relists at once;
- any other failure (refused, reset, timeout, 5xx) marks the cache disconnected and retries
  with exponential backoff and jitter, and the retry relists, because events may have been
  missed; the cache keeps the last known state meanwhile, so the agent keeps its routes;
- ``request_relist()`` makes the next read a fresh list (the deletion guard's confirmation),
  interrupting a quiet watch;
- a watch that brings nothing for ``deadline`` seconds is dead (`WatchSilentError`): its
  server is gone without closing the connection. It fails like any broken watch: disconnected
  (``nosdn_api_connected`` 0, ``/readyz`` 503) until a relist succeeds.

Why the deadline needs a short watch. kube-apiserver sends a BOOKMARK about once a minute
(its ``defaultBookmarkFrequency``, not configurable) and one 2 s before a watch's own timeout,
and ends the watch at that timeout: so a deadline on bookmarks alone could not be shorter than
a minute. Each watch here asks the server to end it after at most 3/4 of the deadline
(``watch_timeout`` is capped to that, with some jitter below so that many agents do not come
back in step): a live server always sends something (the bookmark, the end of the watch)
before the deadline, and the resumed watch continues from that bookmark without a relist.
At the default 40 s deadline that is one watch request per agent every 22-30 s, served from
the API server's watch cache. TCP keepalive and ``TCP_USER_TIMEOUT`` on the connection
(`nosdn.sources.kubernetes.socket_options`) catch a vanished host at the kernel's level too.

The API is a small protocol (`NodeApi`), implemented for real by `nosdn.sources.kubernetes` and
by fakes in tests. Every event reaches the cache decoded; the cache's fingerprint compare is
what makes a status-only one cost no pass.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Protocol

from nosdn.sources.cache import NodeCache
from nosdn.sources.errors import ApiError, WatchExpiredError, WatchSilentError

log = logging.getLogger("nosdn.sources.reflector")

#: Seconds a watch may bring nothing (no event, no bookmark, not its end) before it is dead.
DEFAULT_WATCH_DEADLINE = 40.0


def server_timeout(watch_timeout: int, deadline: float) -> int:
    """The ``timeoutSeconds`` of one watch: ``watch_timeout``, at most 3/4 of ``deadline``,
    jittered down by up to a quarter (at least 1 s)."""
    top = max(1, min(watch_timeout, int(deadline * 3 / 4)))
    return random.randint(max(1, top * 3 // 4), top)


class WatchStream(Protocol):
    """An open watch: iterate for raw events (``{"type": ..., "object": {...}}``)."""

    def __iter__(self) -> Iterator[Mapping[str, Any]]: ...

    def close(self) -> None:
        """Stop the stream from another thread (the iteration ends or raises)."""


class NodeApi(Protocol):
    def list_nodes(self) -> tuple[Iterable[Mapping[str, Any]], str]:
        """Every Node object (possibly decoded lazily), and the list's resourceVersion."""

    def watch_nodes(
        self, resource_version: str, timeout_seconds: int, deadline: float
    ) -> WatchStream:
        """Watch Nodes from ``resource_version``, asking the server to end the watch after
        ``timeout_seconds``; raises `WatchExpiredError` on 410, and (also while iterating)
        `WatchSilentError` when nothing arrives for ``deadline`` seconds."""


class Backoff:
    """Exponential backoff with full jitter, reset after a success."""

    def __init__(self, initial: float = 0.5, maximum: float = 30.0) -> None:
        self.initial = initial
        self.maximum = maximum
        self.failures = 0

    def next(self) -> float:
        cap = min(self.maximum, self.initial * (2**self.failures))
        self.failures += 1
        return random.uniform(cap / 2, cap)

    def reset(self) -> None:
        self.failures = 0


class Reflector:
    """Runs the list + watch loop in a daemon thread, feeding ``cache``."""

    def __init__(
        self,
        api: NodeApi,
        cache: NodeCache,
        *,
        watch_timeout: int = 300,
        deadline: float = DEFAULT_WATCH_DEADLINE,
        backoff: Backoff | None = None,
    ) -> None:
        if deadline < 2:
            raise ValueError(f"watch deadline {deadline:g} s: use at least 2 seconds")
        self.api = api
        self.cache = cache
        self.watch_timeout = watch_timeout
        self.deadline = deadline
        self.backoff = backoff or Backoff()
        self._stop = threading.Event()
        self._relist = threading.Event()
        self._stream: WatchStream | None = None
        self._thread: threading.Thread | None = None
        self.errors = 0
        self.last_error = ""
        self.watch_restarts = 0
        #: Watches found dead (nothing within the deadline).
        self.silent_watches = 0

    # --- control --------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name="nosdn-reflector", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._interrupt()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def request_relist(self) -> None:
        """Make the next read a complete list (interrupts a watch that is waiting)."""
        self._relist.set()
        self._interrupt()

    def _interrupt(self) -> None:
        stream = self._stream
        if stream is not None:
            try:
                stream.close()
            except Exception:  # closing a stream that is breaking anyway
                log.debug("closing the watch failed", exc_info=True)

    # --- the loop -------------------------------------------------------------------------
    def run(self) -> None:
        need_list = True
        rv = ""
        while not self._stop.is_set():
            try:
                if need_list or self._relist.is_set():
                    self._relist.clear()
                    items, rv = self.api.list_nodes()
                    self.cache.replace(items)
                    self.cache.set_connected(True)
                    self.backoff.reset()
                    need_list = False
                rv = self._watch(rv)
                self.watch_restarts += 1
            except WatchExpiredError:
                log.info("watch expired (410 Gone): listing nodes again")
                need_list = True
            except WatchSilentError as e:
                need_list = True
                self.silent_watches += 1
                self._failed(str(e))
            except ApiError as e:
                need_list = True
                self._failed(str(e))
            except Exception as e:  # never let the source thread die: log and retry
                need_list = True
                log.exception("unexpected error in the node watch")
                self._failed(f"{type(e).__name__}: {e}")

    def _failed(self, message: str) -> None:
        if self._stop.is_set():
            return
        self.errors += 1
        self.last_error = message
        self.cache.set_connected(False)
        delay = self.backoff.next()
        log.warning(
            "Kubernetes API: %s; keeping the last known nodes, retrying in %.1f s",
            message,
            delay,
            extra={"error": message, "retry_in": round(delay, 3)},
        )
        self._stop.wait(delay)

    def _watch(self, rv: str) -> str:
        timeout = server_timeout(self.watch_timeout, self.deadline)
        stream = self.api.watch_nodes(rv, timeout, self.deadline)
        self._stream = stream
        try:
            if self._stop.is_set() or self._relist.is_set():
                return rv
            return self._consume(stream, rv)
        except ApiError:
            if self._relist.is_set() or self._stop.is_set():
                return rv  # we closed it ourselves
            raise
        finally:
            self._stream = None
            stream.close()

    def _consume(self, stream: WatchStream, rv: str) -> str:
        for event in stream:
            rv = self._event(event, rv)
        return rv

    def _event(self, event: Mapping[str, Any], rv: str) -> str:
        if not isinstance(event, Mapping):
            raise ApiError("watch nodes: an event that is not a JSON object")
        etype = event.get("type")
        obj = event.get("object")
        if not isinstance(obj, Mapping):
            obj = {}  # no name: counted and ignored by the cache
        if etype == "ERROR":
            code = obj.get("code")
            if code == 410:
                raise WatchExpiredError()
            status = code if isinstance(code, int) else 0
            raise ApiError(f"watch error: {obj.get('message', obj)}", status)
        meta = obj.get("metadata")
        version = meta.get("resourceVersion") if isinstance(meta, Mapping) else None
        rv = version if isinstance(version, str) and version else rv
        if etype != "BOOKMARK":
            self.cache.apply(str(etype), obj)
        return rv
