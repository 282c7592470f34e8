"""A small local REST server shaped like the Azure Resource Manager network API, for the Azure
backend's tests.

No emulator exists for Azure networking (Azurite covers Storage only), so this fake implements
just what the backend uses, with ARM's paths, JSON field names and behaviours, and the real
azure-mgmt-network client is pointed at it:

- ``routeTables/{name}``: GET and PUT (the whole table, routes included). Every successful PUT
  gives the table (and each route) a new ``etag``; a PUT with ``If-Match`` not equal to the
  current ETag is 412 ``PreconditionFailed``. A PUT is a long-running operation: 200 (201 when
  created) with ``provisioningState: Updating`` and an ``Azure-AsyncOperation`` header; the
  operation answers ``InProgress`` ``polls`` times, then ``Succeeded``. A PUT while another one
  is "running" (``busy(n)``) is 409 ``AnotherOperationInProgress``, as ARM answers.
- PUT validates like ARM: route names (1-80 of ``[A-Za-z0-9._-]``), addresses, unique names and
  prefixes, a next hop address for ``VirtualAppliance``, and at most ``route_limit`` routes
  (400, ARM's default; over it a 400 error with the limit in its message).
- ``routeTables/{name}/routes/{route}``: GET, PUT and DELETE of one route (the per-route way a
  script or ``az network route-table route create`` works; the bench's baseline), each write a
  long-running operation that changes the table's ETag.
- ``networkInterfaces``: list per resource group (paged with ``nextLink``), GET and PUT one
  (``enableIPForwarding``, with If-Match and the same operation shape); the scale-set list
  ``Microsoft.Compute/virtualMachineScaleSets/{ss}/networkInterfaces`` (a scale-set NIC cannot
  be PUT, as in ARM).
- A subscription other than ``SUB`` is 404 ``SubscriptionNotFound``; a resource group holding
  nothing is 404 ``ResourceGroupNotFound``; an action in ``forbidden`` is 403
  ``AuthorizationFailed`` with ARM's message (an identity without the role).
- Every request needs ``api-version`` (else 400 ``MissingApiVersionParameter``) and
  ``Authorization: Bearer <token>`` with the token given (else 401 ``AuthenticationFailed``), or
  none at all when the fake is made with ``token=None``.
- ``fail(n, status, retry_after)`` answers the next ``n`` requests with 429 (and
  ``Retry-After``) or a 5xx, shaped like ARM's error JSON; ``on_next_put`` runs a function just
  before the next table PUT is checked (a concurrent writer between our read and our write).

It records every request with its Host header; ``violations`` lists any request not addressed to
this server's own host:port or not under ``/subscriptions/``. Tests assert it is empty, and the
``no_internet`` guard (tests/no_internet.py) refuses connections anywhere else.
"""

from __future__ import annotations

import ipaddress
import itertools
import json
import re
import threading
import urllib.parse
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

TOKEN = "nosdn-test-token"
SUB = "00000000-0000-0000-0000-00000000cafe"
_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,78}[A-Za-z0-9_])?\Z")
_SERVICE_TAG = re.compile(
    r"[A-Za-z][A-Za-z0-9]*(?:\.[A-Za-z0-9]+)?"
)  # Storage, AzureCloud.westeurope
_P = r"^/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)/providers/"
_TABLE = re.compile(_P + r"Microsoft\.Network/routeTables/(?P<name>[^/]+)$", re.I)
_ROUTE = re.compile(
    _P + r"Microsoft\.Network/routeTables/(?P<name>[^/]+)/routes/(?P<route>[^/]+)$", re.I
)
_NICS = re.compile(_P + r"Microsoft\.Network/networkInterfaces(?:/(?P<name>[^/]+))?$", re.I)
_SS_NICS = re.compile(
    _P + r"Microsoft\.Compute/virtualMachineScaleSets/(?P<ss>[^/]+)/networkInterfaces$", re.I
)
_SUB = re.compile(r"^/subscriptions/([^/]+)")
_RG = re.compile(r"^/subscriptions/[^/]+/resourceGroups/([^/]+)", re.I)
_OPS = re.compile(
    r"^/subscriptions/([^/]+)/providers/Microsoft\.Network/locations/([^/]+)/operations/([^/]+)$"
)


class StaticToken:
    """A credential that always gives the same token (azure-core's ``TokenCredential``)."""

    def __init__(self, token: str = TOKEN) -> None:
        self.token = token

    def get_token(self, *scopes: str, **_: Any) -> Any:
        from azure.core.credentials import AccessToken

        return AccessToken(self.token, 2**31 - 1)


def vm_id(rg: str, name: str, sub: str = SUB) -> str:
    base = f"/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Compute"
    return f"{base}/virtualMachines/{name}"


def vmss_id(rg: str, ss: str, index: int, sub: str = SUB) -> str:
    return (
        f"/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Compute/"
        f"virtualMachineScaleSets/{ss}/virtualMachines/{index}"
    )


@dataclass
class Lro:
    polls_left: int
    error: dict[str, Any] | None = None


@dataclass
class Arm:
    tables: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    nics: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    ss_nics: dict[tuple[str, str], list[dict[str, Any]]] = field(default_factory=dict)
    ops: dict[str, Lro] = field(default_factory=dict)


def _etag() -> str:
    return f'W/"{uuid.uuid4()}"'


class AzureFake:
    """The fake ARM network API; ``url`` is what the backend gets as its endpoint."""

    def __init__(
        self,
        *,
        page_limit: int = 50,
        polls: int = 1,
        route_limit: int = 400,
        token: str | None = TOKEN,
    ) -> None:
        self.arm = Arm()
        self.page_limit = page_limit
        self.polls = polls
        self.route_limit = route_limit
        #: The bearer token every request must carry; None: no Authorization header at all
        #: (the backend sends none to a plain-http endpoint unless given a credential).
        self.token = token
        #: Where operation polling URLs point (a test sets another host to see it refused).
        self.poll_base = ""
        self.log: list[tuple[str, str]] = []
        self.violations: list[str] = []
        self.counts: Counter[str] = Counter()
        self.rejected: Counter[str] = Counter()
        #: ARM actions this token may not perform (``Microsoft.Network/routeTables/write``):
        #: answered 403 ``AuthorizationFailed``, as for an identity without the role.
        self.forbidden: set[str] = set()
        self._fail: list[tuple[int, str]] = []
        self._busy = 0
        self._next_put: list[Callable[[], None]] = []
        self._ids = itertools.count(1)
        self._lock = threading.RLock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # headers and body are two writes: without TCP_NODELAY each answer waits out the
            # client's delayed ACK (40 ms), which is the fake's latency, not ARM's
            disable_nagle_algorithm = True

            def log_message(self, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                status, payload, headers = fake.handle(
                    self.command, self.path, dict(self.headers.items()), body
                )
                data = json.dumps(payload).encode() if payload is not None else b""
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_DELETE = do_PATCH = _handle

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
    def add_table(self, rg: str, name: str, routes: list[dict[str, Any]] = (), **kw: Any) -> None:  # type: ignore[assignment]
        with self._lock:
            rid = _table_id(SUB, rg, name)
            table = {
                "id": rid,
                "name": name,
                "type": "Microsoft.Network/routeTables",
                "location": kw.get("location", "westeurope"),
                "tags": kw.get("tags", {}),
                "etag": _etag(),
                "properties": {
                    "provisioningState": "Succeeded",
                    "disableBgpRoutePropagation": False,
                    "routes": [],
                    "subnets": [{"id": f"/subscriptions/{SUB}/resourceGroups/{rg}/providers/"
                                 "Microsoft.Network/virtualNetworks/vnet/subnets/nodes"}],
                },
            }  # fmt: skip
            self.arm.tables[(rg.lower(), name.lower())] = table
            for r in routes:
                self.add_route(rg, name, r["name"], **r["properties"])

    def add_route(self, rg: str, table: str, name: str, **props: Any) -> None:
        """Put a route in place directly (someone else's, or one made earlier), changing the
        table's ETag as any write does."""
        with self._lock:
            t = self.arm.tables[(rg.lower(), table.lower())]
            t["properties"]["routes"].append(self._make_route(t["id"], name, props))
            t["etag"] = _etag()

    def routes(self, rg: str, table: str) -> dict[str, dict[str, Any]]:
        """Route name -> its properties."""
        with self._lock:
            t = self.arm.tables[(rg.lower(), table.lower())]
            return {r["name"]: dict(r["properties"]) for r in t["properties"]["routes"]}

    def add_nic(
        self,
        rg: str,
        name: str,
        *,
        vm: str,
        ip: str,
        forwarding: bool = False,
        scale_set: str | None = None,
    ) -> dict[str, Any]:
        with self._lock:
            nic = {
                "id": f"/subscriptions/{SUB}/resourceGroups/{rg}/providers/"
                f"Microsoft.Network/networkInterfaces/{name}",
                "name": name,
                "type": "Microsoft.Network/networkInterfaces",
                "location": "westeurope",
                "etag": _etag(),
                "properties": {
                    "provisioningState": "Succeeded",
                    "primary": True,
                    "enableIPForwarding": forwarding,
                    "virtualMachine": {"id": vm},
                    "ipConfigurations": [
                        {
                            "name": "ipconfig1",
                            "properties": {
                                "privateIPAddress": ip,
                                "privateIPAllocationMethod": "Dynamic",
                                "primary": True,
                            },
                        }
                    ],
                },
            }
            if scale_set:
                self.arm.ss_nics.setdefault((rg.lower(), scale_set.lower()), []).append(nic)
            else:
                self.arm.nics[(rg.lower(), name.lower())] = nic
            return nic

    def _groups(self) -> set[str]:
        return {rg for rg, _ in (*self.arm.tables, *self.arm.nics, *self.arm.ss_nics)}

    def fail(self, n: int, status: int = 429, retry_after: str = "0") -> None:
        with self._lock:
            self._fail.extend([(status, retry_after)] * n)

    def busy(self, n: int) -> None:
        """The next ``n`` table PUTs find another operation in progress (409)."""
        with self._lock:
            self._busy += n

    def on_next_put(self, fn: Callable[[], None]) -> None:
        with self._lock:
            self._next_put.append(fn)

    def writes(self) -> Counter[str]:
        return Counter({k: v for k, v in self.counts.items() if k.startswith("put")})

    def reset_counts(self) -> None:
        self.counts.clear()
        self.rejected.clear()

    # --- the API ----------------------------------------------------------------------------
    def handle(
        self, method: str, raw_path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, Any, dict[str, str]]:
        url = urllib.parse.urlsplit(raw_path)
        query = dict(urllib.parse.parse_qsl(url.query))
        path = urllib.parse.unquote(url.path)
        h = {k.lower(): v for k, v in headers.items()}
        with self._lock:
            self.log.append((method, raw_path))
            if h.get("host") != self.host or not path.startswith("/subscriptions/"):
                self.violations.append(f"{method} {h.get('host')}{raw_path}")
                return _error(400, "InvalidRequestUri", "request not addressed to this endpoint")
            want = f"Bearer {self.token}" if self.token is not None else None
            if h.get("authorization") != want:
                return _error(
                    401,
                    "AuthenticationFailed",
                    "Authentication failed. The 'Authorization' header is missing or invalid.",
                )
            if "api-version" not in query:
                return _error(
                    400,
                    "MissingApiVersionParameter",
                    "The api-version query parameter (?api-version=) is required for all requests.",
                )
            if (sub := _SUB.match(path)) and sub.group(1) != SUB:
                return _error(
                    404,
                    "SubscriptionNotFound",
                    f"The subscription '{sub.group(1)}' could not be found.",
                )
            if (rg := _RG.match(path)) and rg.group(1).lower() not in self._groups():
                return _error(
                    404,
                    "ResourceGroupNotFound",
                    f"Resource group '{rg.group(1)}' could not be found.",
                )
            if (action := _action(method, path)) in self.forbidden:
                scope = path.split("?")[0]
                return _error(
                    403,
                    "AuthorizationFailed",
                    f"The client 'nosdn-test' with object id '{uuid.UUID(int=7)}' does not have "
                    f"authorization to perform action '{action}' over scope '{scope}' or the "
                    "scope is invalid. If access was recently granted, please refresh your "
                    "credentials.",
                )
            if self._fail:
                status, after = self._fail.pop(0)
                self.rejected[f"{method} {path}"] += 1
                if status == 429:
                    st, payload, hd = _error(
                        429, "TooManyRequests", "The request is being throttled."
                    )
                    return st, payload, {**hd, "Retry-After": after}
                return _error(status, "InternalServerError", "An error occurred.")
            try:
                return self._route(method, path, query, h, body)
            except KeyError:
                return _error(404, "ResourceNotFound", f"The Resource '{path}' was not found.")

    def _route(
        self, method: str, path: str, query: dict[str, str], h: dict[str, str], body: bytes
    ) -> tuple[int, Any, dict[str, str]]:
        if (m := _ROUTE.match(path)) and method in ("GET", "PUT", "DELETE"):
            return self._one_route(method, m, h, body)
        if m := _TABLE.match(path):
            key = (m["rg"].lower(), m["name"].lower())
            if m["sub"] != SUB:
                raise KeyError(path)
            if method == "GET":
                self.counts["get"] += 1
                return 200, self.arm.tables[key], {}
            if method == "PUT":
                self.counts["put"] += 1
                return self._put_table(key, m, h, json.loads(body or b"{}"))
        if (m := _NICS.match(path)) and method in ("GET", "PUT"):
            rg = m["rg"].lower()
            if m["name"] is None and method == "GET":
                self.counts["list"] += 1
                items = [n for (g, _), n in sorted(self.arm.nics.items()) if g == rg]
                return 200, self._page(items, path, query), {}
            key = (rg, (m["name"] or "").lower())
            nic = self.arm.nics[key]
            if method == "GET":
                self.counts["get nic"] += 1
                return 200, nic, {}
            self.counts["put nic"] += 1
            if h.get("if-match") and h["if-match"] != nic["etag"]:
                return _error(412, "PreconditionFailed", "The condition is not met.")
            new = json.loads(body or b"{}")
            nic["properties"]["enableIPForwarding"] = bool(
                new.get("properties", {}).get("enableIPForwarding")
            )
            nic["etag"] = _etag()
            return 200, nic, self._lro(h)
        if (m := _SS_NICS.match(path)) and method == "GET":
            self.counts["list"] += 1
            items = self.arm.ss_nics.get((m["rg"].lower(), m["ss"].lower()), [])
            return 200, self._page(items, path, query), {}
        if (m := _OPS.match(path)) and method == "GET":
            self.counts["poll"] += 1
            op = self.arm.ops[m.group(3)]
            if op.polls_left > 0:
                op.polls_left -= 1
                return 200, {"status": "InProgress"}, {}
            if op.error is not None:
                return 200, {"status": "Failed", "error": op.error}, {}
            return 200, {"status": "Succeeded"}, {}
        return _error(404, "NotFound", f"no such method: {method} {path}")

    def _page(
        self, items: list[dict[str, Any]], path: str, query: dict[str, str]
    ) -> dict[str, Any]:
        # the SDK follows nextLink as given; the position is in a $skiptoken, as ARM does
        start = int(query.get("$skiptoken", 0))
        out: dict[str, Any] = {"value": items[start : start + self.page_limit]}
        if start + self.page_limit < len(items):
            out["nextLink"] = (
                f"{self.url}{path}?api-version=2026-03-01&$skiptoken={start + self.page_limit}"
            )
        return out

    def _lro(self, h: dict[str, str], error: dict[str, Any] | None = None) -> dict[str, str]:
        op = str(next(self._ids))
        self.arm.ops[op] = Lro(self.polls, error)
        return {
            "Azure-AsyncOperation": f"{self.poll_base or self.url}/subscriptions/{SUB}/providers/"
            f"Microsoft.Network/locations/westeurope/operations/{op}?api-version=2026-03-01",
        }

    def _make_route(self, table_id: str, name: str, props: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": f"{table_id}/routes/{name}",
            "name": name,
            "type": "Microsoft.Network/routeTables/routes",
            "etag": _etag(),
            "properties": {"provisioningState": "Succeeded", **props},
        }

    def _one_route(
        self, method: str, m: re.Match[str], h: dict[str, str], body: bytes
    ) -> tuple[int, Any, dict[str, str]]:
        """One route as its own resource (``az network route-table route show|create|delete``,
        the per-route way): the table's ETag changes with every write, as in ARM."""
        t = self.arm.tables[(m["rg"].lower(), m["name"].lower())]
        routes: list[dict[str, Any]] = t["properties"]["routes"]
        i = next((i for i, r in enumerate(routes) if r["name"].lower() == m["route"].lower()), -1)
        if method == "GET":
            self.counts["get route"] += 1
            if i < 0:
                raise KeyError(m["route"])
            return 200, routes[i], {}
        self.counts[f"{method.lower()} route"] += 1
        if self._busy:
            self._busy -= 1
            self.rejected["busy"] += 1
            return _error(409, "AnotherOperationInProgress", "Another operation is in progress.")
        if method == "DELETE":
            if i < 0:
                return 204, None, {}
            del routes[i]
            t["etag"] = _etag()
            return 202, None, self._lro(h)
        props = {
            k: v
            for k, v in json.loads(body or b"{}").get("properties", {}).items()
            if k != "provisioningState"
        }
        if i < 0 and len(routes) >= self.route_limit:
            return _error(
                400,
                "RouteTableRouteCountLimitReached",
                f"Route table has {len(routes)} routes; the limit is {self.route_limit}.",
            )
        route = self._make_route(t["id"], m["route"], props)
        if i < 0:
            routes.append(route)
        else:
            routes[i] = route
        t["etag"] = _etag()
        return (201 if i < 0 else 200), route, self._lro(h)

    def _put_table(
        self, key: tuple[str, str], m: re.Match[str], h: dict[str, str], new: dict[str, Any]
    ) -> tuple[int, Any, dict[str, str]]:
        while self._next_put:
            self._next_put.pop(0)()  # the other writer gets in first
        if self._busy:
            self._busy -= 1
            self.rejected["busy"] += 1
            return _error(
                409,
                "AnotherOperationInProgress",
                f"Another operation on this or dependent resource is in progress. To retrieve "
                f"status of the operation use uri: {self.url}/subscriptions/{SUB}/providers/"
                "Microsoft.Network/locations/westeurope/operations/busy?api-version=2026-03-01.",
            )
        old = self.arm.tables.get(key)
        match = h.get("if-match")
        if match and (old is None or (match != "*" and match != old["etag"])):
            self.rejected["412"] += 1
            return _error(
                412,
                "PreconditionFailed",
                "Precondition failed: the resource's etag does not match the If-Match header.",
            )
        routes = new.get("properties", {}).get("routes") or []
        names: set[str] = set()
        prefixes: set[str] = set()
        for r in routes:
            name, p = r.get("name", ""), r.get("properties", {})
            if not _NAME.fullmatch(name or ""):
                return _error(400, "InvalidResourceName", f"Resource name {name} is invalid.")
            if name.lower() in names:
                return _error(400, "DuplicateResourceName", f"Route {name} appears twice.")
            try:
                prefix = str(ipaddress.ip_network(p.get("addressPrefix", "")))
            except ValueError:
                prefix = str(p.get("addressPrefix", ""))
            if not (_SERVICE_TAG.fullmatch(prefix) or "/" in prefix):
                return _error(
                    400, "InvalidAddressPrefix", f"Route {name} has invalid addressPrefix."
                )
            if prefix in prefixes:
                return _error(
                    400,
                    "RouteConflict",
                    f"Route {name} conflicts with another route: same address prefix {prefix}.",
                )
            if p.get("nextHopType") == "VirtualAppliance" and not p.get("nextHopIpAddress"):
                return _error(
                    400, "NextHopIpAddressMissing", f"Route {name} needs a nextHopIpAddress."
                )
            names.add(name.lower())
            prefixes.add(prefix)
        if len(routes) > self.route_limit:
            return _error(
                400,
                "RouteTableRouteCountLimitReached",
                f"Route table has {len(routes)} routes; the limit is {self.route_limit}.",
            )
        rid = _table_id(m["sub"], m["rg"], m["name"])
        before = {r["name"]: r for r in (old or {}).get("properties", {}).get("routes", [])}
        kept = []
        for r in routes:
            props = {k: v for k, v in r.get("properties", {}).items() if k != "provisioningState"}
            was = before.get(r["name"])
            if (
                was is not None
                and {k: v for k, v in was["properties"].items() if k != "provisioningState"}
                == props
            ):
                kept.append(was)
            else:
                kept.append(self._make_route(rid, r["name"], props))
        table = {
            "id": rid,
            "name": m["name"],
            "type": "Microsoft.Network/routeTables",
            "location": new.get("location") or (old or {}).get("location"),
            "tags": new.get("tags") or {},
            "etag": _etag(),
            "properties": {
                **(old or {}).get("properties", {}),
                **{k: v for k, v in new.get("properties", {}).items() if k != "subnets"},
                "routes": kept,
                "provisioningState": "Updating",
            },
        }
        self.arm.tables[key] = table
        reply = json.loads(json.dumps(table))
        table["properties"]["provisioningState"] = "Succeeded"
        return (201 if old is None else 200), reply, self._lro(h)


def _action(method: str, path: str) -> str:
    """The ARM authorization action of a request (``Microsoft.Network/routeTables/write``)."""
    m = re.search(r"/providers/Microsoft\.(\w+)/(\w+)(?:/[^/]+)?(?:/(\w+))?", path, re.I)
    if m is None:
        return ""
    kind = m.group(2) if not m.group(3) else f"{m.group(2)}/{m.group(3)}"
    if kind.startswith("virtualMachineScaleSets"):
        kind = "virtualMachineScaleSets/networkInterfaces"
    verb = "read" if method == "GET" else "delete" if method == "DELETE" else "write"
    return f"Microsoft.{m.group(1)}/{kind}/{verb}"


def _table_id(sub: str, rg: str, name: str) -> str:
    return (
        f"/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Network/routeTables/{name}"
    )


def _error(status: int, code: str, message: str) -> tuple[int, Any, dict[str, str]]:
    return status, {"error": {"code": code, "message": message}}, {}
