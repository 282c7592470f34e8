"""The one place `doctor` and `trace` read the host: sysctls, links, neighbours, routes,
policy rules, firewall, CNI files. Read-only by construction: nothing here writes a file, a
sysctl or a route.

Routes and route lookups come through the kernel backend (`KernelBackend` and its netlink
client), so doctor sees the table exactly as ``nosdn apply`` does; the desired routes and their
diff come from one dry-run `reconcile_once`. Links and neighbours come from ``ip -j`` (the JSON
iproute2 prints: the same facts a person would look at), sysctls from ``/proc/sys``, the
firewall from ``nft -j list ruleset`` and, only when legacy tables exist, ``iptables-legacy-save``,
policy rules from ``ip -N -j rule`` and, through the backend, the routes of the tables they
look up. Every source that cannot be read becomes an error in the facts, never an exception: doctor
must say as much as it can on a broken host.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import replace
from ipaddress import ip_address, ip_interface, ip_network
from pathlib import Path
from typing import Any

from nosdn.backends.base import ApplyResult
from nosdn.backends.bird import DEFAULT_DIR as BIRD_DIR
from nosdn.diagnose.facts import (
    CniFile,
    Facts,
    Firewall,
    Link,
    Masquerade,
    Neighbour,
    PolicyRule,
    RouteLookup,
    probe_address,
)
from nosdn.diagnose.firewall import parse_iptables_save, parse_nft_json
from nosdn.model import DEFAULT_PROTOCOL, EXTERNAL, Cluster, Diff, InstalledRoute, IPAddress, Target
from nosdn.reconcile import nodes_with_addresses, reconcile_once
from nosdn.render.cni import CONFLIST_PATH

PROC_SYS = Path("/proc/sys")
_TYPES = {
    1: "unicast",
    2: "local",
    3: "broadcast",
    5: "multicast",
    6: "blackhole",
    7: "unreachable",
    8: "prohibit",
    9: "throw",
}


#: Where the agent serves ``/probes`` on its node (the DaemonSet's --metrics-address, host
#: network).
AGENT_ADDRESS = "127.0.0.1:9712"


class TargetError(ValueError):
    """Which node this host is cannot be told; the message says what to pass."""


def _run_json(argv: Sequence[str]) -> tuple[Any, str | None]:
    if shutil.which(argv[0]) is None:
        return None, f"{argv[0]} is not installed"
    try:
        proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        return None, str(e)
    if proc.returncode != 0:
        lines = (proc.stderr or proc.stdout).strip().splitlines()
        return None, lines[0] if lines else f"exit code {proc.returncode}"
    try:
        return json.loads(proc.stdout or "null"), None
    except ValueError as e:
        return None, f"{' '.join(argv)} printed no JSON ({e})"


# --- sysctls -------------------------------------------------------------------------------
def read_sysctls(root: Path = PROC_SYS) -> dict[str, str]:
    """Forwarding per family and rp_filter of every interface (and all/default)."""
    out: dict[str, str] = {}
    for key in ("net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding"):
        try:
            out[key] = (root / key.replace(".", "/")).read_text().strip()
        except OSError:
            continue
    conf = root / "net/ipv4/conf"
    try:
        names = sorted(os.listdir(conf))
    except OSError:
        names = []
    for name in names:
        try:
            value = (conf / name / "rp_filter").read_text().strip()
        except OSError:
            continue
        out[f"net.ipv4.conf.{name.replace('.', '/')}.rp_filter"] = value
    return out


# --- links and neighbours --------------------------------------------------------------------
def parse_links(data: Iterable[Any]) -> dict[str, Link]:
    """Links from ``ip -j -d addr show``."""
    out: dict[str, Link] = {}
    for item in data:
        if not isinstance(item, dict) or "ifname" not in item:
            continue
        flags = item.get("flags") or []
        addrs = []
        for a in item.get("addr_info") or []:
            try:
                addrs.append(ip_interface(f"{a['local']}/{a['prefixlen']}"))
            except (KeyError, ValueError):
                continue
        kind = (item.get("linkinfo") or {}).get("info_kind", "")
        name = str(item["ifname"])
        out[name] = Link(
            name,
            int(item.get("mtu", 0)),
            "UP" in flags,
            "LOWER_UP" in flags,
            str(kind),
            tuple(addrs),
        )
    return out


def parse_neighbours(data: Iterable[Any]) -> list[Neighbour]:
    """Neighbours from ``ip -j neigh show``."""
    out: list[Neighbour] = []
    for item in data:
        if not isinstance(item, dict):
            continue
        try:
            ip = ip_address(str(item["dst"]).split("%")[0])
        except (KeyError, ValueError):
            continue
        states = item.get("state") or ["NONE"]
        out.append(Neighbour(ip, str(item.get("dev", "")), str(states[0]), item.get("lladdr")))
    return out


def read_links() -> tuple[dict[str, Link], str | None]:
    data, error = _run_json(["ip", "-j", "-d", "addr", "show"])
    return (parse_links(data), None) if isinstance(data, list) else ({}, error)


def read_neighbours() -> tuple[list[Neighbour], str | None]:
    data, error = _run_json(["ip", "-j", "neigh", "show"])
    return (parse_neighbours(data), None) if isinstance(data, list) else ([], error)


# --- policy rules ----------------------------------------------------------------------------
#: ``ip -j rule`` keys that select packets in ways doctor does not evaluate.
_RULE_OTHER = (
    "fwmark", "oif", "uidrange", "ipproto", "sport", "dport", "tos", "dsfield", "l3mdev",
    "suppress_ifgroup", "realms",
)  # fmt: skip
_NAMED_TABLES = {"local": 255, "main": 254, "default": 253}


def _rule_net(item: dict[str, Any], key: str) -> Any:
    addr = item.get(key)
    if addr in (None, "all"):
        return None
    plen = item.get(f"{key}len")
    try:
        return ip_network(f"{addr}/{plen}" if plen is not None else str(addr), strict=False)
    except ValueError:
        return None


def parse_rules(data: Iterable[Any], family: int) -> list[PolicyRule]:
    """Policy rules from ``ip -N -j rule show`` (tables as numbers)."""
    out: list[PolicyRule] = []
    for item in data:
        if not isinstance(item, dict):
            continue
        raw_table = item.get("table")
        table: int | None = None
        if raw_table is not None:
            t = str(raw_table)
            table = int(t) if t.isdigit() else _NAMED_TABLES.get(t)
        action = str(item.get("action") or ("goto" if "goto" in item else "lookup"))
        other = [f"{k} {item[k]}" for k in _RULE_OTHER if k in item]
        if "fwmask" in item and other and other[0].startswith("fwmark"):
            other[0] += f"/{item['fwmask']}"
        words = [f"{item.get('priority', 0)}:", "not" if "not" in item else ""]
        words += [
            f"from {item.get('src', 'all')}" + (f"/{item['srclen']}" if "srclen" in item else "")
        ]
        if "dst" in item:
            words.append(f"to {item['dst']}" + (f"/{item['dstlen']}" if "dstlen" in item else ""))
        if "iif" in item:
            words.append(f"iif {item['iif']}")
        words += other
        if action == "lookup":
            words.append(f"lookup {raw_table}")
        elif action == "goto":
            words.append(f"goto {item.get('goto')}")
        else:
            words.append(action)
        if "suppress_prefixlen" in item:
            words.append(f"suppress_prefixlength {item['suppress_prefixlen']}")
        goto = item.get("goto")
        sup = item.get("suppress_prefixlen")
        out.append(
            PolicyRule(
                int(item.get("priority", 0)),
                family,
                action,
                table,
                _rule_net(item, "src"),
                _rule_net(item, "dst"),
                "not" in item,
                str(item["iif"]) if "iif" in item else None,
                int(goto) if isinstance(goto, int) else None,
                int(sup) if isinstance(sup, int) else None,
                tuple(other),
                " ".join(w for w in words if w),
            )
        )
    return out


def read_rules() -> tuple[list[PolicyRule], str | None]:
    rules: list[PolicyRule] = []
    for family, flag in ((4, "-4"), (6, "-6")):
        data, error = _run_json(["ip", "-N", "-j", flag, "rule", "show"])
        if not isinstance(data, list):
            return rules, error or "ip rule printed no list"
        rules += parse_rules(data, family)
    return rules, None


# --- firewall --------------------------------------------------------------------------------
def read_firewall(proc_net: Path = Path("/proc/net")) -> Firewall:
    data, error = _run_json(["nft", "-j", "list", "ruleset"])
    fw = parse_nft_json(data) if isinstance(data, dict) else Firewall(error=error)
    chains = list(fw.chains)
    for family, names, tool in (
        (4, "ip_tables_names", "iptables-legacy-save"),
        (6, "ip6_tables_names", "ip6tables-legacy-save"),
    ):
        try:
            tables = (proc_net / names).read_text().split()
        except OSError:
            continue  # no legacy tables loaded: nothing to read
        if not {"filter", "nat"} & set(tables) or shutil.which(tool) is None:
            continue
        proc = subprocess.run([tool], capture_output=True, text=True, timeout=30, check=False)
        if proc.returncode == 0:
            chains += parse_iptables_save(proc.stdout, family)
    return Firewall(tuple(chains), fw.tables, fw.error)


# --- CNI -------------------------------------------------------------------------------------
def read_cni(path: Path) -> CniFile:
    others: list[str] = []
    try:
        for entry in sorted(os.listdir(path.parent)):
            if entry < path.name and entry.endswith((".conf", ".conflist", ".json")):
                others.append(entry)
    except OSError:
        pass
    try:
        return CniFile(str(path), path.read_text(), None, tuple(others))
    except OSError as e:
        return CniFile(str(path), None, e.strerror or str(e), tuple(others))


# --- kernel ----------------------------------------------------------------------------------
def resolve_target(
    cluster: Cluster, addresses: Sequence[IPAddress], node: str | None, external: bool
) -> Target:
    """Which node this host is: ``--node``/``--external``, else the node with one of its
    addresses (as ``nosdn apply`` decides it)."""
    if node is not None and external:
        raise TargetError("--node and --external exclude each other")
    if external:
        return EXTERNAL
    if node is not None:
        if cluster.node(node) is None:
            raise TargetError(f"--node {node}: no such node in the inventory")
        return Target.for_node(node)
    names = nodes_with_addresses(cluster, addresses)
    if len(names) == 1:
        return Target.for_node(names[0])
    if not names:
        raise TargetError(
            "this host has none of the inventory's node addresses: pass --node NAME, or "
            "--external for a machine outside the cluster"
        )
    raise TargetError(f"this host's addresses belong to several nodes ({', '.join(names)})")


#: The route type whose lookup answer each errno is (the kernel's fib_props).
_ERROR_KINDS = {
    errno.EINVAL: "blackhole",
    errno.EHOSTUNREACH: "unreachable",
    errno.EACCES: "prohibit",
}


def lookups(
    backend: Any, addresses: Iterable[IPAddress], matched: Iterable[IPAddress] = ()
) -> dict[IPAddress, RouteLookup]:
    """The kernel's route lookup (RTM_GETROUTE) for each address, through the backend's
    netlink client; for those in ``matched`` also the route it picked (fibmatch)."""
    todo = list(dict.fromkeys(addresses))
    if not todo:
        return {}
    answers = backend.nl.lookup([a.packed for a in todo])
    links: dict[int, str] = backend.nl.links()
    out: dict[IPAddress, RouteLookup] = {}
    for addr, res in zip(todo, answers, strict=True):
        if res.error:
            kind = _ERROR_KINDS.get(res.error, "unicast")
            out[addr] = RouteLookup(addr, os.strerror(res.error), kind)
            continue
        out[addr] = RouteLookup(
            addr,
            None,
            _TYPES.get(res.type, str(res.type)),
            links.get(res.oif) if res.oif else None,
            ip_address(res.gateway) if res.gateway else None,
            ip_address(res.prefsrc) if res.prefsrc else None,
        )
    for addr in dict.fromkeys(matched):
        used = backend.route_used(addr)
        if not isinstance(used, int) and addr in out:
            out[addr] = replace(out[addr], matched=used[0], matched_table=used[1])
    return out


class _Read:
    """The table as read once: `reconcile_once` diffs against it, trace searches it."""

    name = "kernel (read)"

    def __init__(self, routes: list[InstalledRoute]) -> None:
        self._routes = routes

    def routes(self) -> list[InstalledRoute]:
        return self._routes

    def apply(self, diff: Diff) -> ApplyResult:  # pragma: no cover - dry runs never apply
        raise RuntimeError("doctor and trace never write")


def gather(
    cluster: Cluster | None,
    *,
    inventory: Path | None = None,
    node: str | None = None,
    external: bool = False,
    table: int = 254,
    protocol: int = DEFAULT_PROTOCOL,
    cni_conf: Path = Path(CONFLIST_PATH),
    masquerade: Masquerade = "auto",
    addresses: Sequence[IPAddress] = (),
    firewall: bool = True,
    program: Sequence[str] = ("nosdn",),
    bgp_dir: Path = BIRD_DIR,
    agent: str | None = AGENT_ADDRESS,
) -> Facts:
    """Read everything the checks need from this host (plus route lookups for ``addresses``,
    which trace asks about). Raises `TargetError` only."""
    from nosdn.backends.kernel import KernelBackend

    links, _ = read_links()
    neighbours, _ = read_neighbours()
    target: Target | None = None
    routes = None
    routes_error: str | None = None
    nexthops: bool | None = None
    looked: dict[IPAddress, RouteLookup] = {}
    installed: list[InstalledRoute] = []
    rules, rules_error = read_rules()
    rule_tables: dict[int, tuple[InstalledRoute, ...]] = {}
    try:
        backend = KernelBackend(table=table, protocol=protocol)
    except (OSError, ValueError) as e:
        backend = None
        routes_error = str(e)
    if backend is not None:
        with backend:
            nexthops = backend.nexthops_supported
            addrs = list(addresses)
            try:
                installed = backend.routes()
                if cluster is not None:
                    target = resolve_target(cluster, backend.local_addresses(), node, external)
                    routes = reconcile_once(
                        cluster, target, _Read(installed), adjacency=backend.adjacency, dry_run=True
                    )
                    wanted = [*routes.desired, *routes.skipped]
                    addrs += [gw for r in wanted for gw in r.via]
                    addrs += [probe_address(r.dst) for r in wanted]
                looked = lookups(backend, addrs, matched=addresses)
                wanted_tables = {r.table for r in rules if r.action == "lookup" and r.table}
                for t in sorted(wanted_tables - {table, 253, 255}):
                    rule_tables[t] = tuple(backend.table_routes(t))
            except OSError as e:
                routes_error = str(e)
    return Facts(
        cluster=cluster,
        target=target,
        inventory=str(inventory.absolute()) if inventory is not None else None,
        program=tuple(program),
        table=table,
        protocol=protocol,
        sysctl=read_sysctls(),
        links=links,
        neighbours=tuple(neighbours),
        lookups=looked,
        routes=routes,
        routes_error=routes_error,
        installed=tuple(installed),
        nexthops_supported=nexthops,
        firewall=read_firewall() if firewall else Firewall(),
        rules=tuple(rules),
        rules_error=rules_error,
        rule_tables=rule_tables,
        cni=read_cni(cni_conf) if target is None or target.kind == "node" else None,
        masquerade=masquerade,
        **read_bgp(bgp_dir),
        probes=read_probes(agent) if agent else None,
    )


def read_probes(address: str, timeout: float = 1.0) -> dict[str, Any] | None:
    """The agent's ``/probes`` report, or None when no agent answers there."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://{address}/probes", timeout=timeout) as r:
            doc = json.loads(r.read())
    except (OSError, ValueError, urllib.error.URLError):
        return None
    return doc if isinstance(doc, dict) else None


def read_bgp(directory: Path) -> dict[str, Any]:
    """The agent's BIRD sessions (``bgp``/``bgp_error`` of `Facts`), when its socket exists."""
    from nosdn.backends.bird import BirdError, BirdSupervisor

    bird = BirdSupervisor(directory)
    if not bird.socket.exists():
        return {}
    try:
        return {"bgp": tuple(bird.sessions())}
    except BirdError as e:
        return {"bgp": (), "bgp_error": str(e)}
