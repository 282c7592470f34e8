"""Where a lab keeps what it cannot recompute: pod addresses, CNI state, the inventory.

Everything lives under one directory per lab (``/run/nosdn/lab/<name>/``, on tmpfs, so a
reboot, which also drops the namespaces, drops it too; ``$NOSDN_LAB_DIR`` moves it):

    state.json                      the spec (nodes, ipv6, pods) and each pod's addresses
    inventory.yaml                  the cluster, as `nosdn apply -f` reads it
    router-bgp.yaml                 (--bgp) the router's side: CIDRs, node networks, no node
    cni/<node>/10-nosdn.conflist    the conflist, byte for byte what the agent would write
    cni/<node>/ipam/                host-local's dataDir (never the machine's /var/lib/cni)
    cni/<node>/results/<pod>.json   each pod's cached ADD result (what DEL is given)
    router/                         the router's config (as `nosdn render` prints it), and
                                    BIRD's control socket, pid file and log
    kubeconfig                      (--agents) the admin's kubeconfig: kubectl --kubeconfig
    api/                            (--agents) the API server's certificates, kine's SQLite
                                    database, logs, and the agents' service-account kubeconfig
    agents/<node>.log               (--agents) each node's `nosdn agent` log
    bird/<node>/                    (--bgp) each node's BIRD: config, control socket, pid file

``lab down`` removes the directory; it does not need it to find the namespaces.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nosdn.invocation import cmd
from nosdn.lab.netns import LabError
from nosdn.lab.topology import LabSpec

STATE_ROOT_ENV = "NOSDN_LAB_DIR"
DEFAULT_STATE_ROOT = Path("/run/nosdn/lab")


def state_root() -> Path:
    return Path(os.environ.get(STATE_ROOT_ENV) or DEFAULT_STATE_ROOT)


@dataclass(frozen=True, slots=True)
class LabPaths:
    root: Path

    @staticmethod
    def for_lab(name: str, root: Path | None = None) -> LabPaths:
        return LabPaths((root or state_root()) / name)

    @property
    def state_file(self) -> Path:
        return self.root / "state.json"

    @property
    def inventory(self) -> Path:
        return self.root / "inventory.yaml"

    @property
    def router_inventory(self) -> Path:
        """``--bgp``: the inventory the router's config is rendered from (no node in it)."""
        return self.root / "router-bgp.yaml"

    def cni_dir(self, node: str) -> Path:
        return self.root / "cni" / node

    def conflist(self, node: str) -> Path:
        return self.cni_dir(node) / "10-nosdn.conflist"

    def ipam_dir(self, node: str) -> Path:
        return self.cni_dir(node) / "ipam"

    def result(self, node: str, pod: str) -> Path:
        return self.cni_dir(node) / "results" / f"{pod}.json"

    @property
    def router_dir(self) -> Path:
        return self.root / "router"

    @property
    def kubeconfig(self) -> Path:
        return self.root / "kubeconfig"

    @property
    def api_dir(self) -> Path:
        return self.root / "api"

    @property
    def agent_kubeconfig(self) -> Path:
        return self.api_dir / "agent.kubeconfig"

    def agent_log(self, node: str) -> Path:
        return self.root / "agents" / f"{node}.log"


@dataclass(slots=True)
class LabState:
    spec: LabSpec
    #: ``node1/pod1`` -> the addresses CNI gave it
    pods: dict[str, list[str]] = field(default_factory=dict)
    #: how routes were last programmed: "" (not yet), "nosdn apply" or "nosdn agent"
    routes: str = ""
    #: node name -> pid of its `nosdn agent` (--agents)
    agents: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "spec": self.spec.as_dict(),
            "pods": self.pods,
            "routes": self.routes,
            "agents": self.agents,
        }


def write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save(paths: LabPaths, state: LabState) -> None:
    write_atomic(paths.state_file, json.dumps(state.as_dict(), indent=2) + "\n")


def load(paths: LabPaths) -> LabState:
    name = paths.root.name
    try:
        data = json.loads(paths.state_file.read_text())
        return LabState(
            spec=LabSpec.from_dict(data["spec"]),
            pods={str(k): [str(ip) for ip in v] for k, v in data.get("pods", {}).items()},
            routes=str(data.get("routes", "")),
            agents={str(k): int(v) for k, v in data.get("agents", {}).items()},
        )
    except FileNotFoundError:
        raise LabError(
            f"no lab named {name!r} (no {paths.state_file}) — start one with "
            f"`{cmd('lab', 'up', '--name', name)}`"
        ) from None
    except (ValueError, KeyError, TypeError) as e:
        raise LabError(
            f"{paths.state_file} is damaged ({e}) — remove the lab with "
            f"`{cmd('lab', 'down', '--name', name)}` and start again"
        ) from None


@dataclass(frozen=True, slots=True)
class LabNodeHere:
    """This process runs in a lab node's namespace: the lab's files for that node."""

    lab: str
    node: str
    paths: LabPaths

    @property
    def conflist(self) -> Path:
        return self.paths.conflist(self.node)


def lab_node_here(root: Path | None = None) -> LabNodeHere | None:
    """The lab node whose namespace this process is in (``ip netns exec LAB.NODE ...``), if
    its lab's files exist: doctor and trace then read that node's conflist and the lab's
    inventory, never the machine's /etc/cni/net.d."""
    from nosdn.lab.netns import current_netns

    name = current_netns()
    if name is None or name.count(".") != 1:  # LAB.NODE; pods are LAB.NODE.POD
        return None
    lab, node = name.split(".")
    paths = LabPaths.for_lab(lab, root)
    if not paths.conflist(node).is_file() or not paths.inventory.is_file():
        return None
    return LabNodeHere(lab, node, paths)
