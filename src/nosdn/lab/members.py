"""Change a running lab's cluster: a node comes (`add_node`), goes (`remove_node`) or changes
address (`readdress_node`), so a person can watch nosdn follow.

Each change is made twice, as in a real cluster: to the machines (the node's namespace, veth,
address and pods) and to the cluster's record of them. In a live cluster's lab (``--agents``)
the record is the API server: the lab creates, patches or deletes the Node object as the
node's kubelet (or an operator) would, and then waits until every agent has followed (every
node's kernel table holds exactly its peers' routes, through the new addresses). Without
agents the record is the inventory file, and ``nosdn apply`` runs again in every node.

A node keeps its number for life: it names its namespace, its switch port and its pod subnet,
so one node's change never moves another's. One-segment labs only (a router's config would
have to follow too).
"""

from __future__ import annotations

import dataclasses
import shutil
import time
from collections.abc import Callable
from ipaddress import IPv4Address, ip_address

from nosdn.lab import cluster as live
from nosdn.lab import netns
from nosdn.lab import router as lab_router
from nosdn.lab.cni import cni_path_from_env
from nosdn.lab.lifecycle import (
    Lab,
    add_node_fabric,
    apply_routes,
    make_node_pods,
    write_inventory,
)
from nosdn.lab.netns import LabError
from nosdn.lab.state import save
from nosdn.lab.topology import (
    MAX_HOST,
    MAX_NODES,
    LabInputError,
    LabNode,
    LabSpec,
    build,
)
from nosdn.sources.inventory import load_cluster

Log = Callable[[str], None]


def _quiet(_: str) -> None:
    return None


def _number(name: str) -> int:
    if not name.startswith("node") or not name[4:].isdigit():
        raise LabInputError(f"{name!r} is not a lab node's name — use node1, node2, ...")
    return int(name[4:])


def _node(lab: Lab, name: str) -> LabNode:
    try:
        return lab.topo.node(name)
    except KeyError:
        have = ", ".join(n.name for n in lab.topo.nodes)
        raise LabInputError(f"lab {lab.name} has no {name} (its nodes: {have})") from None


def _one_segment(lab: Lab) -> None:
    if len(lab.topo.segments) > 1 and not lab.topo.spec.bgp:
        raise LabError(
            f"lab {lab.name} has {len(lab.topo.segments)} segments: `lab node` changes "
            "one-segment labs, or labs made with --agents --bgp"
        )


def _changed(lab: Lab, spec: LabSpec) -> Lab:
    """``lab`` with ``spec``, its inventory rewritten and its state saved."""
    new = Lab(build(spec), lab.paths, lab.state)
    new.state.spec = spec
    write_inventory(new.topo, new.paths)
    save(new.paths, new.state)
    return new


def _follow(lab: Lab, t0: float, log: Log) -> None:
    """Make the routes follow the change: the agents (wait for them) or `nosdn apply`."""
    if lab.topo.spec.api is not None:
        live.start_agents(lab, log=log)
        live.apply_external(lab, log=log)
        log("waiting for the agents to follow:")
        live.wait_routes(lab, log=log, since=t0)
        if lab.topo.spec.bgp:
            lab_router.wait_bgp(lab.topo, lab.paths)
            log(f"router: follows over BGP ({time.monotonic() - t0:.1f} s)")
    elif lab.state.routes:
        apply_routes(lab, log=log)


def add_node(lab: Lab, *, log: Log = _quiet) -> LabNode:
    """A new node (the next free number), with its pods; the cluster learns of it."""
    _one_segment(lab)
    spec = lab.topo.spec
    numbers = spec.node_numbers
    # the next number up; once at the top, the lowest one free
    free = [*range(max(numbers) + 1, MAX_NODES + 1)]
    free += [i for i in range(1, max(numbers)) if i not in numbers]
    if not free:
        raise LabInputError(f"lab {lab.name} has {MAX_NODES} nodes, the most a lab can hold")
    number = free[0]
    hosts = {spec.host_of(i) for i in numbers}
    moved = dict(spec.hosts)
    if number in hosts:  # another node moved to this number's address: take a free one
        moved[number] = next(h for h in range(1, MAX_HOST + 1) if h not in hosts)
    new = _changed(
        lab,
        dataclasses.replace(
            spec, members=tuple(sorted((*numbers, number))), hosts=tuple(sorted(moved.items()))
        ),
    )
    node = new.topo.node(f"node{number}")
    t0 = time.monotonic()
    try:
        add_node_fabric(new.topo, node)
        log(f"{node.name}: namespace {node.netns}, {', '.join(map(str, node.ips))}")
        cluster = load_cluster(new.paths.inventory, warn=False)
        found = make_node_pods(new.topo, new.paths, cluster, node, cni_path_from_env())
        new.state.pods.update(found)
        for label, ips in found.items():
            log(f"pod {label}: {', '.join(ips)}")
        save(new.paths, new.state)
        if spec.api is not None:
            live.open_api(new).create_node(live.node_object(node))
            log(f"created Node {node.name} (pod subnets {', '.join(map(str, node.pod_cidrs))})")
            t0 = time.monotonic()
    except BaseException:
        _undo_add(lab, new, node)
        raise
    _follow(new, t0, log)
    return node


def _undo_add(old: Lab, new: Lab, node: LabNode) -> None:
    _remove_machine(new, node)
    for label in [p for p in new.state.pods if p.startswith(f"{node.name}/")]:
        del new.state.pods[label]
    _changed(new, old.topo.spec)


def _remove_machine(lab: Lab, node: LabNode) -> None:
    """The node's agent, its BIRD (``--bgp``), pods, namespace (its veth goes with it) and CNI
    state."""
    live.stop_agent(lab, node.name)
    if lab.topo.spec.bgp:
        # shut down, not killed: BIRD tells the router the session ends (a session that just
        # vanishes looks like a restart, and graceful restart keeps its routes for minutes)
        lab_router.stop_pid(live.bgp_dir(lab, node.name) / "bird.pid", node.netns)
    for ns in [lab.topo.names.pod(node.name, p) for p in node.pods] + [node.netns]:
        netns.kill_all(ns)
        netns.delete(ns)
    shutil.rmtree(lab.paths.cni_dir(node.name), ignore_errors=True)


def remove_node(lab: Lab, name: str, *, log: Log = _quiet) -> None:
    """The node goes away (its machine first, then its Node object); the others drop its
    routes."""
    _one_segment(lab)
    node = _node(lab, name)
    spec = lab.topo.spec
    numbers = tuple(i for i in spec.node_numbers if i != _number(name))
    if not numbers:
        raise LabInputError(f"{name} is lab {lab.name}'s last node: a lab keeps one")
    _remove_machine(lab, node)
    for label in [p for p in lab.state.pods if p.startswith(f"{name}/")]:
        del lab.state.pods[label]
    log(f"{name}: agent, pods and namespace {node.netns} removed")
    hosts = tuple(h for h in spec.hosts if h[0] != _number(name))
    new = _changed(lab, dataclasses.replace(spec, members=numbers, hosts=hosts))
    t0 = time.monotonic()
    if spec.api is not None:
        live.open_api(new).delete_node(name)
        log(f"deleted Node {name}")
    _follow(new, t0, log)


def _host_number(lab: Lab, node: LabNode, address: str | None) -> int:
    spec = lab.topo.spec
    taken = {spec.host_of(i): f"node{i}" for i in spec.node_numbers}
    if address is None:
        return next(h for h in range(100, MAX_HOST + 1) if h not in taken)
    net = lab.topo.segment(node.segment).nets[0]
    try:
        ip = ip_address(address)
    except ValueError:
        raise LabInputError(f"--ip {address!r} is not an IPv4 address") from None
    if not isinstance(ip, IPv4Address) or ip not in net:
        raise LabInputError(f"--ip {address}: use an address of {node.name}'s network {net}")
    host = int(ip) - int(net.network_address)
    if not 1 <= host <= MAX_HOST:
        raise LabInputError(
            f"--ip {address}: the lab keeps .{MAX_HOST + 1}-.255 for itself — use "
            f"{net.network_address + 1} to {net.network_address + MAX_HOST}"
        )
    if host in taken:
        raise LabInputError(f"--ip {address} is {taken[host]}'s address")
    return host


def readdress_node(
    lab: Lab, name: str, address: str | None = None, *, log: Log = _quiet
) -> LabNode:
    """``name`` moves to ``address`` (IPv4, on its network; default the first free of .100
    and up; its IPv6 address takes the same host number). The node gets the new address, the
    cluster learns it, then the old one goes: the others' routes follow."""
    _one_segment(lab)
    old = _node(lab, name)
    spec = lab.topo.spec
    host = _host_number(lab, old, address)
    number = _number(name)
    moved = dict(spec.hosts)
    moved[number] = host
    if host == number:
        del moved[number]
    new = _changed(lab, dataclasses.replace(spec, hosts=tuple(sorted(moved.items()))))
    node = new.topo.node(name)
    seg = new.topo.segment(node.segment)
    # the new address first, as a secondary that takes over when the old one goes
    netns.sysctl(node.netns, {"net.ipv4.conf.eth0.promote_secondaries": "1"})
    netns.batch(
        node.netns,
        [
            f"addr add {ip}/{seg.prefixlen(ip.version)} dev eth0"
            + (" nodad" if ip.version == 6 else "")
            for ip in node.ips
        ],
    )
    t0 = time.monotonic()
    if spec.api is not None:
        live.open_api(new).patch_status(name, {"addresses": live.addresses(node)})
        log(f"patched Node {name}: status.addresses {', '.join(map(str, node.ips))}")
    netns.batch(
        node.netns, [f"addr del {ip}/{seg.prefixlen(ip.version)} dev eth0" for ip in old.ips]
    )
    log(f"{name}: {', '.join(map(str, old.ips))} -> {', '.join(map(str, node.ips))}")
    # A connection from an address that is gone hears nothing more and says nothing: the
    # node's agent would wait out its watch timeout (minutes) before it saw another change.
    # Close them, as the node's own network stack would on a real move (ss -K).
    for ip in old.ips:
        netns.run(netns.exec_argv(node.netns, ["ss", "-K", "-tn", "src", str(ip)]), check=False)
    _follow(new, t0, log)
    return node
