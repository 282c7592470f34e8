"""The `nosdn` command line: parses, calls, prints. No logic of its own lives here.

Why lazy: every ``nosdn`` run is a fresh process, and on a small cluster starting up costs more
than the work (``nosdn routes`` of two nodes is mostly imports). So the top-level group knows
its commands only from the table below (name -> module, attribute, one line of help): ``nosdn
--help`` lists them without importing any, and ``nosdn NAME`` imports only NAME's module.
A command module may import heavy things at its top (rich tables, the lab), since it is only
imported to run its command; what is only needed on some paths (the kernel backend, the cloud
SDKs) stays imported inside the function that needs it.

``_click`` holds the options commands share (``-f/--file``, ``-o/--output``) and the one way
inventories are loaded and checked, so every command refuses a bad inventory the same way
(exit 2, nothing written); ``_output`` how they print and end. Exit codes: 0 ok, 1 runtime
failure, 2 bad input or usage.
"""

from __future__ import annotations

import gc
import os
import sys
from typing import NamedTuple, NoReturn

import click


class Entry(NamedTuple):
    module: str
    #: The module's `click.Command`.
    attr: str
    #: One line for ``nosdn --help`` (the command's own help says the rest).
    help: str
    #: A command that builds its objects, prints and ends (`_one_shot`): no cyclic garbage
    #: collector, no teardown. Not for the daemons and the lab (threads, children, atexit).
    one_shot: bool = False
    #: A long-running command with threads (`_daemon`): one malloc arena.
    daemon: bool = False


COMMANDS: dict[str, Entry] = {
    "check": Entry(
        "_inventory_cmds",
        "check",
        "Check an inventory and report every problem at once (exit 2 if any).",
        one_shot=True,
    ),
    "allocate": Entry(
        "_inventory_cmds",
        "allocate_cmd",
        "Give every node without a pod subnet one per family from the cluster CIDRs.",
        one_shot=True,
    ),
    "routes": Entry(
        "_inventory_cmds",
        "routes",
        "Print the routes one machine needs (no root: this only computes).",
        one_shot=True,
    ),
    "render": Entry(
        "_render_cmds",
        "render_cmd",
        "Render the cluster's routes as a file you deploy: a script, systemd units, "
        "cloud-init, a router config, cloud CLI commands or a node's CNI config.",
        one_shot=True,
    ),
    "plan": Entry(
        "_kernel_cmds",
        "plan",
        "Show what `apply` would change in this host's kernel table (read-only, no root needed).",
        one_shot=True,
    ),
    "apply": Entry(
        "_kernel_cmds",
        "apply",
        "Make this host's kernel table hold exactly the routes it needs (root).",
        one_shot=True,
    ),
    "status": Entry(
        "_kernel_cmds",
        "status",
        "Desired vs actual routes on this host: ok, missing, wrong, stale, conflict, shadowed, "
        "off-link. With --cluster: every node of the cluster, from the Kubernetes API.",
        one_shot=True,
    ),
    "flush": Entry(
        "_kernel_cmds",
        "flush",
        "Remove every route and nexthop nosdn owns (its protocol number) from this host (root).",
        one_shot=True,
    ),
    "agent": Entry(
        "_agent_cmds",
        "agent",
        "Run the node agent: keep this node's routes, CNI config and egress rules equal to the "
        "cluster's Node objects, repair what others break, never flush. Runs until SIGTERM.",
        daemon=True,
    ),
    "controller": Entry(
        "_controller_cmds",
        "controller",
        "Run the cloud route controller: keep the VPC route table(s) holding every node's pod "
        "subnet routed to its instance, from the cluster's Node objects (spec.podCIDRs, "
        "spec.providerID), and set NetworkUnavailable=False (RouteCreated) on the nodes whose "
        "routes exist. One replica leads (a Lease); the others wait warm. Runs until SIGTERM.",
        daemon=True,
    ),
    "manifests": Entry(
        "_agent_cmds",
        "manifests",
        "Print the objects that deploy the agent (ServiceAccount, RBAC, DaemonSet) as YAML: "
        "`nosdn manifests --cluster-cidr 10.244.0.0/16 | kubectl apply -f -`.",
        one_shot=True,
    ),
    "install-cni": Entry(
        "_install_cmds",
        "install_cni",
        "Copy the CNI plugins the conflist uses into the host's CNI bin directory, atomically, "
        "only when missing or older there; never touches any other file.",
        one_shot=True,
    ),
    "uninstall": Entry(
        "_install_cmds",
        "uninstall",
        "Remove nosdn's routes and nexthops (its protocol only), its CNI conflist and its "
        "nftables table from this node; nothing else.",
        one_shot=True,
    ),
    "doctor": Entry(
        "_debug_cmds",
        "doctor",
        "Check this host for everything that silently breaks pod traffic (read-only).",
        one_shot=True,
    ),
    "trace": Entry(
        "_debug_cmds",
        "trace",
        "Where a packet to IP goes from this host, and whether nosdn wants it so (read-only).",
        one_shot=True,
    ),
    "graph": Entry(
        "_debug_cmds",
        "graph",
        "Draw the cluster: segments, nodes, addresses, pod subnets, the router, and which "
        "routes go where (host routes per segment, the router's table, service routes).",
        one_shot=True,
    ),
    "version": Entry(
        "_meta_cmds",
        "version",
        "Print nosdn's version (and Python's, and the kernel's with -o json|yaml).",
        one_shot=True,
    ),
    "completion": Entry(
        "_meta_cmds",
        "completion",
        "Print the shell completion script for SHELL (commands, options, choices).",
        one_shot=True,
    ),
    "lab": Entry(
        "_lab_cmds",
        "lab_group",
        "A Kubernetes-shaped cluster made of network namespaces on this machine (root).",
    ),
}

HELP = """Kubernetes pod networking with plain IP routes: no overlay, no SDN.

Each node gets a pod subnet; nosdn tells the network where each subnet lives, as host routes on
every node, in a cloud route table, or in a router's config.

\b
Start with:  nosdn check -f examples/two-nodes.yaml
then         nosdn routes -f examples/two-nodes.yaml --node node1
"""


def resolve_or_suggest(
    group: click.Group, ctx: click.Context, args: list[str]
) -> tuple[str | None, click.Command | None, list[str]]:
    """`click.Group.resolve_command`, with "did you mean" for a mistyped command."""
    name = args[0] if args else ""
    if args and group.get_command(ctx, name) is None and not name.startswith("-"):
        from nosdn.problems import did_you_mean

        hint = did_you_mean(name, group.list_commands(ctx)).strip()
        ctx.fail(f"No such command {name!r}." + (f" D{hint[1:]}" if hint else ""))
    return click.Group.resolve_command(group, ctx, args)


class LazyGroup(click.Group):
    """The top-level group: commands come from `COMMANDS`, each module imported on use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        entry = COMMANDS.get(cmd_name)
        if entry is None:
            return None
        name = f"nosdn.cli.{entry.module}"
        __import__(name)  # not importlib.import_module: -X importtime would not list it
        cmd = getattr(sys.modules[name], entry.attr)
        if not isinstance(cmd, click.Command):  # pragma: no cover - a wrong table entry
            raise TypeError(f"nosdn.cli.{entry.module}.{entry.attr} is not a click command")
        return cmd

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        name, cmd, rest = resolve_or_suggest(self, ctx, args)
        entry = COMMANDS.get(name or "")
        if entry is not None and entry.one_shot:
            _one_shot()
        if entry is not None and entry.daemon:
            _daemon()
        return name, cmd, rest

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Commands"):
            formatter.write_dl([(name, entry.help) for name, entry in COMMANDS.items()])


def _version(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if value and not ctx.resilient_parsing:
        from nosdn.cli._meta_cmds import print_version

        print_version(ctx, param, value)


app = LazyGroup(
    "nosdn",
    help=HELP,
    params=[
        click.Option(
            ["--version"],
            is_flag=True,
            expose_value=False,
            is_eager=True,
            callback=_version,
            help="Print the version and exit.",
        )
    ],
    no_args_is_help=True,
    context_settings={
        "show_default": True,
        "max_content_width": 100,
        "help_option_names": ["-h", "--help"],
    },
)


def main() -> None:
    """Entry point: bad input anywhere becomes exit 2 with every problem listed."""
    from nosdn.problems import ProblemsError

    _PROCESS[0] = True
    try:
        app(complete_var="_NOSDN_COMPLETE")
    except ProblemsError as e:
        from nosdn.cli._output import EXIT_BAD_INPUT, print_problems

        print_problems(f"{len(e.problems)} problem(s); nothing was changed", e.problems)
        _exit(EXIT_BAD_INPUT)
    except BrokenPipeError:  # `nosdn routes | head`: the reader has what it wanted
        _exit(EXIT_FAILURE_QUIET)
    except Exception as e:  # every other path: one line and a hint, never a traceback
        from nosdn.cli._errors import debugging, describe

        if debugging():
            raise
        failure = describe(e)
        _print_error(failure.message)
        _exit(failure.code)
    except SystemExit as e:
        if e.code is None or isinstance(e.code, int):
            _exit(e.code or 0)
        raise


#: The exit code of a command whose stdout reader went away (as `head` does).
EXIT_FAILURE_QUIET = 1


def _print_error(message: str) -> None:
    from nosdn.cli._output import err

    err.print("[bold red]error:[/] ", end="")
    err.print(message, markup=False)


#: [this process is the `nosdn` command (`main`), the command running is one-shot]: the
#: process tricks below are for the command's own process only, never for a caller that
#: runs `app` in its own (a test's CliRunner, a script).
_PROCESS: list[bool] = [False, False]


def _one_shot() -> None:
    """A one-shot command builds a few hundred thousand small objects and exits: the cyclic
    collector would only re-scan them (it doubled `nosdn check` on 50,000 nodes), and freeing
    them one by one at exit is time spent on memory the kernel frees anyway (`_exit`)."""
    if _PROCESS[0]:
        gc.disable()
        _PROCESS[1] = True


def _daemon() -> None:
    """A daemon's threads each get a malloc arena of their own from glibc, and what one
    thread frees stays in its arena: the watch thread decodes every Node event (strings and
    dicts too big for Python's small-object allocator) in one while the loop builds its
    passes in another, and the resident memory holds both. One arena, asked before any
    thread starts: the interpreter lock already takes the threads' allocations one at a time,
    so an arena each buys no parallelism, only memory (an operator's own
    ``MALLOC_ARENA_MAX`` stands). This can go when glibc stops handing out arenas that way."""
    if _PROCESS[0]:
        from nosdn.daemon.memory import limit_malloc_arenas

        limit_malloc_arenas(1)


def _exit(code: int) -> NoReturn:
    """End a one-shot command without the interpreter's teardown (output flushed first);
    every other command (the daemons, the lab, a usage error) exits the usual way, joining
    threads and running atexit handlers."""
    if not _PROCESS[1]:
        raise SystemExit(code)
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (BrokenPipeError, ValueError):  # a reader that went away, a closed stream
        pass
    os._exit(code)
