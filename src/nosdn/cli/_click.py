"""The click side every command shares: its classes, the options it is built from, and where
its nodes come from.

Nodes come from an inventory file (``-f``) or, for the commands that read a live cluster
(status, plan, apply, doctor, trace, routes, graph), from the Kubernetes API with the options
``nosdn agent`` and ``nosdn controller`` take, defined here once so a flag means the same thing
in all of them (`kube_api_options`, `node_address_options`, `cluster_cidr_option`).
`source_options` adds them to a command and hands it one `ClusterSource`
(`nosdn.sources.select` decides it, before anything is read); `load_source` turns that into a
checked `Cluster`, refusing bad Node objects the way a bad inventory is refused (exit 2, every
problem named). Only the API path imports the Kubernetes client, so ``nosdn routes -f`` stays
as light as it was.

Also the two click classes every command is built from (`Command`, `Group`): help that keeps
arguments documented, options grouped in titled sections (``panel=``) and subcommands listed
in the order they were written, which is the order they are taught in. How commands print is
`nosdn.cli._output`.
"""

from __future__ import annotations

import functools
import inspect
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click
from click.core import ParameterSource

from nosdn.cli._examples import format_examples
from nosdn.cli._output import (
    EXIT_BAD_INPUT,
    EXIT_FAILURE,
    Output,
    err,
    fail,
    print_problems,
)
from nosdn.echo import echo
from nosdn.model import Cluster, IPNetwork
from nosdn.sources.inventory import InventoryError, load_cluster
from nosdn.sources.select import DEFAULT_ADDRESS_TYPES, ClusterSource, SourceError

if TYPE_CHECKING:
    from nosdn.sources.listing import NodeList
    from nosdn.sources.nodes import AddressPolicy


F = TypeVar("F", bound=Callable[..., Any])


# --- click pieces ----------------------------------------------------------------------------
class Option(click.Option):
    """An option that may name the help section (``panel``) it is listed under."""

    def __init__(self, *args: Any, panel: str | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.panel = panel


class Argument(click.Argument):
    """A positional argument with a line of help (``doc``), listed under "Arguments"."""

    def __init__(self, *args: Any, doc: str = "", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.doc = doc


def _sections(cmd: click.Command, ctx: click.Context) -> dict[str, list[tuple[str, str]]]:
    sections: dict[str, list[tuple[str, str]]] = {}
    for param in cmd.get_params(ctx):
        if isinstance(param, click.Argument):
            doc = getattr(param, "doc", "")
            if doc:
                sections.setdefault("Arguments", []).append((param.human_readable_name, doc))
            continue
        record = param.get_help_record(ctx)
        if record is not None:
            sections.setdefault(getattr(param, "panel", None) or "Options", []).append(record)
    return sections


class Command(click.Command):
    """A command whose help lists arguments first, then options by section. ``lists`` adds
    titled name/description lists after the help text (``nosdn render``'s formats)."""

    def __init__(
        self, *args: Any, lists: dict[str, list[tuple[str, str]]] | None = None, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.lists = lists or {}

    def format_help_text(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        super().format_help_text(ctx, formatter)
        for title, rows in self.lists.items():
            with formatter.section(title):
                formatter.write_dl(rows)
        format_examples(self, ctx, formatter)

    def get_short_help_str(self, limit: int = 45) -> str:
        """The help's whole first paragraph (click would cut it at ``limit`` characters)."""
        if self.short_help or not self.help:
            return super().get_short_help_str(limit)
        return " ".join(inspect.cleandoc(self.help).split("\n\n")[0].split())

    def format_arguments(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """Listed by `format_options`, with the options."""

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        for title, rows in _sections(self, ctx).items():
            with formatter.section(title):
                formatter.write_dl(rows)


class Group(click.Group):
    """A group that lists its commands in the order they were added."""

    command_class = Command

    def format_help_text(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        super().format_help_text(ctx, formatter)
        format_examples(self, ctx, formatter)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(self.commands)

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        from nosdn.cli import resolve_or_suggest

        return resolve_or_suggest(self, ctx, args)


def command(name: str, **kwargs: Any) -> Callable[[Callable[..., Any]], Command]:
    """``click.command`` making a `Command`."""
    return click.command(name, cls=Command, **kwargs)


def option(*decls: str, **kwargs: Any) -> Callable[[F], F]:
    """``click.option`` making an `Option`; shows the default and the envvar like the help of
    every other option does."""
    kwargs.setdefault("show_envvar", "envvar" in kwargs)
    return click.option(*decls, cls=Option, **kwargs)


def argument(name: str, **kwargs: Any) -> Callable[[F], F]:
    return click.argument(name, cls=Argument, **kwargs)


#: ``-o`` values: the formats, and ``wide`` (a table with its wide-only columns).
OUTPUT_CHOICES = ["table", "wide", "json", "yaml"]


def _to_output(ctx: click.Context, _param: click.Parameter, value: str) -> Output:
    """``wide`` is a table (commands see `Output.table`); `nosdn.cli._output.table` reads it."""
    from nosdn.cli._output import WIDE_KEY

    if value == "wide":
        ctx.find_root().meta[WIDE_KEY] = True
        return Output.table
    return Output(value)


def _no_headers(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    from nosdn.cli._output import NO_HEADERS_KEY

    if value:
        ctx.find_root().meta[NO_HEADERS_KEY] = True


def stack(*decorators: Callable[[F], F]) -> Callable[[F], F]:
    """Several decorators as one, applied as if written top to bottom."""

    def apply(f: F) -> F:
        for d in reversed(decorators):
            f = d(f)
        return f

    return apply


def file_option(help: str, *, required: bool = True) -> Callable[[F], F]:
    """``-f/--file`` (also ``$NOSDN_INVENTORY``): the inventory."""
    return option(
        "-f",
        "--file",
        "file",
        type=click.Path(path_type=Path),
        required=required,
        envvar="NOSDN_INVENTORY",
        help=help,
    )


FileOpt = file_option(
    "Inventory YAML (nodes, their addresses and pod subnets). Also $NOSDN_INVENTORY."
)
OutputOpt = stack(
    option(
        "-o",
        "--output",
        type=click.Choice(OUTPUT_CHOICES),
        default=Output.table.value,
        callback=_to_output,
        help="table for people (wide: with more columns); json or yaml for machines.",
    ),
    option(
        "--no-headers",
        is_flag=True,
        expose_value=False,
        callback=_no_headers,
        help="Print tables without their title and header row (for awk, cut).",
    ),
)


# --- nodes from the Kubernetes API: the daemons' options, also the one-shot commands' ---------
API_PANEL = "Kubernetes API"


def kube_api_options(panel: str = API_PANEL) -> Callable[[F], F]:
    """How to reach the API server: ``--kubeconfig``, ``--kube-server``, ``--context``."""
    return stack(
        option(
            "--kubeconfig",
            help="Kubeconfig file (default: $KUBECONFIG, else the in-cluster service account).",
            panel=panel,
        ),
        option("--kube-server", help="API server URL (overrides the kubeconfig's).", panel=panel),
        option("--context", help="Kubeconfig context.", panel=panel),
    )


def node_address_options(panel: str = API_PANEL) -> Callable[[F], F]:
    """Which of a Node's ``status.addresses`` is the one routes point at."""
    return stack(
        option(
            "--node-address-types",
            "address_types",
            default=DEFAULT_ADDRESS_TYPES,
            help="Node address types to route to, in order.",
            panel=panel,
        ),
        option(
            "--node-address-cidr",
            "address_cidr",
            multiple=True,
            help="Only use node addresses inside this network (repeatable; multi-homed nodes).",
            panel=panel,
        ),
    )


def cluster_cidr_option(panel: str = API_PANEL) -> Callable[[F], F]:
    return option(
        "--cluster-cidr",
        multiple=True,
        help="Pod address range(s) of the cluster (repeatable).",
        panel=panel,
    )


def nets(values: Sequence[str], option: str) -> tuple[IPNetwork, ...]:
    """`nosdn.sources.select.networks`; exit 2 naming a bad one."""
    from nosdn.sources.select import networks

    try:
        return networks(values, option)
    except ValueError as e:
        fail(str(e))


def address_policy(types: str, cidrs: Sequence[str]) -> AddressPolicy:
    """`nosdn.sources.select.address_policy`; exit 2 if it cannot be one."""
    from nosdn.sources.select import address_policy as policy

    try:
        return policy(types, cidrs)
    except ValueError as e:
        fail(str(e))


# --- exits and loading -----------------------------------------------------------------------


#: The capability that writing routes (and making namespaces) needs.
CAP_NET_ADMIN = 12


def has_net_admin(status: Path = Path("/proc/self/status")) -> bool:
    """This process may change the network (CAP_NET_ADMIN in its effective set)."""
    try:
        for line in status.read_text().splitlines():
            if line.startswith("CapEff:"):
                return bool(int(line.split()[1], 16) >> CAP_NET_ADMIN & 1)
    except (OSError, ValueError, IndexError):
        pass
    return os.geteuid() == 0


def require_net_admin(what: str) -> None:
    """Exit 1 with one line, before anything is tried, when this process cannot write routes:
    the per-route EPERM of every write (and the wrong guesses they lead to) say it worse."""
    if has_net_admin():
        return
    from nosdn.invocation import cmd

    fail(
        f"{what} needs root (CAP_NET_ADMIN), and this runs as uid {os.geteuid()} without it: "
        f"run it as root, e.g. sudo {cmd(*sys.argv[1:])}",
        EXIT_FAILURE,
    )


def load(path: Path) -> Cluster:
    """Load and check an inventory; on any problem print them all and exit 2."""
    try:
        return load_cluster(path)
    except InventoryError as e:
        print_problems(
            f"{echo(str(path))}: {len(e.problems)} problem(s); nothing was changed", e.problems
        )
        raise SystemExit(EXIT_BAD_INPUT) from None


# --- where a command's nodes come from -------------------------------------------------------
SOURCE_PANEL = "Nodes from the Kubernetes API (without -f)"
SOURCE_FILE_HELP = (
    "Inventory YAML. Without it: the cluster's Node objects, read from the Kubernetes API "
    "(--kubeconfig, --kube-server, else $KUBECONFIG, else in a pod its service account, else "
    "~/.kube/config). On "
    "the command line -f and --kubeconfig/--kube-server exclude each other; each beats the "
    "other's environment variable."
)


#: The keywords `source_options` adds to a command, collapsed into ``source`` by `pop_source`.
SOURCE_KEYS = (
    "file",
    "kubeconfig",
    "kube_server",
    "context",
    "cluster_cidr",
    "address_types",
    "address_cidr",
)


def pop_source(kw: dict[str, Any], *, required: bool = True) -> ClusterSource:
    """Take the `source_options` keywords out of a command's ``kw`` and decide the source
    (`nosdn.sources.select.choose`, before anything is read; exit 2 on a contradiction)."""
    from nosdn.sources.select import SourceChoiceError, choose

    raw = {k: kw.pop(k) for k in SOURCE_KEYS}
    ctx = click.get_current_context()
    given = {n for n in SOURCE_KEYS if ctx.get_parameter_source(n) is ParameterSource.COMMANDLINE}
    try:
        return choose(**raw, given=given, required=required)
    except SourceChoiceError as e:
        fail(str(e))


def source_options(
    *, required: bool = True, file_help: str = SOURCE_FILE_HELP
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``-f/--file`` and the Kubernetes API options, handed to the command as one
    ``source: ClusterSource`` keyword (decided by `pop_source` when it runs).

    Without ``required``, a command given neither gets ``ClusterSource(None)`` (doctor and
    trace then look at the host alone)."""

    def decorate(f: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(f)  # keeps the options already attached (click keeps them on f)
        def run(*args: Any, **kw: Any) -> Any:
            source = pop_source(kw, required=required)
            return f(*args, source=source, **kw)

        return stack(
            file_option(file_help, required=False),
            kube_api_options(SOURCE_PANEL),
            cluster_cidr_option(SOURCE_PANEL),
            node_address_options(SOURCE_PANEL),
        )(run)

    return decorate


def read_api(source: ClusterSource) -> tuple[NodeList, str]:
    """`nosdn.sources.select.read_nodes`; exits 2 on a bad option value (raises
    `SourceError` when the API cannot be read)."""
    from nosdn.sources.select import read_nodes

    try:
        return read_nodes(source)
    except ValueError as e:
        fail(str(e))


def report_nodes(listing: NodeList, origin: str) -> Cluster:
    """Say what a Node list left out (stderr), refuse it like a bad inventory (exit 2) if any
    Node cannot be routed or the checks find a problem, else return its cluster."""
    for note in listing.notes:
        err.print(f"nosdn: {note}", markup=False)
    if listing.without_subnet:
        names = listing.without_subnet
        shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        err.print(
            f"nosdn: {len(names)} node(s) have no spec.podCIDRs yet ({shown}): skipped, no "
            "routes go to them",
            markup=False,
        )
    if listing.problems:
        print_problems(
            f"Nodes from {origin}: {len(listing.problems)} problem(s); nothing was changed",
            listing.problems,
        )
        raise SystemExit(EXIT_BAD_INPUT)
    return listing.cluster


def load_source(source: ClusterSource) -> Cluster:
    """The checked cluster of ``source``: the inventory (`load`) or one list of the Nodes.
    Exit 2 on bad input, 1 when the API cannot be read."""
    if source.kind == "file":
        assert source.file is not None
        return load(source.file)
    if source.kind is None:  # pragma: no cover - commands that need nodes require a source
        fail("no nodes to work from: give -f FILE or --kubeconfig FILE / --kube-server URL")
    try:
        listing, origin = read_api(source)
    except SourceError as e:
        fail(str(e), EXIT_FAILURE)
    return report_nodes(listing, origin)


#: Where the agent's BIRD lives in --bgp mode (status and doctor read its sessions).
BgpDirOpt = option(
    "--bgp-dir",
    type=click.Path(path_type=Path),
    default="/run/nosdn-bird",
    help="The agent's BIRD directory (--bgp mode): its sessions are shown.",
)
