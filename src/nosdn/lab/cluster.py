"""The lab as a live cluster (``nosdn lab up --agents``): an API server, a Node object per lab
node, and ``nosdn agent`` in every node namespace instead of ``nosdn apply``.

The API server runs in ``<lab>.api``, a host on the lab's switch at 10.10.0.250, so the agents
reach it over the node network as kubelets reach a real one. ``real`` is kube-apiserver on kine
(`nosdn.lab.kubeapi`: TLS, client certificates, RBAC); the agents run with the service account
and the RBAC objects `nosdn manifests` prints (its DaemonSet is left out: no kubelet would run
it, the lab's agents stand in for it). ``emulator`` is kmock (`nosdn.lab.emulator`), plain HTTP
and no authorization. The lab itself acts as the admin (and as each node's kubelet): it creates
the Node objects, changes their addresses and deletes them, through the API, so what a person
sees the agents do is what they would do in a cluster.

The external host is not a node: it runs ``nosdn apply --external`` against the API after
every change (with the agents' read-only credentials).

Every process started here (the API server, kine, the agents) lives in one of the lab's
namespaces, detached from the command that started it, with its output in the lab's directory;
``lab down`` finds and stops them by namespace.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shlex
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nosdn.agent.manifests import manifests
from nosdn.lab import kubeapi, netns
from nosdn.lab.emulator import DEFAULT_PORT as EMULATOR_PORT
from nosdn.lab.netns import LabError
from nosdn.lab.pki import Pki
from nosdn.lab.state import save
from nosdn.lab.topology import NODE_ASN, ROUTER_ASN, LabNode, LabSpec, Topology
from nosdn.model import DEFAULT_PROTOCOL

if TYPE_CHECKING:
    from nosdn.lab.lifecycle import Lab

Log = Callable[[str], None]
#: On every address, as in the DaemonSet: a Prometheus on the lab's switch can scrape them.
AGENT_METRICS = "0.0.0.0:9712"
#: The lab's agents probe faster than the default 10 s, so a break shows within seconds.
AGENT_PROBES = ("--probe-interval", "2", "--probe-timeout", "0.5")
SA_NAMESPACE = "kube-system"
SA_NAME = "nosdn-agent"
#: The agents' token lives as long as a lab reasonably stays up (the API server signs it).
TOKEN_SECONDS = 30 * 24 * 3600
MERGE = "application/merge-patch+json"
_RBAC = "/apis/rbac.authorization.k8s.io/v1"


def preflight(spec: LabSpec) -> Path | None:
    """Refuse, before anything is made, a live cluster this machine cannot run; the real API
    server's binaries directory (None for the emulator)."""
    if spec.api == "emulator":
        if importlib.util.find_spec("kmock") is None:
            raise LabError("--api emulator needs kmock — pip install kmock, or use --api real")
        return None
    return kubeapi.find_binaries()


# --- talking to the lab's API server ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Api:
    """The lab's API server as its admin sees it (from inside ``<lab>.api``)."""

    kind: str  # "real" | "emulator"
    netns: str
    port: int
    ctx: ssl.SSLContext | None

    def call(
        self, method: str, path: str, body: Any = None, ctype: str = "application/json"
    ) -> Any:
        try:
            status, data = kubeapi.request(
                self.netns, ("127.0.0.1", self.port), method, path, body, ctx=self.ctx,
                content_type=ctype,
            )  # fmt: skip
        except OSError as e:
            raise LabError(
                f"the lab's API server does not answer ({e}) — see its log in the lab's api/"
            ) from None
        return kubeapi.checked(method, path, status, data)

    def create_node(self, obj: Mapping[str, Any]) -> None:
        """Register a Node with its status, as a kubelet does (the real server keeps the
        status of a create; later changes go through the status subresource)."""
        self.call("POST", "/api/v1/nodes", obj)

    def patch_status(self, name: str, status: Mapping[str, Any]) -> None:
        path = f"/api/v1/nodes/{name}" + ("" if self.kind == "emulator" else "/status")
        self.call("PATCH", path, {"status": status}, MERGE)

    def delete_node(self, name: str) -> None:
        self.call("DELETE", f"/api/v1/nodes/{name}")

    def node_names(self) -> list[str]:
        return sorted(n["metadata"]["name"] for n in self.call("GET", "/api/v1/nodes")["items"])


def api_url(topo: Topology) -> str:
    """The API server's URL as the lab's namespaces see it."""
    if topo.spec.api == "emulator":
        return f"http://{topo.api_ip}:{EMULATOR_PORT}"
    return f"https://{topo.api_ip}:{kubeapi.API_PORT}"


def open_api(lab: Lab) -> Api:
    spec = lab.topo.spec
    if spec.api is None:
        raise LabError(f"lab {lab.name} runs no API server (it was made without --agents)")
    if spec.api == "emulator":
        return Api("emulator", lab.topo.names.api, EMULATOR_PORT, None)
    pki = Pki(lab.paths.api_dir / "pki")
    ctx = ssl.create_default_context(cafile=str(pki.ca))
    ctx.load_cert_chain(str(pki.cert("admin")), str(pki.key("admin")))
    return Api("real", lab.topo.names.api, kubeapi.API_PORT, ctx)


# --- Node objects ----------------------------------------------------------------------------


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def addresses(node: LabNode) -> list[dict[str, str]]:
    """``status.addresses`` as the node's kubelet reports it."""
    out = [{"type": "InternalIP", "address": str(ip)} for ip in node.ips]
    return [*out, {"type": "Hostname", "address": node.name}]


def node_object(node: LabNode) -> dict[str, Any]:
    """The Node object of a lab node, as kubelet and kube-controller-manager leave it."""
    now = _now()
    cidrs = [str(c) for c in node.pod_cidrs]
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": node.name, "labels": {"kubernetes.io/hostname": node.name}},
        "spec": {"podCIDR": cidrs[0], "podCIDRs": cidrs},
        "status": {
            "addresses": addresses(node),
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True",
                    "reason": "KubeletReady",
                    "message": "kubelet is posting ready status (nosdn lab)",
                    "lastHeartbeatTime": now,
                    "lastTransitionTime": now,
                }
            ],
        },
    }


# --- starting the API server -----------------------------------------------------------------


def _rbac_path(obj: Mapping[str, Any]) -> str | None:
    kind = obj["kind"]
    ns = obj["metadata"].get("namespace", "")
    return {
        "ServiceAccount": f"/api/v1/namespaces/{ns}/serviceaccounts",
        "ClusterRole": f"{_RBAC}/clusterroles",
        "ClusterRoleBinding": f"{_RBAC}/clusterrolebindings",
        "Role": f"{_RBAC}/namespaces/{ns}/roles",
        "RoleBinding": f"{_RBAC}/namespaces/{ns}/rolebindings",
    }.get(kind)


def _start_real(lab: Lab, bins: Path, log: Log) -> None:
    topo, paths = lab.topo, lab.paths
    server = kubeapi.KubeApiServer(
        topo.names.api, bins, paths.api_dir, str(topo.api_ip), cluster_name=f"lab-{lab.name}"
    )
    t = time.monotonic()
    server.start()
    log(f"kube-apiserver + kine in {topo.names.api}: {server.url} ({time.monotonic() - t:.1f} s)")
    server.kubeconfig("admin", path=paths.kubeconfig)
    # the agents' identity and permissions: exactly what `nosdn manifests` gives them
    for obj in manifests(cluster_cidrs=topo.cluster().cluster_cidrs, namespace=SA_NAMESPACE):
        path = _rbac_path(obj)
        if path is not None:
            server.call("POST", path, obj)
    server.service_account(
        SA_NAMESPACE, SA_NAME, expiration=TOKEN_SECONDS, path=paths.agent_kubeconfig
    )
    log(f"RBAC of `nosdn manifests` applied; the agents run as {SA_NAMESPACE}/{SA_NAME}")


def _start_emulator(lab: Lab, log: Log) -> None:
    topo, paths = lab.topo, lab.paths
    paths.api_dir.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "nosdn.lab.emulator", "--host", "0.0.0.0"]
    argv += ["--port", str(EMULATOR_PORT)]
    t = time.monotonic()
    _spawn(topo.names.api, argv, paths.api_dir / "emulator.log")
    api = open_api(lab)
    deadline = time.monotonic() + 30
    while True:
        try:
            api.call("GET", "/api/v1/nodes")
            break
        except LabError:
            if time.monotonic() > deadline:
                tail = (paths.api_dir / "emulator.log").read_text(errors="replace")[-2000:]
                raise LabError(f"the emulator did not start:\n{tail}") from None
            time.sleep(0.1)
    url = api_url(topo)
    kubeapi.kubeconfig(paths.kubeconfig, url, "admin", cluster=f"lab-{lab.name}", ca=None, cred={})
    log(f"kmock emulator in {topo.names.api}: {url} ({time.monotonic() - t:.1f} s)")


def start_api(lab: Lab, bins: Path | None, *, log: Log) -> None:
    """Start the lab's API server and create a Node object for every lab node."""
    if bins is not None:
        _start_real(lab, bins, log)
    else:
        _start_emulator(lab, log)
    api = open_api(lab)
    for node in lab.topo.nodes:
        api.create_node(node_object(node))
    log(f"created {len(lab.topo.nodes)} Node object(s); kubeconfig {lab.paths.kubeconfig}")


# --- agents ----------------------------------------------------------------------------------


def _spawn(ns: str, argv: Sequence[str], log_file: Path) -> int:
    """Start ``argv`` in ``ns``, detached (its own session, output to ``log_file``)."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "ab") as out:
        p = subprocess.Popen(
            netns.exec_argv(ns, argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return p.pid


def _api_args(lab: Lab) -> list[str]:
    """How a lab process reaches the API: the agents' kubeconfig, or the emulator's URL."""
    if lab.topo.spec.api == "emulator":
        return ["--kube-server", api_url(lab.topo)]
    return ["--kubeconfig", str(lab.paths.agent_kubeconfig)]


def _cidr_args(topo: Topology) -> list[str]:
    return [a for c in topo.cluster().cluster_cidrs for a in ("--cluster-cidr", str(c))]


def bgp_dir(lab: Lab, node: str) -> Path:
    """Where ``node``'s agent keeps its BIRD (``--bgp``): config, control socket, pid file."""
    return lab.paths.root / "bird" / node


def _bgp_args(lab: Lab, node: LabNode) -> list[str]:
    """``--bgp``: announce to the router's address(es) on the node's own segment."""
    if not lab.topo.spec.bgp:
        return []
    args = ["--bgp", "--bgp-asn", str(NODE_ASN), "--bgp-dir", str(bgp_dir(lab, node.name))]
    for gw in lab.topo.bgp_peers(node):
        host = f"[{gw}]" if gw.version == 6 else str(gw)
        args += ["--bgp-peer", f"{host}:{ROUTER_ASN}"]
    return args


def agent_argv(lab: Lab, node: LabNode) -> list[str]:
    return [
        "nosdn", "agent", "--node", node.name, *_api_args(lab),
        "--cni-conf", str(lab.paths.conflist(node.name)),
        "--metrics-address", AGENT_METRICS, *AGENT_PROBES, *_cidr_args(lab.topo),
        *_bgp_args(lab, node),
    ]  # fmt: skip


def alive(pid: int) -> bool:
    """``pid`` is a running `nosdn agent` (not a zombie, not a recycled pid)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"nosdn\0agent\0" in cmdline


def start_agents(lab: Lab, *, log: Log) -> list[str]:
    """Start `nosdn agent` in every node that has none running; the nodes started."""
    started = []
    for node in lab.topo.nodes:
        pid = lab.state.agents.get(node.name)
        if pid is not None and alive(pid):
            continue
        argv = agent_argv(lab, node)
        run = [sys.executable, "-m", *argv]
        log(f"$ {shlex.join(['ip', 'netns', 'exec', node.netns, *run])} &")
        lab.state.agents[node.name] = _spawn(node.netns, run, lab.paths.agent_log(node.name))
        started.append(node.name)
    lab.state.routes = "nosdn agent"
    save(lab.paths, lab.state)
    return started


def stop_agent(lab: Lab, name: str) -> None:
    pid = lab.state.agents.pop(name, None)
    if pid is not None and alive(pid):
        os.kill(pid, 15)
        deadline = time.monotonic() + 5
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if alive(pid):
            os.kill(pid, 9)


def apply_external(lab: Lab, *, log: Log) -> None:
    """``nosdn apply --external`` in the external host, nodes read from the API."""
    ext = lab.topo.external_ns
    args = ["apply", "--external", *_api_args(lab), *_cidr_args(lab.topo)]
    argv = [sys.executable, "-m", "nosdn", *args]
    log(f"$ {shlex.join(['ip', 'netns', 'exec', ext, *argv])}")
    proc = netns.run(netns.exec_argv(ext, argv), timeout=120, check=False)
    output = (proc.stdout + proc.stderr).rstrip()
    for line in output.splitlines():
        log(f"  {line}")
    if proc.returncode != 0:
        raise LabError(f"nosdn apply --external failed (exit {proc.returncode}):\n{output}")


# --- what the kernels hold -------------------------------------------------------------------


def _ip_json(ns: str, *args: str) -> Any:
    proc = netns.run(["ip", "-n", ns, "-j", *args])
    return json.loads(proc.stdout or "[]")


def kernel_routes(ns: str) -> dict[str, str]:
    """dst -> gateway of every nosdn route (protocol 157) in ``ns``'s main table."""
    nhs = {nh["id"]: nh.get("gateway", "") for nh in _ip_json(ns, "nexthop", "show")}
    out: dict[str, str] = {}
    for fam in ("-4", "-6"):
        for r in _ip_json(ns, fam, "route", "show", "proto", str(DEFAULT_PROTOCOL)):
            out[r["dst"]] = r.get("gateway") or nhs.get(r.get("nhid"), "")
    return out


def wanted_routes(topo: Topology, node: LabNode) -> dict[str, str]:
    """What ``node``'s table should hold: every other node's pod subnets via its address
    (``--bgp``: only the nodes on its own segment; the others are reached via the router)."""
    out = {}
    for peer in topo.nodes:
        if topo.spec.bgp and peer.segment != node.segment:
            continue
        if peer.name != node.name:
            for cidr in peer.pod_cidrs:
                gw = next(ip for ip in peer.ips if ip.version == cidr.version)
                out[str(cidr)] = str(gw)
    return out


def _agent_tail(lab: Lab, name: str) -> str:
    path = lab.paths.agent_log(name)
    text = path.read_text(errors="replace") if path.exists() else ""
    return "\n  ".join(text.splitlines()[-5:]) or "(no output)"


def wait_routes(lab: Lab, *, timeout: float = 60, log: Log, since: float | None = None) -> float:
    """Wait until every node's kernel holds exactly the routes it should (the agents followed
    the API); log each node as it gets there; the seconds it took."""
    t0 = since if since is not None else time.monotonic()
    todo = {n.name: n for n in lab.topo.nodes}
    deadline = time.monotonic() + timeout
    while todo:
        for name, node in list(todo.items()):
            want = wanted_routes(lab.topo, node)
            if kernel_routes(node.netns) == want:
                log(f"  {name}: {_describe(want)} ({time.monotonic() - t0:.1f} s)")
                del todo[name]
        if not todo:
            break
        dead = [n for n in todo if not alive(lab.state.agents.get(n, -1))]
        if dead or time.monotonic() > deadline:
            why = "exited" if dead else f"did not converge within {timeout:g} s"
            names = dead or list(todo)
            raise LabError(
                f"the agent of {', '.join(names)} {why}:\n"
                + "\n".join(f"[{n}] {_agent_tail(lab, n)}" for n in names)
            )
        time.sleep(0.1)
    return time.monotonic() - t0


def _describe(routes: Mapping[str, str]) -> str:
    if not routes:
        return "no peer, no route"
    if len(routes) > 4:
        return f"all {len(routes)} routes"
    return ", ".join(f"{dst} via {gw}" for dst, gw in sorted(routes.items()))
