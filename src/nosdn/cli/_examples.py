"""The Examples block of every command's help, in one table (kubectl's ``Examples:``).

Keyed by the command's path under ``nosdn`` ("apply", "lab node add"); `nosdn.cli._click`'s
`Command` and `Group` print the entry after the help text, so a new command gets its block by
adding a line here, and a test checks that every command has one. A command whose docstring
already holds an ``Examples:`` block keeps it (render, graph, version, completion).
"""

from __future__ import annotations

import click

INV = "inventory.yaml"

EXAMPLES: dict[str, tuple[str, ...]] = {
    "check": (f"nosdn check -f {INV}", f"nosdn check -f {INV} -o json"),
    "allocate": (f"nosdn allocate -f {INV}", f"nosdn allocate -f {INV} --write"),
    "routes": (
        f"nosdn routes -f {INV} --node node1",
        f"nosdn routes -f {INV} --external -o json",
        "nosdn routes --kubeconfig ~/.kube/config --router",
    ),
    "plan": (
        f"nosdn plan -f {INV}",
        f"nosdn plan -f {INV} -o json",
        f"nosdn plan -f {INV} --cloud aws --aws-region eu-west-1",
    ),
    "apply": (
        f"sudo nosdn apply -f {INV}",
        f"sudo nosdn apply -f {INV} --dry-run",
        f"sudo nosdn apply -f {INV} --external",
        f"sudo nosdn apply -f {INV} --force     # past the deletion guard",
    ),
    "status": (
        f"nosdn status -f {INV}",
        f"nosdn status -f {INV} -o wide",
        f"nosdn status -f {INV} --no-headers | awk '$1 != \"ok\"'",
        "nosdn status --cluster --kubeconfig ~/.kube/config   # every node's agent",
        "nosdn status --cluster --watch",
    ),
    "flush": ("sudo nosdn flush", "sudo nosdn flush --table 100"),
    "agent": ('nosdn agent --node "$NODE_NAME" --cluster-cidr 10.244.0.0/16   # in a DaemonSet',),
    "controller": (
        "nosdn controller --cloud aws --aws-region eu-west-1 --cluster-cidr 10.244.0.0/16",
    ),
    "manifests": (
        "nosdn manifests --cluster-cidr 10.244.0.0/16 | kubectl apply -f -",
        "nosdn manifests --controller --cloud aws --aws-region eu-west-1 "
        "--cluster-cidr 10.244.0.0/16",
        "nosdn manifests --uninstall | kubectl apply -f -",
    ),
    "install-cni": (
        "nosdn install-cni   # the DaemonSet's init container: image plugins into /opt/cni/bin",
        "sudo nosdn install-cni --from /usr/lib/cni --to /opt/cni/bin --plugin bridge",
    ),
    "uninstall": (
        "nosdn manifests --uninstall | kubectl apply -f -   # every node, once the agent is gone",
        "sudo nosdn uninstall --node-local   # this node only",
    ),
    "doctor": (
        f"nosdn doctor -f {INV}",
        "nosdn doctor --kubeconfig /etc/kubernetes/admin.conf",
        f"nosdn doctor -f {INV} -o json",
    ),
    "trace": (f"nosdn trace 10.244.2.5 -f {INV}", "nosdn trace 10.96.0.1 --kubeconfig FILE"),
    "lab": ("sudo nosdn lab demo", "sudo nosdn lab up --nodes 3 --ipv6"),
    "lab up": (
        "sudo nosdn lab up",
        "sudo nosdn lab up --nodes 4 --segments 2 --router-daemon bird",
        "sudo nosdn lab up --agents",
    ),
    "lab apply": ("sudo nosdn lab apply",),
    "lab check": ("sudo nosdn lab check", "sudo nosdn lab check -o json"),
    "lab node": ("sudo nosdn lab node add", "sudo nosdn lab node remove node3"),
    "lab node add": ("sudo nosdn lab node add",),
    "lab node remove": ("sudo nosdn lab node remove node3",),
    "lab node readdress": ("sudo nosdn lab node readdress node2",),
    "lab down": ("sudo nosdn lab down", "sudo nosdn lab down --name mylab"),
    "lab demo": ("sudo nosdn lab demo",),
}


def command_key(ctx: object) -> str:
    """The path of ``ctx``'s command under the top-level group ("lab node add")."""
    names: list[str] = []
    c = ctx
    while getattr(c, "parent", None) is not None:
        names.append(str(getattr(c, "info_name", "")))
        c = getattr(c, "parent", None)
    return " ".join(reversed(names))


def format_examples(cmd: click.Command, ctx: click.Context, formatter: click.HelpFormatter) -> None:
    """Write ``cmd``'s Examples block (unless its own help has one)."""
    lines = EXAMPLES.get(command_key(ctx))
    if not lines or "Examples:" in (cmd.help or ""):
        return
    with formatter.section("Examples"):
        for line in lines:
            formatter.write_text(line)
