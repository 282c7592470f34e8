"""``/metrics``, ``/healthz`` and ``/readyz`` over plain HTTP, in a daemon thread.

The standard library's threading HTTP server is enough for a scrape every few seconds and a
kubelet probe; it keeps the agent free of a web framework. ``/healthz`` says whether the loop is
alive (a liveness probe restarts a wedged agent); ``/readyz`` whether routes are programmed (a
DaemonSet rolling update waits for it). Both answer with a one-line reason. Further JSON pages
(the agent's ``/probes``, read by `nosdn doctor`) are passed in as ``extra``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from nosdn.daemon.metrics import CONTENT_TYPE

log = logging.getLogger("nosdn.daemon.server")

#: A probe: (ok, one-line reason).
Probe = Callable[[], tuple[bool, str]]


class HealthServer:
    def __init__(
        self,
        address: str,
        port: int,
        metrics: Callable[[], bytes],
        healthz: Probe,
        readyz: Probe,
        *,
        extra: dict[str, Callable[[], bytes]] | None = None,
    ) -> None:
        outer = self
        pages = dict(extra or {})

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    self._send(200, outer.metrics(), CONTENT_TYPE)
                elif path in ("/healthz", "/readyz"):
                    ok, why = (outer.healthz if path == "/healthz" else outer.readyz)()
                    self._send(200 if ok else 503, (why + "\n").encode(), "text/plain")
                elif path in pages:
                    self._send(200, pages[path](), "application/json")
                else:
                    self._send(404, b"not found: try /metrics, /healthz, /readyz\n", "text/plain")

            def _send(self, code: int, body: bytes, ctype: str) -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                log.debug("http: " + format, *args)

        self.metrics = metrics
        self.healthz = healthz
        self.readyz = readyz
        self.httpd = ThreadingHTTPServer((address, port), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, name="nosdn-http", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
