"""Build, route, check and tear down a lab: a Kubernetes-shaped network made of namespaces.

The lab is nosdn's end-to-end proof and its first impression, so it uses nothing a real
cluster would not: pods get their addresses from the real CNI plugins driven with the conflist
nosdn renders for that node, and routes come from running ``nosdn apply`` inside each node's
namespace (``--external`` in the external host) exactly as an operator would on a machine.
If the lab pings, the shipped parts work; the lab itself adds no routing of its own.

    switch ns:   br0 ── node1 ── node2 ── ... ── ext        (veths; a plain L2 segment)
    node ns:     eth0 10.10.0.N/24    +  cni0 (CNI bridge, gateway of the node's pod subnet)
    pod ns:      eth0 from host-local, default route via cni0
    external:    eth0 10.10.0.254/24, routes to every pod subnet from `nosdn apply --external`

With ``--agents`` (`LabSpec.api`) the lab is a live cluster instead: an API server in
``<lab>.api`` on the switch, a Node object per node, and ``nosdn agent`` in every node
(`nosdn.lab.cluster`); nodes then come, go and move through the API (`nosdn.lab.members`).

Nothing is attached to this machine's own namespace, so no lab packet can leave the lab.
`up` undoes itself when a step fails; `down` works from the lab's name alone.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from ipaddress import ip_address
from pathlib import Path
from typing import Any

import yaml

from nosdn.agent.installcni import PLUGINS as CNI_PLUGINS
from nosdn.invocation import cmd
from nosdn.lab import cluster as live
from nosdn.lab import netns
from nosdn.lab import router as lab_router
from nosdn.lab.cni import Attachment, CniRunner, cni_path_from_env, find_plugin, result_ips
from nosdn.lab.netns import LabError
from nosdn.lab.ping import DEFAULT_PARALLEL, Endpoint, ProbeResult, probes, run_probes
from nosdn.lab.state import LabPaths, LabState, load, save, write_atomic
from nosdn.lab.topology import LabNames, LabNode, LabSpec, Topology, build, check_name
from nosdn.model import Cluster, IPAddress
from nosdn.render.cni import render_cni
from nosdn.sources.inventory import load_cluster

Log = Callable[[str], None]
SWITCH_BRIDGE = "br0"
LAB_MTU = 1500
#: How many CNI sequences or `nosdn apply` runs go at once (each is a few processes).
BUILD_PARALLEL = 4
NO_DAD = {"net.ipv6.conf.all.accept_dad": "0", "net.ipv6.conf.default.accept_dad": "0"}
#: A node routes for its pods; DAD off so addresses are usable at once (lab only).
FORWARDING = {"net.ipv4.ip_forward": "1", "net.ipv6.conf.all.forwarding": "1", **NO_DAD}


def _quiet(_: str) -> None:
    return None


def nosdn_argv() -> list[str]:
    """How to run this very nosdn inside a namespace (same interpreter, same code)."""
    return [sys.executable, "-m", "nosdn"]


@dataclass(slots=True)
class Lab:
    """A lab that exists: its topology plus what only running it revealed (pod addresses)."""

    topo: Topology
    paths: LabPaths
    state: LabState

    @property
    def name(self) -> str:
        return self.topo.name

    def pods(self) -> list[Endpoint]:
        out = []
        for node in self.topo.nodes:
            for pod in node.pods:
                label = f"{node.name}/{pod}"
                ips = tuple(ip_address(ip) for ip in self.state.pods.get(label, []))
                out.append(Endpoint(label, self.topo.names.pod(node.name, pod), ips, "pod"))
        return out

    def nodes(self) -> list[Endpoint]:
        return [Endpoint(n.name, n.netns, n.ips, "node") for n in self.topo.nodes]

    def external(self) -> Endpoint:
        return Endpoint("external", self.topo.external_ns, self.topo.external_ips, "external")


def open_lab(name: str, root: Path | None = None) -> Lab:
    """The lab ``name`` as ``up`` left it (raises `LabError` if there is none)."""
    paths = LabPaths.for_lab(check_name(name), root)
    state = load(paths)
    return Lab(build(state.spec), paths, state)


# --- up ------------------------------------------------------------------------------------


def preflight(
    names: LabNames, paths: LabPaths, cni_path: Sequence[str], router: str | None = None
) -> None:
    """Refuse to start, with what to do, before anything is made."""
    if os.geteuid() != 0:
        raise LabError(
            "the lab makes network namespaces and needs root — run it as root "
            f"(e.g. `sudo {cmd(*sys.argv[1:])}`)"
        )
    missing = [tool for tool in ("ip", "ping", "sysctl") if shutil.which(tool) is None]
    if missing:
        raise LabError(
            f"missing {', '.join(missing)} — install them "
            "(Debian: apt-get install iproute2 iputils-ping procps)"
        )
    for plugin in CNI_PLUGINS:  # the ones the DaemonSet ships: the conflist's own
        find_plugin(plugin, cni_path)
    if router is not None:
        lab_router.preflight(router)
    existing = [ns for ns in netns.list_netns() if names.owns(ns)]
    if existing or paths.root.exists():
        what = (
            f"{len(existing)} namespace(s) such as {existing[0]}" if existing else str(paths.root)
        )
        raise LabError(
            f"lab {names.lab!r} already exists ({what}) — remove it with "
            f"`{cmd('lab', 'down', '--name', names.lab)}`, or pick another --name"
        )


def _make_fabric(topo: Topology) -> None:
    """Namespaces, the switches, every node's, the external host's and the router's links and
    addresses, and (with a router) everyone's default route through it."""
    router = topo.router
    switches = [seg.switch_ns for seg in topo.segments]
    names = [*switches, topo.external_ns, *(n.netns for n in topo.nodes)]
    if router is not None:
        names.append(router.netns)
    if topo.api_ip is not None:
        names.append(topo.names.api)
    for ns in names:
        netns.add(ns)
    for switch in switches:
        # A switch is a plain L2 segment: no addresses, no IPv6 chatter of its own.
        netns.sysctl(
            switch,
            {"net.ipv6.conf.all.disable_ipv6": "1", "net.ipv6.conf.default.disable_ipv6": "1"},
        )
    netns.sysctl(topo.external_ns, NO_DAD)
    for node in topo.nodes:
        netns.sysctl(node.netns, FORWARDING)
    if router is not None:
        netns.sysctl(router.netns, FORWARDING)
    # (port on the switch, peer namespace, peer interface, segment, addresses)
    ports: list[tuple[str, str, str, int, tuple[IPAddress, ...]]] = [
        (n.port, n.netns, "eth0", n.segment, n.ips) for n in topo.nodes
    ]
    ports.append(("ext", topo.external_ns, "eth0", 1, topo.external_ips))
    if topo.api_ip is not None:
        ports.append(("api", topo.names.api, "eth0", 1, (topo.api_ip,)))
    if router is not None:
        ports += [(port, router.netns, dev, seg, ips) for dev, port, seg, ips in router.ports]
    for seg in topo.segments:
        sw = [
            "link set lo up",
            f"link add {SWITCH_BRIDGE} type bridge mcast_snooping 0",
            f"link set {SWITCH_BRIDGE} up",
        ]
        for port, peer_ns, dev, segment, _ips in ports:
            if segment == seg.index:
                sw.append(
                    f"link add {port} mtu {LAB_MTU} type veth peer name {dev} netns {peer_ns}"
                )
                sw.append(f"link set {port} master {SWITCH_BRIDGE} up")
        netns.batch(seg.switch_ns, sw)
    cmds: dict[str, list[str]] = {}
    for _port, peer_ns, dev, segment, ips in ports:
        seg = topo.segment(segment)
        mine = cmds.setdefault(peer_ns, ["link set lo up"])
        mine.append(f"link set {dev} up")
        for ip in ips:
            nodad = " nodad" if ip.version == 6 else ""
            mine.append(f"addr add {ip}/{seg.prefixlen(ip.version)} dev {dev}{nodad}")
        if router is not None and peer_ns != router.netns:
            # the segment's router is everyone's default gateway, as DHCP would say
            for gw in seg.gateways:
                if all(ip.version != gw.version for ip in ips):
                    continue  # the API server has no IPv6 address: no IPv6 default route
                mine.append(f"route add {'::/0' if gw.version == 6 else 'default'} via {gw}")
    for ns, batch in cmds.items():
        netns.batch(ns, batch)


def add_node_fabric(topo: Topology, node: LabNode) -> None:
    """One more node on its segment's switch: its namespace, veth, addresses, and (with a
    router) its default route through the segment's router."""
    seg = topo.segment(node.segment)
    netns.add(node.netns)
    netns.sysctl(node.netns, FORWARDING)
    netns.batch(
        seg.switch_ns,
        [
            f"link add {node.port} mtu {LAB_MTU} type veth peer name eth0 netns {node.netns}",
            f"link set {node.port} master {SWITCH_BRIDGE} up",
        ],
    )
    cmds = ["link set lo up", "link set eth0 up"]
    for ip in node.ips:
        nodad = " nodad" if ip.version == 6 else ""
        cmds.append(f"addr add {ip}/{seg.prefixlen(ip.version)} dev eth0{nodad}")
    for gw in seg.gateways:
        cmds.append(f"route add {'::/0' if gw.version == 6 else 'default'} via {gw}")
    netns.batch(node.netns, cmds)


def write_inventory(topo: Topology, paths: LabPaths) -> None:
    header = (
        f"# The cluster of lab {topo.name!r}, written by `nosdn lab up`.\n"
        f"# Try: nosdn routes -f {paths.inventory} --node node1\n"
    )
    body = yaml.safe_dump(topo.inventory(), sort_keys=False, default_flow_style=None)
    write_atomic(paths.inventory, header + body)
    if topo.spec.bgp:
        # a live cluster's router knows no node: only the networks the nodes peer from
        body = yaml.safe_dump(topo.inventory(nodes=False), sort_keys=False)
        header = f"# The router's side of lab {topo.name!r} (--bgp): no node, no pod subnet.\n"
        write_atomic(paths.router_inventory, header + body)


def _exec_conflist(rendered: str, ipam_dir: Path) -> dict[str, Any]:
    """The rendered conflist with host-local's state moved into the lab's own directory
    (the only difference between what runs here and what the agent writes)."""
    conflist: dict[str, Any] = json.loads(rendered)
    for plugin in conflist["plugins"]:
        ipam = plugin.get("ipam")
        if isinstance(ipam, dict) and ipam.get("type") == "host-local":
            ipam["dataDir"] = str(ipam_dir)
    return conflist


def make_node_pods(
    topo: Topology, paths: LabPaths, cluster: Cluster, node: LabNode, cni_path: tuple[str, ...]
) -> dict[str, list[str]]:
    """``node``'s conflist (as `nosdn render` prints it) and its pods, one after another (the
    first one creates cni0); ``node/pod`` -> the addresses CNI gave it."""
    rendered = render_cni(cluster, node.name, mtu=LAB_MTU)
    write_atomic(paths.conflist(node.name), rendered)
    conflist = _exec_conflist(rendered, paths.ipam_dir(node.name))
    runner = CniRunner(node.netns, cni_path)
    found: dict[str, list[str]] = {}
    for pod in node.pods:
        pod_ns = topo.names.pod(node.name, pod)
        netns.add(pod_ns)
        netns.sysctl(pod_ns, NO_DAD)
        att = Attachment(f"{topo.name}-{node.name}-{pod}", str(netns.NETNS_DIR / pod_ns))
        runner.add_loopback(att)
        result = runner.add_list(conflist, att)
        write_atomic(paths.result(node.name, pod), json.dumps(result, indent=2) + "\n")
        found[f"{node.name}/{pod}"] = result_ips(result)
    return found


def _make_pods(
    topo: Topology, paths: LabPaths, state: LabState, cni_path: tuple[str, ...], log: Log
) -> None:
    cluster = load_cluster(paths.inventory, warn=False)  # the file, as `nosdn render` reads it

    def one_node(node: LabNode) -> dict[str, list[str]]:
        return make_node_pods(topo, paths, cluster, node, cni_path)

    with ThreadPoolExecutor(max_workers=min(BUILD_PARALLEL, len(topo.nodes))) as pool:
        for found in pool.map(one_node, topo.nodes):
            state.pods.update(found)
            for label, ips in found.items():
                log(f"pod {label}: {', '.join(ips)}")
    save(paths, state)


def up(
    spec: LabSpec,
    *,
    routes: bool = True,
    root: Path | None = None,
    cni_path: Sequence[str] | None = None,
    keep_on_error: bool = False,
    log: Log = _quiet,
) -> Lab:
    """Build the lab described by ``spec``; with ``routes``, also run `apply_routes`. With
    ``spec.api`` (``--agents``) also start its API server and create the Node objects.

    On any failure everything made so far is removed (unless ``keep_on_error``) and the error
    is raised.
    """
    topo = build(spec)
    paths = LabPaths.for_lab(spec.name, root)
    cni = tuple(cni_path) if cni_path is not None else cni_path_from_env()
    preflight(topo.names, paths, cni, spec.router)
    bins = live.preflight(spec) if spec.api is not None else None
    state = LabState(spec)
    lab = Lab(topo, paths, state)
    try:
        paths.root.mkdir(parents=True)
        save(paths, state)
        fams = "IPv4 + IPv6" if spec.ipv6 else "IPv4"
        if topo.router is None:
            log(
                f"switch {topo.switch_ns}, {len(topo.nodes)} node(s), external host "
                f"{topo.external_ns} ({fams})"
            )
        else:
            log(
                f"{len(topo.segments)} segments ({', '.join(s.switch_ns for s in topo.segments)})"
                f" joined by router {topo.router.netns} ({topo.router.daemon}), "
                f"{len(topo.nodes)} node(s), external host {topo.external_ns} ({fams})"
            )
        _make_fabric(topo)
        write_inventory(topo, paths)
        log(f"inventory {paths.inventory}")
        _make_pods(topo, paths, state, cni, log)
        if spec.api is not None:
            live.start_api(lab, bins, log=log)
        if routes:
            apply_routes(lab, log=log)
    except BaseException:
        if not keep_on_error:
            down(spec.name, root=root)
        raise
    return lab


# --- routes --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ApplyRun:
    where: str  # node name or "external"
    netns: str
    argv: tuple[str, ...]  # as shown to people (starts with "nosdn")
    returncode: int
    output: str


def _apply_one(where: str, ns: str, args: list[str]) -> ApplyRun:
    proc = netns.run(netns.exec_argv(ns, [*nosdn_argv(), *args]), timeout=120, check=False)
    output = (proc.stdout + proc.stderr).rstrip()
    return ApplyRun(where, ns, ("nosdn", *args), proc.returncode, output)


def _tail(output: str, lines: int = 3) -> str:
    return "\n  ".join(output.splitlines()[-lines:]) or "(no output)"


def apply_routes(lab: Lab, *, log: Log = _quiet) -> list[ApplyRun]:
    """Run ``nosdn apply -f INVENTORY --node NAME`` in every node's namespace and
    ``nosdn apply -f INVENTORY --external`` in the external host; raise if any failed. With a
    router, also start (or reload) its daemon with the config ``nosdn render`` prints.

    A live cluster's lab (``--agents``) instead starts ``nosdn agent`` in every node that runs
    none, runs ``nosdn apply --external`` against the API, and waits until every node's table
    holds its peers' routes (no `ApplyRun`: the agents keep running)."""
    if lab.topo.spec.api is not None:
        if lab.topo.spec.bgp:  # the router listens before the agents announce
            lab_router.program(lab.topo, lab.paths, log)
        t = time.monotonic()
        live.start_agents(lab, log=log)
        live.apply_external(lab, log=log)
        log("waiting for the agents' routes:")
        live.wait_routes(lab, log=log, since=t)
        if lab.topo.spec.bgp:
            took = lab_router.wait_bgp(lab.topo, lab.paths)
            log(
                f"router: every pod subnet learned over BGP "
                f"({time.monotonic() - t:.1f} s after the agents started, {took:.1f} s after "
                "their host routes)"
            )
        return []
    inv = str(lab.paths.inventory)
    jobs = [(n.name, n.netns, ["apply", "-f", inv, "--node", n.name]) for n in lab.topo.nodes]
    jobs.append(("external", lab.topo.external_ns, ["apply", "-f", inv, "--external"]))
    with ThreadPoolExecutor(max_workers=min(BUILD_PARALLEL, len(jobs))) as pool:
        runs = list(pool.map(lambda j: _apply_one(*j), jobs))
    for r in runs:
        log(f"$ {shlex.join(['ip', 'netns', 'exec', r.netns, *nosdn_argv(), *r.argv[1:]])}")
        for line in r.output.splitlines():
            log(f"  {line}")
    failed = [r for r in runs if r.returncode != 0]
    if failed:
        raise LabError(
            "nosdn apply failed in "
            + ", ".join(f"{r.where} (exit {r.returncode})" for r in failed)
            + ":\n"
            + "\n".join(f"[{r.where}] {_tail(r.output)}" for r in failed)
        )
    if lab.topo.router is not None:
        lab_router.program(lab.topo, lab.paths, log)
    lab.state.routes = "nosdn apply"
    save(lab.paths, lab.state)
    return runs


# --- check ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CheckResult:
    lab: str
    families: tuple[int, ...]
    sources: tuple[Endpoint, ...]
    targets: tuple[Endpoint, ...]
    results: tuple[ProbeResult, ...]

    @property
    def failed(self) -> list[ProbeResult]:
        return [r for r in self.results if not r.ok]

    @property
    def ok(self) -> bool:
        return bool(self.results) and not self.failed

    def as_dict(self) -> dict[str, Any]:
        return {
            "lab": self.lab,
            "ok": self.ok,
            "pings": len(self.results),
            "failed": len(self.failed),
            "results": [r.as_dict() for r in self.results],
        }


def check(
    lab: Lab,
    *,
    parallel: int = DEFAULT_PARALLEL,
    progress: Callable[[int, int, int], None] | None = None,
) -> CheckResult:
    """Ping every pod from every other pod, every node and the external host, per family."""
    pods = lab.pods()
    missing = [p.label for p in pods if len(p.ips) != len(lab.topo.families)]
    if missing:
        raise LabError(
            f"lab {lab.name}: no address recorded for {', '.join(missing)} — "
            f"the lab is incomplete; `{cmd('lab', 'down', '--name', lab.name)}` and up again"
        )
    sources = (*pods, *lab.nodes(), lab.external())
    todo = probes(sources, pods, lab.topo.families)
    results = run_probes(todo, parallel=parallel, progress=progress)
    return CheckResult(lab.name, lab.topo.families, sources, tuple(pods), tuple(results))


# --- down ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DownReport:
    namespaces: tuple[str, ...] = ()
    killed: tuple[int, ...] = ()
    state_removed: bool = False

    @property
    def removed_anything(self) -> bool:
        return bool(self.namespaces or self.killed or self.state_removed)


def _teardown_order(names: Iterable[str]) -> list[str]:
    # Pods before nodes before the switch: each veth then goes away with its own namespace.
    return sorted(
        names, key=lambda ns: (-ns.count("."), re.search(r"\.sw\d*$", ns) is not None, ns)
    )


def down(name: str, *, root: Path | None = None) -> DownReport:
    """Remove every namespace, process and state file of lab ``name``. Idempotent; needs no
    state file (namespaces are found by their names), so it also cleans up after a crash."""
    names = LabNames(check_name(name))
    paths = LabPaths.for_lab(name, root)
    owned = _teardown_order(ns for ns in netns.list_netns() if names.owns(ns))
    killed: list[int] = []
    killed.extend(lab_router.stop_all(name, paths, names.router))
    for ns in owned:
        killed.extend(netns.kill_all(ns))
    removed = [ns for ns in owned if netns.delete(ns)]
    state_removed = paths.root.exists()
    if state_removed:
        shutil.rmtree(paths.root)
    leftovers = tuple(ns for ns in netns.list_netns() if names.owns(ns))
    if leftovers:
        raise LabError(f"lab {name}: could not remove {', '.join(leftovers)}")
    return DownReport(tuple(removed), tuple(killed), state_removed)
