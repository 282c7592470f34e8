"""Names nosdn gives things, and names it must not take, shared by renderers and backends.

A GCE route created by ``nosdn render --format gcloud`` and one created by the GCE backend must
carry the same name, or the backend would see the rendered routes as someone else's. So the
rule lives here, below both.
"""

from __future__ import annotations

import re

GCE_NAME_MAX = 63
#: Ends in ``\Z``, not ``$`` (which also matches before a trailing newline), so that ``.match``
#: and ``.fullmatch`` both check the whole name.
GCE_NAME = re.compile(r"^[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?\Z")


def gce_route_name(cluster: str, node: str, dst: str) -> str:
    """``{cluster}-{node}-{dst}`` as a GCE resource name: lowercase, every other character a
    ``-``, starting with a letter, at most 63 characters (a long one keeps its start and ends in
    a hash of the whole, so it stays unique and stable)."""
    raw = f"{cluster}-{node}-{dst}"
    name = re.sub(r"[^a-z0-9]", "-", raw.lower())
    if not name[:1].isalpha():
        name = "nosdn-" + name
    if len(name) > GCE_NAME_MAX or not name[-1].isalnum():
        import hashlib  # here: importing it costs every command 2 ms

        digest = hashlib.sha256(raw.encode()).hexdigest()[:8]
        name = f"{name[: GCE_NAME_MAX - 9].rstrip('-')}-{digest}"
    assert GCE_NAME.fullmatch(name), name
    return name


#: Protocol numbers the kernel or well-known routing daemons use: claiming one would make nosdn
#: treat (and delete) their routes as its own. From iproute2's rt_protos and the kernel's uapi.
RESERVED_PROTOCOLS: dict[int, str] = {
    0: "unspec",
    1: "redirect",
    2: "kernel",
    3: "boot",
    4: "static",
    8: "gated",
    9: "ra",
    10: "mrt",
    11: "zebra",
    12: "bird",
    13: "dnrouted",
    14: "xorp",
    15: "ntk",
    16: "dhcp",
    17: "mrouted",
    18: "keepalived",
    42: "babel",
    99: "openr",
    186: "bgp",
    187: "isis",
    188: "ospf",
    189: "rip",
    192: "eigrp",
}
