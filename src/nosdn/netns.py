"""A socket of another network namespace, made without moving the process there.

Why it exists: the kernel backend, the netlink monitor, the datapath probes and the lab all
talk to namespaces other than their own. A socket stays in the namespace it was made in, so
only the ``socket()`` call needs this thread switched over (``setns`` on the namespace's
file), and the thread comes straight back. One implementation, because the way back is the
part that must not be got wrong: a thread left in another namespace would go on writing
routes to the wrong host, so failing to return is an error, never ignored.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import socket
from collections.abc import Iterator

_CLONE_NEWNET = 0x40000000
NETNS_DIR = "/run/netns"


def _setns(fd: int, what: str) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, _CLONE_NEWNET) != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"setns {what}: {os.strerror(e)}")


@contextlib.contextmanager
def entered(netns: str) -> Iterator[None]:
    """This thread in ``netns`` (a name under /run/netns, or a path) for the body, then back."""
    path = netns if "/" in netns else f"{NETNS_DIR}/{netns}"
    target = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        _setns(target, path)
        try:
            yield
        finally:
            _setns(home, "back to this thread's own namespace")
    finally:
        os.close(target)
        os.close(home)


def socket_in(netns: str | None, family: int, kind: int, proto: int = 0) -> socket.socket:
    """``socket.socket(family, kind, proto)`` made in ``netns`` (None: this thread's own)."""
    if netns is None:
        return socket.socket(family, kind, proto)
    with entered(netns):
        return socket.socket(family, kind, proto)
