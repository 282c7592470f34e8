"""Doctor checks of this node's pod side: the CNI conflist, its MTU, the pod bridge.

The conflist is compared with what `nosdn.render.cni.render_cni` makes for this node — the
same function the agent writes it with — so "matching" means byte-for-byte intent, not a
loose resemblance: different subnets are a failure (pods would get addresses no route points
at), other differences a warning. The MTU is compared with the node's own interface: pods that
send bigger packets than the node's link carries lose them.
"""

from __future__ import annotations

import json
import shlex
from typing import Any

from nosdn.diagnose.facts import (
    Facts,
    bridge_plugin,
    conflist_json,
    nosdn_command,
    pod_bridge,
    probe_address,
)
from nosdn.diagnose.result import CheckResult, fail, ok, skip, warn
from nosdn.model import IPNetwork
from nosdn.render.cni import cni_config

DEFAULT_MTU = 1500  # what the bridge plugin uses when the conflist names none


def node_mtu(facts: Facts) -> tuple[str, int] | None:
    """The interface that carries this node's own address, and its MTU."""
    if facts.cluster is None or facts.node_name is None:
        return None
    me = facts.cluster.node(facts.node_name)
    for ip in me.ips if me is not None else ():
        link = facts.link_of(ip)
        if link is not None:
            return link.name, link.mtu
    return None


def render_command(facts: Facts, mtu: int | None, bridge: str) -> str:
    argv = ["render", "-f", facts.inventory or "INVENTORY", "--format", "cni"]
    argv += ["--node", facts.node_name or "NODE"]
    if mtu is not None:
        argv += ["--mtu", str(mtu)]
    if bridge != "cni0":
        argv += ["--bridge", bridge]
    path = facts.cni.path if facts.cni is not None else "/etc/cni/net.d/10-nosdn.conflist"
    return f"{nosdn_command(facts, *argv)} > {shlex.quote(path)}"


def _ranges(plugin: dict[str, Any] | None) -> set[str]:
    out: set[str] = set()
    ipam = plugin.get("ipam") if plugin else None
    ranges = ipam.get("ranges") if isinstance(ipam, dict) else None
    for rset in ranges if isinstance(ranges, list) else []:
        for r in rset if isinstance(rset, list) else []:
            if isinstance(r, dict) and "subnet" in r:
                out.add(str(r["subnet"]))
    return out


def _diff_keys(a: Any, b: Any, path: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out: list[str] = []
        for k in sorted(set(a) | set(b)):
            out += _diff_keys(a.get(k), b.get(k), f"{path}.{k}" if path else str(k))
        return out
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [
            d
            for i, (x, y) in enumerate(zip(a, b, strict=True))
            for d in _diff_keys(x, y, f"{path}[{i}]")
        ]
    return [] if a == b else [path or "(whole file)"]


def _not_node(facts: Facts, check: str) -> CheckResult | None:
    if facts.target is not None and facts.target.kind != "node":
        return skip(check, "not a node: no pods here")
    if facts.cluster is None or facts.node_name is None:
        return skip(check, "needs the inventory (-f) to know this node's pod subnets")
    return None


def check_conflist(facts: Facts) -> list[CheckResult]:
    check = "cni.conflist"
    if (s := _not_node(facts, check)) is not None:
        return [s]
    assert facts.cluster is not None
    assert facts.node_name is not None
    mtu = node_mtu(facts)
    cni = facts.cni
    bridge = pod_bridge(facts)
    fix = render_command(facts, mtu[1] if mtu else None, bridge)
    if cni is None or cni.text is None:
        why = f" ({cni.error})" if cni is not None and cni.error else ""
        path = cni.path if cni is not None else "the CNI directory"
        return [fail(check, f"no conflist at {path}{why}: kubelet cannot start pods", fix)]
    data = conflist_json(cni)
    if data is None:
        return [fail(check, f"{cni.path} is not a JSON object: kubelet cannot use it", fix)]
    me = facts.cluster.node(facts.node_name)
    want = {str(c) for c in me.pod_cidrs} if me is not None else set()
    plugin = bridge_plugin(data)
    have = _ranges(plugin)
    if have != want:
        return [
            fail(
                check,
                f"{cni.path} hands out {', '.join(sorted(have)) or 'no subnet'}, but "
                f"{facts.node_name}'s pod subnets are {', '.join(sorted(want))}: pods would get "
                "addresses no route points at",
                fix,
            )
        ]
    raw_mtu = plugin.get("mtu", DEFAULT_MTU) if plugin else DEFAULT_MTU
    file_mtu = raw_mtu if isinstance(raw_mtu, int) else DEFAULT_MTU
    details = tuple(f"kubelet uses {o} first (it sorts before)" for o in cni.others)
    try:
        expected = cni_config(facts.cluster, facts.node_name, mtu=file_mtu, bridge=bridge)
    except ValueError as e:
        return [warn(check, f"cannot render this node's conflist to compare: {e}")]
    diffs = _diff_keys(json.loads(json.dumps(expected)), data)
    if diffs:
        return [
            warn(
                check,
                f"{cni.path} has this node's subnets but differs from what nosdn renders in "
                f"{', '.join(diffs[:5])}{' ...' if len(diffs) > 5 else ''}",
                fix,
                details,
            )
        ]
    if details:
        return [
            warn(check, f"{cni.path} matches, but other network configs come first", None, details)
        ]
    return [
        ok(check, f"{cni.path} matches {facts.node_name}'s pod subnets ({', '.join(sorted(want))})")
    ]


def check_mtu(facts: Facts) -> list[CheckResult]:
    check = "mtu"
    if (s := _not_node(facts, check)) is not None:
        return [s]
    plugin = bridge_plugin(conflist_json(facts.cni))
    if plugin is None:
        return [skip(check, "no usable CNI conflist to read the pods' MTU from")]
    raw = plugin.get("mtu", DEFAULT_MTU)
    pods = raw if isinstance(raw, int) else DEFAULT_MTU
    found = node_mtu(facts)
    if found is None:
        return [warn(check, f"no interface here has {facts.node_name}'s address; pods use {pods}")]
    dev, link = found
    fix = render_command(facts, link, pod_bridge(facts))
    note = ("pods made before the change keep their MTU until they are recreated",)
    if pods > link:
        return [
            fail(
                check,
                f"pods use MTU {pods} but {dev} carries {link}: their large packets to other "
                "nodes are dropped or fragmented",
                fix,
                note,
            )
        ]
    if pods < link:
        return [
            warn(check, f"pods use MTU {pods}, {dev} allows {link}: works, but wastes", fix, note)
        ]
    return [ok(check, f"pods and {dev} both use MTU {link}")]


def _pod_nets(facts: Facts) -> tuple[IPNetwork, ...]:
    me = facts.cluster.node(facts.node_name) if facts.cluster and facts.node_name else None
    return me.pod_cidrs if me is not None else ()


def check_bridge(facts: Facts) -> list[CheckResult]:
    check = "cni.bridge"
    if (s := _not_node(facts, check)) is not None:
        return [s]
    name = pod_bridge(facts)
    link = facts.links.get(name)
    if link is None:
        return [
            warn(check, f"{name} does not exist yet: the bridge plugin makes it for the first pod")
        ]
    nets = _pod_nets(facts)
    gateways = [a for a in link.addresses if any(a.ip in n for n in nets)]
    missing = [n for n in nets if not any(a.ip in n for a in gateways)]
    # IPv6 addresses go with the link when it goes down (unless keep_addr_on_down): bringing
    # it back up does not restore the gateway, the next pod's ADD would.
    readd = [f"ip addr replace {probe_address(n)}/{n.prefixlen} dev {name}" for n in missing]
    if not link.up:
        return [
            fail(
                check,
                f"{name} is down: pods on this node reach nothing and nothing reaches them",
                " && ".join([f"ip link set {name} up", *readd]),
                ("bringing it up restores its connected routes; nosdn's routes are unaffected",),
            )
        ]
    if missing:
        return [
            fail(
                check,
                f"{name} is up but has no address in {', '.join(map(str, missing))}: pods of "
                "that subnet have no gateway (the bridge plugin would add it with the next pod)",
                " && ".join(readd),
            )
        ]
    state = "with pods attached" if link.carrier else "no pods attached yet"
    return [ok(check, f"{name} is up, {state}, gateway {', '.join(str(a.ip) for a in gateways)}")]
