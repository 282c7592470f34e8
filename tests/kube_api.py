"""A real Kubernetes API server for the tests: kube-apiserver on kine/SQLite, set up as a
production cluster is where it matters (TLS, client certificates, RBAC, service-account tokens).

The binaries come from `tools/build-kube.sh` (built once per machine from the Go module proxy,
cached outside the work tree). Everything runs inside one network namespace the tests made,
``api``: kine listens on that namespace's 127.0.0.1 only, kube-apiserver on its 127.0.0.1 and on
the address of a bridge in it (``API_ADDRESS``), which node namespaces reach through a veth
each (`KubeApi.attach`). Nothing listens on, or connects from, the machine's own namespace: the
test process talks to the server through sockets created inside ``api``.

Identities: ``admin`` is a client certificate in ``system:masters``; service accounts get a
token from the TokenRequest API, and a kubeconfig each (`KubeApi.service_account`), so the agent
and the controller run with exactly the permissions their RBAC objects grant.

Requests are counted from the audit log (`KubeApi.requests`): how many LISTs and WATCHes of
Nodes a process made is what shows whether it resumed a watch or relisted.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent_env import in_netns
from conftest import ip
from nosdn.lab.kubeapi import API_PORT, KINE_PORT, KubeApiServer
from nosdn.lab.pki import make_pki as _make_pki

REPO = Path(__file__).resolve().parent.parent
BUILD = REPO / "tools" / "build-kube.sh"
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


def make_pki(d: Path) -> None:
    """CA, the server's certificate, the admin's client certificate, the service-account keys."""
    _make_pki(d, ["127.0.0.1", API_ADDRESS, "kubernetes"], days=2)


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
class KubeApi(KubeApiServer):
    """kine + kube-apiserver inside network namespace ``netns`` (see the module docstring),
    on a bridge ``kapi`` (`API_ADDRESS`) other namespaces are cabled to (`attach`), with an
    audit log to count requests by (`requests`). The server itself is
    `nosdn.lab.kubeapi.KubeApiServer`, the one ``nosdn lab up --agents`` runs."""

    address: str = API_ADDRESS
    audit_policy: str | None = AUDIT_POLICY
    cluster_name: str = "test"
    _attached: int = 0

    # --- lifecycle ---------------------------------------------------------------------------
    def start(self) -> KubeApi:
        ip(self.netns, "link", "add", "kapi", "type", "bridge")
        ip(self.netns, "addr", "add", f"{API_ADDRESS}/16", "dev", "kapi")
        ip(self.netns, "link", "set", "kapi", "up")
        super().start()
        return self

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

    # --- talking to it (request, call: `KubeApiServer`) -----------------------------------
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

    # --- identities (kubeconfig, service_account: `KubeApiServer`) ------------------------
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


def have_tools() -> bool:
    return shutil.which("go") is not None


__all__ = [
    "API_ADDRESS",
    "API_NET",
    "API_PORT",
    "KINE_PORT",
    "KubeApi",
    "binaries",
    "have_tools",
    "in_netns",
]
