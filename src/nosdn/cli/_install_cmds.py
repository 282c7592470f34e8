"""`nosdn install-cni` (the DaemonSet's init container, copying the CNI plugins onto the host)
and `nosdn uninstall --node-local` (the cleanup DaemonSet's, removing nosdn's state from it)."""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path

import click

from nosdn.agent.installcni import HOST_CNI_BIN, IMAGE_CNI_BIN, PLUGINS, InstallError, install
from nosdn.cli._click import command, option, require_net_admin
from nosdn.cli._output import EXIT_FAILURE, fail
from nosdn.cli._params import NETNS_HELP, TABLE, reexec_in_netns
from nosdn.model import DEFAULT_PROTOCOL


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


@command("uninstall")
@option(
    "--node-local",
    is_flag=True,
    help="Clean this node (required: the cluster-wide cleanup is `nosdn manifests --uninstall`).",
)
@option("--table", type=TABLE, default="main", help="Kernel routing table the agent managed.")
@option("--protocol", type=int, default=DEFAULT_PROTOCOL, help="Protocol number of our routes.")
@option(
    "--cni-conf",
    type=click.Path(),
    default="/etc/cni/net.d/10-nosdn.conflist",
    help="The agent's conflist (removed only if it is nosdn's; '' to keep it).",
)
@option(
    "--agent-address",
    default="127.0.0.1:9712",
    help="Refuse while the agent answers here ('' to skip the check).",
)
@option("--netns", help=NETNS_HELP + " (nftables too: the whole command runs there)")
@option(
    "--wait",
    is_flag=True,
    help="Do nothing, and exit on SIGTERM (the cleanup DaemonSet's main container: ready "
    "once its init container cleaned the node).",
)
def uninstall(
    *,
    node_local: bool,
    table: int,
    protocol: int,
    cni_conf: str,
    agent_address: str,
    netns: str | None,
    wait: bool,
) -> None:
    """Remove nosdn's routes and nexthops (its protocol only), its CNI conflist and its nftables
    table from this node; nothing else."""
    if wait:
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        sys.stdout.write("nosdn uninstall: this node is clean; waiting for SIGTERM\n")
        sys.stdout.flush()
        stop.wait()
        return
    if not node_local:
        fail(
            "uninstall: give --node-local to clean this node; for every node of a cluster: "
            "nosdn manifests --uninstall | kubectl apply -f -"
        )
    if agent_address and ":" not in agent_address:
        fail(f"--agent-address {agent_address!r}: want HOST:PORT, e.g. 127.0.0.1:9712")
    require_net_admin("uninstall removes routes: it")
    reexec_in_netns(netns)
    from nosdn.agent.uninstall import UninstallError, uninstall_node

    try:
        report = uninstall_node(
            table=table,
            protocol=protocol,
            conflist=Path(cni_conf) if cni_conf else None,
            agent_address=agent_address or None,
        )
    except UninstallError as e:
        fail(str(e), EXIT_FAILURE)
    except (OSError, ValueError) as e:
        fail(f"uninstall: {e}", EXIT_FAILURE)
    for line in report.lines():
        sys.stdout.write(line + "\n")
    if report.errors:
        raise SystemExit(EXIT_FAILURE)
