"""The Kubernetes API, through the official client: the one module of nosdn that imports it.

The client library is used for what it is good at (kubeconfig and in-cluster configuration,
TLS, token refresh, request building) and bypassed for what it is slow at: every call asks for
the raw response (``_preload_content=False``) and parses JSON with the standard library, because
turning Nodes into generated model objects costs far more than the whole routing decision
(figures in bench/README.md). Lists are paged (``limit``/``continue``); a watch's body is
read by `nosdn.sources._watchstream`.

A dead connection is noticed, not waited out. When the API server's host vanishes without a
FIN or RST (a failover to another machine behind the same address), a socket stays ESTABLISHED
and a read on it waits forever. Two things end it: every connection carries TCP keepalive and
``TCP_USER_TIMEOUT`` (`socket_options`: the kernel drops it once nothing was acknowledged for
``tcp_user_timeout`` seconds, probing an idle one), and a watch is read with a deadline: a
watch that brings nothing (no event, no bookmark, not even its end) for ``deadline`` seconds
raises `WatchSilentError`, which the reflector treats like any broken watch (disconnected,
relist). The caller asks the server to end each watch well before the deadline (see
`nosdn.sources.reflector`), so only a server that is gone stays silent that long.

Errors leave this module only as `nosdn.sources.errors` exceptions. The methods cover exactly
what the agent needs: list/watch Nodes, patch a Node and its status, create Events, and the
read/create/update of a Lease for leader election (an update carries the resourceVersion it
read, so a real API server refuses it with 409 if someone else wrote in between).
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import urllib3
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException
from yaml import YAMLError

from nosdn.sources._watchstream import EventStream
from nosdn.sources.errors import (
    ApiError,
    ApiUnavailableError,
    ConflictError,
    NotFoundError,
    WatchExpiredError,
    WatchSilentError,
)

T = TypeVar("T")
USER_AGENT = "nosdn-agent"
LIST_PAGE = 500
MERGE_PATCH = "application/merge-patch+json"


@dataclass(frozen=True, slots=True)
class KubeSettings:
    """How to reach the API server.

    ``server`` alone: a plain URL with no credentials (``kubectl proxy``, the emulator);
    ``kubeconfig`` (or ``$KUBECONFIG``): that file (``context`` picks one); neither: the
    in-cluster service account, as a DaemonSet pod has it.
    """

    server: str | None = None
    kubeconfig: str | None = None
    context: str | None = None
    connect_timeout: float = 5.0
    read_timeout: float = 30.0
    #: Seconds a connection may go without an acknowledgement (data, or a keepalive probe on
    #: an idle one) before the kernel drops it: ``TCP_USER_TIMEOUT``.
    tcp_user_timeout: float = 30.0


def socket_options(tcp_user_timeout: float) -> list[tuple[int, int, int]]:
    """urllib3's own options (Nagle off) plus TCP keepalive and ``TCP_USER_TIMEOUT``.

    An idle connection (a quiet watch) is probed after a third of the timeout and then every
    sixth: with ``TCP_USER_TIMEOUT`` set, Linux drops it once the timeout passed since the last
    acknowledgement, whatever the probe count (client-go's 30 s idle plus Go's 9 probes 15 s
    apart take 2.5 minutes to say the same)."""
    timeout = max(1.0, tcp_user_timeout)
    idle = max(1, int(timeout / 3))
    interval = max(1, int(timeout / 6))
    options = list(urllib3.connection.HTTPConnection.default_socket_options)
    options += [
        (socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1),
        (socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, idle),
        (socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, interval),
        (socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 3),
        (socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, int(timeout * 1000)),
    ]
    return options


def _configuration(s: KubeSettings) -> k8s.Configuration:
    cfg = k8s.Configuration()
    kubeconfig = s.kubeconfig or os.environ.get("KUBECONFIG")
    if kubeconfig:
        try:
            k8s_config.load_kube_config(  # type: ignore[no-untyped-call]
                config_file=kubeconfig, context=s.context, client_configuration=cfg
            )
        except (k8s_config.ConfigException, OSError, ValueError, TypeError, YAMLError) as e:
            # a missing file, an unknown context, a file that is no kubeconfig
            text = " ".join(str(e).split())
            raise ApiError(f"kubeconfig {kubeconfig}: {text}") from None
    elif s.server is None:
        try:
            k8s_config.load_incluster_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
        except k8s_config.ConfigException as e:
            raise ApiError(
                f"no Kubernetes API configured ({e}) — run inside a pod with a service "
                "account, or pass --kubeconfig FILE or --kube-server URL"
            ) from None
    if s.server is not None:
        cfg.host = s.server.rstrip("/")
    cfg.socket_options = socket_options(s.tcp_user_timeout)
    return cfg


def _message(e: ApiException) -> str:
    try:
        body = json.loads(e.body or b"{}")
        text = str(body.get("message") or e.reason)
    except (ValueError, AttributeError):
        text = str(e.reason)
    return f"HTTP {e.status}: {text}"


def _translate(e: BaseException, what: str) -> ApiError:
    if isinstance(e, ApiException):
        status = int(e.status or 0)
        msg = f"{what}: {_message(e)}"
        if status == 410:
            return WatchExpiredError(msg)
        if status == 409:
            return ConflictError(msg)
        if status == 404:
            return NotFoundError(msg)
        if status == 0 or status >= 500 or status == 429:
            return ApiUnavailableError(msg, status)
        return ApiError(msg, status)
    if isinstance(e, ValueError):  # a body the client refused, or a reply that is not JSON
        return ApiError(f"{what}: {e}")
    if isinstance(e, urllib3.exceptions.MaxRetryError) and e.reason is not None:
        e = e.reason  # what went wrong, not the retry wrapper around it
    return ApiUnavailableError(f"{what}: {type(e).__name__}: {e}")


_ERRORS = (ApiException, urllib3.exceptions.HTTPError, OSError, ValueError)


_DECODER = json.JSONDecoder()
_WS = " \t\r\n"


def split_list(data: bytes) -> tuple[Iterator[Mapping[str, Any]], Mapping[str, Any]]:
    """A list response as (lazily decoded items, list metadata).

    The items array is decoded one element at a time (``raw_decode``), so no more than one
    Node exists as Python objects at once. Anything not
    shaped like ``{..., "metadata": {...}, "items": [...]}`` with the metadata first is decoded
    whole, the ordinary way.
    """
    text = data.decode()
    m = text.find('"metadata":')
    i = text.find('"items":')
    if m < 0 or i < 0 or m > i:
        whole = json.loads(text)
        return iter(whole.get("items") or ()), whole.get("metadata") or {}
    pos = m + len('"metadata":')
    while text[pos] in _WS:
        pos += 1
    meta, _ = _DECODER.raw_decode(text, pos)
    pos = i + len('"items":')
    while text[pos] in _WS:
        pos += 1
    if text[pos] != "[":  # "items": null
        return iter(()), meta

    def items(pos: int) -> Iterator[Mapping[str, Any]]:
        pos += 1
        while True:
            while text[pos] in _WS:
                pos += 1
            if text[pos] == "]":
                return
            obj, pos = _DECODER.raw_decode(text, pos)
            yield obj
            while text[pos] in _WS:
                pos += 1
            if text[pos] == ",":
                pos += 1

    return items(pos), meta


class KubeApi:
    """The agent's Kubernetes API client (thread-safe: one connection pool, shared)."""

    def __init__(self, settings: KubeSettings | None = None) -> None:
        self.settings = settings or KubeSettings()
        cfg = _configuration(self.settings)
        self.server = cfg.host
        self.api_client = k8s.ApiClient(cfg)
        self.api_client.user_agent = USER_AGENT
        self.core = k8s.CoreV1Api(self.api_client)
        self.coordination = k8s.CoordinationV1Api(self.api_client)
        self._timeout = (self.settings.connect_timeout, self.settings.read_timeout)

    def close(self) -> None:
        self.api_client.close()  # type: ignore[no-untyped-call]

    def _raw(self, what: str, fn: Callable[..., Any], *a: Any, **kw: Any) -> bytes:
        try:
            resp = fn(*a, _preload_content=False, _request_timeout=self._timeout, **kw)
            return bytes(resp.data or b"")
        except _ERRORS as e:
            raise _translate(e, what) from None

    def _call(self, what: str, fn: Callable[..., Any], *a: Any, **kw: Any) -> Any:
        data = self._raw(what, fn, *a, **kw)
        return json.loads(data) if data else None

    # --- nodes ----------------------------------------------------------------------------
    def list_nodes(self) -> tuple[Iterator[Mapping[str, Any]], str]:
        """Every Node, page by page (``limit``/``continue``), and the list's resourceVersion.

        Items are decoded one at a time from each page and handed out lazily, so the peak
        memory is one page of text plus one Node, not the whole list as Python objects (an
        emulator that ignores ``limit`` sends everything as one page)."""
        first = self._raw("list nodes", self.core.list_node, limit=LIST_PAGE)
        items, meta = split_list(first)
        del first

        def pages() -> Iterator[Mapping[str, Any]]:
            nonlocal items
            cont = meta.get("continue")
            yield from items
            while cont:
                data = self._raw("list nodes", self.core.list_node, limit=LIST_PAGE, _continue=cont)
                items, page_meta = split_list(data)
                cont = page_meta.get("continue")
                yield from items

        return pages(), str(meta.get("resourceVersion") or "")

    def reset_connections(self) -> None:
        """Close every pooled connection: after a dead watch they lead to the same dead host,
        and a request on one would wait for its read timeout; new ones connect afresh."""
        try:
            self.api_client.rest_client.pool_manager.clear()
        except (*_ERRORS, RuntimeError):  # closing sockets that are broken anyway
            pass

    def watch_nodes(
        self, resource_version: str, timeout_seconds: int, deadline: float
    ) -> EventStream:
        """A watch the server is asked to end after ``timeout_seconds``; a read that waits
        more than ``deadline`` seconds raises `WatchSilentError` (see the module docstring)."""
        kw: dict[str, Any] = {
            "watch": True,
            "allow_watch_bookmarks": True,
            "timeout_seconds": timeout_seconds,
        }
        if resource_version:
            kw["resource_version"] = resource_version
        try:
            resp: Any = self.core.list_node(
                _preload_content=False,
                _request_timeout=(self.settings.connect_timeout, deadline),
                **kw,
            )
        except _ERRORS as e:
            reason = e.reason if isinstance(e, urllib3.exceptions.MaxRetryError) else e
            if isinstance(reason, urllib3.exceptions.ReadTimeoutError):
                self.reset_connections()  # not even the response headers within the deadline
                raise WatchSilentError(
                    f"watch nodes: no response for {deadline:g} s: the connection is taken for dead"
                ) from None
            raise _translate(e, "watch nodes") from None
        return EventStream(resp, deadline, self.reset_connections, _translate)

    def patch_node(self, name: str, patch: Mapping[str, Any]) -> None:
        """Strategic merge patch of a Node (the allocator sets spec.podCIDRs with it)."""
        self._call(f"patch node {name}", self.core.patch_node, name, dict(patch))

    def patch_node_status(self, name: str, patch: Mapping[str, Any]) -> None:
        """Strategic merge patch of a Node's status (conditions merge by type)."""
        self._call(f"patch node {name} status", self.core.patch_node_status, name, dict(patch))

    # --- events ---------------------------------------------------------------------------
    def create_event(self, namespace: str, event: Mapping[str, Any]) -> None:
        self._call("create event", self.core.create_namespaced_event, namespace, dict(event))

    def list_events(self, field_selector: str = "") -> list[Mapping[str, Any]]:
        """Events of every namespace matching ``field_selector`` (``nosdn status --cluster``
        reads the agents' RouteConflict and NodeOffLink Events about Nodes with it)."""
        kw: dict[str, Any] = {"limit": LIST_PAGE}
        if field_selector:
            kw["field_selector"] = field_selector
        out: list[Mapping[str, Any]] = []
        cont: str | None = None
        while True:
            if cont:
                kw["_continue"] = cont
            data = self._raw("list events", self.core.list_event_for_all_namespaces, **kw)
            items, meta = split_list(data)
            out.extend(items)
            cont = meta.get("continue")
            if not cont:
                return out

    # --- leases ---------------------------------------------------------------------------
    def get_lease(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        try:
            got = self._call(
                f"get lease {namespace}/{name}",
                self.coordination.read_namespaced_lease,
                name,
                namespace,
            )
        except NotFoundError:
            return None
        return got  # type: ignore[no-any-return]

    def create_lease(self, namespace: str, lease: Mapping[str, Any]) -> Mapping[str, Any]:
        return self._call(  # type: ignore[no-any-return]
            f"create lease {namespace}",
            self.coordination.create_namespaced_lease,
            namespace,
            dict(lease),
        )

    def update_lease(
        self, namespace: str, name: str, lease: Mapping[str, Any], resource_version: str
    ) -> Mapping[str, Any]:
        """Write the Lease only if it is still at ``resource_version`` (409 otherwise)."""
        body = dict(lease)
        meta = dict(body.get("metadata") or {})
        if resource_version:
            meta["resourceVersion"] = resource_version
        body["metadata"] = meta
        return self._call(  # type: ignore[no-any-return]
            f"update lease {namespace}/{name}",
            self.coordination.patch_namespaced_lease,
            name,
            namespace,
            body,
            _content_type=MERGE_PATCH,
        )
