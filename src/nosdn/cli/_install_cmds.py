"""`nosdn install-cni`: the DaemonSet's init container, copying the CNI plugins onto the host."""

from __future__ import annotations

import sys
from pathlib import Path

from nosdn.agent.installcni import HOST_CNI_BIN, IMAGE_CNI_BIN, PLUGINS, InstallError, install
from nosdn.cli._common import command, fail, option


@command("install-cni")
@option("--from", "src", default=IMAGE_CNI_BIN, show_default=True, help="Plugins in the image.")
@option("--to", "dst", default=HOST_CNI_BIN, show_default=True, help="Host CNI bin directory.")
@option(
    "--plugin",
    multiple=True,
    help=f"Plugin to install (repeatable; default: {', '.join(PLUGINS)}).",
)
def install_cni(*, src: str, dst: str, plugin: tuple[str, ...]) -> None:
    """Copy the CNI plugins the conflist uses into the host's CNI bin directory, atomically,
    only when missing or older there; never touches any other file."""
    for p in plugin:
        if not p or "/" in p or p in (".", ".."):
            fail(f"--plugin {p!r}: a plugin is a file name, e.g. --plugin bridge")
    try:
        outcomes = install(Path(src), Path(dst), plugin or PLUGINS)
    except (InstallError, OSError) as e:
        fail(str(e), 1)
    for o in outcomes:
        sys.stdout.write(f"{o.plugin}: {o.action}\n")
