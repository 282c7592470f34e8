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
        digest = _digest(raw, 8)
        name = f"{name[: GCE_NAME_MAX - 9].rstrip('-')}-{digest}"
    assert GCE_NAME.fullmatch(name), name
    return name


AZURE_NAME_MAX = 80
#: An Azure route name: 1-80 of ``[A-Za-z0-9._-]``, starting with a letter or digit, ending with
#: one or ``_`` (ARM's rule for Microsoft.Network child resources). ``\Z`` as for `GCE_NAME`.
AZURE_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,78}[A-Za-z0-9_])?\Z")
_AZURE_PREFIX_MAX = 30


def _digest(text: str, n: int) -> str:
    import hashlib  # here: importing it would cost every command, and few need it

    return hashlib.sha256(text.encode()).hexdigest()[:n]


def azure_name_prefix(cluster: str) -> str:
    """The start every `azure_route_name` of ``cluster`` shares, ending in ``_``.

    The cluster's name with every character outside ``[A-Za-z0-9.-]`` made a ``-``; a name that
    had to change, or is longer than 30, becomes its start plus a hash of the whole, so two
    clusters never share a prefix (``a_b`` and ``a-b`` differ). ``_`` appears in no prefix
    before its end, so the first ``_`` of a route name ends the cluster part: no cluster's
    prefix is the start of another's.
    """
    clean = re.sub(r"[^A-Za-z0-9.-]", "-", cluster)
    if clean != cluster or len(clean) > _AZURE_PREFIX_MAX or not clean[:1].isalnum():
        clean = f"{clean[: _AZURE_PREFIX_MAX - 7].strip('.-') or 'c'}-{_digest(cluster, 6)}"
        if not clean[:1].isalnum():
            clean = "c" + clean
    return clean + "_"


def azure_route_name(cluster: str, node: str, dst: str) -> str:
    """``{prefix}{node}_{dst}`` as an Azure route name (``/`` and ``:`` made ``_`` and ``-``,
    anything else outside the allowed set a ``-``); a long one keeps its start and ends in a
    hash of the whole, so it stays unique, stable and within 80 characters."""
    prefix = azure_name_prefix(cluster)
    tail = re.sub(r"[^A-Za-z0-9._-]", "-", f"{node}_{dst.replace('/', '_').replace(':', '-')}")
    name = prefix + tail
    if len(name) > AZURE_NAME_MAX or not AZURE_NAME.fullmatch(name):
        name = f"{name[: AZURE_NAME_MAX - 9]}-{_digest(f'{cluster}/{node}/{dst}', 8)}"
    assert AZURE_NAME.fullmatch(name), name
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


#: A Kubernetes namespace (or any DNS-1123 label): what ``metadata.namespace`` accepts.
DNS_LABEL = re.compile(r"^[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?\Z")
#: A container image reference, as the distribution spec's grammar has it:
#: ``[host[:port]/]path[:tag][@algorithm:hex]``, path components lowercase.
_DOMAIN_PART = r"[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?"
_IMAGE_DOMAIN = rf"(?:{_DOMAIN_PART}(?:\.{_DOMAIN_PART})*|\[[0-9a-fA-F:]+\])(?::[0-9]+)?"
_PATH_PART = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_IMAGE_PATH = rf"{_PATH_PART}(?:/{_PATH_PART})*"
IMAGE_REFERENCE = re.compile(
    rf"^(?:{_IMAGE_DOMAIN}/)?{_IMAGE_PATH}(?::[\w][\w.-]{{0,127}})?"
    r"(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?\Z"
)


def install_names_problem(image: str, namespace: str) -> str | None:
    """What is wrong with the image and namespace the manifests would carry, if anything:
    both go into YAML that ``kubectl apply`` reads, so each must be what Kubernetes accepts
    (a space or a newline there would be another field)."""
    if len(image) > 255 or not IMAGE_REFERENCE.fullmatch(image):
        return (
            f"--image {image!r}: not a container image reference; give "
            "[REGISTRY/]NAME[:TAG][@sha256:DIGEST], e.g. ghcr.io/nosdn/nosdn:0.1.0"
        )
    if not DNS_LABEL.fullmatch(namespace):
        return (
            f"--namespace {namespace!r}: not a Kubernetes namespace name; use lowercase "
            "letters, digits and '-', at most 63, starting and ending with a letter or digit"
        )
    return None
