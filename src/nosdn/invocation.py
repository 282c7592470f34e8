"""The command line that runs this very nosdn again, for every command nosdn prints for a
person to paste (lab hints, doctor's fixes, "run ... to pin them").

``nosdn`` may not be on the PATH of whoever pastes it: after ``make demo`` it lives in
``.venv/bin``, Debian's sudo resets PATH, and ``ip netns exec`` runs what it is given. So a
printed command starts with the entry point by its absolute path when nosdn was started as
one, else with this interpreter and ``-m nosdn``. Every printed command goes through `cmd`.
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys


def self_command() -> tuple[str, ...]:
    """The argv prefix that runs this nosdn: its entry point's absolute path, or
    ``(sys.executable, "-m", "nosdn")``. Quote it with `shlex.join` when printing."""
    argv0 = sys.argv[0] if sys.argv else ""
    base = os.path.basename(argv0)
    if argv0 and base not in ("-c", "-m") and not base.endswith((".py", ".pyc")):
        path = argv0 if os.sep in argv0 else shutil.which(argv0)
        if path and os.path.isfile(path) and os.access(path, os.X_OK):
            return (os.path.abspath(path),)
    return (sys.executable, "-m", "nosdn")


def cmd(*args: str) -> str:
    """``nosdn ARGS`` as a shell line that runs as printed (every word quoted as needed)."""
    return shlex.join([*self_command(), *args])
