"""``nosdn status --cluster [--watch]``: every node's network from the Kubernetes API, the way
``cilium status`` shows a cluster (`nosdn.sources.clusterstatus` says what is read and why).

Printed as a table (one node a line, values whole), then one line per thing that is wrong,
each naming its node, then the summary (``agents ready: 2/3``) and what to run next. With
``--watch`` it lists again every ``--interval`` seconds and prints the whole answer again
only when it changed (``-o json``: one document per change), until Ctrl-C.
"""

from __future__ import annotations

import gc
import sys
import time
from collections.abc import Mapping
from typing import Any

from nosdn.cli._click import address_policy, nets
from nosdn.cli._output import (
    EXIT_FAILURE,
    Column,
    Output,
    color_allowed,
    dump,
    fail,
    no_headers,
    table_lines,
    wide,
)
from nosdn.sources.clusterstatus import ClusterStatus, NodeNetwork, cluster_status
from nosdn.sources.select import ClusterSource

COLUMNS = (
    Column("node"),
    Column("agent"),
    Column("reason"),
    Column("conflicts"),
    Column("off-link"),
    Column("pod cidrs"),
    Column("addresses", wide=True),
    Column("since", wide=True),
    Column("message", wide=True),
)
_STYLE = {"ready": "green", "not ready": "red", "no agent": "yellow", "other": "yellow"}


class _Listed:
    """The Nodes already listed, handed to `nosdn.sources.listing` for its checks."""

    def __init__(self, items: list[Mapping[str, Any]]) -> None:
        self.items = items

    def list_nodes(self) -> tuple[list[Mapping[str, Any]], str]:
        return self.items, ""


def read_status(source: ClusterSource) -> ClusterStatus:
    """One list of Nodes and of the agents' Events; exits 1 (one line) when the API fails."""
    from nosdn.sources.errors import ApiError
    from nosdn.sources.listing import list_cluster
    from nosdn.sources.select import SourceError, api_fix, open_api

    policy = address_policy(source.address_types, source.address_cidrs)
    cidrs = nets(source.cluster_cidrs, "--cluster-cidr")
    try:
        api = open_api(source)
    except SourceError as e:
        fail(str(e), EXIT_FAILURE)
    try:
        try:
            items_iter, _ = api.list_nodes()
            items = list(items_iter)
        except ApiError as e:
            fail(
                f"cannot read the Nodes from the Kubernetes API at {api.server}: {e} — "
                f"{api_fix(e)}",
                EXIT_FAILURE,
            )
        events: list[Mapping[str, Any]] | None
        events_error = ""
        try:
            events = api.list_events("involvedObject.kind=Node,type=Warning")
        except ApiError as e:
            events, events_error = None, f"cannot list Events: {e}"
        listing = list_cluster(_Listed(items), policy=policy, cluster_cidrs=cidrs)
        return cluster_status(items, events, events_error=events_error, refused=listing.problems)
    finally:
        api.close()


def _row(n: NodeNetwork) -> list[Any]:
    return [
        n.name,
        (n.agent, _STYLE.get(n.agent, "")),
        n.reason or "-",
        (str(len(n.conflicts)), "red") if n.conflicts else "0",
        (str(len(n.offlink)), "yellow") if n.offlink else "0",
        ",".join(n.pod_cidrs) or "-",
        ",".join(n.addresses) or "-",
        n.since or "-",
        n.message or "-",
    ]


def status_lines(
    status: ClusterStatus, *, show_wide: bool, headers: bool, colour: bool
) -> list[str]:
    """The table, what is wrong (one line each), the summary and what to run next."""
    lines = table_lines(
        COLUMNS,
        (_row(n) for n in status.nodes),
        show_wide=show_wide,
        headers=headers,
        colour=colour,
    )
    if not headers:
        return lines
    bad: list[str] = []
    for n in status.nodes:
        if n.agent == "not ready":
            bad.append(f"{n.name}: agent not ready ({n.reason}): {n.message}")
        elif n.agent == "no agent":
            bad.append(
                f"{n.name}: no NetworkUnavailable condition of nosdn's: no agent runs there "
                "(kubectl -n kube-system get pods -l app.kubernetes.io/name=nosdn-agent -o wide), "
                "or it has not reported yet"
            )
        elif n.agent == "other":
            bad.append(f"{n.name}: NetworkUnavailable is set by someone else ({n.reason})")
        bad += [f"{n.name}: conflict: {c}" for c in n.conflicts]
        bad += [f"{n.name}: off-link: {o}" for o in n.offlink]
    lines += bad
    if status.events_error:
        lines.append(f"! {status.events_error}: conflicts and off-link nodes are not known")
    lines += [f"! {p}" for p in status.problems]
    lines.append(f"agents ready: {status.ready}/{len(status.nodes)}")
    worst = [n.name for n in status.nodes if not n.ok]
    if worst:
        more = f" (and {len(worst) - 1} more)" if len(worst) > 1 else ""
        lines.append(
            f"next: on node {worst[0]}{more}, `nosdn doctor` says what is wrong on that host "
            "(or in its agent's pod: kubectl -n kube-system exec POD -- nosdn doctor)"
        )
    return lines


def run_cluster_status(
    source: ClusterSource, output: Output, *, watch: bool, interval: float
) -> None:
    if source.kind != "kube":
        fail(
            "status --cluster reads the Kubernetes API: give --kubeconfig FILE or --kube-server "
            "URL (or $KUBECONFIG), not an inventory"
        )
    if watch:  # a one-shot command's collector is off (`Entry.one_shot`); this runs for hours
        gc.enable()
    last: object = None
    try:
        while True:
            status = read_status(source)
            if output is Output.table:
                text = "".join(
                    line + "\n"
                    for line in status_lines(
                        status, show_wide=wide(), headers=not no_headers(), colour=color_allowed()
                    )
                )
                if text != last:
                    if last is not None:
                        sys.stdout.write("\n")
                    sys.stdout.write(text)
                    sys.stdout.flush()
                    last = text
            else:
                doc = status.as_dict()
                if doc != last:
                    dump({"kind": "ClusterStatus", **doc}, output)
                    sys.stdout.flush()
                    last = doc
            if not watch:
                break
            time.sleep(interval)
    except KeyboardInterrupt:
        return
    if not status.ok:
        raise SystemExit(EXIT_FAILURE)
