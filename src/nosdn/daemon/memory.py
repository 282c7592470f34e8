"""The malloc arenas of a daemon's process (glibc's ``mallopt``), asked for before its threads.

Why a module: the knob is glibc's, reached through ctypes, and must be a no-op elsewhere (musl,
macOS) and where the operator chose already (``MALLOC_ARENA_MAX`` in the environment, read by
glibc itself at start). The reason to ask is `nosdn.cli._daemon`'s.
"""

from __future__ import annotations

import ctypes
import os

#: glibc's ``M_ARENA_MAX`` (malloc.h)
M_ARENA_MAX = -8


def limit_malloc_arenas(n: int) -> bool:
    """At most ``n`` malloc arenas from now on; whether glibc took it."""
    if os.environ.get("MALLOC_ARENA_MAX"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_ARENA_MAX, n))
