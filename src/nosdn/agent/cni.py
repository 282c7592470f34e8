"""Writing this node's CNI conflist: atomically, and only when its bytes change.

The container runtime reads ``/etc/cni/net.d`` whenever a pod starts; a half-written file there
would fail that pod, and a rewrite of an identical file would make runtimes that watch the
directory reload for nothing. So the text comes from `nosdn.render.cni.render_cni` (the same
bytes the lab and `nosdn render` produce), is compared with what is on disk, and is only then
written to a temporary file in the same directory, fsynced and renamed over the old one.

The MTU is the MTU of the interface that holds the node's own address (the link pod traffic
leaves by), read with an ioctl on a socket of the agent's own network namespace.
"""

from __future__ import annotations

import fcntl
import os
import socket
import struct
import tempfile
from collections.abc import Sequence
from pathlib import Path

from nosdn.model import IPAddress

SIOCGIFMTU = 0x8921


def interface_mtu(name: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        req = struct.pack("16si", name.encode()[:15], 0)
        res = fcntl.ioctl(s.fileno(), SIOCGIFMTU, req)
        return int(struct.unpack("16si", res)[1])


def interface_of(
    ips: Sequence[IPAddress], addresses: Sequence[tuple[IPAddress, str]]
) -> str | None:
    """The name of the interface holding one of ``ips`` (first family first)."""
    for ip in ips:
        for addr, dev in addresses:
            if addr == ip:
                return dev
    return None


def write_if_changed(path: Path, text: str) -> bool:
    """Write ``text`` to ``path`` atomically unless it already holds exactly that."""
    try:
        if path.read_text() == text:
            return False
    except (FileNotFoundError, UnicodeDecodeError):
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return True
