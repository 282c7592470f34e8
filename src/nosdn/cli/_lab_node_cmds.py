"""`nosdn lab node add|remove|readdress`: change a running lab's cluster and watch nosdn follow.

In a lab made with ``--agents`` the change goes through the API server (the Node object is
created, patched or deleted) and the command waits until every agent has followed, printing
each node's routes as they arrive; without agents the inventory changes and ``nosdn apply``
runs again. Only parsing and printing here; the work is `nosdn.lab.members`.
"""

from __future__ import annotations

import time

from nosdn.cli._click import Group, argument, option
from nosdn.cli._lab_common import NameOpt, help_text, lab_errors, log, out
from nosdn.lab import add_node, open_lab, readdress_node, remove_node

node_group = Group(
    "node",
    help=help_text(
        "Change the lab's cluster: add a node, remove one, or move one to another address.",
        "With --agents (a live cluster) the change goes through the API server and the "
        "command waits until every node's agent has followed; otherwise the inventory "
        "changes and `nosdn apply` runs again in every node.",
    ),
    no_args_is_help=True,
)


def _done(what: str, start: float) -> None:
    out.print(f"{what} ({time.monotonic() - start:.1f} s)", markup=False)


@node_group.command(
    "add",
    help=help_text(
        "Add a node (the next number: its namespace, address 10.10.0.N, pod subnet "
        "10.244.N.0/24 and pods) and tell the cluster.",
    ),
)
@NameOpt
def add_cmd(name: str) -> None:
    start = time.monotonic()
    with lab_errors():
        node = add_node(open_lab(name), log=log)
    _done(f"{node.name} added", start)


@node_group.command(
    "remove",
    help=help_text(
        "Remove NODE: its agent, pods and namespace, then its Node object (or inventory "
        "entry); the other nodes drop its routes.",
    ),
)
@argument("node")
@NameOpt
def remove_cmd(node: str, name: str) -> None:
    start = time.monotonic()
    with lab_errors():
        remove_node(open_lab(name), node, log=log)
    _done(f"{node} removed", start)


@node_group.command(
    "readdress",
    help=help_text(
        "Move NODE to another address on its network (IPv6 too, same host number): the node "
        "gets the new address, the cluster learns it, the old one goes; the other nodes' "
        "routes follow to the new gateway.",
    ),
)
@argument("node")
@option("--ip", "address", help="The new IPv4 address (default: the first free of .100 and up).")
@NameOpt
def readdress_cmd(node: str, address: str | None, name: str) -> None:
    start = time.monotonic()
    with lab_errors():
        moved = readdress_node(open_lab(name), node, address, log=log)
    _done(f"{node} now at {', '.join(map(str, moved.ips))}", start)
