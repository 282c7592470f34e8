"""A small local REST server shaped like the GCE Compute API (v1), for the GCE backend's tests.

No emulator exists for Compute Engine (Google ships emulators for Pub/Sub, Datastore, Spanner
and Bigtable, not Compute), so this fake implements just what the backend uses, with the real
API's paths, JSON field names and behaviours:

- ``global/routes``: list (paged: ``maxResults``/``pageToken``/``nextPageToken``), get, insert,
  delete. Inserts and deletes return an Operation that is ``RUNNING`` and finishes when polled;
  a missing next-hop instance or the ROUTES quota fails the *operation* (HTTP 200, error inside)
  as GCE does, a duplicate name is HTTP 409. ``requestId`` makes a repeated insert or delete
  return the first one's operation, as GCE does.
- ``global/operations/{op}`` and ``.../wait``; ``zones/{z}/instances/{i}`` (get); the project
  (get, with its ``ROUTES`` quota).
- Routes to an instance that is later deleted carry the ``NEXT_HOP_INSTANCE_NOT_FOUND`` warning.
- ``fail(n, status)`` answers the next ``n`` requests with 429 (rate limit) or 503, shaped
  like Google's error JSON.

It records every request with its Host header; ``violations`` lists any request that was not
addressed to this server's own host:port or not under ``/compute/v1/``. Tests assert it is empty,
and the ``no_internet`` guard (tests/no_internet.py) refuses connections anywhere else.
"""

from __future__ import annotations

import itertools
import json
import re
import threading
import urllib.parse
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

BASE = "https://www.googleapis.com/compute/v1/"

_ROUTES = re.compile(r"^/compute/v1/projects/([^/]+)/global/routes(?:/([^/]+))?$")
_OPS = re.compile(r"^/compute/v1/projects/([^/]+)/global/operations/([^/]+?)(/wait)?$")
_INSTANCE = re.compile(r"^/compute/v1/projects/([^/]+)/zones/([^/]+)/instances/([^/]+)$")
_PROJECT = re.compile(r"^/compute/v1/projects/([^/]+)$")
_INSTANCE_URL = re.compile(r"(?:^|/)projects/([^/]+)/zones/([^/]+)/instances/([^/]+)$")


def instance_url(project: str, zone: str, name: str) -> str:
    return f"{BASE}projects/{project}/zones/{zone}/instances/{name}"


def network_url(project: str, network: str) -> str:
    return f"{BASE}projects/{project}/global/networks/{network}"


@dataclass
class Project:
    name: str
    routes: dict[str, dict[str, Any]] = field(default_factory=dict)
    operations: dict[str, dict[str, Any]] = field(default_factory=dict)
    instances: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    requests: dict[str, str] = field(default_factory=dict)  # requestId -> operation
    routes_quota: int = 250


class GceFake:
    """The fake Compute API; ``url`` is what the backend gets as its endpoint."""

    def __init__(self, page_limit: int = 500) -> None:
        self.projects: dict[str, Project] = {}
        self.page_limit = page_limit
        self.log: list[tuple[str, str]] = []
        self.violations: list[str] = []
        self.counts: Counter[str] = Counter()
        self.rejected: Counter[str] = Counter()
        self._fail: list[int] = []
        self._ids = itertools.count(1000)
        self._lock = threading.RLock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                status, payload = fake.handle(
                    self.command, self.path, self.headers.get("Host", ""), body
                )
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=UTF-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_DELETE = do_PATCH = do_PUT = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.host = f"127.0.0.1:{self.server.server_address[1]}"
        self.url = f"http://{self.host}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    # --- test set-up ------------------------------------------------------------------------
    def project(self, name: str) -> Project:
        with self._lock:
            return self.projects.setdefault(name, Project(name))

    def add_instance(
        self, project: str, zone: str, name: str, *, ip: str, can_ip_forward: bool = True
    ) -> str:
        p = self.project(project)
        p.instances[(zone, name)] = {
            "kind": "compute#instance",
            "id": str(next(self._ids)),
            "name": name,
            "zone": f"{BASE}projects/{project}/zones/{zone}",
            "status": "RUNNING",
            "canIpForward": can_ip_forward,
            "networkInterfaces": [{"networkIP": ip, "name": "nic0"}],
            "selfLink": instance_url(project, zone, name),
        }
        return instance_url(project, zone, name)

    def delete_instance(self, project: str, zone: str, name: str) -> None:
        p = self.project(project)
        del p.instances[(zone, name)]
        url = instance_url(project, zone, name)
        for r in p.routes.values():
            if r.get("nextHopInstance") == url:
                r["warnings"] = [
                    {
                        "code": "NEXT_HOP_INSTANCE_NOT_FOUND",
                        "message": f"Next hop instance '{url}' does not exist.",
                    }
                ]

    def add_route(self, project: str, route: dict[str, Any]) -> None:
        """Put a route in place directly (someone else's, or one made earlier)."""
        p = self.project(project)
        r = {
            "kind": "compute#route",
            "id": str(next(self._ids)),
            "priority": 1000,
            "creationTimestamp": "2024-01-01T00:00:00.000-07:00",
            **route,
        }
        r["selfLink"] = f"{BASE}projects/{project}/global/routes/{r['name']}"
        p.routes[r["name"]] = r

    def fail(self, n: int, status: int = 429) -> None:
        with self._lock:
            self._fail.extend([status] * n)

    def writes(self) -> Counter[str]:
        return Counter({k: v for k, v in self.counts.items() if k in ("insert", "delete")})

    def reset_counts(self) -> None:
        self.counts.clear()
        self.rejected.clear()

    # --- the API ----------------------------------------------------------------------------
    def handle(self, method: str, raw_path: str, host: str, body: bytes) -> tuple[int, Any]:
        url = urllib.parse.urlsplit(raw_path)
        query = dict(urllib.parse.parse_qsl(url.query))
        path = urllib.parse.unquote(url.path)
        with self._lock:
            self.log.append((method, raw_path))
            if host != self.host or not path.startswith("/compute/v1/"):
                self.violations.append(f"{method} {host}{raw_path}")
                return 400, _error(400, "badRequest", "request not addressed to this endpoint")
            if self._fail:
                status = self._fail.pop(0)
                self.rejected[method + " " + path] += 1
                if status == 429:
                    return 429, _error(429, "rateLimitExceeded", "Rate Limit Exceeded")
                return status, _error(status, "backendError", "Backend Error")
            try:
                return self._route(method, path, query, body)
            except KeyError as e:
                return 404, _error(404, "notFound", f"The resource '{e.args[0]}' was not found")

    def _route(self, method: str, path: str, query: dict[str, str], body: bytes) -> tuple[int, Any]:
        if m := _ROUTES.match(path):
            project, name = m.group(1), m.group(2)
            p = self.projects[project] if project in self.projects else self._missing(path)
            if name is None and method == "GET":
                self.counts["list"] += 1
                return 200, self._list(p, query)
            if name is None and method == "POST":
                self.counts["insert"] += 1
                return self._insert(p, json.loads(body or b"{}"), query.get("requestId"))
            if name is not None and method == "GET":
                self.counts["get"] += 1
                return 200, p.routes[name] if name in p.routes else self._missing(path)
            if name is not None and method == "DELETE":
                self.counts["delete"] += 1
                return self._delete(p, name, path, query.get("requestId"))
        if (m := _OPS.match(path)) and method in ("GET", "POST"):
            self.counts["wait" if m.group(3) else "operation"] += 1
            p = self.projects[m.group(1)]
            op = p.operations[m.group(2)] if m.group(2) in p.operations else self._missing(path)
            if op["status"] != "DONE":
                op["status"] = "DONE"
                op["progress"] = 100
            return 200, op
        if (m := _INSTANCE.match(path)) and method == "GET":
            self.counts["instance"] += 1
            p = self.projects[m.group(1)]
            key = (m.group(2), m.group(3))
            return 200, p.instances[key] if key in p.instances else self._missing(path)
        if (m := _PROJECT.match(path)) and method == "GET":
            self.counts["project"] += 1
            p = self.projects[m.group(1)]
            return 200, {
                "kind": "compute#project",
                "name": p.name,
                "quotas": [
                    {"metric": "ROUTES", "limit": float(p.routes_quota), "usage": len(p.routes)},
                    {"metric": "NETWORKS", "limit": 15.0, "usage": 1.0},
                ],
            }
        return 404, _error(404, "notFound", f"no such method: {method} {path}")

    @staticmethod
    def _missing(path: str) -> Any:
        raise KeyError(path)

    def _list(self, p: Project, query: dict[str, str]) -> dict[str, Any]:
        size = min(int(query.get("maxResults", 500)), self.page_limit, 500)
        start = int(query.get("pageToken") or 0)
        names = sorted(p.routes)
        page = [p.routes[n] for n in names[start : start + size]]
        out: dict[str, Any] = {"kind": "compute#routeList", "items": page}
        if start + size < len(names):
            out["nextPageToken"] = str(start + size)
        return out

    def _operation(self, p: Project, kind: str, target: str, error: str | None) -> dict[str, Any]:
        name = f"operation-{next(self._ids)}-{kind}"
        op: dict[str, Any] = {
            "kind": "compute#operation",
            "id": str(next(self._ids)),
            "name": name,
            "operationType": kind,
            "targetLink": target,
            "status": "RUNNING",
            "progress": 0,
            "selfLink": f"{BASE}projects/{p.name}/global/operations/{name}",
        }
        if error is not None:
            code, message = error.split(":", 1)
            op["error"] = {"errors": [{"code": code, "message": message.strip()}]}
            op["httpErrorStatusCode"] = 400
            op["httpErrorMessage"] = "BAD REQUEST"
        p.operations[name] = op
        return op

    def _insert(self, p: Project, route: dict[str, Any], request_id: str | None) -> tuple[int, Any]:
        if request_id and request_id in p.requests:
            return 200, p.operations[p.requests[request_id]]
        name = route.get("name", "")
        if name in p.routes:
            return 409, _error(
                409,
                "alreadyExists",
                f"The resource 'projects/{p.name}/global/routes/{name}' already exists",
            )
        target = f"{BASE}projects/{p.name}/global/routes/{name}"
        error = None
        hop = route.get("nextHopInstance", "")
        m = _INSTANCE_URL.search(hop)
        if m is None or (m.group(2), m.group(3)) not in p.instances or m.group(1) != p.name:
            error = f"RESOURCE_NOT_FOUND: The resource '{hop}' was not found"
        elif len(p.routes) >= p.routes_quota:
            error = f"QUOTA_EXCEEDED: Quota 'ROUTES' exceeded. Limit: {p.routes_quota}"
        op = self._operation(p, "insert", target, error)
        if error is None:
            self.add_route(
                p.name,
                {
                    **route,
                    "network": _full(route.get("network", "")),
                    "nextHopInstance": instance_url(m.group(1), m.group(2), m.group(3))
                    if m
                    else hop,
                },
            )
        if request_id:
            p.requests[request_id] = op["name"]
        return 200, op

    def _delete(self, p: Project, name: str, path: str, request_id: str | None) -> tuple[int, Any]:
        if request_id and request_id in p.requests:
            return 200, p.operations[p.requests[request_id]]
        if name not in p.routes:
            return 404, _error(404, "notFound", f"The resource '{path}' was not found")
        del p.routes[name]
        op = self._operation(p, "delete", f"{BASE}projects/{p.name}/global/routes/{name}", None)
        if request_id:
            p.requests[request_id] = op["name"]
        return 200, op


def _full(link: str) -> str:
    if link.startswith("https://"):
        return link
    return BASE + link.lstrip("/")


def _error(code: int, reason: str, message: str) -> dict[str, Any]:
    return {
        "error": {
            "code": code,
            "message": message,
            "errors": [{"message": message, "domain": "global", "reason": reason}],
        }
    }
