"""Route protocol numbers to names, as ``ip route`` prints them.

A conflict report says who owns the other route ("static", "bird", "dhcp"); the names come from
the same files iproute2 reads, so nosdn and ``ip route`` agree. Missing files are not an error:
the kernel's reserved numbers are known here, anything else is shown as its number.
"""

from __future__ import annotations

from pathlib import Path

from nosdn.model import DEFAULT_PROTOCOL, PROTOCOL_NAME

_BUILTIN = {
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
    18: "keepalived",
    42: "babel",
    99: "openr",
    186: "bgp",
    187: "isis",
    188: "ospf",
    189: "rip",
    192: "eigrp",
}

_DIRS = (Path("/usr/share/iproute2"), Path("/etc/iproute2"))


def _parse(path: Path, into: dict[int, str]) -> None:
    try:
        text = path.read_text()
    except OSError:
        return
    for line in text.splitlines():
        fields = line.split("#", 1)[0].split()
        if len(fields) >= 2:
            try:
                into[int(fields[0], 0)] = fields[1]
            except ValueError:
                continue


def protocol_names(dirs: tuple[Path, ...] = _DIRS) -> dict[int, str]:
    """Number -> name from ``rt_protos`` and ``rt_protos.d/*.conf`` (later files win)."""
    names = dict(_BUILTIN)
    names.setdefault(DEFAULT_PROTOCOL, PROTOCOL_NAME)
    for d in dirs:
        _parse(d / "rt_protos", names)
        sub = d / "rt_protos.d"
        if sub.is_dir():
            for f in sorted(sub.glob("*.conf")):
                _parse(f, names)
    return names
