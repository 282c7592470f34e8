"""A real Kubernetes API server in a network namespace: kine on SQLite plus kube-apiserver,
set up as a production cluster is where it matters (TLS, client certificates, RBAC,
service-account tokens), for the lab (``nosdn lab up --agents``) and for the tests.

The binaries are built once per machine from the Go module proxy by ``tools/build-kube.sh``
(``make kube``) into a cache outside the work tree; `find_binaries` only looks there, it never
builds (a lab should not start a ten-minute Go build). kine listens on the namespace's
127.0.0.1 only; kube-apiserver on every address of the namespace and advertises ``address``,
which is what the other namespaces use. Nothing listens in, or connects from, the machine's own
namespace: this process talks to the server through sockets made inside the namespace
(`nosdn.lab.netns.socket_in`).

Identities: ``admin`` is a client certificate in ``system:masters``; a service account gets a
token from the TokenRequest API and a kubeconfig of its own (`KubeApiServer.service_account`),
so whatever runs with it has exactly the permissions its RBAC objects grant.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import ssl
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nosdn.lab.netns import LabError, socket_in
from nosdn.lab.pki import Pki, make_pki

#: What tools/build-kube.sh builds by default (the same environment variables move both).
DEFAULT_KUBE_VERSION = "v1.37.2"
DEFAULT_KINE_VERSION = "v0.17.5"
BINARIES = ("kube-apiserver", "kubectl", "kine")
API_PORT = 6443
KINE_PORT = 2379
BUILD_HINT = "build them once with `make kube` (or tools/build-kube.sh; needs Go 1.26+)"


def cache_root() -> Path:
    """``$NOSDN_CACHE``, else ``$XDG_CACHE_HOME/nosdn``, else ``~/.cache/nosdn`` (as the
    build script decides it)."""
    if os.environ.get("NOSDN_CACHE"):
        return Path(os.environ["NOSDN_CACHE"])
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "nosdn"


def binaries_dir() -> Path:
    kube = os.environ.get("KUBE_VERSION") or DEFAULT_KUBE_VERSION
    kine = os.environ.get("KINE_VERSION") or DEFAULT_KINE_VERSION
    return cache_root() / "kube" / f"{kube}-kine-{kine}"


def find_binaries() -> Path:
    """The directory holding kube-apiserver, kubectl and kine, or `LabError` saying how to
    build them."""
    d = binaries_dir()
    missing = [b for b in BINARIES if not os.access(d / b, os.X_OK)]
    if missing:
        raise LabError(f"no {', '.join(missing)} in {d} — {BUILD_HINT}, or use --api emulator")
    return d


class ApiError(LabError):
    """The API server answered with an error status (the message holds method, path, status)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class _Conn(http.client.HTTPSConnection):
    """HTTP(S) over a socket made inside ``netns``."""

    def __init__(
        self, netns: str, host: str, port: int, timeout: float, ctx: ssl.SSLContext | None
    ) -> None:
        super().__init__(host, port, timeout=timeout, context=ctx)
        self.netns = netns
        self._tls = ctx

    def connect(self) -> None:
        s = socket_in(self.netns)
        # no Nagle: a request's last segment must not wait for the server's delayed ACK (every
        # write to kube-apiserver took 48 ms instead of 3 ms without this)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.settimeout(self.timeout)
        s.connect((self.host, self.port))
        self.sock = self._tls.wrap_socket(s, server_hostname=self.host) if self._tls else s


def connect(
    netns: str, server: tuple[str, int], *, ctx: ssl.SSLContext | None, timeout: float = 10
) -> http.client.HTTPConnection:
    """A connection to ``server`` (host, port) from inside ``netns``, TLS when ``ctx``; it
    keeps its socket across requests (read each response in full)."""
    return _Conn(netns, *server, timeout, ctx)


def request(
    netns: str,
    server: tuple[str, int],
    method: str,
    path: str,
    body: Any = None,
    *,
    ctx: ssl.SSLContext | None = None,
    token: str | None = None,
    content_type: str = "application/json",
    timeout: float = 10,
) -> tuple[int, bytes]:
    """One request to ``server`` (host, port) from inside ``netns`` (TLS when ``ctx``);
    (status, body)."""
    conn = connect(netns, server, ctx=ctx, timeout=timeout)
    try:
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": content_type} if data is not None else {}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        conn.request(method, path, body=data, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def checked(method: str, path: str, status: int, data: bytes) -> Any:
    """The decoded body of a successful answer, else `ApiError`."""
    if status >= 300:
        raise ApiError(f"{method} {path}: HTTP {status} {data[:400]!r}", status)
    return json.loads(data) if data else None


def kubeconfig(
    path: Path, server: str, user: str, *, cluster: str, ca: Path | None, cred: dict[str, str]
) -> Path:
    """Write a one-context kubeconfig (``cred``: client-certificate/-key, or token)."""
    entry: dict[str, str] = {"server": server}
    if ca is not None:
        entry["certificate-authority"] = str(ca)
    cfg = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": cluster, "cluster": entry}],
        "users": [{"name": user, "user": cred}],
        "contexts": [{"name": user, "context": {"cluster": cluster, "user": user}}],
        "current-context": user,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(cfg, indent=2) + "\n")
    path.chmod(0o600)
    return path


@dataclass
class KubeApiServer:
    """kine + kube-apiserver inside network namespace ``netns`` (see the module docstring)."""

    netns: str
    bins: Path
    workdir: Path
    #: the address other namespaces reach the server at (advertised, in the certificate)
    address: str
    port: int = API_PORT
    #: kube-apiserver --min-request-timeout: watches end after a random 1-2x of this (seconds)
    min_request_timeout: int = 1800
    #: an audit policy (YAML) to log requests by, to ``workdir/audit.log``; None: no audit log
    audit_policy: str | None = None
    cluster_name: str = "nosdn"
    #: more kube-apiserver flags, after nosdn's (a later flag of the same name wins)
    extra_args: tuple[str, ...] = ()
    #: more kine flags, after nosdn's
    kine_args: tuple[str, ...] = ()
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    kine: subprocess.Popen[bytes] = field(init=False)
    apiserver: subprocess.Popen[bytes] = field(init=False)

    @property
    def url(self) -> str:
        return f"https://{self.address}:{self.port}"

    @property
    def pki(self) -> Path:
        return self.workdir / "pki"

    @property
    def certs(self) -> Pki:
        return Pki(self.pki)

    # --- lifecycle ---------------------------------------------------------------------------
    def start(self) -> KubeApiServer:
        self.workdir.mkdir(parents=True, exist_ok=True)
        if not self.certs.exists():
            make_pki(self.pki, ["127.0.0.1", self.address, "kubernetes", "localhost"])
        if self.audit_policy is not None:
            (self.workdir / "audit-policy.yaml").write_text(self.audit_policy)
        self._start_kine()
        self._start_apiserver()
        return self

    def _spawn(self, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        with open(self.workdir / f"{name}.log", "ab") as out:
            p = subprocess.Popen(
                ["ip", "netns", "exec", self.netns, *argv],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.procs.append(p)
        return p

    def _start_kine(self) -> None:
        db = self.workdir / "kine.db"
        # kine's DefaultParams for SQLite, spelled out (WAL, a busy timeout, immediate locks)
        params = (
            "_journal_mode=WAL&_busy_timeout=30000&_synchronous=NORMAL&_txlock=immediate"
            "&_stmt_cache_size=20&cache=shared"
        )
        self.kine = self._spawn(
            "kine",
            [
                str(self.bins / "kine"),
                f"--endpoint=sqlite://{db}?{params}",
                f"--listen-address=127.0.0.1:{KINE_PORT}",
                "--metrics-bind-address=0",
                *self.kine_args,
            ],
        )

    def _start_apiserver(self) -> None:
        p = self.certs
        audit = []
        if self.audit_policy is not None:
            audit = [
                f"--audit-log-path={self.workdir / 'audit.log'}",
                f"--audit-policy-file={self.workdir / 'audit-policy.yaml'}",
                "--audit-log-mode=blocking",
            ]
        self.apiserver = self._spawn(
            "kube-apiserver",
            [
                str(self.bins / "kube-apiserver"),
                f"--etcd-servers=http://127.0.0.1:{KINE_PORT}",
                "--storage-backend=etcd3",
                "--bind-address=0.0.0.0",  # inside its own namespace: that namespace's only
                f"--advertise-address={self.address}",
                f"--secure-port={self.port}",
                f"--tls-cert-file={p.cert('server')}",
                f"--tls-private-key-file={p.key('server')}",
                f"--client-ca-file={p.ca}",
                "--authorization-mode=RBAC",
                "--anonymous-auth=false",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={p.sa_pub}",
                f"--service-account-signing-key-file={p.sa_key}",
                "--service-cluster-ip-range=10.96.0.0/16",
                f"--min-request-timeout={self.min_request_timeout}",
                *audit,
                "--profiling=false",
                "--enable-priority-and-fairness=false",
                "--endpoint-reconciler-type=none",
                f"--cert-dir={self.workdir / 'certs'}",
                *self.extra_args,
            ],
        )
        self.wait_ready()

    def wait_ready(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            if self.apiserver.poll() is not None:
                last = f"kube-apiserver exited with {self.apiserver.returncode}"
                break
            try:
                status, body = self.request("GET", "/readyz", timeout=3)
                if status == 200:
                    return
                last = f"HTTP {status} {body[:200]!r}"
            except OSError as e:
                last = str(e)
            time.sleep(0.25)
        log = (self.workdir / "kube-apiserver.log").read_text(errors="replace")[-4000:]
        raise LabError(f"kube-apiserver not ready ({last}):\n{log}")

    def restart_apiserver(self) -> None:
        """Stop kube-apiserver (kine and its data stay) and start it again."""
        self._stop(self.apiserver)
        self._start_apiserver()

    def stop_apiserver(self) -> None:
        self._stop(self.apiserver)

    def _stop(self, p: subprocess.Popen[bytes]) -> None:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGTERM)
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
        if p in self.procs:
            self.procs.remove(p)

    def close(self) -> None:
        for p in reversed(list(self.procs)):
            self._stop(p)

    # --- talking to it -----------------------------------------------------------------------
    def ssl_context(self, user: str | None = "admin") -> ssl.SSLContext:
        """Trusting the server's CA, presenting ``user``'s client certificate (None: none)."""
        ctx = ssl.create_default_context(cafile=str(self.certs.ca))
        if user is not None:
            ctx.load_cert_chain(str(self.certs.cert(user)), str(self.certs.key(user)))
        return ctx

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        content_type: str = "application/json",
        token: str | None = None,
        timeout: float = 10,
    ) -> tuple[int, bytes]:
        """As the admin, or with ``token``; over the namespace's loopback."""
        ctx = self.ssl_context(None if token else "admin")
        return request(
            self.netns,
            ("127.0.0.1", self.port),
            method,
            path,
            body,
            ctx=ctx,
            token=token,
            content_type=content_type,
            timeout=timeout,
        )

    def call(
        self, method: str, path: str, body: Any = None, ctype: str = "application/json"
    ) -> Any:
        status, data = self.request(method, path, body, content_type=ctype)
        return checked(method, path, status, data)

    # --- identities --------------------------------------------------------------------------
    def kubeconfig(
        self, user: str = "admin", *, token: str | None = None, path: Path | None = None
    ) -> Path:
        """A kubeconfig for the admin (client certificate) or a token; server at `url`."""
        cred: dict[str, str]
        if token is not None:
            cred = {"token": token}
        else:
            cred = {
                "client-certificate": str(self.certs.cert(user)),
                "client-key": str(self.certs.key(user)),
            }
        return kubeconfig(
            path or self.workdir / f"{user}.kubeconfig",
            self.url,
            user,
            cluster=self.cluster_name,
            ca=self.certs.ca,
            cred=cred,
        )

    def service_account(
        self, namespace: str, name: str, *, expiration: int = 7200, path: Path | None = None
    ) -> tuple[Path, str]:
        """A kubeconfig (and its token) for service account ``namespace/name``, which must
        exist."""
        got = self.call(
            "POST",
            f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token",
            {
                "apiVersion": "authentication.k8s.io/v1",
                "kind": "TokenRequest",
                "spec": {"expirationSeconds": expiration},
            },
        )
        token = str(got["status"]["token"])
        return self.kubeconfig(f"sa-{namespace}-{name}", token=token, path=path), token
