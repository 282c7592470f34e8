"""Test helpers for the AWS backend: a real ``moto_server`` on 127.0.0.1, and a counting and
throttling proxy in front of it (the no-internet guard is in tests/no_internet.py).

moto_server speaks the real EC2 query API (same XML, same error codes), so the backend runs its
real boto3 client against it; the proxy sees every HTTP request the backend sends, which is how
tests count API calls independently of the backend's own counters and inject throttling
(``RequestLimitExceeded`` / HTTP 503) exactly the way EC2 sends it.
"""

from __future__ import annotations

import http.client
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

FAKE_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
    "AWS_CONFIG_FILE": "/dev/null",
    "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
    "AWS_EC2_METADATA_DISABLED": "true",
}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def moto_server() -> Iterator[str]:
    """Start ``moto_server`` on 127.0.0.1 at a free port; yield its URL; stop it after."""
    port = free_port()
    exe = Path(sys.executable).with_name("moto_server")
    env = {**os.environ, **FAKE_ENV}
    proc = subprocess.Popen(
        [str(exe), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{url}/moto-api/", timeout=1).read()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("moto_server did not start") from None
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def reset_moto(url: str) -> None:
    req = urllib.request.Request(f"{url}/moto-api/reset", method="POST", data=b"")
    urllib.request.urlopen(req, timeout=10).read()


def _page(xml: bytes, start: int, size: int) -> bytes:
    """One page of a DescribeRouteTables answer, with EC2's ``nextToken`` when more follow."""
    import xml.etree.ElementTree as ET

    root = ET.fromstring(xml)
    ns = root.tag.split("}")[0] + "}" if root.tag.startswith("{") else ""
    ET.register_namespace("", ns.strip("{}"))
    tables = root.find(f"{ns}routeTableSet")
    assert tables is not None
    items = list(tables)
    for item in items:
        tables.remove(item)
    for item in items[start : start + size]:
        tables.append(item)
    if start + size < len(items):
        ET.SubElement(root, f"{ns}nextToken").text = str(start + size)
    return bytes(ET.tostring(root, xml_declaration=True, encoding="UTF-8"))


_THROTTLE = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error>'
    b"<Code>RequestLimitExceeded</Code><Message>Request limit exceeded.</Message>"
    b"</Error></Errors><RequestID>nosdn-test</RequestID></Response>"
)
_INTERNAL = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error>'
    b"<Code>InternalError</Code><Message>An internal error has occurred</Message>"
    b"</Error></Errors><RequestID>nosdn-test</RequestID></Response>"
)


class Ec2Proxy:
    """An HTTP proxy to moto_server that counts EC2 actions and can fail the next requests.

    ``fail(n, action=None)`` makes the next ``n`` requests (of that action, or any) answer as
    a throttled EC2 (503 RequestLimitExceeded), alternating with 500 InternalError when
    ``kinds`` says so. ``actions`` counts what reached moto; ``rejected`` what was refused.
    """

    def __init__(self, upstream: str, *, netns: str | None = None) -> None:
        """``netns``: listen on that namespace's loopback (the serving threads stay in this
        one, where moto_server is)."""
        self.upstream = urllib.parse.urlsplit(upstream)
        self.actions: Counter[str] = Counter()
        self.rejected: Counter[str] = Counter()
        #: Serve DescribeRouteTables in pages of this many tables (moto itself never pages it).
        self.route_table_page = 0
        self._fail: list[tuple[str | None, bytes, int]] = []
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                action = urllib.parse.parse_qs(body.decode()).get("Action", ["?"])[0]
                failure = proxy._take_failure(action)
                if failure is not None:
                    payload, status = failure
                    proxy.rejected[action] += 1
                    self._send(status, payload, "text/xml")
                    return
                proxy.actions[action] += 1
                conn = http.client.HTTPConnection(
                    proxy.upstream.hostname, proxy.upstream.port, timeout=60
                )
                headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                conn.request("POST", self.path, body, headers)
                resp = conn.getresponse()
                data = resp.read()
                conn.close()
                if (
                    action == "DescribeRouteTables"
                    and proxy.route_table_page
                    and resp.status == 200
                ):
                    token = urllib.parse.parse_qs(body.decode()).get("NextToken", ["0"])[0]
                    data = _page(data, int(token), proxy.route_table_page)
                self._send(resp.status, data, resp.getheader("Content-Type", "text/xml"))

            def _send(self, status: int, data: bytes, ctype: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        from agent_env import in_netns

        with in_netns(netns):
            self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def _take_failure(self, action: str) -> tuple[bytes, int] | None:
        with self._lock:
            for i, (want, payload, status) in enumerate(self._fail):
                if want is None or want == action:
                    del self._fail[i]
                    return payload, status
        return None

    def fail(self, n: int, action: str | None = None, *, internal: bool = False) -> None:
        with self._lock:
            for i in range(n):
                if internal and i % 2:
                    self._fail.append((action, _INTERNAL, 500))
                else:
                    self._fail.append((action, _THROTTLE, 503))

    @property
    def pending_failures(self) -> int:
        return len(self._fail)

    def reset_counts(self) -> None:
        self.actions.clear()
        self.rejected.clear()

    def writes(self) -> Counter[str]:
        return Counter(
            {a: n for a, n in self.actions.items() if not a.startswith("Describe") and n}
        )

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
