"""The one error handler every command ends through: one line, what failed, what to do.

A traceback tells an operator nothing they can act on, and a command that forgot to catch an
``OSError`` (a ``--out`` in a missing directory, an unwritable path) printed one. `main` wraps
the whole click group, so every command, also the ones added later, ends the same way: exit 1
for a runtime failure, 2 for bad input (a `ProblemsError`, a usage error), never a traceback
unless ``NOSDN_DEBUG=1`` asks for it (for a bug report).
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass

EXIT_FAILURE = 1
EXIT_BAD_INPUT = 2
#: Set to 1 to get the traceback of an unexpected error (for a bug report).
DEBUG_ENV = "NOSDN_DEBUG"


@dataclass(frozen=True, slots=True)
class Failure:
    """What a command's error becomes: the line printed after ``error:``, and the exit code."""

    message: str
    code: int


def _os_hint(e: OSError) -> str:
    """What to do about a failed file or system call, by its errno."""
    name = e.filename
    where = os.path.dirname(os.fspath(name)) if isinstance(name, str | os.PathLike) else ""
    if e.errno == errno.ENOENT:
        if where:
            return f"create the directory {where} first, or give a path in one that exists"
        return "check the path"
    if e.errno in (errno.EACCES, errno.EPERM):
        return "this needs permission this user lacks: run it as root, or give another path"
    if e.errno == errno.EROFS:
        return "that file system is read-only: give a path on a writable one"
    if e.errno == errno.ENOSPC:
        return "the disk is full: free space or give a path on another file system"
    if e.errno == errno.EISDIR:
        return "that is a directory: give a file name inside it"
    if e.errno == errno.ENOTDIR:
        return "a part of that path is a file, not a directory"
    return "check the path and the permissions"


def describe(e: BaseException) -> Failure:
    """The one line and exit code for an exception no command handled."""
    from nosdn.problems import ProblemsError

    if isinstance(e, ProblemsError):  # printed in full by `main`; this is the fallback
        return Failure(f"{len(e.problems)} problem(s); nothing was changed", EXIT_BAD_INPUT)
    if isinstance(e, OSError):
        what = e.strerror or str(e)
        if e.filename is not None:
            what = f"{os.fspath(e.filename)}: {what}"
        return Failure(f"{what} — {_os_hint(e)}", EXIT_FAILURE)
    return Failure(
        f"unexpected {type(e).__name__}: {e} — this is a bug in nosdn; run again with "
        f"{DEBUG_ENV}=1 for the traceback and report it",
        EXIT_FAILURE,
    )


def debugging() -> bool:
    return os.environ.get(DEBUG_ENV, "") not in ("", "0")
