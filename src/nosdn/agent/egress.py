"""Egress masquerade: pods reach the world even when the upstream router knows no pod routes.

Traffic from this node's pod subnets to anything outside the cluster (the cluster CIDRs, or
every node's pod subnet when no cluster CIDR is configured, plus the operator's
``--no-masquerade-cidr`` list) leaves with the node's address. Pod-to-pod traffic is never
masqueraded: other nodes must see the pod's own address, that is the whole point of routes.

The rules live in one nftables table that nosdn owns (``inet nosdn``) and are replaced in one
``nft -f`` transaction: the table is declared (so the delete cannot fail), deleted and defined
again, so no packet ever sees half a ruleset and nothing outside our table is touched. The
table is rewritten only when its text changes; on every resync the live table is listed and
compared with what we last wrote, so a deleted or edited table is put back.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from nosdn.model import IPNetwork

log = logging.getLogger("nosdn.agent.egress")

TABLE = "nosdn"
FAMILY = "inet"


class EgressError(RuntimeError):
    pass


def _elements(nets: Iterable[IPNetwork]) -> str:
    return ", ".join(
        str(n) for n in sorted(set(nets), key=lambda n: (n.version, n.network_address))
    )


def render(pod_cidrs: Sequence[IPNetwork], no_masquerade: Sequence[IPNetwork]) -> str:
    """The ``nft -f`` script: masquerade from ``pod_cidrs`` to anything not in ``no_masquerade``."""
    lines = [
        f"table {FAMILY} {TABLE}",
        f"delete table {FAMILY} {TABLE}",
        f"table {FAMILY} {TABLE} {{",
    ]
    rules: list[str] = []
    for fam, kw, atype in ((4, "ip", "ipv4_addr"), (6, "ip6", "ipv6_addr")):
        pods = [c for c in pod_cidrs if c.version == fam]
        if not pods:
            continue
        keep = [c for c in no_masquerade if c.version == fam]
        lines.append(f"\tset pods{fam} {{")
        lines.append(f"\t\ttype {atype}; flags interval; auto-merge")
        lines.append(f"\t\telements = {{ {_elements(pods)} }}")
        lines.append("\t}")
        lines.append(f"\tset cluster{fam} {{")
        lines.append(f"\t\ttype {atype}; flags interval; auto-merge")
        if keep:
            lines.append(f"\t\telements = {{ {_elements(keep)} }}")
        lines.append("\t}")
        rules.append(f"\t\t{kw} saddr @pods{fam} {kw} daddr != @cluster{fam} masquerade")
    lines.append("\tchain postrouting {")
    lines.append("\t\ttype nat hook postrouting priority srcnat; policy accept;")
    lines.extend(rules)
    lines.append("\t}")
    lines.append("}")
    return "\n".join(lines) + "\n"


REMOVE = f"table {FAMILY} {TABLE}\ndelete table {FAMILY} {TABLE}\n"


@dataclass(slots=True)
class Egress:
    """Keeps our nftables table equal to the last rendered script."""

    enabled: bool = True
    nft: str = "nft"
    _script: str | None = None
    _listed: str | None = None

    def _run(self, args: list[str], script: str | None = None) -> subprocess.CompletedProcess[str]:
        exe = shutil.which(self.nft) or self.nft
        try:
            return subprocess.run(
                [exe, *args], input=script, capture_output=True, text=True, timeout=30, check=False
            )
        except FileNotFoundError:
            raise EgressError(
                "nft not found: install nftables, or run with --masquerade=false"
            ) from None

    def _list(self) -> str | None:
        proc = self._run(["list", "table", FAMILY, TABLE])
        return proc.stdout if proc.returncode == 0 else None

    def sync(self, script: str | None, *, verify: bool = False) -> bool:
        """Make the table match ``script`` (None: no table). Returns whether nft was run to
        change it. ``verify`` lists the live table to catch changes made by others."""
        if not self.enabled:
            script = None
        want = script if script is not None else REMOVE
        if want == self._script and not verify:
            return False
        if want == self._script and verify:
            live = self._list()
            if live == self._listed:
                return False
            log.warning("nftables table %s %s was changed by someone: restoring it", FAMILY, TABLE)
        proc = self._run(["-f", "-"], want)
        if proc.returncode != 0:
            self._script = None
            raise EgressError(f"nft -f failed: {proc.stderr.strip() or proc.stdout.strip()}")
        self._script = want
        self._listed = self._list()
        return True
