"""Removing what the agent left on a node, once nosdn is being taken off the cluster.

Why it exists: the agent never flushes (a restart must not cut pod traffic), so deleting its
DaemonSet leaves its routes, nexthops, CNI conflist and nftables table behind, and the next pod
network finds a conflist that names a bridge nobody manages and routes nobody updates. The
one-shot cleanup DaemonSet of ``nosdn manifests --uninstall`` runs ``nosdn uninstall
--node-local`` (this module) on every node.

What is ours, and nothing else is touched:

- routes and nexthops of our protocol number in our table (`KernelBackend.flush`: a route of
  any other protocol, and a nexthop another table's route still uses, stay);
- the conflist at the agent's path, and only if it is the one nosdn writes (its network
  ``name`` is ``nosdn``); any other file in the CNI directory stays, and a foreign file at our
  path is reported, not removed;
- the nftables table ``inet nosdn`` (deleted by name: every other table stays).

Left on purpose: the CNI plugins in ``/opt/cni/bin`` (the next pod network may use the same
ones), the ``cni0`` bridge and host-local's leases (the bridge and host-local plugins' state,
gone with the pods or at reboot) and ``/run/nosdn-bird`` (a tmpfs).

An agent still running on the node would put everything back at its next pass, so the cleanup
first asks the agent's health endpoint and refuses while it answers: delete the agent's
DaemonSet first.
"""

from __future__ import annotations

import http.client
import json
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from nosdn.agent.egress import FAMILY, TABLE
from nosdn.render.cni import NETWORK_NAME


class UninstallError(Exception):
    """The cleanup cannot run (nothing was changed)."""


@dataclass
class Report:
    """What the cleanup did, line by line for the pod's log."""

    routes: int = 0
    conflist: str = "absent"
    nft_table: str = "absent"
    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = [
            f"routes and nexthops removed: {self.routes}",
            f"conflist: {self.conflist}",
            f"nftables table {FAMILY} {TABLE}: {self.nft_table}",
        ]
        out += [f"note: {n}" for n in self.notes]
        out += [f"error: {e}" for e in self.errors]
        return out


def agent_answers(address: str, timeout: float = 2.0) -> bool:
    """Whether something answers HTTP on the agent's metrics address (HOST:PORT)."""
    host, _, port = address.rpartition(":")
    conn = http.client.HTTPConnection(host.strip("[]") or "127.0.0.1", int(port), timeout=timeout)
    try:
        conn.request("GET", "/healthz")
        conn.getresponse().read()
    except OSError:
        return False
    finally:
        conn.close()
    return True


def conflist_state(path: Path) -> str:
    """``absent``, ``ours`` (nosdn's network name) or ``foreign``."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return "absent"
    try:
        doc = json.loads(text)
    except ValueError:
        return "foreign"
    return "ours" if isinstance(doc, dict) and doc.get("name") == NETWORK_NAME else "foreign"


def remove_conflist(path: Path) -> str:
    state = conflist_state(path)
    if state == "ours":
        path.unlink()
        return f"removed {path}"
    if state == "foreign":
        return f"kept {path}: not nosdn's (its network name is not {NETWORK_NAME!r})"
    return f"absent ({path})"


def remove_nft_table(nft: str = "nft") -> str:
    """Delete ``inet nosdn`` if it exists; other tables are never named."""
    exe = shutil.which(nft)
    if exe is None:
        return "nft not installed: nothing to remove"
    listed = subprocess.run(
        [exe, "list", "table", FAMILY, TABLE], capture_output=True, text=True, check=False
    )
    if listed.returncode != 0:
        return "absent"
    proc = subprocess.run(
        [exe, "delete", "table", FAMILY, TABLE], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise UninstallError(f"nft delete table {FAMILY} {TABLE}: {proc.stderr.strip()}")
    return "removed"


def uninstall_node(
    *,
    table: int,
    protocol: int,
    conflist: Path | None,
    agent_address: str | None,
    nft: str = "nft",
) -> Report:
    """Remove this node's nosdn state (see the module doc). Raises `UninstallError` before
    any change while the agent still answers at ``agent_address``."""
    if agent_address and agent_answers(agent_address):
        raise UninstallError(
            f"the nosdn agent still answers on {agent_address}: delete its DaemonSet first "
            "(kubectl -n kube-system delete daemonset nosdn-agent), or it puts everything back"
        )
    from nosdn.backends.kernel import KernelBackend

    report = Report()
    backend = KernelBackend(table=table, protocol=protocol)
    try:
        res = backend.flush()
        report.notes += list(backend.notes)
    finally:
        backend.close()
    report.routes = res.writes
    report.errors += [f"route {e.dst}: {e.message}" for e in res.errors]
    if conflist is not None:
        try:
            report.conflist = remove_conflist(conflist)
        except OSError as e:
            report.errors.append(f"conflist {conflist}: {e}")
    try:
        report.nft_table = remove_nft_table(nft)
    except UninstallError as e:
        report.errors.append(str(e))
    return report
