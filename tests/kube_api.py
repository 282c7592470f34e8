"""A real Kubernetes API server for the tests: kube-apiserver on kine/SQLite, set up as a
production cluster is where it matters (TLS, client certificates, RBAC, service-account tokens).

The binaries come from `tools/build-kube.sh` (built once per machine from the Go module proxy,
cached outside the work tree). Everything runs inside one network namespace the tests made,
``api``: kine listens on that namespace's 127.0.0.1 only, kube-apiserver on its 127.0.0.1 and on
the address of a bridge in it (``API_ADDRESS``), which node namespaces reach through a veth
each (`KubeApi.attach`). Nothing listens on, or connects from, the machine's own namespace: the
test process talks to the server through sockets created inside ``api`` (`netns_socket`).

Identities: ``admin`` is a client certificate in ``system:masters``; service accounts get a
token from the TokenRequest API, and a kubeconfig each (`KubeApi.service_account`), so the agent
and the controller run with exactly the permissions their RBAC objects grant.

Requests are counted from the audit log (`KubeApi.requests`): how many LISTs and WATCHes of
Nodes a process made is what shows whether it resumed a watch or relisted.
"""

from __future__ import annotations

import datetime
import http.client
import ipaddress
import json
import os
import shutil
import signal
import ssl
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent_env import in_netns, netns_socket
from conftest import ip

REPO = Path(__file__).resolve().parent.parent
BUILD = REPO / "tools" / "build-kube.sh"
API_PORT = 6443
KINE_PORT = 2379
#: The API server's address on the bridge of the ``api`` namespace (node namespaces' route).
API_ADDRESS = "10.99.0.1"
API_NET = "10.99.0.0/16"


def binaries() -> Path | None:
    """The directory holding kube-apiserver, kubectl and kine (built now if missing), or None
    when there is no Go toolchain (the caller skips, or fails under CI)."""
    proc = subprocess.run([str(BUILD)], capture_output=True, text=True, check=False)
    if proc.returncode == 3:
        return None
    if proc.returncode != 0:
        raise RuntimeError(f"tools/build-kube.sh failed:\n{proc.stderr[-4000:]}")
    return Path(proc.stdout.strip().splitlines()[-1])


# --- certificates --------------------------------------------------------------------------------
def _pem_key(key: Any) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )


def _cert(
    subject_cn: str,
    key: Any,
    issuer: tuple[Any, Any] | None,
    *,
    org: str | None = None,
    ca: bool = False,
    sans: Sequence[str] = (),
    server: bool = False,
) -> Any:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, subject_cn)]
    if org:
        attrs.insert(0, x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    name = x509.Name(attrs)
    now = datetime.datetime.now(datetime.UTC)
    issuer_name, issuer_key = (name, key) if issuer is None else (issuer[0].subject, issuer[1])
    b = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        b = b.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if sans:
        alt: list[Any] = []
        for s in sans:
            try:
                alt.append(x509.IPAddress(ipaddress.ip_address(s)))
            except ValueError:
                alt.append(x509.DNSName(s))
        b = b.add_extension(x509.SubjectAlternativeName(alt), critical=False)
    return b.sign(issuer_key, hashes.SHA256())


def make_pki(d: Path) -> None:
    """CA, the server's certificate, the admin's client certificate, the service-account keys."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    d.mkdir(parents=True, exist_ok=True)

    def write(name: str, data: bytes) -> None:
        (d / name).write_bytes(data)

    pem = serialization.Encoding.PEM
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _cert("nosdn-test-ca", ca_key, None, ca=True)
    write("ca.crt", ca.public_bytes(pem))
    for name, cn, org, sans, server in (
        ("server", "kube-apiserver", None, ["127.0.0.1", API_ADDRESS, "kubernetes"], True),
        ("admin", "admin", "system:masters", [], False),
    ):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _cert(cn, key, (ca, ca_key), org=org, sans=sans, server=server)
        write(f"{name}.crt", cert.public_bytes(pem))
        write(f"{name}.key", _pem_key(key))
    sa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    write("sa.key", _pem_key(sa))
    write(
        "sa.pub",
        sa.public_key().public_bytes(pem, serialization.PublicFormat.SubjectPublicKeyInfo),
    )


AUDIT_POLICY = """\
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  - level: Metadata
    resources:
      - {group: "", resources: [nodes, nodes/status, events]}
      - {group: coordination.k8s.io, resources: [leases]}
  - level: None
"""


@dataclass
class KubeApi:
    """kine + kube-apiserver inside network namespace ``netns`` (see the module docstring)."""

    netns: str
    bins: Path
    workdir: Path
    #: kube-apiserver --min-request-timeout: watches end after a random 1-2x of this (seconds)
    min_request_timeout: int = 1800
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    _attached: int = 0

    @property
    def url(self) -> str:
        return f"https://{API_ADDRESS}:{API_PORT}"

    @property
    def pki(self) -> Path:
        return self.workdir / "pki"

    # --- lifecycle ---------------------------------------------------------------------------
    def start(self) -> KubeApi:
        ip(self.netns, "link", "add", "kapi", "type", "bridge")
        ip(self.netns, "addr", "add", f"{API_ADDRESS}/16", "dev", "kapi")
        ip(self.netns, "link", "set", "kapi", "up")
        if not (self.pki / "ca.crt").exists():
            make_pki(self.pki)
        (self.workdir / "audit-policy.yaml").write_text(AUDIT_POLICY)
        self._start_kine()
        self._start_apiserver()
        return self

    def _spawn(self, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        with open(self.workdir / f"{name}.log", "ab") as out:
            p = subprocess.Popen(
                ["ip", "netns", "exec", self.netns, *argv],
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.procs.append(p)
        return p

    def _start_kine(self) -> None:
        db = self.workdir / "kine.db"
        self.kine = self._spawn(
            "kine",
            [
                str(self.bins / "kine"),
                f"--endpoint=sqlite://{db}?_journal=WAL&cache=shared&_busy_timeout=30000",
                f"--listen-address=127.0.0.1:{KINE_PORT}",
                "--metrics-bind-address=0",
            ],
        )

    def _start_apiserver(self) -> None:
        p = self.pki
        self.apiserver = self._spawn(
            "kube-apiserver",
            [
                str(self.bins / "kube-apiserver"),
                f"--etcd-servers=http://127.0.0.1:{KINE_PORT}",
                "--storage-backend=etcd3",
                "--bind-address=0.0.0.0",  # inside the api namespace: its lo and bridge only
                f"--advertise-address={API_ADDRESS}",
                f"--secure-port={API_PORT}",
                f"--tls-cert-file={p / 'server.crt'}",
                f"--tls-private-key-file={p / 'server.key'}",
                f"--client-ca-file={p / 'ca.crt'}",
                "--authorization-mode=RBAC",
                "--anonymous-auth=false",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={p / 'sa.pub'}",
                f"--service-account-signing-key-file={p / 'sa.key'}",
                "--service-cluster-ip-range=10.96.0.0/16",
                f"--min-request-timeout={self.min_request_timeout}",
                f"--audit-log-path={self.workdir / 'audit.log'}",
                f"--audit-policy-file={self.workdir / 'audit-policy.yaml'}",
                "--audit-log-mode=blocking",
                "--profiling=false",
                "--enable-priority-and-fairness=false",
                "--endpoint-reconciler-type=none",
                f"--cert-dir={self.workdir / 'certs'}",
            ],
        )
        self.wait_ready()

    def wait_ready(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            if self.apiserver.poll() is not None:
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
        raise RuntimeError(f"kube-apiserver not ready ({last}):\n{log}")

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

    # --- node namespaces --------------------------------------------------------------------
    def attach(self, netns: str) -> str:
        """Cable ``netns`` to the api namespace's bridge; returns the address it got there.
        Its only route there is the bridge's /16 (connected): no default route is added."""
        self._attached += 1
        n = self._attached
        host, peer = f"kapi{n}", "kapi0"
        ip(self.netns, "link", "add", host, "type", "veth", "peer", "name", peer, "netns", netns)
        ip(self.netns, "link", "set", host, "master", "kapi", "up")
        addr = f"10.99.{n // 250 + 1}.{n % 250 + 1}"
        ip(netns, "link", "set", peer, "addrgenmode", "none")
        ip(netns, "addr", "add", f"{addr}/16", "dev", peer)
        ip(netns, "link", "set", peer, "up")
        return addr

    # --- talking to it -----------------------------------------------------------------------
    def _context(self, user: str = "admin") -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.pki / "ca.crt"))
        ctx.load_cert_chain(str(self.pki / f"{user}.crt"), str(self.pki / f"{user}.key"))
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
        ctx = (
            ssl.create_default_context(cafile=str(self.pki / "ca.crt"))
            if token
            else self._context()
        )
        conn = _TlsConn(self.netns, "127.0.0.1", API_PORT, timeout, ctx)
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

    def call(
        self, method: str, path: str, body: Any = None, ctype: str = "application/json"
    ) -> Any:
        status, data = self.request(method, path, body, content_type=ctype)
        if status >= 300:
            raise RuntimeError(f"{method} {path}: HTTP {status} {data[:400]!r}")
        return json.loads(data) if data else None

    # the Emulator's surface, so tests written for kmock run against the real server too
    def create_node(self, obj: Mapping[str, Any]) -> None:
        node = {k: v for k, v in obj.items() if k != "status"}
        created = self.call("POST", "/api/v1/nodes", node)
        if obj.get("status"):
            # status is a subresource: set as the kubelet does, after the object exists
            self.call(
                "PATCH",
                f"/api/v1/nodes/{created['metadata']['name']}/status",
                {"status": obj["status"]},
                "application/merge-patch+json",
            )

    def patch_node(self, name: str, patch: Mapping[str, Any]) -> None:
        spec = {k: v for k, v in patch.items() if k != "status"}
        if spec:
            self.call("PATCH", f"/api/v1/nodes/{name}", spec, "application/merge-patch+json")
        if "status" in patch:
            self.call(
                "PATCH",
                f"/api/v1/nodes/{name}/status",
                {"status": patch["status"]},
                "application/merge-patch+json",
            )

    def delete_node(self, name: str) -> None:
        self.call("DELETE", f"/api/v1/nodes/{name}")

    def node(self, name: str) -> Any:
        return self.call("GET", f"/api/v1/nodes/{name}")

    def nodes(self) -> list[Any]:
        return list(self.call("GET", "/api/v1/nodes")["items"])

    def delete_all_nodes(self) -> None:
        self.call("DELETE", "/api/v1/nodes")

    def events(self, namespace: str = "default") -> list[Any]:
        return list(self.call("GET", f"/api/v1/namespaces/{namespace}/events")["items"])

    def kubectl(self, *args: str, stdin: str | None = None, kubeconfig: Path | None = None) -> str:
        """kubectl inside the api namespace (as admin unless ``kubeconfig``); raises on failure."""
        cfg = kubeconfig or self.kubeconfig("admin")
        argv = ["ip", "netns", "exec", self.netns, str(self.bins / "kubectl"), "--kubeconfig"]
        proc = subprocess.run(
            [*argv, str(cfg), *args], input=stdin, capture_output=True, text=True, check=False
        )
        if proc.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args)}: {proc.stderr.strip()}")
        return proc.stdout

    # --- identities --------------------------------------------------------------------------
    def kubeconfig(self, user: str = "admin", *, token: str | None = None) -> Path:
        """A kubeconfig for the admin (client certificate) or a token; server at `url`."""
        path = self.workdir / f"{user}.kubeconfig"
        cred: dict[str, str]
        if token is not None:
            cred = {"token": token}
        else:
            cred = {
                "client-certificate": str(self.pki / f"{user}.crt"),
                "client-key": str(self.pki / f"{user}.key"),
            }
        cfg = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "test",
                    "cluster": {
                        "server": self.url,
                        "certificate-authority": str(self.pki / "ca.crt"),
                    },
                }
            ],
            "users": [{"name": user, "user": cred}],
            "contexts": [{"name": user, "context": {"cluster": "test", "user": user}}],
            "current-context": user,
        }
        path.write_text(json.dumps(cfg))
        return path

    def service_account(self, namespace: str, name: str) -> tuple[Path, str]:
        """A kubeconfig (and its token) for service account ``namespace/name``, which must
        exist (the manifests under test create it)."""
        got = self.call(
            "POST",
            f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token",
            {
                "apiVersion": "authentication.k8s.io/v1",
                "kind": "TokenRequest",
                "spec": {"expirationSeconds": 7200},
            },
        )
        token = str(got["status"]["token"])
        return self.kubeconfig(f"sa-{namespace}-{name}", token=token), token

    # --- what it saw -------------------------------------------------------------------------
    def audit(self) -> Iterator[dict[str, Any]]:
        path = self.workdir / "audit.log"
        if not path.exists():
            return
        with open(path) as f:
            for line in f:
                if line.strip():
                    yield json.loads(line)

    def requests(self, verb: str, resource: str = "nodes", *, user: str | None = None) -> int:
        """How many requests of ``verb`` (list, watch, get, patch, ...) on ``resource`` were
        answered (stage ResponseComplete or ResponseStarted for watches), by ``user`` if given."""
        n = 0
        for e in self.audit():
            ref = e.get("objectRef") or {}
            if e.get("verb") != verb or ref.get("resource") != resource or ref.get("subresource"):
                continue
            if user is not None and (e.get("user") or {}).get("username") != user:
                continue
            if e.get("stage") == ("ResponseStarted" if verb == "watch" else "ResponseComplete"):
                n += 1
        return n


class _TlsConn(http.client.HTTPSConnection):
    def __init__(
        self, netns: str, host: str, port: int, timeout: float, ctx: ssl.SSLContext
    ) -> None:
        super().__init__(host, port, timeout=timeout, context=ctx)
        self.netns = netns
        self._ctx = ctx

    def connect(self) -> None:
        s = netns_socket(self.netns)
        s.settimeout(self.timeout)
        s.connect((self.host, self.port))
        self.sock = self._ctx.wrap_socket(s, server_hostname=self.host)


def have_tools() -> bool:
    return shutil.which("go") is not None


__all__ = ["API_ADDRESS", "API_NET", "KubeApi", "binaries", "have_tools", "in_netns"]
