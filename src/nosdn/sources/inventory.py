"""The inventory file: the post's "simple hash table" of nodes, as YAML.

Field names follow Kubernetes (``podCIDRs``, ``clusterCIDRs``); plural lists accept the singular
shorthand (``ip: 10.0.0.1``, ``podCIDR: ...``). An optional ``bgp:`` section (and a node's
``asn:``) says how the nodes announce their pod subnets to routers (`nosdn.model.Bgp`).
Parsing never stops at the first bad value: it collects a `Problem` for each one, builds the
model from what parsed, runs the checks on that, and raises once with everything. Loading uses
libyaml (fast enough for 50,000 nodes); writing back (``allocate --write``) uses ruamel's round
trip, which keeps comments and order.

Reading uses yaml-rs (Rust, YAML 1.2: ``no`` stays a string, duplicate keys are an error),
an order of magnitude faster than PyYAML's libyaml loader on a big inventory (bench/plan.py).
PyYAML's loader remains the fallback where yaml-rs has no wheel.
"""

from __future__ import annotations

import ipaddress
import os
import re
import stat
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from nosdn.addr import parse_ip, parse_net
from nosdn.checks import check_cluster
from nosdn.echo import cut, echo
from nosdn.invocation import cmd
from nosdn.ipam import Allocation, allocate
from nosdn.model import (
    DEFAULT_GRACEFUL_RESTART,
    Bgp,
    BgpPeer,
    Cluster,
    IPAddress,
    IPNetwork,
    Node,
)
from nosdn.problems import Problem, ProblemsError, did_you_mean
from nosdn.yamlsplit import Split, split_nodes

TOP_KEYS = {
    "clusterName",
    "clusterCIDRs",
    "clusterCIDR",
    "nodeCIDRMaskSize",
    "nodeCIDRMaskSizeIPv4",
    "nodeCIDRMaskSizeIPv6",
    "serviceCIDRs",
    "serviceCIDR",
    "serviceVia",
    "bgp",
    "nodes",
}
NODE_KEYS = {"name", "ips", "ip", "podCIDRs", "podCIDR", "instanceId", "asn"}
BGP_KEYS = {"asn", "peers", "gracefulRestartTime", "nodeNetworks"}
PEER_KEYS = {"address", "asn", "passwordFile", "multihop", "bfd", "nodes", "nodeNetworks"}
#: 0 is reserved (RFC 7607), 23456 is AS_TRANS (RFC 6793): neither can be a speaker's ASN.
ASN_MAX = 4294967295
_AS_TRANS = 23456
#: BIRD's limit, and the 12 bits the graceful restart capability has for the time.
GRACEFUL_RESTART_MAX = 4095
#: Files from this size on have their node list parsed a piece (this many nodes) at a time.
_SPLIT_FROM = 64 * 1024
_PIECE = 1000

try:
    import yaml_rs

    def _parse_yaml(text: str) -> object:
        return yaml_rs.loads(text, parse_datetime=False)

    _YAMLError: tuple[type[Exception], ...] = (yaml_rs.YAMLDecodeError,)
except ImportError:  # pragma: no cover - platforms without a yaml-rs wheel
    import yaml  # PyYAML: slower to import, so only where yaml-rs is missing

    def _parse_yaml(text: str) -> object:
        loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        return yaml.load(text, Loader=loader)

    _YAMLError = (yaml.YAMLError,)


class InventoryError(ProblemsError):
    """The inventory could not be used; ``problems`` lists every reason."""


def _as_list(value: object) -> Sequence[object]:
    if value is None:
        return ()
    if isinstance(value, list | tuple):
        return value
    return (value,)


def _plural(
    raw: Mapping[str, Any], plural: str, singular: str, node: str | None, problems: list[Problem]
) -> Sequence[object]:
    if plural in raw and singular in raw:
        problems.append(
            Problem(
                node,
                plural,
                f"{echo(repr(raw[plural]))} and {singular} {echo(repr(raw[singular]))}",
                "both the list and its singular shorthand are set",
                f"keep only {plural}",
            )
        )
    return _as_list(raw.get(plural, raw.get(singular)))


def parse_address(
    value: object, node: str | None, field: str, out: list[Problem]
) -> IPAddress | None:
    text = str(value)
    try:
        return parse_ip(text)
    except ValueError as e:
        why = "is not an IP address"
        if "%" in text or text != text.strip():
            why = "is not a plain IP address (" + str(e).rpartition(" has ")[2] + ")"
        out.append(Problem(node, field, echo(text), why, "write e.g. 10.10.0.1 or fd00::1"))
        return None


def parse_network(
    value: object, node: str | None, field: str, out: list[Problem]
) -> IPNetwork | None:
    text = str(value)
    if "%" in text or text != text.strip():
        try:
            parse_net(text)
        except ValueError as e:
            why = "is not a plain CIDR (" + str(e).rpartition(" has ")[2] + ")"
            out.append(Problem(node, field, echo(text), why, "write e.g. 172.17.1.0/24"))
            return None
    if "/" not in text:
        shown = echo(text)
        out.append(
            Problem(
                node, field, shown, "has no prefix length", f"write it as a CIDR, e.g. {shown}/24"
            )
        )
        return None
    try:
        return parse_net(text)
    except ValueError as e:
        if "host bits set" in str(e):
            fixed = ipaddress.ip_network(text, strict=False)
            why, hint = "has host bits set", f"did you mean {fixed}?"
        else:
            why, hint = "is not a valid CIDR", "write e.g. 172.17.1.0/24"
        out.append(Problem(node, field, echo(text), why, hint))
        return None


#: A node's list fields, in `Node`'s order: (field, its singular shorthand, how one value is
#: read: the value, or None once a problem naming node, field and value is recorded).
_NODE_LISTS: tuple[
    tuple[str, str, Callable[[object, str | None, str, list[Problem]], Any]], ...
] = (
    ("ips", "ip", parse_address),
    ("podCIDRs", "podCIDR", parse_network),
)


def _parse_int(raw: Mapping[str, Any], key: str, default: int, out: list[Problem]) -> int:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        out.append(Problem(None, key, echo(repr(value)), "is not a whole number", "write e.g. 24"))
        return default
    return value


def _unknown_fields(
    raw: Mapping[str, Any], known: set[str], node: str | None, kind: str, out: list[Problem]
) -> None:
    """A problem for each key of ``raw`` (a node, or the inventory's top) not in ``known``."""
    for key in raw:
        if key not in known:
            out.append(
                Problem(
                    node,
                    echo(str(key)),
                    echo(repr(raw[key])),
                    f"is not a known {kind} field",
                    f"{did_you_mean(str(key), known)}known fields: {', '.join(sorted(known))}",
                )
            )


def _parse_node(
    index: int, raw: object, out: list[Problem], asns: list[tuple[str, object]]
) -> Node | None:
    if type(raw) is not dict and not isinstance(raw, Mapping):  # YAML gives dicts: no ABC check
        out.append(
            Problem(
                None, f"nodes[{index}]", echo(repr(raw)), "is not a mapping", "write name: and ip:"
            )
        )
        return None
    name = raw.get("name")
    if name is not None and not isinstance(name, str):
        out.append(
            Problem(
                None,
                f"nodes[{index}].name",
                echo(repr(name)),
                "must be a string",
                f'quote it: name: "{echo(name)}"',
            )
        )
        return None
    if not name:
        out.append(
            Problem(
                None, f"nodes[{index}].name", repr(name), "is missing", "give every node a name"
            )
        )
        return None
    if not NODE_KEYS.issuperset(raw):
        _unknown_fields(raw, NODE_KEYS, name, "node", out)
    ips, cidrs = [
        tuple(
            [
                v
                for x in _plural(raw, key, short, name, out)
                if (v := read(x, name, key, out)) is not None
            ]
        )
        for key, short, read in _NODE_LISTS
    ]
    instance = raw.get("instanceId")
    if "asn" in raw:
        asns.append((name, raw["asn"]))
    return Node(name, ips, cidrs, str(instance) if instance is not None else None)


def parse_asn(value: object, node: str | None, field: str, out: list[Problem]) -> int | None:
    """An autonomous system number: a whole number from 1 to 4294967295, not 23456."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= ASN_MAX:
        out.append(
            Problem(
                node,
                field,
                echo(value),
                f"is not an AS number (a whole number from 1 to {ASN_MAX})",
                "write e.g. 64512 (private ASNs: 64512-65534, 4200000000-4294967294)",
            )
        )
        return None
    if value == _AS_TRANS:
        out.append(
            Problem(
                node,
                field,
                str(value),
                "is AS_TRANS (RFC 6793), which stands in for 4-byte ASNs and no speaker may use",
                "pick another ASN, e.g. 64512",
            )
        )
        return None
    return value


def _unknown_keys(
    raw: Mapping[str, Any], known: set[str], node: str | None, where: str, out: list[Problem]
) -> None:
    for key in raw:
        if key not in known:
            out.append(
                Problem(
                    node,
                    f"{where}.{echo(str(key))}",
                    echo(raw[key]),
                    "is not a known field",
                    f"{did_you_mean(str(key), known)}known fields: {', '.join(sorted(known))}",
                )
            )


def _parse_peer(index: int, raw: object, base: Path, out: list[Problem]) -> BgpPeer | None:
    where = f"bgp.peers[{index}]"
    if not isinstance(raw, Mapping):
        out.append(Problem(None, where, echo(raw), "is not a mapping", "write address: and asn:"))
        return None
    _unknown_keys(raw, PEER_KEYS, None, where, out)
    n = len(out)
    address = None
    if "address" not in raw:
        out.append(
            Problem(
                None,
                f"{where}.address",
                "(missing)",
                "is missing",
                "give the router's address, e.g. 10.10.0.254",
            )
        )
    else:
        address = parse_address(raw["address"], None, f"{where}.address", out)
    asn = None
    if "asn" not in raw:
        out.append(
            Problem(
                None,
                f"{where}.asn",
                "(missing)",
                "is missing",
                "give the router's AS number, e.g. 65000",
            )
        )
    else:
        asn = parse_asn(raw["asn"], None, f"{where}.asn", out)
    password_file = None
    if (pf := raw.get("passwordFile")) is not None:
        if not isinstance(pf, str) or not pf or len(pf) > 4096 or not pf.isprintable():
            out.append(
                Problem(
                    None,
                    f"{where}.passwordFile",
                    echo(pf),
                    "is not a file path",
                    "give the path of a file holding the MD5 password (a mounted Secret)",
                )
            )
        else:
            # relative to the inventory, like the paths in a kubeconfig
            password_file = str(base / pf) if not os.path.isabs(pf) else pf
    multihop = raw.get("multihop", False)
    ttl = 0
    if multihop is True:
        ttl = 255
    elif multihop is False or multihop is None:
        ttl = 0
    elif isinstance(multihop, int) and 2 <= multihop <= 255:
        ttl = multihop
    else:
        out.append(
            Problem(
                None,
                f"{where}.multihop",
                echo(multihop),
                "is neither true/false nor a TTL from 2 to 255",
                "write multihop: true, or the number of hops to the router plus one",
            )
        )
    bfd = raw.get("bfd", False)
    if not isinstance(bfd, bool):
        out.append(
            Problem(None, f"{where}.bfd", echo(bfd), "is not true or false", "write bfd: true")
        )
        bfd = False
    names = _as_list(raw.get("nodes"))
    if not all(isinstance(v, str) for v in names):
        out.append(
            Problem(
                None,
                f"{where}.nodes",
                echo(raw.get("nodes")),
                "is not a list of node names",
                "list the names of the nodes that peer with this router (omit it: every node)",
            )
        )
        names = []
    networks = [
        c
        for v in _as_list(raw.get("nodeNetworks"))
        if (c := parse_network(v, None, f"{where}.nodeNetworks", out)) is not None
    ]
    if len(out) > n or address is None or asn is None:
        return None
    return BgpPeer(
        address, asn, password_file, ttl, bfd, tuple(str(v) for v in names), tuple(networks)
    )


def _parse_bgp(
    raw: object, source: str, asns: list[tuple[str, object]], out: list[Problem]
) -> Bgp | None:
    """The ``bgp:`` section (local ASN, peers, graceful restart time, node networks) and the
    nodes' ``asn`` overrides; every bad value is a `Problem`."""
    if raw is None:
        for node, _ in asns:
            out.append(
                Problem(
                    node,
                    "asn",
                    echo(_),
                    "is set but the inventory has no bgp: section",
                    "add bgp: with the cluster's asn: and peers:, or drop the node's asn",
                )
            )
        return None
    if not isinstance(raw, Mapping):
        out.append(Problem(None, "bgp", echo(raw), "is not a mapping", "write asn: and peers:"))
        return None
    _unknown_keys(raw, BGP_KEYS, None, "bgp", out)
    n = len(out)
    asn = None
    if "asn" not in raw:
        out.append(
            Problem(
                None, "bgp.asn", "(missing)", "is missing", "give the nodes' AS number, e.g. 64512"
            )
        )
    else:
        asn = parse_asn(raw["asn"], None, "bgp.asn", out)
    gr = raw.get("gracefulRestartTime", DEFAULT_GRACEFUL_RESTART)
    if isinstance(gr, bool) or not isinstance(gr, int) or not 1 <= gr <= GRACEFUL_RESTART_MAX:
        out.append(
            Problem(
                None,
                "bgp.gracefulRestartTime",
                echo(gr),
                f"is not a number of seconds from 1 to {GRACEFUL_RESTART_MAX}",
                f"write e.g. {DEFAULT_GRACEFUL_RESTART} (longer than a node's restart takes)",
            )
        )
        gr = DEFAULT_GRACEFUL_RESTART
    raw_peers = raw.get("peers")
    if not isinstance(raw_peers, list) or not raw_peers:
        out.append(
            Problem(
                None,
                "bgp.peers",
                echo(raw_peers),
                "is not a list of routers",
                "list the routers the nodes announce to: - {address: 10.10.0.254, asn: 65000}",
            )
        )
        raw_peers = []
    base = Path(source).parent
    peers = [p for i, v in enumerate(raw_peers) if (p := _parse_peer(i, v, base, out))]
    networks = [
        c
        for v in _as_list(raw.get("nodeNetworks"))
        if (c := parse_network(v, None, "bgp.nodeNetworks", out)) is not None
    ]
    node_asns = [
        (node, a) for node, value in asns if (a := parse_asn(value, node, "asn", out)) is not None
    ]
    if len(out) > n or asn is None:
        return None
    return Bgp(asn, tuple(peers), gr, tuple(networks), tuple(node_asns))


def parse_inventory(data: object, source: str = "inventory") -> tuple[Cluster, list[Problem]]:
    """Turn parsed YAML into a Cluster plus every problem met on the way (no checks yet);
    ``source`` (the file) names the document in a problem with its shape."""
    return _parse(data, source, None)


def _parse(
    data: object, source: str, entries: Iterable[object] | None
) -> tuple[Cluster, list[Problem]]:
    """`parse_inventory`; ``entries``, when the file reader has them, are the node list's
    entries in order (``data``'s ``nodes`` is then left unread): read one at a time, so the
    reader can free each once it is parsed."""
    problems: list[Problem] = []
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        problems.append(
            Problem(None, source, type(data).__name__, "is not a mapping", "see examples/")
        )
        return Cluster(()), problems
    _unknown_fields(data, TOP_KEYS, None, "inventory", problems)
    cluster_cidrs = [
        n
        for v in _plural(data, "clusterCIDRs", "clusterCIDR", None, problems)
        if (n := parse_network(v, None, "clusterCIDRs", problems)) is not None
    ]
    service_cidrs = [
        n
        for v in _plural(data, "serviceCIDRs", "serviceCIDR", None, problems)
        if (n := parse_network(v, None, "serviceCIDRs", problems)) is not None
    ]
    v4_key = "nodeCIDRMaskSizeIPv4" if "nodeCIDRMaskSizeIPv4" in data else "nodeCIDRMaskSize"
    mask4 = _parse_int(data, v4_key, 24, problems)
    mask6 = _parse_int(data, "nodeCIDRMaskSizeIPv6", 64, problems)
    via = [str(v) for v in _as_list(data.get("serviceVia"))]
    if entries is None:
        entries = data.get("nodes")
        if entries is None:
            entries = []
        if not isinstance(entries, Sequence) or isinstance(entries, str):
            problems.append(
                Problem(None, "nodes", echo(repr(entries)), "is not a list", "see examples/")
            )
            entries = []
    nodes: list[Node] = []
    asns: list[tuple[str, object]] = []
    for i, raw in enumerate(entries):
        if (nd := _parse_node(i, raw, problems, asns)) is not None:
            nodes.append(nd)
    name = data.get("clusterName", "kubernetes")
    cluster = Cluster(
        nodes=tuple(nodes),
        cluster_cidrs=tuple(cluster_cidrs),
        node_cidr_mask_size_v4=mask4,
        node_cidr_mask_size_v6=mask6,
        service_cidrs=tuple(service_cidrs),
        service_via=tuple(via),
        name=str(name),
        bgp=_parse_bgp(data.get("bgp"), source, asns, problems),
    )
    return cluster, problems


def read_yaml(path: Path) -> object:
    return _parse_text(_read_text(path), path)


#: The largest inventory read: 50,000 nodes take ~3 MB, so this is far past any real one and
#: still well inside memory.
MAX_BYTES = 64 * 1024 * 1024
#: The most nodes a document may expand to through aliases (``*name``): a few lines of
#: nested aliases expand to billions, which makes yaml-rs abort the process.
MAX_EXPANSION = 1_000_000
#: An anchor or alias token: ``&`` or ``*`` at the start of a value (after space, ``[``,
#: ``{``, ``,`` or ``-``). Only files that have one are scanned for their expansion.
_ALIAS_LIKE = re.compile(r"(?:^|[\s\[{,-])[&*][^\s,\]}]")


def _file_problem(path: Path, message: str, hint: str = "") -> InventoryError:
    return InventoryError([Problem(None, "file", echo(str(path)), message, hint)])


def _read_text(path: Path) -> str:
    """The file's text, refused (`InventoryError`) unless it is a regular file of at most
    `MAX_BYTES` in UTF-8; a byte-order mark is dropped (editors on Windows write one)."""
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer; regular files ignore it
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise _file_problem(path, "does not exist", "pass -f FILE or set NOSDN_INVENTORY") from None
    except OSError as e:
        raise _file_problem(path, e.strerror or str(e)) from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        kind = "a directory" if stat.S_ISDIR(st.st_mode) else "not a regular file"
        raise _file_problem(path, f"is {kind}", "give the inventory YAML file")
    with os.fdopen(fd, "rb") as f:
        if st.st_size > MAX_BYTES:
            raise _file_problem(path, *_too_big(st.st_size))
        try:
            data = f.read(MAX_BYTES + 1)
        except OSError as e:
            raise _file_problem(path, e.strerror or str(e)) from None
    if len(data) > MAX_BYTES:
        raise _file_problem(path, *_too_big(len(data)))
    try:
        text = data.decode()
    except UnicodeDecodeError as e:
        raise _file_problem(
            path,
            f"is not UTF-8 text (byte 0x{data[e.start]:02x} at offset {e.start})",
            "save it as UTF-8",
        ) from None
    return text[1:] if text.startswith("\ufeff") else text


def _too_big(size: int) -> tuple[str, str]:
    return (
        f"is {size} bytes, more than the limit of {MAX_BYTES} bytes (64 MiB)",
        "an inventory of 50,000 nodes is ~3 MB: is this the right file?",
    )


def _expansion(text: str) -> int | None:
    """How many nodes the document holds once every alias is expanded (None if it does not
    parse: the real parser then reports why). Counted on the parser's events, where an alias
    is one event, so nothing is expanded here."""
    import yaml

    loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    sizes: dict[str, int] = {}
    stack: list[list[Any]] = []  # [anchor, size] per open collection
    total = 0
    try:
        for ev in yaml.parse(text, Loader=loader):
            if isinstance(ev, yaml.AliasEvent):
                n = sizes.get(ev.anchor or "", 1)
            elif isinstance(ev, yaml.ScalarEvent):
                n = 1
                if ev.anchor:
                    sizes[ev.anchor] = 1
            elif isinstance(ev, yaml.CollectionStartEvent):
                stack.append([ev.anchor, 1])
                continue
            elif isinstance(ev, yaml.CollectionEndEvent):
                anchor, n = stack.pop()
                if anchor:
                    sizes[anchor] = n
            else:
                continue
            if stack:
                stack[-1][1] += n
            else:
                total += n
            if total + sum(s for _, s in stack) > MAX_EXPANSION:
                return MAX_EXPANSION + 1
    except yaml.YAMLError:
        return None
    return total


def _parse_text(text: str, path: Path) -> object:
    if ("&" in text or "*" in text) and _ALIAS_LIKE.search(text):
        size = _expansion(text)
        if size is not None and size > MAX_EXPANSION:
            raise _file_problem(
                path,
                f"expands through its aliases (*name) to more than {MAX_EXPANSION} values",
                "write the values out instead of nesting aliases",
            )
    try:
        return _parse_yaml(text)
    except _YAMLError as e:
        raise InventoryError(
            [
                Problem(
                    None,
                    "file",
                    echo(str(path)),
                    f"is not valid YAML ({cut(str(e), 300)})".replace("\n", " "),
                )
            ]
        ) from None


class _CannotSplit(Exception):
    """The node list, cut in pieces, did not parse as it should: read the whole document."""


def _taken(items: list[Any]) -> Iterator[Any]:
    """The items in order, each dropped from ``items`` as it is handed out (so it is freed
    once parsed)."""
    for k in range(len(items)):
        item = items[k]
        items[k] = None
        yield item


def _parse_file(path: Path) -> tuple[Cluster, list[Problem]]:
    """`parse_inventory` of the file, each node's YAML let go once it is parsed; a big node
    list is parsed a piece at a time (`nosdn.yamlsplit`: the same result, a fraction of the
    memory; figures in bench/README.md)."""
    text = _read_text(path)
    split = split_nodes(text) if len(text) >= _SPLIT_FROM else None
    del text  # the split keeps it while it is needed
    if split is not None:
        try:
            return _parse_split(split, str(path))
        except _CannotSplit:
            pass
    data = _parse_text(_read_text(path), path)
    entries = data.get("nodes") if isinstance(data, dict) else None
    if type(entries) is not list:
        return parse_inventory(data, str(path))
    return _parse(data, str(path), _taken(entries))


def _parse_split(split: Split, source: str) -> tuple[Cluster, list[Problem]]:
    try:
        head = _parse_yaml(split.head)
    except _YAMLError:
        raise _CannotSplit from None
    if not isinstance(head, dict) or "nodes" not in head or head["nodes"] is not None:
        raise _CannotSplit

    def entries() -> Iterator[Any]:
        for piece, count in split.pieces(_PIECE):
            try:
                items = _parse_yaml(piece)
            except _YAMLError:
                raise _CannotSplit from None
            if not isinstance(items, list) or len(items) != count:
                raise _CannotSplit
            yield from _taken(items)

    return _parse(head, source, entries())


def load_cluster(path: Path, *, allocate_missing: bool = True, warn: bool = True) -> Cluster:
    """Load, allocate subnets in memory for nodes without one, and check.

    Raises `InventoryError` with every problem. Nodes allocated in memory are announced on
    stderr: their subnet only stays put once written (``nosdn allocate --write``).
    """
    cluster, problems = _parse_file(path)
    if allocate_missing and not problems:
        alloc = allocate(cluster)
        problems.extend(alloc.problems)
        if alloc.assigned and warn:
            names = ", ".join(echo(n) for n in sorted(alloc.assigned)[:5])
            more = "" if len(alloc.assigned) <= 5 else f" and {len(alloc.assigned) - 5} more"
            print(
                f"nosdn: {len(alloc.assigned)} node(s) have no podCIDRs ({names}{more}); "
                f"allocated in memory — run `{cmd('allocate', '-f', str(path), '--write')}` to "
                "pin them",
                file=sys.stderr,
            )
        cluster = alloc.cluster
    problems.extend(check_cluster(cluster))
    if problems:
        raise InventoryError(problems)
    return cluster


class WriteError(Exception):
    """The inventory was not replaced; the message says why in one line."""


def read_inventory(path: Path) -> tuple[str, object]:
    """The file's text (as `write_allocation` must find it again) and its parsed YAML."""
    text = _read_text(path)
    return text, _parse_text(text, path)


def write_allocation(path: Path, alloc: Allocation, original: str | None = None) -> None:
    """Write newly allocated pod subnets back into the inventory, keeping comments and order.

    The file written is the one a symlink points at (replacing the link would leave the real
    file stale). ``original`` is the text the allocation was computed from: if the file no
    longer holds it, someone else wrote it meanwhile and nothing is written. The new text must
    parse and pass the checks, and replaces the file atomically (a temporary file in the same
    directory, synced, renamed over it, keeping its mode), so a crash leaves the old or the new
    file, never half of one. Raises `WriteError`.
    """
    target = Path(os.path.realpath(path))
    text = _read_text(target)
    if original is not None and text != original:
        raise WriteError(_changed(target))
    new_text = _with_allocation(text, alloc)
    _verify(new_text, target, alloc)
    import tempfile

    try:
        st = target.stat()
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    except OSError as e:
        raise WriteError(f"cannot write {target}: {e.strerror or e}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(new_text)
            f.flush()
            os.fchmod(f.fileno(), st.st_mode & 0o7777)
            if os.geteuid() == 0:
                os.fchown(f.fileno(), st.st_uid, st.st_gid)
            os.fsync(f.fileno())
        if _read_text(target) != text:  # as late as can be: the rename is next
            raise WriteError(_changed(target))
        os.replace(tmp, target)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        raise WriteError(f"cannot write {target}: {e.strerror or e}") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    try:
        dfd = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:  # the rename is done; a directory that cannot be synced is not an error
        pass


def _changed(target: Path) -> str:
    return f"{target} changed while the subnets were allocated; nothing written — run it again"


def _verify(new_text: str, target: Path, alloc: Allocation) -> None:
    """Refuse a written text that would not read back as the allocation (a bug, never data)."""
    cluster, problems = parse_inventory(_parse_text(new_text, target), str(target))
    problems = problems or check_cluster(cluster)
    got = {n.name: n.pod_cidrs for n in cluster.nodes}
    if problems or any(got.get(name) != tuple(c) for name, c in alloc.assigned.items()):
        first = f": {problems[0]}" if problems else ""
        raise WriteError(
            f"the new {target} would not pass check{first}; nothing written (please report this)"
        )


def _with_allocation(text: str, alloc: Allocation) -> str:
    """``text`` with the allocated subnets written in, through ruamel's round trip."""
    import io

    from ruamel.yaml import YAML
    from ruamel.yaml.comments import CommentedSeq

    rt = YAML()
    rt.preserve_quotes = True
    rt.width = 4096
    # keep the file's own list indentation (ruamel's default would re-indent every node)
    m = re.search(r"^nodes:[^\n]*\n(?:\s*#[^\n]*\n)*( *)- ", text, re.MULTILINE)
    offset = len(m.group(1)) if m else 2
    rt.indent(mapping=2, sequence=offset + 2, offset=offset)
    doc = rt.load(text)
    by_name = {n.name: n for n in alloc.cluster.nodes}
    for raw in doc.get("nodes") or []:
        node = by_name.get(raw.get("name"))
        if node is None or node.name not in alloc.assigned:
            continue
        seq = CommentedSeq([str(c) for c in node.pod_cidrs])
        seq.fa.set_flow_style()
        if "podCIDR" in raw:
            if len(node.pod_cidrs) == 1:
                raw["podCIDR"] = str(node.pod_cidrs[0])
                continue
            pos = list(raw.keys()).index("podCIDR")
            del raw["podCIDR"]
            raw.insert(pos, "podCIDRs", seq)
        elif "podCIDRs" in raw:
            raw["podCIDRs"] = seq
        else:
            keys = list(raw.keys())
            after = next((k for k in ("ips", "ip") if k in keys), keys[-1])
            raw.insert(keys.index(after) + 1, "podCIDRs", seq)
    buf = io.StringIO()
    rt.dump(doc, buf)
    return buf.getvalue()
