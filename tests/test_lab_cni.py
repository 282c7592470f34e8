"""The lab's minimal libcni, run with the real plugins on nosdn's rendered conflist (root)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from ipaddress import ip_address, ip_network
from pathlib import Path

import pytest

from conftest import requires_root
from nosdn.lab import netns
from nosdn.lab.cni import Attachment, CniError, CniRunner, result_ips
from nosdn.lab.lifecycle import _exec_conflist
from nosdn.model import Cluster, Node
from nosdn.render.cni import render_cni

pytestmark = [pytest.mark.root, requires_root]


def ip(*args: str) -> str:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=True).stdout


@pytest.fixture
def host_and_pod(netns: Callable[..., str]) -> tuple[str, str]:
    """A node namespace and a pod namespace, uniquely named, removed afterwards."""
    return netns("nosdn-t-host"), netns("nosdn-t-pod")


def cluster() -> Cluster:
    node = Node(
        "node1",
        (ip_address("10.10.0.1"), ip_address("fd00:10::1")),
        (ip_network("10.244.1.0/24"), ip_network("fd00:244:0:1::/64")),
    )
    return Cluster((node,), (ip_network("10.244.0.0/16"), ip_network("fd00:244::/56")))


def test_add_then_del_with_rendered_conflist(host_and_pod: tuple[str, str], tmp_path: Path) -> None:
    host, pod = host_and_pod
    root_links_before = ip("-o", "link", "show")
    conflist = _exec_conflist(render_cni(cluster(), "node1"), tmp_path / "ipam")
    runner = CniRunner(host)
    att = Attachment("c-1", str(netns.NETNS_DIR / pod))

    runner.add_loopback(att)
    result = runner.add_list(conflist, att)

    assert result["cniVersion"] == "1.0.0"
    assert result_ips(result) == ["10.244.1.2", "fd00:244:0:1::2"]
    pod_addrs = ip("-n", pod, "addr", "show", "dev", "eth0")
    assert "10.244.1.2/24" in pod_addrs
    assert "fd00:244:0:1::2/64" in pod_addrs
    assert "UP" in ip("-n", pod, "link", "show", "lo")
    assert "default via 10.244.1.1" in ip("-n", pod, "route")
    # the bridge and its gateway address were made in the node's namespace, not this machine's
    assert "10.244.1.1/24" in ip("-n", host, "addr", "show", "dev", "cni0")
    assert ip("-o", "link", "show") == root_links_before
    assert (tmp_path / "ipam" / "nosdn" / "10.244.1.2").exists()

    runner.del_list(conflist, att, result)

    assert "eth0" not in ip("-n", pod, "-o", "link", "show")
    assert not (tmp_path / "ipam" / "nosdn" / "10.244.1.2").exists()
    assert ip("-o", "link", "show") == root_links_before


def test_plugin_error_is_reported_with_code_and_message(
    host_and_pod: tuple[str, str], tmp_path: Path
) -> None:
    host, pod = host_and_pod
    conflist = json.loads(render_cni(cluster(), "node1"))
    conflist["plugins"][0]["ipam"]["ranges"] = [[{"subnet": "10.244.1.0/33"}]]
    conflist["plugins"][0]["ipam"]["dataDir"] = str(tmp_path)
    with pytest.raises(CniError) as caught:
        CniRunner(host).add_list(conflist, Attachment("c-2", str(netns.NETNS_DIR / pod)))
    assert caught.value.plugin == "bridge"
    assert caught.value.command == "ADD"
    assert caught.value.code is not None
    assert "10.244.1.0/33" in str(caught.value)
