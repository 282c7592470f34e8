"""``--cloud aws|gce|azure`` for ``nosdn plan`` and ``nosdn apply``: the cloud's route table as
the target.

The kernel commands own ``plan``/``apply``; this module adds the cloud options to them without
touching their bodies: `cloud_command(cmd)` returns a copy of the click command ``cmd`` with
the cloud options appended (listed in their own help section), which runs a cloud pass instead
when ``--cloud`` is given. Options that only mean something for one of the two (``--node`` for
the kernel, ``--aws-region`` for the cloud) are refused in the other mode rather than ignored,
when given on the command line: a cloud option set by the environment ($GOOGLE_CLOUD_PROJECT,
which shells on GCE have) is no reason to refuse a kernel ``plan``.

The nodes come from the inventory only: a cloud route table is found and named by the
cluster's name, which Node objects do not carry; ``nosdn controller`` takes it as an option.

The provider is built by `nosdn.backends.cloud.factory.build_provider`, which ``nosdn controller
--cloud`` uses too before calling `nosdn.backends.cloud.sync.sync` once per pass.
"""

from __future__ import annotations

import inspect
import sys
from typing import TYPE_CHECKING, Any

import click
from click.core import ParameterSource

from nosdn.cli._click import Command, Option, load_source, pop_source
from nosdn.cli._output import EXIT_BAD_INPUT, EXIT_FAILURE, Output, dump, err, fail
from nosdn.sources.select import ClusterSource

if TYPE_CHECKING:  # imported when --cloud is given: a kernel plan/apply does without
    from nosdn.backends.cloud.factory import Cloud, CloudOptions
    from nosdn.backends.cloud.sync import CloudPass

PANEL = "Cloud route table (--cloud)"


# --- the options ---------------------------------------------------------------------------
#: The values of `nosdn.backends.cloud.factory.Cloud` (a test keeps them equal).
CLOUDS = ("aws", "gce", "azure")


def _to_cloud(_ctx: click.Context, _param: click.Parameter, value: str | None) -> Cloud | None:
    if value is None:
        return None
    from nosdn.backends.cloud.factory import Cloud

    return Cloud(value)


def _cloud_params() -> list[click.Parameter]:
    def opt(decl: str, **kwargs: Any) -> Option:
        kwargs.setdefault("show_envvar", "envvar" in kwargs)
        return Option([decl], panel=PANEL, **kwargs)

    return [
        opt(
            "--cloud",
            type=click.Choice(CLOUDS),
            callback=_to_cloud,
            help="Program the cloud's VPC route table (every pod subnet -> its node's instance) "
            "instead of this host's kernel table.",
        ),
        opt(
            "--route-table",
            multiple=True,
            help="AWS: manage this route table (repeat for several). Default: every table "
            "tagged kubernetes.io/cluster/<clusterName>. Azure (required): the table of the "
            "nodes' subnet, as NAME, RG/NAME or its resource id.",
        ),
        opt(
            "--capacity",
            type=int,
            help="Routes a table may hold (AWS default 50, the default quota; GCE default: the "
            "project's ROUTES quota; Azure default 400). New routes that do not fit are left "
            "out and named; the rest is written.",
        ),
        opt(
            "--aws-region",
            help="AWS region (default: AWS_REGION / AWS_DEFAULT_REGION / the AWS config).",
        ),
        opt(
            "--aws-endpoint",
            help="EC2 endpoint URL (default: AWS_ENDPOINT_URL, else AWS's). Credentials come "
            "from the usual AWS environment.",
        ),
        opt(
            "--gce-project",
            envvar=["GOOGLE_CLOUD_PROJECT", "CLOUDSDK_CORE_PROJECT"],
            help="GCE project (also $GOOGLE_CLOUD_PROJECT).",
        ),
        opt("--gce-network", default="default", help="GCE VPC network."),
        opt(
            "--gce-zone",
            help="Zone of instances named without one (instanceId NAME, or none: the node's name).",
        ),
        opt(
            "--gce-endpoint",
            envvar="NOSDN_GCE_ENDPOINT",
            help="Compute API endpoint (every request, operation polling included, goes there). "
            "An http:// endpoint gets no credentials.",
        ),
        opt(
            "--azure-subscription",
            envvar="AZURE_SUBSCRIPTION_ID",
            help="Azure subscription id of the route table(s) (also $AZURE_SUBSCRIPTION_ID).",
        ),
        opt(
            "--azure-resource-group",
            envvar="AZURE_RESOURCE_GROUP",
            help="Resource group of the route table(s) and of VMs named without one.",
        ),
        opt(
            "--azure-endpoint",
            envvar="NOSDN_AZURE_ENDPOINT",
            help="Resource Manager endpoint (default https://management.azure.com; every "
            "request, operation polling included, goes there). Credentials: "
            "DefaultAzureCredential (AZURE_CLIENT_ID/AZURE_TENANT_ID/AZURE_CLIENT_SECRET, "
            "workload identity, managed identity).",
        ),
    ]


#: The cloud options and their defaults.
_CLOUD_DEFAULTS: dict[str, Any] = {
    "cloud": None,
    "route_table": (),
    "capacity": None,
    "aws_region": None,
    "aws_endpoint": None,
    "gce_project": None,
    "gce_network": "default",
    "gce_zone": None,
    "gce_endpoint": None,
    "azure_subscription": None,
    "azure_resource_group": None,
    "azure_endpoint": None,
}
#: Kernel options that mean nothing for a cloud route table.
_KERNEL_ONLY = (
    "node",
    "external",
    "table",
    "protocol",
    "netns",
    "exit_code",
    "force",
    "max_delete_share",
)


def cloud_command(cmd: click.Command, *, always_dry_run: bool) -> Command:
    """``cmd`` (the kernel ``plan`` or ``apply``) with the cloud options added.

    Without ``--cloud`` it runs ``cmd``'s callback unchanged; with it, one cloud pass (a dry
    run when ``always_dry_run`` or ``--dry-run``).
    """
    kernel = cmd.callback
    assert kernel is not None

    def callback(**kw: Any) -> None:
        ctx = click.get_current_context()
        cloud_kw = {k: kw.pop(k) for k in _CLOUD_DEFAULTS}
        if cloud_kw["cloud"] is None:
            stray = [
                k
                for k, d in _CLOUD_DEFAULTS.items()
                if k != "cloud"
                and cloud_kw[k] != d
                and ctx.get_parameter_source(k) is not ParameterSource.ENVIRONMENT
            ]
            if stray:
                fail(f"--{stray[0].replace('_', '-')} needs --cloud aws|gce|azure")
            kernel(**kw)
            return
        for k in _KERNEL_ONLY:
            if k in kw and ctx.get_parameter_source(k) is ParameterSource.COMMANDLINE:
                fail(f"--{k} is for this host's kernel table; it does not apply with --cloud")
        source = pop_source(kw)
        if source.kind != "file":
            # The Node objects carry no cluster name, and the name is what finds (AWS tags)
            # and names (GCE, Azure) the routes: a guessed one could claim another cluster's table.
            fail(
                "--cloud needs the inventory (-f FILE, with its clusterName); for the cluster's "
                "Node objects, the cloud route table is `nosdn controller --cloud "
                f"{cloud_kw['cloud']} --cluster-name NAME`'s (--dry-run shows what it would do)"
            )
        from nosdn.backends.cloud.factory import CloudOptions

        opts = CloudOptions(
            cloud=cloud_kw["cloud"],
            route_tables=tuple(cloud_kw["route_table"]),
            capacity=cloud_kw["capacity"],
            aws_region=cloud_kw["aws_region"],
            aws_endpoint=cloud_kw["aws_endpoint"],
            gce_project=cloud_kw["gce_project"],
            gce_network=cloud_kw["gce_network"],
            gce_zone=cloud_kw["gce_zone"],
            gce_endpoint=cloud_kw["gce_endpoint"],
            azure_subscription=cloud_kw["azure_subscription"],
            azure_resource_group=cloud_kw["azure_resource_group"],
            azure_endpoint=cloud_kw["azure_endpoint"],
        )
        run_cloud(
            opts,
            source=source,
            output=kw.get("output", Output.table),
            dry_run=always_dry_run or bool(kw.get("dry_run", False)),
            verbose=bool(kw.get("verbose", False)) or always_dry_run,
            show_only=always_dry_run,
        )

    return Command(
        cmd.name,
        callback=callback,
        params=[*cmd.params, *_cloud_params()],
        help=inspect.cleandoc(cmd.help or "")
        + "\n\nWith --cloud aws|gce|azure: the same for the cloud's VPC route table(s) instead "
        "(every pod subnet routed to its node's instance; routes of others are never touched).",
        short_help=cmd.short_help,
        context_settings=cmd.context_settings,
    )


# --- running and printing ------------------------------------------------------------------
def run_cloud(
    opts: CloudOptions,
    *,
    source: ClusterSource,
    output: Output,
    dry_run: bool,
    verbose: bool,
    show_only: bool = False,
) -> CloudPass:
    """Load, check, run one pass, print. Exit 2 on bad input (nothing written); else, like the
    kernel commands, ``plan`` (``show_only``) exits 0 and ``apply`` exits 1 on write errors,
    conflicts or a refusal."""
    from nosdn.backends.cloud.contract import CloudError
    from nosdn.backends.cloud.factory import build_provider
    from nosdn.backends.cloud.sync import sync
    from nosdn.problems import ProblemsError

    cluster = load_source(source)
    try:
        provider = build_provider(opts)
    except ValueError as e:
        fail(str(e))
    except CloudError as e:
        fail(str(e))
    try:
        result = sync(provider, cluster, dry_run=dry_run, strict=not dry_run)
    except ProblemsError as e:
        err.print(f"[bold red]{len(e.problems)} problem(s); nothing was written[/]")
        for p in e.problems:
            err.print(f"  - {p}", markup=False)
        raise SystemExit(EXIT_BAD_INPUT) from None
    except CloudError as e:
        fail(f"{e}; nothing was written", EXIT_FAILURE)
    if output is not Output.table:
        dump(report(result), output)
    else:
        print_pass(result, full=verbose)
    if result.problems:
        raise SystemExit(EXIT_BAD_INPUT)
    if not show_only and (result.errors or result.conflicts or result.shortfalls):
        raise SystemExit(EXIT_FAILURE)
    return result


def _instance(result: CloudPass, node: str | None) -> str:
    return result.instances.get(node or "", "?")


def report(result: CloudPass) -> dict[str, Any]:
    """The pass as plain data (for ``-o json|yaml``)."""
    tables = []
    for t in result.tables:
        d = t.diff
        row: dict[str, Any] = {
            "table": t.table.table_id,
            "create": [
                {"dst": str(r.dst), "node": r.node, "instance": _instance(result, r.node)}
                for r in d.add
            ],
            "replace": [
                {
                    "dst": str(c.new.dst),
                    "node": c.new.node,
                    "instance": _instance(result, c.new.node),
                    "was": c.old.detail,
                }
                for c in d.change
            ],
            "delete": [{"dst": str(r.dst), "was": r.detail} for r in d.remove],
            "inSync": len(d.keep),
            "conflicts": [
                {
                    "dst": str(c.wanted.dst),
                    "node": c.wanted.node,
                    "owner": c.found.owner,
                    "found": c.found.detail,
                }
                for c in d.conflicts
            ],
        }
        if d.add:  # capacity is known (GCE reads its quota only when adding)
            row["capacity"] = t.table.capacity
            row["routesAfter"] = t.after
        if t.applied is not None:
            row["writes"] = t.applied.writes
            row["errors"] = [
                {"dst": str(e.dst), "node": e.node, "action": e.action, "message": e.message}
                for e in t.applied.errors
            ]
        tables.append(row)
    return {
        "cloud": result.cloud,
        "dryRun": result.dry_run,
        "tables": tables,
        "refused": [str(s) for s in result.shortfalls],
        "problems": [p.as_dict() for p in result.problems],
        "notes": result.notes,
        "apiCalls": dict(sorted(result.calls.items())),
    }


def print_pass(result: CloudPass, *, full: bool) -> None:
    w = sys.stdout.write
    for t in result.tables:
        d = t.diff
        if full:
            for r in d.add:
                w(f"+ create  {t.table.table_id}  {r.dst} -> {_instance(result, r.node)}")
                w(f" (node {r.node})\n")
            for c in d.change:
                w(f"~ replace {t.table.table_id}  {c.new.dst} -> ")
                w(f"{_instance(result, c.new.node)} (node {c.new.node})\n")
                w(f"    was: {c.old.detail}\n")
            for old in d.remove:
                w(f"- delete  {t.table.table_id}  {old.detail}\n")
        fits = f"; {t.after} of {t.table.capacity} routes after" if d.add else ""
        done = ""
        if t.applied is not None:
            done = f"; {t.applied.writes} write(s)"
        elif result.dry_run:
            done = " (dry run: nothing written)"
        w(
            f"{result.cloud} {t.table.table_id}: {len(d.add)} to create, {len(d.change)} to "
            f"replace, {len(d.remove)} to delete, {len(d.keep)} in sync, "
            f"{len(d.conflicts)} conflict(s){fits}{done}\n"
        )
    for table, k in result.conflicts:
        w(f"! conflict {table} {k.wanted.dst}: routed by {k.found.owner}, left alone\n")
        w(f"    wanted: {k.wanted.dst} -> {_instance(result, k.wanted.node)} ")
        w(f"(node {k.wanted.node})\n    found:  {k.found.detail}\n")
    for s in result.shortfalls:
        w(f"x refused: {s}\n")
    for table, e in result.errors:
        who = f"node {e.node}" if e.node else "stale route"
        w(f"x failed to {e.action} {e.dst} in {table} ({who}): {e.message}\n")
    for p in result.problems:
        w(f"? {p} (its routes are left as they are)\n")
    for n in result.notes:
        w(f"note: {n}\n")
    calls = ", ".join(f"{k} {v}" for k, v in sorted(result.calls.items()))
    w(f"api calls: {calls or 'none'}\n")
