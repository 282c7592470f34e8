"""The pieces of the lab-as-a-live-cluster that need no root: a lab's spec after its nodes
changed (which numbers exist, who moved where) survives the state file and derives the right
topology; the binaries the lab looks for are the ones tools/build-kube.sh builds."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from nosdn.lab import LabError, LabInputError, LabSpec, kubeapi
from nosdn.lab.topology import build

REPO = Path(__file__).resolve().parent.parent


def test_changed_nodes_survive_the_state_file_and_keep_their_numbers() -> None:
    spec = LabSpec(name="t", nodes=3, ipv6=True, api="real", members=(1, 3, 4), hosts=((3, 42),))
    again = LabSpec.from_dict(spec.as_dict())
    assert again == spec
    topo = build(again)
    got = {n.name: ([str(i) for i in n.ips], [str(c) for c in n.pod_cidrs]) for n in topo.nodes}
    assert got == {
        "node1": (["10.10.0.1", "fd00:10::1"], ["10.244.1.0/24", "fd00:244:0:1::/64"]),
        "node3": (["10.10.0.42", "fd00:10::2a"], ["10.244.3.0/24", "fd00:244:0:3::/64"]),
        "node4": (["10.10.0.4", "fd00:10::4"], ["10.244.4.0/24", "fd00:244:0:4::/64"]),
    }
    assert str(topo.api_ip) == "10.10.0.250"
    assert topo.names.owns("t.api")


def test_an_old_state_file_without_changes_still_loads() -> None:
    old = {"name": "t", "nodes": 2, "ipv6": False, "pods_per_node": 1}
    spec = LabSpec.from_dict(old)
    assert spec.api is None
    assert [n.name for n in build(spec).nodes] == ["node1", "node2"]
    assert build(spec).api_ip is None


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        (
            {"hosts": ((1, 2),)},
            "node1 and node2 would share host number 2",
        ),  # node1 moved onto node2's address
        (
            {"hosts": ((1, 250),)},
            "node1: host number 250 is not 1..249",
        ),  # the API server's address
        ({"members": (1, 1)}, "distinct"),
        ({"api": "etcd"}, "--api etcd"),
        ({"api": "real", "nodes": 4, "segments": 2, "router": "bird"}, "needs --bgp"),
    ],
)
def test_bad_changes_are_refused(kw: dict[str, object], message: str) -> None:
    args: dict[str, object] = {"name": "t", "nodes": 2, **kw}
    with pytest.raises(LabInputError, match=re.escape(message)):
        LabSpec(**args)  # type: ignore[arg-type]


def test_the_lab_looks_for_what_the_build_script_builds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    script = (REPO / "tools" / "build-kube.sh").read_text()
    kube = re.search(r'KUBE_VERSION="\$\{KUBE_VERSION:-(v[\d.]+)\}"', script)
    kine = re.search(r'KINE_VERSION="\$\{KINE_VERSION:-(v[\d.]+)\}"', script)
    assert kube is not None
    assert kine is not None
    assert (kube.group(1), kine.group(1)) == (
        kubeapi.DEFAULT_KUBE_VERSION,
        kubeapi.DEFAULT_KINE_VERSION,
    )
    monkeypatch.setenv("NOSDN_CACHE", str(tmp_path))
    monkeypatch.delenv("KUBE_VERSION", raising=False)
    monkeypatch.delenv("KINE_VERSION", raising=False)
    want = tmp_path / "kube" / f"{kube.group(1)}-kine-{kine.group(1)}"
    assert kubeapi.binaries_dir() == want
    with pytest.raises(LabError, match=r"no kube-apiserver, kubectl, kine in .*make kube"):
        kubeapi.find_binaries()
    want.mkdir(parents=True)
    for b in kubeapi.BINARIES:
        (want / b).write_text("#!/bin/sh\n")
        (want / b).chmod(0o755)
    assert kubeapi.find_binaries() == want
