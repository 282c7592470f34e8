"""The one-shot commands reading the cluster's Node objects instead of an inventory (no root).

The `kmock` emulator runs as a process on this namespace's loopback (as in test_k8s_source);
commands run through click's runner, or as real processes where what matters is what a person
sees (no traceback) or what a process imports. The answer from the API is compared with the
answer from an inventory of the same nodes: one model, one planner, whichever the source.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from agent_env import Emulator, node_object
from nosdn.cli import app
from nosdn.problems import Problem
from nosdn.sources.errors import ApiUnavailableError
from nosdn.sources.listing import cluster_from_nodes, list_cluster

#: Every variable that could choose a source behind a test's back.
CLEAN: dict[str, str | None] = {
    "KUBECONFIG": None,
    "NOSDN_INVENTORY": None,
    "KUBERNETES_SERVICE_HOST": None,
}

NODES = [
    node_object("n1", ["10.0.0.1", "fd00::1"], ["10.244.1.0/24", "fd00:244:0:1::/64"]),
    node_object("n2", ["10.0.0.2", "fd00::2"], ["10.244.2.0/24", "fd00:244:0:2::/64"]),
    node_object("n3", ["10.0.0.3", "fd00::3"], ["10.244.3.0/24", "fd00:244:0:3::/64"]),
]
INVENTORY = """\
clusterCIDRs: [10.244.0.0/16, "fd00:244::/56"]
nodes:
  - {name: n1, ips: [10.0.0.1, "fd00::1"], podCIDRs: [10.244.1.0/24, "fd00:244:0:1::/64"]}
  - {name: n2, ips: [10.0.0.2, "fd00::2"], podCIDRs: [10.244.2.0/24, "fd00:244:0:2::/64"]}
  - {name: n3, ips: [10.0.0.3, "fd00::3"], podCIDRs: [10.244.3.0/24, "fd00:244:0:3::/64"]}
"""
CIDRS = ["--cluster-cidr", "10.244.0.0/16", "--cluster-cidr", "fd00:244::/56"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Callable[..., Emulator]]:
    """``api(*nodes)``: kmock serving those Node objects on 127.0.0.1."""
    started: list[Emulator] = []

    def start(*nodes: Mapping[str, Any]) -> Emulator:
        emu = Emulator(None, port=free_port(), workdir=tmp_path, seed=list(nodes))
        started.append(emu.start())
        return emu

    try:
        yield start
    finally:
        for emu in started:
            emu.kill()


def nosdn(*args: str, env: Mapping[str, str | None] | None = None) -> Result:
    return CliRunner().invoke(app, list(args), env={**CLEAN, **(env or {})})


def kubeconfig(path: Path, servers: Mapping[str, str], current: str) -> Path:
    """A kubeconfig with one context (and cluster) per server, no credentials."""
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": n, "cluster": {"server": s}} for n, s in servers.items()],
        "users": [{"name": "nobody", "user": {}}],
        "contexts": [{"name": n, "context": {"cluster": n, "user": "nobody"}} for n in servers],
        "current-context": current,
    }
    path.write_text(json.dumps(doc))  # JSON is YAML
    return path


# --- the same answer as the inventory ----------------------------------------------------------


@pytest.mark.parametrize(
    "target", [["--node", "n1"], ["--node", "n3"], ["--router"], ["--external"]]
)
def test_routes_from_the_api_equal_the_inventory_answer(
    api: Callable[..., Emulator], tmp_path: Path, target: list[str]
) -> None:
    emu = api(*NODES)
    inv = tmp_path / "inv.yaml"
    inv.write_text(INVENTORY)
    from_api = nosdn("routes", "--kube-server", emu.url, *CIDRS, *target, "-o", "json")
    from_file = nosdn("routes", "-f", str(inv), *target, "-o", "json")
    assert from_api.exit_code == 0, from_api.output
    assert from_file.exit_code == 0, from_file.output
    assert json.loads(from_api.stdout) == json.loads(from_file.stdout)
    assert json.loads(from_api.stdout)["routes"]  # not two empty answers
    assert from_api.stderr == ""  # nothing skipped, nothing to say


@pytest.mark.parametrize(
    "args", [["--format", "cni", "--node", "n2"], ["--format", "bird"], ["--format", "script"]]
)
def test_render_from_the_api_equals_the_inventory_rendering(
    api: Callable[..., Emulator], tmp_path: Path, args: list[str]
) -> None:
    emu = api(*NODES)
    inv = tmp_path / "inv.yaml"
    inv.write_text(INVENTORY)
    from_api = nosdn("render", "--kube-server", emu.url, *CIDRS, *args)
    from_file = nosdn("render", "-f", str(inv), *args)
    assert from_api.exit_code == 0, from_api.output
    assert from_api.stdout == from_file.stdout
    assert "10.244.2.0/24" in from_api.stdout


def test_routes_through_a_kubeconfig_context(api: Callable[..., Emulator], tmp_path: Path) -> None:
    emu = api(*NODES)
    kc = kubeconfig(
        tmp_path / "kc", {"dead": f"http://127.0.0.1:{free_port()}", "live": emu.url}, "dead"
    )
    dead = nosdn("routes", "--kubeconfig", str(kc), "--router")
    assert dead.exit_code == 1
    live = nosdn("routes", "--kubeconfig", str(kc), "--context", "live", "--router", "-o", "json")
    assert live.exit_code == 0, live.output
    assert len(json.loads(live.stdout)["routes"]) == 6
    unknown = nosdn("routes", "--kubeconfig", str(kc), "--context", "nope", "--router")
    assert unknown.exit_code == 1
    assert "kubeconfig" in unknown.stderr
    assert "nope" in unknown.stderr
    assert "Traceback" not in unknown.output


def test_node_address_options_pick_the_address_routes_point_at(
    api: Callable[..., Emulator],
) -> None:
    n2 = node_object("n2", ["10.0.0.2"], ["10.244.2.0/24"])
    n2["status"]["addresses"].insert(0, {"type": "ExternalIP", "address": "192.0.2.2"})
    n2["status"]["addresses"].append({"type": "InternalIP", "address": "172.16.0.2"})
    emu = api(node_object("n1", ["10.0.0.1", "172.16.0.1"], ["10.244.1.0/24"]), n2)

    def via(*opts: str) -> str:
        res = nosdn("routes", "--kube-server", emu.url, "--node", "n1", "-o", "json", *opts)
        assert res.exit_code == 0, res.output
        return str(json.loads(res.stdout)["routes"][0]["via"][0])

    assert via() == "10.0.0.2"  # InternalIP first, then list order
    assert via("--node-address-types", "ExternalIP,InternalIP") == "192.0.2.2"
    assert via("--node-address-cidr", "172.16.0.0/16") == "172.16.0.2"


# --- what is skipped, what is refused -----------------------------------------------------------


def test_a_node_without_pod_cidrs_is_skipped_and_said(api: Callable[..., Emulator]) -> None:
    emu = api(*NODES[:2], node_object("n4", ["10.0.0.4"]))
    router = nosdn("routes", "--kube-server", emu.url, "--router", "-o", "json")
    assert router.exit_code == 0, router.output
    assert {r["node"] for r in json.loads(router.stdout)["routes"]} == {"n1", "n2"}
    assert "1 node(s) have no spec.podCIDRs yet (n4)" in router.stderr
    # the node itself still finds its way to the others
    mine = nosdn("routes", "--kube-server", emu.url, "--node", "n4", "-o", "json")
    assert mine.exit_code == 0, mine.output
    assert {r["node"] for r in json.loads(mine.stdout)["routes"]} == {"n1", "n2"}


def test_overlapping_pod_cidrs_exit_2_naming_the_node(api: Callable[..., Emulator]) -> None:
    # created after the others: the one to fix (without creation times both would be named)
    bad = node_object("n9", ["10.0.0.9"], ["10.244.1.0/25"], created="2026-06-01T00:00:00Z")
    emu = api(*NODES, bad)
    res = nosdn("routes", "--kube-server", emu.url, "--router")
    assert res.exit_code == 2
    assert f"Nodes from {emu.url}: 1 problem(s); nothing was changed" in res.stderr
    assert "node n9: podCIDRs 10.244.1.0/25: overlaps node n1's podCIDRs 10.244.1.0/24" in (
        res.stderr
    )
    assert res.stdout == ""


def test_unroutable_nodes_exit_2_naming_node_field_and_value(
    api: Callable[..., Emulator],
) -> None:
    no_addr = node_object("n5", [], ["10.244.5.0/24"])
    typo = node_object("n6", ["10.0.0.6"], ["10.244.6.0/24"])
    typo["spec"]["podCIDRs"] = ["10.244.6.0/33"]
    emu = api(*NODES, no_addr, typo)
    res = nosdn("routes", "--kube-server", emu.url, "--router")
    assert res.exit_code == 2
    assert "2 problem(s)" in res.stderr
    assert "node n5: status.addresses Hostname n5: has no address of type InternalIP" in res.stderr
    assert "node n6: spec.podCIDRs 10.244.6.0/33: is not a network" in res.stderr
    outside = nosdn("routes", "--kube-server", emu.url, "--router", "--cluster-cidr", "10.9.0.0/16")
    assert outside.exit_code == 2
    assert "is outside clusterCIDRs 10.9.0.0/16" in outside.stderr


def test_unreachable_api_exits_1_with_a_message_not_a_traceback() -> None:
    server = f"http://127.0.0.1:{free_port()}"
    env = {k: v for k, v in os.environ.items() if k not in CLEAN}
    r = subprocess.run(
        [sys.executable, "-m", "nosdn", "routes", "--kube-server", server, "--router"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert r.returncode == 1
    assert f"cannot read the Nodes from the Kubernetes API at {server}" in r.stderr
    assert "Connection refused" in r.stderr
    assert "Traceback" not in r.stderr
    assert r.stdout == ""


# --- which source wins ----------------------------------------------------------------------------


def test_source_precedence(api: Callable[..., Emulator], tmp_path: Path) -> None:
    emu = api(*NODES[:2])
    inv = tmp_path / "inv.yaml"
    inv.write_text(INVENTORY)
    broken_kc = str(tmp_path / "missing-kubeconfig")

    def nodes(res: Result) -> set[str]:
        assert res.exit_code == 0, res.output
        return {r["node"] for r in json.loads(res.stdout)["routes"]}

    router = ("routes", "--router", "-o", "json")
    # -f beats $KUBECONFIG (which would fail if it were read)
    assert nodes(nosdn(*router, "-f", str(inv), env={"KUBECONFIG": broken_kc})) == {
        "n1",
        "n2",
        "n3",
    }
    # --kube-server on the command line beats $NOSDN_INVENTORY
    assert nodes(nosdn(*router, "--kube-server", emu.url, env={"NOSDN_INVENTORY": str(inv)})) == {
        "n1",
        "n2",
    }
    # $NOSDN_INVENTORY beats $KUBECONFIG
    env = {"NOSDN_INVENTORY": str(inv), "KUBECONFIG": broken_kc}
    assert nodes(nosdn(*router, env=env)) == {"n1", "n2", "n3"}
    # $KUBECONFIG alone is read
    kc = kubeconfig(tmp_path / "kc", {"live": emu.url}, "live")
    assert nodes(nosdn(*router, env={"KUBECONFIG": str(kc)})) == {"n1", "n2"}
    # both on the command line: refused before anything is read
    both = nosdn(*router, "-f", str(inv), "--kube-server", "http://127.0.0.1:1")
    assert both.exit_code == 2
    assert "both say where the nodes come from" in both.stderr
    # API-only options with an inventory: refused, not ignored
    mixed = nosdn(*router, "-f", str(inv), "--node-address-types", "ExternalIP")
    assert mixed.exit_code == 2
    assert "--node-address-types is for nodes read from the Kubernetes API" in mixed.stderr
    # neither: exit 2, saying both ways
    none = nosdn(*router)
    assert none.exit_code == 2
    assert "no nodes to work from" in none.stderr
    assert "--kubeconfig" in none.stderr


def test_in_a_pod_the_service_account_is_the_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import nosdn.sources.select as common

    token = tmp_path / "token"
    token.write_text("t")
    monkeypatch.setattr(common, "SERVICE_ACCOUNT_TOKEN", token)
    env = {"KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": str(free_port())}
    res = nosdn("routes", "--router", env=env)
    # chosen (not "no nodes to work from"); the client then reads its own token path, which
    # does not exist on this machine, and says so
    assert res.exit_code == 1, res.output
    assert "no nodes to work from" not in res.stderr
    assert "no Kubernetes API configured" in res.stderr


def test_graph_and_plan_options_read_the_api(api: Callable[..., Emulator]) -> None:
    emu = api(*NODES)
    dot = nosdn("graph", "--kube-server", emu.url, "--format", "dot")
    assert dot.exit_code == 0, dot.output
    for name in ("n1", "n2", "n3", "10.244.2.0/24"):
        assert name in dot.stdout
    for cmd in ("status", "plan", "apply", "doctor", "trace", "graph", "routes", "render"):
        shown = nosdn(cmd, "--help")
        assert shown.exit_code == 0
        for flag in ("--kubeconfig", "--kube-server", "--context", "--node-address-types"):
            assert flag in shown.stdout, (cmd, flag)


def test_cloud_tables_are_refused_from_the_api_before_any_read() -> None:
    res = nosdn("plan", "--cloud", "aws", "--kube-server", f"http://127.0.0.1:{free_port()}")
    assert res.exit_code == 2
    assert "--cloud needs the inventory (-f FILE, with its clusterName)" in res.stderr
    assert "nosdn controller --cloud aws --cluster-name NAME" in res.stderr


# --- the shared option definitions ------------------------------------------------------------


def test_agent_controller_and_commands_share_one_definition_of_each_option() -> None:
    import click

    from nosdn.sources.nodes import DEFAULT_ADDRESS_TYPES as TYPES
    from nosdn.sources.select import DEFAULT_ADDRESS_TYPES

    assert ",".join(TYPES) == DEFAULT_ADDRESS_TYPES
    ctx = click.Context(app)
    seen: dict[str, set[tuple[Any, ...]]] = {}
    for cmd in ("agent", "controller", "status", "doctor", "routes"):
        command = app.get_command(ctx, cmd)
        assert command is not None
        for p in command.params:
            if isinstance(p, click.Option) and p.name in (
                "kubeconfig",
                "kube_server",
                "context",
                "cluster_cidr",
                "address_types",
                "address_cidr",
            ):
                seen.setdefault(str(p.name), set()).add(
                    (tuple(p.opts), p.help, p.default, p.multiple)
                )
    assert len(seen) == 6
    assert all(len(defs) == 1 for defs in seen.values()), seen


def test_routes_from_a_file_imports_no_kubernetes_client() -> None:
    inv = Path(__file__).parent.parent / "examples" / "two-nodes.yaml"
    r = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "nosdn", "routes", "-f", str(inv), "--router"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    modules = {
        line.rsplit("|", 1)[1].strip()
        for line in r.stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    }
    assert "nosdn.cli._click" in modules  # the listing is real
    assert not [m for m in modules if m.split(".")[0] in ("kubernetes", "urllib3")]
    # where the nodes come from is decided (`sources.select`) and the file read
    # (`sources.inventory`): nothing of the Kubernetes side of sources
    assert {m for m in modules if m.startswith("nosdn.sources")} <= {
        "nosdn.sources",
        "nosdn.sources.select",
        "nosdn.sources.inventory",
    }


# --- the source itself ----------------------------------------------------------------------------


def test_list_cluster_reads_every_page(
    api: Callable[..., Emulator], monkeypatch: pytest.MonkeyPatch
) -> None:
    import nosdn.sources.kubernetes as kube

    emu = api(*reversed(NODES), node_object("n4", ["10.0.0.4"]))
    monkeypatch.setattr(kube, "LIST_PAGE", 1)
    client = kube.KubeApi(kube.KubeSettings(server=emu.url))
    try:
        listed = list_cluster(client)
    finally:
        client.close()
    assert listed.listed == 4
    assert [n.name for n in listed.cluster.nodes] == ["n1", "n2", "n3", "n4"]  # by name
    assert listed.without_subnet == ("n4",)
    assert listed.problems == ()


def test_a_list_that_breaks_half_way_returns_nothing() -> None:
    class Broken:
        def list_nodes(self) -> tuple[Iterator[Mapping[str, Any]], str]:
            def items() -> Iterator[Mapping[str, Any]]:
                yield NODES[0]
                raise ApiUnavailableError("list nodes: page 2 refused")

            return items(), "1"

    with pytest.raises(ApiUnavailableError, match="page 2"):
        list_cluster(Broken())


def test_ignored_addresses_are_notes_and_the_node_still_routes() -> None:
    n1 = node_object("n1", ["10.0.0.1"], ["10.244.1.0/24"])
    n1["status"]["addresses"].insert(0, {"type": "InternalIP", "address": "not-an-ip"})
    listed = cluster_from_nodes([n1, {"metadata": {}}])
    assert listed.listed == 2
    assert [n.name for n in listed.cluster.nodes] == ["n1"]
    assert listed.problems == ()
    assert len(listed.notes) == 1
    assert "'not-an-ip' is not an IP address" in listed.notes[0]


def test_problems_are_structured_like_the_inventory_s() -> None:
    listed = cluster_from_nodes([node_object("n5", [], ["10.244.5.0/24"])])
    assert listed.problems == (
        Problem(
            "n5",
            "status.addresses",
            "Hostname n5",
            "has no address of type InternalIP, ExternalIP",
            "no route can point at its pods: give the node such an address, or pick others "
            "with --node-address-types / --node-address-cidr (as the agent is run)",
        ),
    )
    assert listed.cluster.nodes == ()
