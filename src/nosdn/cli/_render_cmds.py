"""``nosdn render``: the cluster's routes as files people use today (script, units, router
and cloud configs). Parses, calls `nosdn.render`, prints or writes; no logic of its own.

The cluster is the inventory's or the Node objects' (`nosdn.cli._click.source_options`): a
network team renders its router's config from the live cluster, and doctor's fix for a node's
CNI conflist is a render command that must work where there is no inventory."""

from __future__ import annotations

import os
import tempfile
from dataclasses import replace
from pathlib import Path, PurePosixPath

import click

from nosdn.addr import parse_ip
from nosdn.cli._click import command, load_source, option, source_options
from nosdn.cli._output import EXIT_FAILURE, err, fail
from nosdn.cli._params import TABLE_TEXT
from nosdn.echo import echo
from nosdn.model import DEFAULT_PROTOCOL, EXTERNAL, ROUTER, Target
from nosdn.render import (
    FORMATS,
    RenderedFile,
    RenderOptions,
    join_files,
    read_passwords,
    render_files,
)
from nosdn.sources.select import ClusterSource

_HELP = """Render the cluster's routes as a file you deploy: a script, systemd units, cloud-init, a
router config, cloud CLI commands or a node's CNI config.

Targets: the host formats (script, systemd, cloud-init) serve every node by default and find
the node at run time; --node NAME pins one node, --external a machine outside the cluster
(adds the service CIDRs). Router formats render the router's table (every pod subnet, or
--router to say so) unless given --external or --node. Cloud formats take only --router.

Several files (systemd) print one after another, each after a '# ==> PATH <==' line;
--out DIR writes them instead, at those paths under DIR (one file: --out FILE).

\b
Examples:
  nosdn render -f examples/two-nodes.yaml --format script > nosdn-routes.sh
  nosdn render -f inv.yaml --format systemd --out /   (installs the units)
  nosdn render -f inv.yaml --format bird --external > /etc/bird/nosdn.conf

BGP (the inventory's bgp: section): --format bird-node --node NAME gives a node the BIRD
config that announces its own pod subnets; --format frr|bird|cisco|junos --bgp gives the
router its side (dynamic neighbours on bgp.nodeNetworks, filters that accept only pod
subnets). MD5 passwords are read from each peer's passwordFile now and written into the
config, so those files are written mode 0600.

\b
  nosdn render -f inv.yaml --format bird-node --node node1 > /etc/nosdn/bird-node.conf
  nosdn render -f inv.yaml --format frr --bgp --peer 10.10.0.254
"""


def _safe_path(out_dir: Path, rel: str) -> Path:
    p = PurePosixPath(rel)
    if p.is_absolute() or ".." in p.parts or not p.parts:
        raise ValueError(f"refusing to write {rel!r} outside {out_dir}")
    return out_dir.joinpath(*p.parts)


def write_files(out_dir: Path, files: list[RenderedFile]) -> list[Path]:
    """Write each file under ``out_dir`` (atomically: a reader never sees half a script)."""
    written: list[Path] = []
    for f in files:
        path = _safe_path(out_dir, f.path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(f.content)
            os.chmod(tmp, f.mode)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        written.append(path)
    return written


@command(
    "render",
    help=_HELP,
    lists={"Formats (--format)": [(name, f.summary) for name, f in FORMATS.items()]},
)
@source_options()
@option(
    "--format",
    "-F",
    "fmt",
    type=click.Choice(list(FORMATS)),
    required=True,
    help="What to render (see Formats above).",
)
@option("--node", help="Render for this node only (cni: required).")
@option("--external", is_flag=True, help="Render for a machine outside the cluster.")
@option(
    "--router",
    is_flag=True,
    help="Render the router's table (every pod subnet): the default of the router and cloud "
    "formats, said explicitly.",
)
@option(
    "--out",
    "out_dir",
    type=click.Path(path_type=Path),
    help="Write the files under this directory instead of printing them (a format of one "
    "file: this file, unless it is a directory).",
)
@option(
    "--protocol",
    type=int,
    default=DEFAULT_PROTOCOL,
    help="Route protocol number the script stamps on its routes (and FRR's tag).",
)
@option("--table", type=TABLE_TEXT, default="main", help="Routing table the script manages.")
@option(
    "--interval", type=int, default=60, help="Seconds between re-applies (systemd, cloud-init)."
)
@option("--bgp", is_flag=True, help="Router formats: the router's BGP config, not static routes.")
@option(
    "--peer",
    "peers",
    multiple=True,
    help="With --bgp: render for this router of bgp.peers (repeat for its other address).",
)
@option("--mtu", type=int, default=1500, help="Pod interface MTU (cni).")
@option("--cni-bridge", "bridge", default="cni0", help="Pod bridge name (cni).")
def render_cmd(
    *,
    source: ClusterSource,
    fmt: str,
    node: str | None,
    external: bool,
    router: bool,
    out_dir: Path | None,
    protocol: int,
    table: str,
    interval: int,
    mtu: int,
    bridge: str,
    bgp: bool,
    peers: tuple[str, ...],
) -> None:
    if sum([node is not None, external, router]) > 1:
        fail("choose at most one of --node NAME, --external and --router")
    if peers and not bgp:
        fail("--peer goes with --bgp")
    peer_ips = []
    for text in peers:
        try:
            peer_ips.append(parse_ip(text))
        except ValueError:
            fail(f"--peer {echo(text)}: not an IP address — give a bgp.peers address")
    cluster = load_source(source)
    target = (
        Target.for_node(node)
        if node is not None
        else EXTERNAL
        if external
        else ROUTER
        if router
        else None
    )
    options = RenderOptions(
        target=target,
        protocol=protocol,
        table=table,
        interval=interval,
        mtu=mtu,
        bridge=bridge,
        bgp=bgp,
        peers=tuple(peer_ips),
    )
    try:
        options = read_passwords(cluster, fmt, options)
        files = render_files(cluster, fmt, options)
    except ValueError as e:
        fail(str(e))
    if out_dir is None:
        click.echo(join_files(files), nl=False)
        return
    try:
        if len(files) == 1 and not out_dir.is_dir():
            written = write_files(out_dir.parent, [replace(files[0], path=out_dir.name)])
        else:
            written = write_files(out_dir, files)
    except (OSError, ValueError) as e:
        fail(f"--out {out_dir}: {e}", EXIT_FAILURE)
    for path in written:
        err.print(f"wrote {path}")
