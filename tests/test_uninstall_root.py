"""The README's "Uninstall" run for real (root), contained in one network namespace and one
temporary root directory.

A node is installed the ways the README describes: ``nosdn apply`` (routes through nexthop
objects, and the rt_protos name), the files ``render --format systemd --out /`` writes (here
``--out ROOT``) with the rendered script run once as its service would, the CNI conflist
``render --format cni`` gives the agent's path, and the agent's ``inet nosdn`` masquerade table
(`nosdn.agent.egress.render`, what the agent loads). Next to them sit foreign things: a
``proto static`` route, a nexthop and its route of another protocol, an ``inet other`` table,
another conflist, unit, rt_protos file and script.

Then the README's ``sh`` blocks of that section run as written, word for word, in ``sh -e``
with small shell functions in front of the commands that would otherwise reach outside:

- ``sudo``: runs its arguments (the test is root already);
- ``nosdn flush``: gets ``--netns NS`` (the flag every host command has), nothing else changes;
- ``nft``: runs inside NS (``ip netns exec NS nft``);
- ``rm -f /ABS/PATH``: removes ROOT/ABS/PATH;
- ``systemctl`` is **not run**: on this machine it would act on the host's own systemd (stop,
  disable and reload units of the machine, not of the test), which cannot be contained in a
  namespace. Its calls are recorded and compared with the units render wrote;
- ``birdc`` is **not run** either (no node BIRD in this set-up; the ``--bgp`` line), recorded;
- ``kubectl delete -f -`` records the manifest it is given (no cluster here; the objects come
  from ``nosdn manifests``, which does run).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from ipaddress import ip_network
from pathlib import Path
from typing import Any

import pytest

from conftest import ip, requires_root

pytestmark = [pytest.mark.root, requires_root]

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
INV = "examples/two-nodes.yaml"
NOSDN = [sys.executable, "-m", "nosdn"]

SHIMS = r"""
sudo() { "$@"; }
nosdn() {
    if [ "$1" = flush ]; then "$PY" -m nosdn "$@" --netns "$NS"; else "$PY" -m nosdn "$@"; fi
}
nft() { ip netns exec "$NS" nft "$@"; }
rm() {
    [ "$1" = -f ] || { echo "rm without -f: $*" >&2; return 1; }
    shift
    for a in "$@"; do
        case $a in
            /*) command rm -f -- "$R$a" ;;
            *) echo "rm of a relative path: $a" >&2; return 1 ;;
        esac
    done
}
systemctl() { echo "systemctl $*" >> "$LOG"; }
birdc() { echo "birdc $*" >> "$LOG"; }
kubectl() { cat > "$R/kubectl-$1.yaml"; echo "kubectl $*" >> "$LOG"; }
"""


def _json(ns: str, *args: str) -> Any:
    return json.loads(ip(ns, "-j", *args) or "[]")


def _routes(ns: str) -> list[dict[str, Any]]:
    return [r for fam in ("-4", "-6") for r in _json(ns, fam, "route", "show", "table", "main")]


def _ours(ns: str) -> tuple[list[str], list[int]]:
    routes = [r["dst"] for r in _routes(ns) if str(r.get("protocol")) in ("157", "nosdn")]
    nhs = [
        n["id"] for n in _json(ns, "nexthop", "show") if str(n.get("protocol")) in ("157", "nosdn")
    ]
    return routes, nhs


def _run(*args: str, env: dict[str, str] | None = None) -> str:
    r = subprocess.run(
        [*NOSDN, *args], cwd=ROOT, capture_output=True, text=True, check=False, env=env
    )
    assert r.returncode == 0, r.stderr
    return r.stdout


def _blocks() -> list[str]:
    section = README[README.index("## Uninstall") :].split("\n## ", 1)[0]
    return re.findall(r"```sh\n(.*?)```", section, re.S)


def test_the_readme_uninstall_removes_ours_and_keeps_theirs(
    netns: Callable[..., str], tmp_path: Path
) -> None:
    from nosdn.agent.egress import render as egress_rules

    ns = netns("nosdn-uninstall")
    root = tmp_path / "root"
    log = tmp_path / "calls.log"
    ip(ns, "link", "add", "eth0", "type", "veth", "peer", "name", "peer0")
    ip(ns, "link", "set", "peer0", "up")
    ip(ns, "addr", "add", "10.10.0.1/24", "dev", "eth0")
    ip(ns, "link", "set", "eth0", "up")
    env = {**os.environ, "NOSDN_RT_PROTOS_D": str(root / "etc/iproute2/rt_protos.d")}

    # --- install, as the README says (node1 of the example inventory) ---------------------
    _run("render", "-f", INV, "--format", "systemd", "--out", str(root))
    written = {"/" + str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}
    _run("apply", "-f", INV, "--netns", ns, env=env)
    script = root / "usr/local/sbin/nosdn-routes"
    ran = subprocess.run(
        ["ip", "netns", "exec", ns, "sh", str(script)], capture_output=True, text=True, check=False
    )
    assert ran.returncode == 0, ran.stderr
    conflist = root / "etc/cni/net.d/10-nosdn.conflist"
    conflist.parent.mkdir(parents=True, exist_ok=True)
    _run("render", "-f", INV, "--format", "cni", "--node", "node1", "--out", str(conflist))
    rules = egress_rules([ip_network("172.17.1.0/24")], [ip_network("172.17.0.0/16")])
    subprocess.run(
        ["ip", "netns", "exec", ns, "nft", "-f", "-"], input=rules, text=True, check=True
    )
    # foreign things, of the same kinds
    ip(ns, "route", "add", "192.0.2.0/24", "via", "10.10.0.9", "proto", "static")
    ip(ns, "nexthop", "add", "id", "999", "via", "10.10.0.8", "dev", "eth0", "proto", "99")
    ip(ns, "route", "add", "198.51.100.0/24", "nhid", "999", "proto", "boot")
    subprocess.run(["ip", "netns", "exec", ns, "nft", "add", "table", "inet", "other"], check=True)
    foreign = [
        "etc/cni/net.d/20-other.conflist",
        "etc/systemd/system/other.service",
        "etc/iproute2/rt_protos.d/other.conf",
        "usr/local/sbin/other-routes",
    ]
    for rel in foreign:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text("not nosdn's\n")
    routes, nhs = _ours(ns)
    assert "172.17.2.0/24" in routes
    assert nhs, "apply made no nexthop: the flush of nexthops would go untested"
    assert (root / "etc/iproute2/rt_protos.d/nosdn.conf").is_file()
    assert {"/usr/local/sbin/nosdn-routes", "/etc/systemd/system/nosdn-routes.timer"} <= written

    # --- the README's uninstall blocks, as written ----------------------------------------
    blocks = _blocks()
    assert len(blocks) >= 3, blocks  # the agent's manifests, the node, the systemd host
    for block in blocks:
        run = subprocess.run(
            ["sh", "-ec", SHIMS + block],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
            env={**env, "PY": sys.executable, "NS": ns, "R": str(root), "LOG": str(log)},
        )
        assert run.returncode == 0, f"{block}\n{run.stdout}\n{run.stderr}"

    # --- ours gone, theirs kept -----------------------------------------------------------
    assert _ours(ns) == ([], [])
    left = {r["dst"]: r for r in _routes(ns)}
    assert left["192.0.2.0/24"]["protocol"] == "static"
    assert left["198.51.100.0/24"]["nhid"] == 999
    assert [n["id"] for n in _json(ns, "nexthop", "show")] == [999]
    tables = subprocess.run(
        ["ip", "netns", "exec", ns, "nft", "list", "tables"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\n")
    assert "table inet other" in tables
    assert "table inet nosdn" not in tables
    still = {"/" + str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}
    assert not still & (written | {"/etc/cni/net.d/10-nosdn.conflist"}), still & written
    assert "/etc/iproute2/rt_protos.d/nosdn.conf" not in still
    assert {"/" + rel for rel in foreign} <= still
    calls = log.read_text().splitlines()
    disabled = next(c for c in calls if c.startswith("systemctl disable --now "))
    units = disabled.split()[3:]
    assert {f"/etc/systemd/system/{u}" for u in units} == {
        w for w in written if w.startswith("/etc/systemd/system/")
    }
    assert calls.index("systemctl daemon-reload") > calls.index(disabled)
    assert any(c.startswith("birdc ") and c.endswith(" down") for c in calls)
    assert "kind: DaemonSet" in (root / "kubectl-delete.yaml").read_text()
