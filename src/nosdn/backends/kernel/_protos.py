"""Route protocol numbers to names, as ``ip route`` prints them.

A conflict report says who owns the other route ("static", "bird", "dhcp"); the names come from
the same files iproute2 reads, so nosdn and ``ip route`` agree. Missing files are not an error:
the kernel's reserved numbers are known here, anything else is shown as its number.
"""

from __future__ import annotations

from pathlib import Path

from nosdn.model import DEFAULT_PROTOCOL, PROTOCOL_NAME
from nosdn.names import RESERVED_PROTOCOLS

_BUILTIN = RESERVED_PROTOCOLS

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
