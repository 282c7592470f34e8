"""The one way each output language is written: every value a renderer prints goes through here.

A rendered script runs as root and a router config is pasted into a router, yet the names and
addresses in them come from an inventory or a Node object, which its kubelet writes and nobody
validates (the standard library even accepts any text after ``%`` in an IPv6 address). The input
checks refuse such values, but a `Cluster` can be built without them, so the renderers do not
rely on the checks: a renderer prints a value only through the function of its output language.

- Router configs and the script's data tables take no quoting, so they take no strange value
  either: `addr` and `net` print an address or prefix from its ``ipaddress`` object and refuse a
  zone id or anything that does not read back as the same object; `name` and `token` refuse a
  string that does not fully match a strict pattern (``fullmatch``: ``$`` would let a trailing
  newline through). `check_cluster` runs those checks over a whole cluster first, so a refusal
  names the node, the field and the value.
- Shell commands get `sh`: a value as one single-quoted word unless it is a plain token already,
  so plain values read as they always did and shellcheck has nothing to say.
- A BGP MD5 password gets `password`: router configs read it as one word (FRR, Cisco) or a
  quoted string (BIRD, Junos), so it must be one plain word: letters, digits and a few
  punctuation marks that no config language treats specially. A refusal never shows it.
- Comments in every language get `comment`: one short line, printable characters only.
- DOT gets `dot_str` (a quoted string) and `dot_html` (text inside an HTML-like label).
- JSON is written by ``json.dumps`` only (its own escaping is complete).
"""

from __future__ import annotations

import html
import re
import shlex
from collections.abc import Iterable
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network

from nosdn.model import Cluster, IPAddress, IPNetwork
from nosdn.render._base import RenderError, Secret

#: A node name: what Kubernetes allows (DNS-1123 subdomain) and a bit more (``_``, capitals),
#: never a character any output language treats specially.
NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,251}[A-Za-z0-9])?")
#: A token derived from a name (BIRD symbol, Junos group, Cisco route name, a shell variable).
TOKEN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,254}")
_ADDR = re.compile(r"[0-9A-Fa-f:.]{2,45}")
_NET = re.compile(r"[0-9A-Fa-f:.]{2,45}/[0-9]{1,3}")


def _shown(value: object) -> str:
    """A value as a refusal shows it: repr (so a newline shows as ``\\n``), cut short."""
    text = repr(str(value))
    return text if len(text) <= 80 else text[:77] + "..."


def _refuse(value: object, why: str, node: str | None = None, field: str = "") -> RenderError:
    where = f"node {_shown(node)[1:-1]}: " if node is not None else ""
    what = f"{field} " if field else ""
    return RenderError(f"{where}{what}{_shown(value)}: {why} — refusing to render it")


def addr(ip: IPAddress, node: str | None = None, field: str = "address") -> str:
    """An address as text for any output: from its object, plain (no zone id), or refused."""
    text = str(ip)
    if not isinstance(ip, IPv4Address | IPv6Address) or not _ADDR.fullmatch(text):
        raise _refuse(
            text, "not a plain IP address (a zone id or other text after it)", node, field
        )
    back = ip_address(text)
    if back != ip or getattr(back, "scope_id", None):
        raise _refuse(text, "does not read back as the same plain address", node, field)
    return text


def net(n: IPNetwork, node: str | None = None, field: str = "prefix") -> str:
    """A prefix as text for any output: from its object, plain (no zone id), or refused."""
    text = str(n)
    if not isinstance(n, IPv4Network | IPv6Network) or not _NET.fullmatch(text):
        raise _refuse(text, "not a plain IP prefix (a zone id or other text in it)", node, field)
    if ip_network(text) != n:
        raise _refuse(text, "does not read back as the same prefix", node, field)
    return text


def name(text: str, node: str | None = None, field: str = "name") -> str:
    """A node name for any output, or refused: it must fully match `NAME`."""
    if not isinstance(text, str) or not NAME.fullmatch(text):
        raise _refuse(
            text,
            "a name is letters, digits, '.', '_' or '-', starting and ending with a letter or "
            "digit (a Kubernetes node name)",
            node,
            field,
        )
    return text


def asn(value: int, node: str | None = None, field: str = "asn") -> str:
    """An AS number for any router config: a whole number from 1 to 4294967295, or refused."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 4294967295:
        raise _refuse(value, "not an AS number (1 to 4294967295)", node, field)
    return str(value)


def number(value: int, low: int, high: int, field: str) -> str:
    """A whole number setting (a TTL, a time) within its range, or refused."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise _refuse(value, f"not a whole number from {low} to {high}", None, field)
    return str(value)


def token(text: str) -> str:
    """A token a renderer derived from a name (it replaced every other character): checked
    again, so a mistake in the derivation is a refusal, not an injection."""
    if not TOKEN.fullmatch(text):
        raise _refuse(text, "not a plain config token")
    return text


#: A BGP MD5 password every router config takes as is: no quote, backslash, space, ``!``, ``#``,
#: ``;``, brace or control character; at most 80 characters (Linux's TCP MD5 key limit).
PASSWORD = re.compile(r"[A-Za-z0-9._~+=@%^:,/*-]{1,80}")


def password(secret: Secret, where: str) -> str:
    """A BGP password for any router config, or refused, naming ``where`` it came from
    (the peer and its file), never the value."""
    value = secret.reveal() if isinstance(secret, Secret) else None
    if value is None or not PASSWORD.fullmatch(value):
        raise RenderError(
            f"{where}: the password is not 1 to 80 letters, digits or ._~+=@%^:,/*- "
            "(no space, quote, backslash, '!', '#' or ';', which router configs read as "
            "syntax) — refusing to render it; the value is not shown. Use e.g. "
            "`openssl rand -hex 20` for a new one"
        )
    return value


def sh(value: str | int) -> str:
    """``value`` as exactly one shell word: as is when it is a plain token, else single-quoted
    (``'`` written as ``'\\''``). Control characters are refused, since a script that holds
    them cannot go through a YAML file (cloud-init) and nobody means them."""
    text = str(value)
    if any(not c.isprintable() for c in text):
        raise _refuse(text, "holds control or line-break characters")
    return shlex.quote(text)


#: Longer comment text is cut: FRR's vtysh reads a long line in pieces, and runs the
#: pieces after the first as commands.
COMMENT_MAX = 200


def comment(text: str) -> str:
    """Text safe on one comment line of any format: every character that is not printable
    (line breaks included, Unicode ones too) becomes a space, and it is cut at `COMMENT_MAX`."""
    text = str(text)
    if len(text) > COMMENT_MAX:
        text = text[: COMMENT_MAX - 3] + "..."
    return "".join(c if c.isprintable() else " " for c in text)


def dot_str(text: str) -> str:
    """A DOT quoted string: backslashes and quotes escaped, one printable line."""
    return '"' + comment(text).replace("\\", "\\\\").replace('"', '\\"') + '"'


def dot_html(text: object) -> str:
    """Text inside a DOT HTML-like label: entities escaped, one printable line."""
    return html.escape(comment(str(text)), quote=True)


def check_cluster(cluster: Cluster) -> None:
    """Every name, address and prefix a renderer may print, checked up front so that a refusal
    names the node, the field and the value (`addr`, `net` and `name` refuse again when
    printing, in case a value reaches a renderer another way)."""
    for n in cluster.nodes:
        name(n.name, n.name)
        for ip in n.ips:
            addr(ip, n.name, "ips")
        for c in n.pod_cidrs:
            net(c, n.name, "podCIDRs")
    _nets(cluster.cluster_cidrs, "clusterCIDRs")
    _nets(cluster.service_cidrs, "serviceCIDRs")
    for via in cluster.service_via:
        name(via, None, "serviceVia")
    if cluster.bgp is not None:
        b = cluster.bgp
        asn(b.asn, None, "bgp.asn")
        number(b.graceful_restart_time, 1, 4095, "bgp.gracefulRestartTime")
        _nets(b.node_networks, "bgp.nodeNetworks")
        for node, a in b.node_asns:
            asn(a, node, "asn")
        for i, peer in enumerate(b.peers):
            addr(peer.address, None, f"bgp.peers[{i}].address")
            asn(peer.asn, None, f"bgp.peers[{i}].asn")
            if peer.multihop:
                number(peer.multihop, 2, 255, f"bgp.peers[{i}].multihop")
            _nets(peer.node_networks, f"bgp.peers[{i}].nodeNetworks")
            for served in peer.nodes:
                name(served, None, f"bgp.peers[{i}].nodes")


def _nets(nets: Iterable[IPNetwork], field: str) -> None:
    for c in nets:
        net(c, None, field)
