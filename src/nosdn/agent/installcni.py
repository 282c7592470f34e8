"""Copying the CNI plugins the conflist uses from the image into the host's CNI bin directory.

Why it exists: nosdn's conflist names ``bridge``, ``host-local``, ``loopback`` and ``portmap``,
and minimal node images ship none of them. The DaemonSet's init container (``nosdn install-cni``)
brings them along, as flannel's and Calico's do.

Rules: only the named plugins are ever written (every other file in the directory is left
alone); a plugin is written when it is missing on the host, or when its bytes differ and the
host's copy is older (mtime) than the image's; a host copy that differs but is newer is left in
place and reported, since someone put it there on purpose. Each write is a temporary file in
the same directory, fsynced, then renamed over the target, so a kubelet never runs half a
binary. Every source is checked before the first write: a missing plugin in the image changes
nothing on the host.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

#: The plugins the conflist nosdn writes uses (see nosdn.agent.cni), and the runtime's loopback.
PLUGINS: tuple[str, ...] = ("bridge", "host-local", "loopback", "portmap")
#: Where Debian's containernetworking-plugins puts them (the image is Debian-based).
IMAGE_CNI_BIN = "/usr/lib/cni"
#: The host's CNI bin directory as the DaemonSet mounts it into the init container.
HOST_CNI_BIN = "/host/opt/cni/bin"


class InstallError(Exception):
    """A plugin cannot be installed; nothing was written."""


@dataclass(frozen=True)
class Outcome:
    plugin: str
    #: "installed" (was missing), "updated" (host copy older), "current" (same bytes),
    #: "kept" (host copy differs and is newer: left alone).
    action: str


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def decide(src: Path, dst: Path) -> str:
    """What to do with one plugin: installed / updated / current / kept (see module doc)."""
    if not dst.exists():
        return "installed"
    if _digest(src) == _digest(dst):
        return "current"
    if dst.stat().st_mtime < src.stat().st_mtime:
        return "updated"
    return "kept"


def _copy_atomic(src: Path, dst: Path) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=".nosdn-tmp", dir=dst.parent)
    try:
        with os.fdopen(fd, "wb") as out, src.open("rb") as inp:
            while chunk := inp.read(1 << 20):
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o755)
        st = src.stat()
        os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns))
        os.replace(tmp, dst)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def install(src_dir: Path, dst_dir: Path, plugins: Sequence[str] = PLUGINS) -> list[Outcome]:
    """Install `plugins` from `src_dir` into `dst_dir`; every source is checked first."""
    missing = [p for p in plugins if not (src_dir / p).is_file()]
    if missing:
        raise InstallError(
            f"plugin(s) {', '.join(missing)} not found in {src_dir}: the image lacks "
            "containernetworking-plugins, or pass --from with the directory that holds them; "
            "nothing was written"
        )
    if not dst_dir.is_dir():
        raise InstallError(
            f"host CNI bin directory {dst_dir} does not exist: mount the host's /opt/cni/bin "
            "there (the DaemonSet does), or pass --to; nothing was written"
        )
    foreign = [p for p in plugins if (dst_dir / p).exists() and not (dst_dir / p).is_file()]
    if foreign:
        raise InstallError(
            f"{', '.join(str(dst_dir / p) for p in foreign)}: not a regular file; nosdn "
            "leaves it alone: remove it if it is stale; nothing was written"
        )
    # decide everything first, then write: an unreadable file fails before the first write
    outcomes = [Outcome(p, decide(src_dir / p, dst_dir / p)) for p in plugins]
    for o in outcomes:
        if o.action in ("installed", "updated"):
            _copy_atomic(src_dir / o.plugin, dst_dir / o.plugin)
    return outcomes
