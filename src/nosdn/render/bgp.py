"""BGP, rendered: a node's BIRD 2 config that announces its own pod subnets, and the router's
side (FRR, BIRD 2, Cisco IOS, Junos) that learns them, for an inventory with a ``bgp:`` section.

Routers learn where each pod subnet lives the way routers always have, so a cluster can span
L3 segments with no static route per node on the router (issue 14). Both halves are filters
first:

- **The node** (`render_bird_node`) announces exactly its own pod subnets, plus the service
  CIDRs when it is a ``serviceVia`` node: they are blackhole routes in BIRD's own table (BIRD on
  the node has no kernel protocol: it never touches the node's routes), and each session's
  export filter accepts only those prefixes from that static protocol. Never a default route,
  never another node's subnet. A session carries the family of its peer's address (an IPv4 peer
  gets the IPv4 prefixes), so its next hop is always the node's own address of that family.
  Graceful restart (a restart of BIRD or the agent must not withdraw the routes: the router
  keeps them for ``gracefulRestartTime``), optional BFD, MD5, eBGP multihop; the node's address
  is the session's source.
- **The router** (`render_bgp_router`) listens for dynamic neighbours on ``bgp.nodeNetworks``
  (a new node needs no router change) and accepts from them only prefixes inside the cluster
  CIDRs at exactly the node mask length, and takes each inventory node as an explicit neighbour
  that may announce only its own subnets (and the service CIDRs if it is a ``serviceVia``
  node). It sends the nodes nothing: off-link nodes reach each other through their default
  route, the router.

MD5 passwords are **read from ``passwordFile`` at render time** (`read_passwords`, the one I/O
here, called before rendering: renderers stay pure) and written into the config. BIRD, FRR and
IOS have no directive that reads a raw key from a file (BIRD's ``include`` reads config syntax,
not a Secret's bytes), and a key printed through `nosdn.render._quote.password` is known to be
one plain word in every config language. So the rendered file holds the secret: it is written
with mode 0600, the comment says so, and the value never appears in an error message
(`nosdn.render._base.Secret` hides it from ``repr``/``str``).

Names in configs are derived from the cluster's and the nodes' names (`_symbols`), checked by
`token`; two names that derive the same symbol both get a hash suffix, so no two nodes share a
filter.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import IPv4Address

from nosdn.model import Bgp, BgpPeer, Cluster, IPAddress, IPNetwork, Node
from nosdn.render._base import (
    RenderedFile,
    RenderError,
    RenderOptions,
    Secret,
    generated_by,
)
from nosdn.render._quote import (
    addr,
    asn,
    check_cluster,
    comment,
    name,
    net,
    number,
    password,
    token,
)

#: Installed paths of the node's files (``--format bird-node-systemd``, ``--out /``).
NODE_CONF_PATH = "etc/nosdn/bird-node.conf"
NODE_SOCKET_DIR = "nosdn-bird"
NODE_SERVICE_PATH = "etc/systemd/system/nosdn-bird.service"
#: The largest password file read (a key is at most 80 characters; this is far past it).
PASSWORD_FILE_MAX = 4096


# --- the one I/O: passwords --------------------------------------------------------------------
def _peers_for_node(bgp: Bgp, node: Node) -> list[BgpPeer]:
    return [p for p in bgp.peers if p.serves(node.name)]


def _needs_bgp(cluster: Cluster, what: str) -> Bgp:
    if cluster.bgp is None:
        raise RenderError(
            f"{what} needs the inventory's bgp: section (asn:, peers:) — see the README's "
            '"BGP (rendered)"; a cluster read from the Kubernetes API has none yet'
        )
    return cluster.bgp


def _selected_peers(cluster: Cluster, options: RenderOptions) -> list[BgpPeer]:
    """The peers (routers) a router rendering is for: ``options.peers``, or all of them."""
    bgp = _needs_bgp(cluster, "--bgp")
    if not bgp.peers:
        raise RenderError("--bgp: bgp.peers is empty — list the routers the nodes announce to")
    if not options.peers:
        return list(bgp.peers)
    by_addr = {p.address: p for p in bgp.peers}
    missing = [a for a in options.peers if a not in by_addr]
    if missing:
        known = ", ".join(str(p.address) for p in bgp.peers)
        raise RenderError(
            f"--peer {comment(str(missing[0]))}: not one of bgp.peers (peers: {known})"
        )
    return [by_addr[a] for a in options.peers]


def password_files(cluster: Cluster, fmt: str, options: RenderOptions) -> list[tuple[str, str]]:
    """The password files a rendering needs, as (which peer, path)."""
    if cluster.bgp is None:
        return []
    if fmt.startswith("bird-node"):
        node = cluster.node(options.target.node) if options.target and options.target.node else None
        peers = _peers_for_node(cluster.bgp, node) if node is not None else []
    elif options.bgp:
        try:
            peers = _selected_peers(cluster, options)
        except RenderError:
            return []  # the renderer says why
    else:
        return []
    return [
        (f"bgp peer {p.address} passwordFile {comment(p.password_file)}", p.password_file)
        for p in peers
        if p.password_file is not None
    ]


def read_password(path: str, where: str) -> Secret:
    """The MD5 password in ``path``: a regular file of at most `PASSWORD_FILE_MAX` bytes of
    UTF-8, one trailing line break dropped (``echo KEY > file`` writes one). Raises
    `RenderError` naming ``where`` and the file, never showing what it holds."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as e:
        raise RenderError(
            f"{where}: cannot read it ({e.strerror or e}) — the file holds the router's MD5 "
            "password, as a mounted Secret would"
        ) from None
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise RenderError(f"{where}: is not a regular file — give the password file")
        data = f.read(PASSWORD_FILE_MAX + 1)
    if len(data) > PASSWORD_FILE_MAX:
        raise RenderError(f"{where}: is longer than {PASSWORD_FILE_MAX} bytes — not a password")
    try:
        text = data.decode()
    except UnicodeDecodeError:
        raise RenderError(f"{where}: is not UTF-8 text — the value is not shown") from None
    for end in ("\r\n", "\n"):
        if text.endswith(end):
            text = text[: -len(end)]
            break
    secret = Secret(text)
    password(secret, where)  # refused now, with the file named, rather than mid-render
    return secret


def read_passwords(cluster: Cluster, fmt: str, options: RenderOptions) -> RenderOptions:
    """``options`` with the passwords the rendering needs read from their files."""
    from dataclasses import replace

    found = {
        path: read_password(path, where) for where, path in password_files(cluster, fmt, options)
    }
    return replace(options, passwords=tuple(sorted(found.items())))


def _password_of(peer: BgpPeer, options: RenderOptions) -> str | None:
    if peer.password_file is None:
        return None
    where = f"bgp peer {peer.address} passwordFile {comment(peer.password_file)}"
    for path, secret in options.passwords:
        if path == peer.password_file:
            return password(secret, where)
    raise RenderError(f"{where}: not read (nosdn.render.bgp.read_passwords reads it first)")


# --- symbols -----------------------------------------------------------------------------------
def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:6]


def _symbol(text: str, limit: int) -> str:
    sym = re.sub(r"[^A-Za-z0-9_]", "_", text)
    if len(sym) > limit:
        sym = f"{sym[: limit - 7]}_{_digest(text)}"
    return sym


def _symbols(names: Iterable[str], limit: int = 32) -> dict[str, str]:
    """A config symbol per name, unique: names that derive the same one get a hash suffix."""
    names = list(names)
    first = {n: _symbol(n, limit) for n in names}
    count: dict[str, int] = {}
    for s in first.values():
        count[s] = count.get(s, 0) + 1
    return {
        n: token(s if count[s] == 1 else f"{s[: limit - 7]}_{_digest(n)}") for n, s in first.items()
    }


def _cluster_symbol(cluster: Cluster) -> str:
    return token(_symbol(cluster.name, 16))


def _family(version: int) -> str:
    return "ipv4" if version == 4 else "ipv6"


# --- the node's side ---------------------------------------------------------------------------
def _announced(cluster: Cluster, node: Node, version: int) -> list[IPNetwork]:
    """What ``node`` announces in one family: its pod subnets, and the service CIDRs if it is
    a serviceVia node."""
    own = [c for c in node.pod_cidrs if c.version == version]
    if node.name in cluster.service_via:
        own += [c for c in cluster.service_cidrs if c.version == version]
    return own


def _router_id(node: Node) -> str:
    ip4 = node.ip_for(4)
    if ip4 is not None:
        return addr(ip4, node.name, "ips")
    ip6 = node.ip_for(6)
    rid = IPv4Address(int(ip6) & 0xFFFFFFFF) if ip6 is not None else IPv4Address(0)
    if int(rid) == 0:
        raise RenderError(
            f"node {name(node.name)}: no IPv4 address, and its IPv6 address ends in 32 zero bits: "
            "BIRD needs a router id — give the node an IPv4 address"
        )
    return addr(rid)


def _node_target(cluster: Cluster, options: RenderOptions) -> tuple[Bgp, Node]:
    bgp = _needs_bgp(cluster, "--format bird-node")
    check_cluster(cluster)
    target = options.target
    node = cluster.node(target.node) if target is not None and target.node else None
    if node is None:
        raise RenderError("--format bird-node is per node: give --node NAME")
    return bgp, node


def render_bird_node(cluster: Cluster, options: RenderOptions) -> str:
    """The BIRD 2 config of one node: a whole config for a BIRD of its own (see the header)."""
    bgp, node = _node_target(cluster, options)
    nname = name(node.name, node.name)
    local_as = asn(bgp.asn_of(node.name), node.name)
    gr = number(bgp.graceful_restart_time, 1, 4095, "bgp.gracefulRestartTime")
    peers = _peers_for_node(bgp, node)
    sessions = [p for p in peers if node.ip_for(p.address.version) is not None]
    skipped = [p for p in peers if p not in sessions]
    families = sorted({p.address.version for p in sessions})
    shown = {v: [net(c, node.name) for c in _announced(cluster, node, v)] for v in (4, 6)}
    out = [
        f'# nosdn: BIRD 2 config of node {nname} in Kubernetes cluster "{comment(cluster.name)}".',
        f"# {generated_by()}",
        "# It announces exactly this node's own prefixes to its BGP peers, and nothing else:",
    ]
    for v in (4, 6):
        if shown[v]:
            out.append(f"#     IPv{v}: {comment(', '.join(shown[v]))}")
    if not shown[4] and not shown[6]:
        out.append("#     (nothing yet: the node has no pod subnet)")
    out += [
        "# A session carries its peer's family. BIRD here has no kernel protocol: it never",
        "# changes this node's routes and learns nothing (import none).",
        "# Run it as a BIRD of its own:",
        f"#     bird -c /{NODE_CONF_PATH} -s /run/{NODE_SOCKET_DIR}/bird.ctl",
        f"#     birdc -s /run/{NODE_SOCKET_DIR}/bird.ctl configure   (after a re-render)",
    ]
    if any(p.password_file for p in sessions):
        out += [
            "# SECRET: the MD5 passwords below were read from their passwordFile at render time;",
            "# keep this file mode 0600, out of logs and out of version control.",
        ]
    out += ["", f"router id {_router_id(node)};", "", "protocol device {", "}"]
    if any(p.bfd for p in sessions):
        out += ["", "protocol bfd nosdn_bfd {", "}"]
    for v in families:
        fam = _family(v)
        out += ["", f"protocol static nosdn_own_v{v} {{", f"    {fam};"]
        out += [f"    route {c} blackhole;" for c in shown[v]]
        out += ["}", "", f"filter nosdn_export_v{v} {{"]
        if shown[v]:
            out += [
                "    # only this node's own prefixes, only from its static protocol",
                f'    if proto = "nosdn_own_v{v}" && net ~ [ {", ".join(shown[v])} ] then accept;',
            ]
        out += ["    reject;", "}"]
    for p in skipped:
        out += [
            "",
            f"# peer {addr(p.address)} skipped: this node has no IPv{p.address.version} address",
        ]
    syms = _symbols(str(p.address) for p in sessions)
    for p in sessions:
        v = p.address.version
        local_ip = node.ip_for(v)
        assert local_ip is not None
        out += [
            "",
            f"protocol bgp nosdn_peer_{syms[str(p.address)]} {{",
            f"    local {addr(local_ip, node.name, 'ips')} as {local_as};",
            f"    neighbor {addr(p.address)} as {asn(p.asn, None, 'bgp.peers.asn')};",
        ]
        if p.multihop:
            out.append(f"    multihop {number(p.multihop, 2, 255, 'bgp.peers.multihop')};")
        else:
            out.append("    direct;")
        if (pw := _password_of(p, options)) is not None:
            out.append(f'    password "{pw}";')
        if p.bfd:
            out.append("    bfd on;")
        out += [
            # BIRD waits 5 s after start before its first connect: a new node (or a node whose
            # BIRD just restarted) would announce its subnet 5 s late
            "    connect delay time 1;",
            "    graceful restart on;",
            f"    graceful restart time {gr};",
            f"    {_family(v)} {{",
            "        import none;",
            f"        export filter nosdn_export_v{v};",
            "        next hop self;",
            "    };",
            "}",
        ]
    if not sessions:
        out += ["", "# (no peers: bgp.peers has none for this node)"]
    return "\n".join(out) + "\n"


def bird_node_files(cluster: Cluster, options: RenderOptions) -> list[RenderedFile]:
    text = render_bird_node(cluster, options)
    return [RenderedFile("nosdn-bird-node.conf", text, 0o600 if options.passwords else 0o644)]


def _service(cluster: Cluster, node: str) -> str:
    what = comment(f"{node} of cluster {cluster.name}").replace("%", "%%")
    ctl = f"/run/{NODE_SOCKET_DIR}/bird.ctl"
    return f"""\
# {generated_by()}
# BIRD announcing this node's pod subnets over BGP (nosdn render --format bird-node).
# A BIRD of its own (own control socket), so it sits beside any other BIRD on the machine.
[Unit]
Description=nosdn BGP: announce the pod subnets of node {what}
Documentation=man:bird(8)
Wants=network-online.target
After=network-online.target

[Service]
Type=simple
RuntimeDirectory={NODE_SOCKET_DIR}
ExecStartPre=/usr/sbin/bird -p -c /{NODE_CONF_PATH}
ExecStart=/usr/sbin/bird -f -c /{NODE_CONF_PATH} -s {ctl}
ExecReload=/usr/sbin/birdc -s {ctl} configure
Restart=on-failure
RestartSec=2s

[Install]
WantedBy=multi-user.target
"""


def bird_node_systemd_files(cluster: Cluster, options: RenderOptions) -> list[RenderedFile]:
    """The node's BIRD config at its install path, and a service that runs it."""
    text = render_bird_node(cluster, options)
    _, node = _node_target(cluster, options)
    mode = 0o600 if options.passwords else 0o644
    return [
        RenderedFile(NODE_CONF_PATH, text, mode),
        RenderedFile(NODE_SERVICE_PATH, _service(cluster, node.name)),
    ]


# --- the router's side -------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class _Neighbour:
    """An inventory node as the router's explicit neighbour in one family."""

    node: str
    sym: str
    ip: IPAddress
    asn: int
    accept: tuple[IPNetwork, ...]


@dataclass(frozen=True, slots=True)
class _RouterSide:
    """What every router format prints: computed once, so the four cannot disagree."""

    cluster: str
    sym: str
    router_asn: int
    node_asn: int
    families: tuple[int, ...]
    #: (family, listen range): dynamic neighbours
    listen: tuple[IPNetwork, ...]
    #: per family: (cluster CIDR, node mask length) a dynamic neighbour may announce inside
    accept: dict[int, tuple[tuple[IPNetwork, int], ...]]
    neighbours: tuple[_Neighbour, ...]
    password: str | None
    multihop: int
    bfd: bool
    gr_time: int
    peers: tuple[str, ...]


def _router_side(cluster: Cluster, options: RenderOptions) -> _RouterSide:
    if options.target is not None and options.target.kind != "router":
        raise RenderError("--bgp renders the router's side: it takes neither --node nor --external")
    check_cluster(cluster)
    bgp = _needs_bgp(cluster, "--bgp")
    peers = _selected_peers(cluster, options)
    first = peers[0]
    for p in peers[1:]:
        for what, a, b in (
            ("asn", first.asn, p.asn),
            ("passwordFile", first.password_file, p.password_file),
            ("multihop", first.multihop, p.multihop),
            ("bfd", first.bfd, p.bfd),
        ):
            if a != b:
                raise RenderError(
                    f"bgp peers {first.address} and {p.address} differ in {what} "
                    f"({comment(str(a))}, {comment(str(b))}): they are different routers — "
                    "render each one's config with --peer ADDRESS"
                )
    families = tuple(sorted({p.address.version for p in peers}))
    served = [n for n in cluster.nodes if any(p.serves(n.name) for p in peers)]
    syms = _symbols(n.name for n in served)
    neighbours = []
    for n in served:
        for v in families:
            ip = n.ip_for(v)
            if ip is not None:
                neighbours.append(
                    _Neighbour(n.name, syms[n.name], ip, bgp.asn_of(n.name),
                               tuple(_announced(cluster, n, v)))
                )  # fmt: skip
    accept: dict[int, tuple[tuple[IPNetwork, int], ...]] = {
        v: tuple((c, cluster.mask_size(v)) for c in cluster.cluster_cidrs if c.version == v)
        for v in families
    }
    return _RouterSide(
        cluster=comment(cluster.name),
        sym=_cluster_symbol(cluster),
        router_asn=first.asn,
        node_asn=bgp.asn,
        families=families,
        listen=tuple(
            dict.fromkeys(c for p in peers for c in bgp.listen_of(p) if c.version in families)
        ),
        accept=accept,
        neighbours=tuple(neighbours),
        password=_password_of(first, options),
        multihop=first.multihop,
        bfd=first.bfd,
        gr_time=bgp.graceful_restart_time,
        peers=tuple(addr(p.address) for p in peers),
    )


def _header(r: _RouterSide, c: str, platform: str) -> list[str]:
    lines = [
        f'nosdn: BGP for the router of Kubernetes cluster "{r.cluster}" ({platform}), '
        f"as AS {asn(r.router_asn)}",
        f"at {', '.join(r.peers)}.",
        generated_by(),
        "The nodes announce their own pod subnets; this config accepts:",
    ]
    if r.listen:
        lines.append(
            f"  from dynamic neighbours (any node in {', '.join(net(c) for c in r.listen)}, "
            f"AS {asn(r.node_asn)};"
        )
        lines.append("  a new node needs no change here):")
        for v in r.families:
            for cidr, mask in r.accept[v]:
                lines.append(f"    prefixes inside {net(cidr)} at exactly /{mask}")
    else:
        lines.append("  (no bgp.nodeNetworks: only the nodes below; re-render for a new node)")
    if r.neighbours:
        lines += [
            "  from each inventory node: only its own subnets (and the service CIDRs from",
            "  serviceVia nodes); never a default route, never another node's subnet.",
        ]
    else:  # a live cluster's router (the agents announce): it knows no node
        lines.append("  never a default route, never a prefix of another length.")
    lines += [
        "It announces nothing to the nodes (they reach each other via their default route).",
    ]
    if r.password:
        lines.append("SECRET: holds the MD5 password read from passwordFile at render time.")
    return [f"{c} {comment(t)}" if t else c for t in lines] + [c]


def _no_neighbours(r: _RouterSide) -> bool:
    return not r.listen and not r.neighbours


# FRR ---------------------------------------------------------------------------------------------
def _plist_line(kw: str, name: str, seq: int, c: IPNetwork, mask: int | None) -> str:
    text = f"{kw} prefix-list {name} seq {seq} permit {net(c)}"
    if mask is not None and mask != c.prefixlen:
        text += f" ge {mask} le {mask}"
    return text


def _prefix_lists(r: _RouterSide, group: str, cisco: bool) -> list[str]:
    """FRR and IOS share their prefix-list syntax."""
    lines: list[str] = []
    for v in r.families:
        kw = "ip" if v == 4 else "ipv6"
        lst = f"{group}-V{v}"
        if r.accept[v]:
            lines += [
                _plist_line(kw, lst, 5 * (i + 1), c, m) for i, (c, m) in enumerate(r.accept[v])
            ]
        else:
            anyp = "0.0.0.0/0 le 32" if v == 4 else "::/0 le 128"
            lines.append(f"{kw} prefix-list {lst} seq 5 deny {anyp if cisco else 'any'}")
        for nb in r.neighbours:
            if nb.ip.version != v:
                continue
            own = f"{group}-{nb.sym}-V{v}"
            if nb.accept:
                lines += [
                    _plist_line(kw, own, 5 * (i + 1), c, None) for i, c in enumerate(nb.accept)
                ]
            else:
                anyp = "0.0.0.0/0 le 32" if v == 4 else "::/0 le 128"
                lines.append(f"{kw} prefix-list {own} seq 5 deny {anyp if cisco else 'any'}")
    return lines


def _group_options(r: _RouterSide, group: str, cisco: bool) -> list[str]:
    lines = []
    if r.password:
        lines.append(f" neighbor {group} password {r.password}")
    if r.multihop:
        lines.append(f" neighbor {group} ebgp-multihop {number(r.multihop, 2, 255, 'multihop')}")
    if r.bfd:
        lines.append(f" neighbor {group} fall-over bfd" if cisco else f" neighbor {group} bfd")
    return lines


def _frr_like(r: _RouterSide, cisco: bool) -> list[str]:
    group = token(f"NOSDN-{r.sym}")
    nodes = token(f"{group}-NODES")
    none = token(f"{group}-NONE")
    lines = _prefix_lists(r, group, cisco)
    if cisco:
        lines += [
            f"ip prefix-list {none} seq 5 deny 0.0.0.0/0 le 32",
            f"ipv6 prefix-list {none} seq 5 deny ::/0 le 128",
        ]
    else:
        lines.append(f"route-map {none} deny 10")
    lines += ["!", f"router bgp {asn(r.router_asn)}"]
    if cisco:
        lines.append(" bgp graceful-restart")
    if r.listen:
        lines += [
            f" neighbor {group} peer-group",
            f" neighbor {group} remote-as {asn(r.node_asn)}",
            f" neighbor {group} description nosdn: new nodes of cluster {r.sym}",
            *_group_options(r, group, cisco),
        ]
        lines += [f" bgp listen range {net(c)} peer-group {group}" for c in r.listen]
    if r.neighbours:
        lines += [
            f" neighbor {nodes} peer-group",
            f" neighbor {nodes} description nosdn: nodes of cluster {r.sym}",
            *_group_options(r, nodes, cisco),
        ]
        for nb in r.neighbours:
            ip = addr(nb.ip, nb.node, "ips")
            lines += [
                f" neighbor {ip} remote-as {asn(nb.asn, nb.node)}",
                f" neighbor {ip} peer-group {nodes}",
                f" neighbor {ip} description nosdn node {name(nb.node)}",
            ]
    out = "prefix-list" if cisco else "route-map"
    for v in r.families:
        lst = f"{group}-V{v}"
        lines += [" !", f" address-family {_family(v)}{'' if cisco else ' unicast'}"]
        groups = ([group] if r.listen else []) + ([nodes] if r.neighbours else [])
        for g in groups:
            lines += [
                f"  neighbor {g} activate",
                f"  neighbor {g} prefix-list {lst} in",
                f"  neighbor {g} {out} {none} out",
            ]
        for nb in r.neighbours:
            if nb.ip.version == v:
                ip = addr(nb.ip, nb.node, "ips")
                lines.append(f"  neighbor {ip} prefix-list {group}-{nb.sym}-V{v} in")
        lines.append(" exit-address-family")
    lines.append("exit" if not cisco else "!")
    return lines


def render_frr_bgp(cluster: Cluster, options: RenderOptions) -> str:
    r = _router_side(cluster, options)
    lines = _header(r, "!", "FRR bgpd")
    lines += [
        "! Load with `vtysh -f FILE`. FRR is a graceful-restart helper by default: it keeps a",
        f"! restarting node's routes for the time the node asks ({r.gr_time} s).",
        "!",
    ]
    if _no_neighbours(r):
        lines.append("! (no neighbours: no bgp.nodeNetworks and no node peers with this router)")
    lines += _frr_like(r, cisco=False)
    return "\n".join(lines) + "\n"


def render_cisco_bgp(cluster: Cluster, options: RenderOptions) -> str:
    r = _router_side(cluster, options)
    if r.password and len(r.password) > 25:
        raise RenderError(
            f"bgp peer {r.peers[0]} passwordFile: IOS takes an MD5 password of at most 25 "
            "characters (the value is not shown) — use a shorter one on both sides"
        )
    lines = _header(r, "!", "Cisco IOS / IOS XE")
    lines += [
        "! Paste into `configure terminal`. `bgp graceful-restart` keeps a restarting node's",
        f"! routes for the time it asks ({r.gr_time} s).",
        "!",
    ]
    if _no_neighbours(r):
        lines.append("! (no neighbours: no bgp.nodeNetworks and no node peers with this router)")
    lines += _frr_like(r, cisco=True)
    return "\n".join(lines) + "\n"


# BIRD --------------------------------------------------------------------------------------------
def _bird_set(items: Iterable[str]) -> str:
    return f"[ {', '.join(items)} ]"


def render_bird_bgp(cluster: Cluster, options: RenderOptions, *, standalone: bool = False) -> str:
    """The router's BGP side for BIRD 2: a fragment to include from bird.conf (``standalone``
    adds a router id, ``protocol device`` and kernel protocols that install what it learns, for
    a router that runs nothing else, as the tests' router does)."""
    r = _router_side(cluster, options)
    sym = f"nosdn_{r.sym}"
    lines = _header(r, "#", "BIRD 2")
    if standalone:
        rid = next((p for p in r.peers if ":" not in p), None)
        lines += [f"router id {rid or '192.0.2.1'};", "", "protocol device {", "}"]
        for v in r.families:
            lines += ["", f"protocol kernel {sym}_kernel_v{v} {{", f"    {_family(v)} {{"]
            lines += ["        export all;", "    };", "}"]
    else:
        lines += [
            '# Include it from bird.conf (include "/etc/bird/nosdn-bgp.conf";) and export what',
            "# it learns to the kernel: protocol kernel { ipv4 { export all; }; }",
        ]
    if r.bfd:
        lines += ["", f"protocol bfd {sym}_bfd {{", "}"]
    for v in r.families:
        if r.accept[v]:
            items = [f"{net(c)}{{{m},{m}}}" for c, m in r.accept[v]]
            test = f"    if net ~ {_bird_set(items)} then accept;"
        else:
            test = f"    # (no IPv{v} clusterCIDRs: nothing is accepted)"
        lines += ["", f"filter {sym}_in_v{v} {{", test, "    reject;", "}"]
        for nb in r.neighbours:
            if nb.ip.version == v:
                lines += ["", f"filter {sym}_{nb.sym}_in_v{v} {{"]
                if nb.accept:
                    own = _bird_set(net(c, nb.node) for c in nb.accept)
                    lines.append(f"    if net ~ {own} then accept;")
                lines += ["    reject;", "}"]
    lines += ["", f"template bgp {sym}_tpl {{", f"    local as {asn(r.router_asn)};"]
    lines.append(f"    multihop {r.multihop};" if r.multihop else "    direct;")
    if r.password:
        lines.append(f'    password "{r.password}";')
    if r.bfd:
        lines.append("    bfd on;")
    lines += ["    graceful restart on;", "}"]

    def session(proto: str, neighbor: str, v: int, filt: str, extra: str = "") -> list[str]:
        return [
            "",
            f"protocol bgp {proto} from {sym}_tpl {{",
            f"    {neighbor};",
            *([f"    {extra};"] if extra else []),
            f"    {_family(v)} {{",
            f"        import filter {filt};",
            "        export none;",
            "    };",
            "}",
        ]

    for i, c in enumerate(r.listen):
        v = c.version
        lines += session(
            f"{sym}_dyn{i + 1}_v{v}",
            f"neighbor range {net(c)} as {asn(r.node_asn)}",
            v,
            f"{sym}_in_v{v}",
            f'dynamic name "{sym}_dyn{i + 1}_v{v}_"',
        )
    for nb in r.neighbours:
        v = nb.ip.version
        lines.append("")
        lines.append(f"# node {name(nb.node)}")
        lines += session(
            f"{sym}_{nb.sym}_v{v}",
            f"neighbor {addr(nb.ip, nb.node, 'ips')} as {asn(nb.asn, nb.node)}",
            v,
            f"{sym}_{nb.sym}_in_v{v}",
        )[1:]
    if _no_neighbours(r):
        lines += ["", "# (no neighbours: no bgp.nodeNetworks and no node peers with this router)"]
    return "\n".join(lines) + "\n"


# Junos -------------------------------------------------------------------------------------------
def render_junos_bgp(cluster: Cluster, options: RenderOptions) -> str:
    r = _router_side(cluster, options)
    base = token(f"nosdn-{r.sym.replace('_', '-')}")
    cfg = token(f"{base}-bgp")
    g = f"set groups {cfg}"
    lines = _header(r, "#", "Junos set commands")
    lines += [
        f"# Everything lives in configuration group {cfg}, which this file deletes first.",
        f"# The router's AS must be {asn(r.router_asn)} (routing-options autonomous-system).",
        "#     configure; load set terminal (paste, then Ctrl-D); show | compare; commit",
        f"delete groups {cfg}",
    ]
    inn, none = f"{base}-in", f"{base}-none"

    def route_filters(policy: str, term: str, items: list[tuple[IPNetwork, int | None]]) -> None:
        for c, m in items:
            how = "exact" if m is None or m == c.prefixlen else f"prefix-length-range /{m}-/{m}"
            lines.append(
                f"{g} policy-options policy-statement {policy} term {term} from route-filter "
                f"{net(c)} {how}"
            )
        if items:
            lines.append(f"{g} policy-options policy-statement {policy} term {term} then accept")

    for v in r.families:
        route_filters(inn, f"pods-v{v}", [(c, m) for c, m in r.accept[v]])
    lines.append(f"{g} policy-options policy-statement {inn} then reject")
    for nb in r.neighbours:
        pol = token(f"{base}-{nb.sym.replace('_', '-')}-v{nb.ip.version}-in")
        route_filters(pol, "own", [(c, None) for c in nb.accept])
        lines.append(f"{g} policy-options policy-statement {pol} then reject")
    lines.append(f"{g} policy-options policy-statement {none} then reject")

    def group(gname: str, peer_as: int | None, external: bool) -> None:
        pre = f"{g} protocols bgp group {gname}"
        lines.append(f"{pre} type {'external' if external else 'internal'}")
        if peer_as is not None:
            lines.append(f"{pre} peer-as {asn(peer_as)}")
        lines.extend([f"{pre} import {inn}", f"{pre} export {none}", f"{pre} graceful-restart"])
        for v in r.families:
            lines.append(f"{pre} family {'inet' if v == 4 else 'inet6'} unicast")
        if r.password:
            lines.append(f'{pre} authentication-key "{r.password}"')
        if r.multihop:
            lines.append(f"{pre} multihop ttl {number(r.multihop, 2, 255, 'multihop')}")
        if r.bfd:
            lines.append(f"{pre} bfd-liveness-detection minimum-interval 300")

    if r.listen:
        dyn = token(f"{base}-dynamic")
        group(dyn, r.node_asn, r.node_asn != r.router_asn)
        lines += [f"{g} protocols bgp group {dyn} allow {net(c)}" for c in r.listen]
    if r.neighbours:
        kinds = {nb.asn == r.router_asn for nb in r.neighbours}
        if len(kinds) > 1:
            raise RenderError(
                "--format junos --bgp: some nodes' ASN equals the router's and some not; a Junos "
                "group is internal or external, not both — give those nodes one kind of ASN"
            )
        nodes = token(f"{base}-nodes")
        group(nodes, None, r.neighbours[0].asn != r.router_asn)
        pre = f"{g} protocols bgp group {nodes}"
        for nb in r.neighbours:
            ip = addr(nb.ip, nb.node, "ips")
            pol = token(f"{base}-{nb.sym.replace('_', '-')}-v{nb.ip.version}-in")
            lines += [
                f"{pre} neighbor {ip} description nosdn-node-{name(nb.node)}",
                f"{pre} neighbor {ip} peer-as {asn(nb.asn, nb.node)}",
                f"{pre} neighbor {ip} import {pol}",
            ]
    if _no_neighbours(r):
        lines.append("# (no neighbours: no bgp.nodeNetworks and no node peers with this router)")
    lines.append(f"set apply-groups {cfg}")
    return "\n".join(lines) + "\n"


ROUTER_BGP = {
    "frr": ("nosdn-frr-bgp.conf", render_frr_bgp),
    "bird": ("nosdn-bird-bgp.conf", render_bird_bgp),
    "cisco": ("nosdn-cisco-ios-bgp.txt", render_cisco_bgp),
    "junos": ("nosdn-junos-bgp.set", render_junos_bgp),
}


def router_bgp_files(fmt: str, cluster: Cluster, options: RenderOptions) -> list[RenderedFile]:
    path, fn = ROUTER_BGP[fmt]
    return [RenderedFile(path, fn(cluster, options), 0o600 if options.passwords else 0o644)]


__all__ = [
    "ROUTER_BGP",
    "bird_node_files",
    "bird_node_systemd_files",
    "password_files",
    "read_password",
    "read_passwords",
    "render_bird_bgp",
    "render_bird_node",
    "router_bgp_files",
]
