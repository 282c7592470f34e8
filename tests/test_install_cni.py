"""`nosdn install-cni` (the DaemonSet's init container): copies exactly the plugins the conflist
uses into the host's CNI bin directory, only when missing or older there, atomically, and
never touches another file; a bad source or target changes nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from ipaddress import ip_address, ip_network
from pathlib import Path

import pytest

from nosdn.agent import installcni
from nosdn.agent.installcni import PLUGINS, InstallError, install
from nosdn.agent.manifests import HOST_CNI_BIN_DIR, manifests
from nosdn.model import Cluster, Node
from nosdn.render.cni import cni_config

OLD = 1_600_000_000  # an mtime well in the past
NEW = 1_700_000_000


def image_dir(tmp_path: Path, mtime: int = NEW) -> Path:
    src = tmp_path / "image"
    src.mkdir()
    for p in PLUGINS:
        (src / p).write_bytes(b"#!image " + p.encode())
        (src / p).chmod(0o755)
        os.utime(src / p, (mtime, mtime))
    return src


def host_dir(tmp_path: Path) -> Path:
    dst = tmp_path / "host"
    dst.mkdir()
    return dst


def test_missing_plugins_are_installed_executable_with_the_image_mtime(tmp_path: Path) -> None:
    src, dst = image_dir(tmp_path), host_dir(tmp_path)
    outcomes = install(src, dst)
    assert [(o.plugin, o.action) for o in outcomes] == [(p, "installed") for p in PLUGINS]
    for p in PLUGINS:
        assert (dst / p).read_bytes() == (src / p).read_bytes()
        assert (dst / p).stat().st_mode & 0o777 == 0o755
        assert int((dst / p).stat().st_mtime) == NEW
    assert sorted(os.listdir(dst)) == sorted(PLUGINS)  # no temporary file left behind


def test_a_current_plugin_is_not_rewritten(tmp_path: Path) -> None:
    src, dst = image_dir(tmp_path), host_dir(tmp_path)
    install(src, dst)
    inodes = {p: (dst / p).stat().st_ino for p in PLUGINS}
    again = install(src, dst)
    assert {o.action for o in again} == {"current"}
    assert {p: (dst / p).stat().st_ino for p in PLUGINS} == inodes


def test_an_older_host_copy_is_replaced_and_a_newer_one_kept(tmp_path: Path) -> None:
    src, dst = image_dir(tmp_path), host_dir(tmp_path)
    (dst / "bridge").write_bytes(b"old bridge")
    os.utime(dst / "bridge", (OLD, OLD))
    (dst / "portmap").write_bytes(b"someone's newer portmap")
    os.utime(dst / "portmap", (NEW + 100, NEW + 100))
    actions = {o.plugin: o.action for o in install(src, dst)}
    assert actions["bridge"] == "updated"
    assert (dst / "bridge").read_bytes() == b"#!image bridge"
    assert actions["portmap"] == "kept"
    assert (dst / "portmap").read_bytes() == b"someone's newer portmap"


def test_other_files_in_the_host_directory_are_never_touched(tmp_path: Path) -> None:
    src, dst = image_dir(tmp_path), host_dir(tmp_path)
    (dst / "flannel").write_bytes(b"not ours")
    os.utime(dst / "flannel", (OLD, OLD))
    (src / "flannel").write_bytes(b"an image file the conflist does not use")
    install(src, dst)
    assert (dst / "flannel").read_bytes() == b"not ours"
    assert int((dst / "flannel").stat().st_mtime) == OLD


def test_a_plugin_missing_from_the_image_writes_nothing(tmp_path: Path) -> None:
    src, dst = image_dir(tmp_path), host_dir(tmp_path)
    (src / "portmap").unlink()
    with pytest.raises(InstallError, match=r"portmap not found in .*nothing was written"):
        install(src, dst)
    assert os.listdir(dst) == []


def test_a_missing_target_or_a_directory_in_a_plugins_place_writes_nothing(
    tmp_path: Path,
) -> None:
    src = image_dir(tmp_path)
    with pytest.raises(InstallError, match="does not exist"):
        install(src, tmp_path / "nope")
    dst = host_dir(tmp_path)
    (dst / "portmap").mkdir()
    with pytest.raises(InstallError, match=r"portmap: not a regular file"):
        install(src, dst)
    assert sorted(os.listdir(dst)) == ["portmap"]  # bridge, host-local... not written either


def test_a_failed_write_leaves_no_temporary_file_and_the_old_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src, dst = image_dir(tmp_path), host_dir(tmp_path)
    (dst / "bridge").write_bytes(b"old bridge")
    os.utime(dst / "bridge", (OLD, OLD))

    def fail(*_: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(installcni.os, "replace", fail)
    with pytest.raises(OSError, match="No space"):
        install(src, dst, ["bridge"])
    assert os.listdir(dst) == ["bridge"]
    assert (dst / "bridge").read_bytes() == b"old bridge"


def test_the_plugins_are_every_type_the_conflist_names() -> None:
    node = Node("n1", (ip_address("10.0.0.1"),), (ip_network("10.244.0.0/24"),))
    conf = cni_config(Cluster((node,)), "n1")
    types = {p["type"] for p in conf["plugins"]}
    types |= {p["ipam"]["type"] for p in conf["plugins"] if "ipam" in p}
    assert types | {"loopback"} == set(PLUGINS)


def test_the_daemonset_runs_it_first_without_capabilities_on_the_host_bin_dir() -> None:
    ds = manifests()[-1]
    pod = ds["spec"]["template"]["spec"]
    (init,) = pod["initContainers"]
    assert init["args"][0] == "install-cni"
    assert init["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert init["securityContext"]["allowPrivilegeEscalation"] is False
    (mount,) = init["volumeMounts"]
    assert mount["mountPath"] == installcni.HOST_CNI_BIN
    assert f"--to={installcni.HOST_CNI_BIN}" in init["args"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes[mount["name"]]["hostPath"]["path"] == HOST_CNI_BIN_DIR
    # the agent itself does not get the host's plugin directory
    (agent,) = pod["containers"]
    assert mount["name"] not in {m["name"] for m in agent["volumeMounts"]}


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nosdn", "install-cni", *args],
        capture_output=True,
        text=True,
        check=False,
    )


def test_cli_reports_each_plugin_and_refuses_bad_input(tmp_path: Path) -> None:
    src, dst = image_dir(tmp_path), host_dir(tmp_path)
    ok = run(f"--from={src}", f"--to={dst}")
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.splitlines() == [f"{p}: installed" for p in PLUGINS]
    bad = run(f"--from={src}", f"--to={dst}", "--plugin", "../etc/passwd")
    assert bad.returncode == 2
    assert "--plugin '../etc/passwd': a plugin is a file name" in bad.stderr
    missing = run(f"--from={tmp_path / 'empty'}", f"--to={dst}")
    assert missing.returncode == 1
    assert "nothing was written" in missing.stderr
