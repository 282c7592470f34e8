"""The inventory commands as run by people: exit codes, JSON shape, no write on error."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).parent.parent / "examples"


def nosdn(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nosdn", *args], capture_output=True, text=True, env=env, check=False
    )


def test_routes_json_shape() -> None:
    r = nosdn("routes", "-f", str(EXAMPLES / "two-nodes.yaml"), "--router", "-o", "json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {
        "apiVersion": "nosdn/v1",
        "kind": "Routes",
        "target": "router",
        "routes": [
            {"dst": "172.17.1.0/24", "via": ["10.10.0.1"], "node": "node1"},
            {"dst": "172.17.2.0/24", "via": ["10.10.0.2"], "node": "node2"},
        ],
    }


def test_file_from_environment() -> None:
    import os

    env = dict(os.environ, NOSDN_INVENTORY=str(EXAMPLES / "two-nodes.yaml"))
    r = nosdn("routes", "--node", "node2", "-o", "yaml", env=env)
    assert r.returncode == 0, r.stderr
    assert "172.17.1.0/24" in r.stdout
    assert "node: node1" in r.stdout


def test_bad_inventory_exit_2_lists_every_problem(tmp_path: Path) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text(
        "nodes:\n- {name: a, ip: 10.0.0.1, podCIDR: 172.17.1.0/24}\n"
        "- {name: b, ip: 10.0.0.1, podCIDR: 172.17.1.0/25}\n"
    )
    r = nosdn("check", "-f", str(f))
    assert r.returncode == 2
    assert "node b: ips 10.0.0.1" in r.stderr
    assert "node b: podCIDRs 172.17.1.0/25: overlaps node a's podCIDRs" in r.stderr
    j = nosdn("check", "-f", str(f), "-o", "json")
    assert j.returncode == 2
    assert len(json.loads(j.stdout)["problems"]) == 2
    assert nosdn("routes", "-f", str(f), "--router").returncode == 2


def test_allocate_write_changes_nothing_when_a_check_fails(tmp_path: Path) -> None:
    f = tmp_path / "inv.yaml"
    shutil.copy(EXAMPLES / "dual-stack.yaml", f)
    f.write_text(f.read_text().replace("ips: [192.168.50.13", "ips: [192.168.50.12"))
    before = f.read_text()
    r = nosdn("allocate", "-f", str(f), "--write")
    assert r.returncode == 2, r.stdout + r.stderr
    assert "192.168.50.12" in r.stderr
    assert "node3" in r.stderr
    assert f.read_text() == before


def test_usage_errors_exit_2() -> None:
    assert nosdn("routes", "-f", str(EXAMPLES / "two-nodes.yaml")).returncode == 2
    r = nosdn("routes", "-f", str(EXAMPLES / "two-nodes.yaml"), "--node", "nope")
    assert r.returncode == 2
    assert "nope" in r.stderr
    assert nosdn("check", "-f", "/nonexistent.yaml").returncode == 2


def test_ipv6_addresses_print_as_written_in_tables(tmp_path: Path) -> None:
    # rich turns ":100:" into an emoji unless told not to; an operator must see the address
    f = tmp_path / "v6.yaml"
    f.write_text(
        "nodes:\n- {name: a, ip: 'fd00:100::1', podCIDR: 'fd00:244:0:a::/64'}\n"
        "- {name: b, ip: 'fd00:100::2', podCIDR: 'fd00:244:0:b::/64'}\n"
    )
    r = nosdn("routes", "-f", str(f), "--node", "a")
    assert r.returncode == 0, r.stderr
    assert "fd00:244:0:b::/64" in r.stdout
    assert "fd00:100::2" in r.stdout


NEEDS_ALLOC = (
    "clusterCIDRs: [172.17.0.0/16]\n# the nodes\nnodes:\n"
    "- {name: a, ip: 10.0.0.1}\n- {name: b, ip: 10.0.0.2}\n"
)


def test_allocate_write_through_a_symlink_writes_its_target(tmp_path: Path) -> None:
    real = tmp_path / "real" / "inv.yaml"
    real.parent.mkdir()
    real.write_text(NEEDS_ALLOC)
    real.chmod(0o640)
    link = tmp_path / "inv.yaml"
    link.symlink_to(real)
    r = nosdn("allocate", "-f", str(link), "--write")
    assert r.returncode == 0, r.stderr
    assert link.is_symlink()
    assert "podCIDRs: [172.17.0.0/24]" in real.read_text()
    assert "# the nodes" in real.read_text()
    assert real.stat().st_mode & 0o777 == 0o640
    assert nosdn("check", "-f", str(real)).returncode == 0
    assert [p.name for p in real.parent.iterdir()] == ["inv.yaml"]  # no temporary left


def test_allocate_write_refuses_a_file_changed_since_it_was_read(tmp_path: Path) -> None:
    from nosdn.ipam import allocate
    from nosdn.sources.inventory import (
        WriteError,
        parse_inventory,
        read_inventory,
        write_allocation,
    )

    f = tmp_path / "inv.yaml"
    f.write_text(NEEDS_ALLOC)
    text, data = read_inventory(f)
    alloc = allocate(parse_inventory(data)[0])
    changed = NEEDS_ALLOC + "- {name: c, ip: 10.0.0.3, podCIDR: 172.17.0.0/24}\n"
    f.write_text(changed)
    with pytest.raises(WriteError, match="changed while the subnets were allocated"):
        write_allocation(f, alloc, original=text)
    assert f.read_text() == changed


def test_allocate_write_failure_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno
    import tempfile

    from nosdn.ipam import allocate
    from nosdn.sources.inventory import (
        WriteError,
        parse_inventory,
        read_inventory,
        write_allocation,
    )

    f = tmp_path / "inv.yaml"
    f.write_text(NEEDS_ALLOC)
    text, data = read_inventory(f)
    alloc = allocate(parse_inventory(data)[0])

    def read_only(*_a: object, **_k: object) -> tuple[int, str]:
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    with pytest.raises(WriteError, match=f"cannot write {f}: Read-only file system"):
        write_allocation(f, alloc, original=text)
    assert f.read_text() == NEEDS_ALLOC
