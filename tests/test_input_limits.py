"""Hostile inventories: each is refused with exit 2, naming the file, the field or the limit,
and never crashes, hangs or floods the terminal."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from nosdn.sources import inventory


def nosdn(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nosdn", *args],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=60,
    )


GOOD = "nodes:\n- {name: a, ip: 10.0.0.1, podCIDR: 172.17.1.0/24}\n"


def test_a_device_is_refused_not_read() -> None:
    r = nosdn("check", "-f", "/dev/zero")
    assert r.returncode == 2, r.stderr
    assert "/dev/zero" in r.stderr
    assert "not a regular file" in r.stderr


def test_a_fifo_is_refused_without_waiting(tmp_path: Path) -> None:
    fifo = tmp_path / "inv.yaml"
    os.mkfifo(fifo)
    r = nosdn("check", "-f", str(fifo))
    assert r.returncode == 2, r.stderr
    assert "not a regular file" in r.stderr


def test_a_directory_is_refused(tmp_path: Path) -> None:
    r = nosdn("check", "-f", str(tmp_path))
    assert r.returncode == 2, r.stderr
    assert "is a directory" in r.stderr


def test_a_file_beyond_the_limit_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    f = tmp_path / "big.yaml"
    f.write_text(GOOD + "#" * 2000 + "\n")
    monkeypatch.setattr(inventory, "MAX_BYTES", 1000)
    with pytest.raises(inventory.InventoryError, match="limit of 1000 bytes"):
        inventory.read_yaml(f)


def test_a_sparse_huge_file_is_refused_by_its_size(tmp_path: Path) -> None:
    f = tmp_path / "huge.yaml"
    with f.open("wb") as h:
        h.truncate(65 * 1024 * 1024)
    r = nosdn("check", "-f", str(f))
    assert r.returncode == 2, r.stderr
    assert "64 MiB" in r.stderr


def test_an_alias_bomb_is_refused_before_parsing(tmp_path: Path) -> None:
    lines = ['a0: &a0 ["x","x","x","x","x","x","x","x","x"]']
    for i in range(1, 9):
        lines.append(f"a{i}: &a{i} [{','.join([f'*a{i - 1}'] * 9)}]")
    f = tmp_path / "bomb.yaml"
    f.write_text("\n".join(lines) + "\n")
    r = nosdn("check", "-f", str(f))
    assert r.returncode == 2, r.stderr
    assert "aliases" in r.stderr
    assert str(f) in r.stderr


def test_a_few_aliases_still_parse(tmp_path: Path) -> None:
    f = tmp_path / "alias.yaml"
    f.write_text("clusterCIDRs: &c [172.17.0.0/16]\nnodes:\n- {name: a, ip: 10.0.0.1}\n")
    assert nosdn("check", "-f", str(f)).returncode == 0


def test_non_utf8_names_the_byte_offset(tmp_path: Path) -> None:
    f = tmp_path / "latin1.yaml"
    f.write_bytes(b"nodes:\n- {name: caf\xe9, ip: 10.0.0.1}\n")
    r = nosdn("check", "-f", str(f))
    assert r.returncode == 2, r.stderr
    assert "not UTF-8" in r.stderr
    assert "offset 19" in r.stderr
    assert "Traceback" not in r.stderr


def test_a_byte_order_mark_is_dropped(tmp_path: Path) -> None:
    f = tmp_path / "bom.yaml"
    f.write_bytes(b"\xef\xbb\xbfclusterCIDRs: [172.17.0.0/16]\n" + GOOD.encode())
    r = nosdn("check", "-f", str(f))
    assert r.returncode == 0, r.stderr


def test_a_number_as_a_name_must_be_a_string(tmp_path: Path) -> None:
    f = tmp_path / "num.yaml"
    f.write_text("nodes:\n- {name: 123, ip: 10.0.0.1, podCIDR: 172.17.1.0/24}\n")
    r = nosdn("check", "-f", str(f))
    assert r.returncode == 2
    assert "nodes[0].name 123: must be a string" in r.stderr


def test_limits_apply_through_the_environment(tmp_path: Path) -> None:
    env = dict(os.environ, NOSDN_INVENTORY="/dev/zero")
    r = nosdn("routes", "--router", env=env)
    assert r.returncode == 2, r.stderr
    assert "not a regular file" in r.stderr


@pytest.mark.parametrize(
    "value", ["fe80::1%$(reboot)", "fe80::1%eth0", "' 10.0.0.1'", '"10.0.0.1\\n"']
)
def test_addresses_that_are_not_plain_are_problems(tmp_path: Path, value: str) -> None:
    f = tmp_path / "zone.yaml"
    f.write_text(f"nodes:\n- name: a\n  ip: {value}\n  podCIDR: 172.17.1.0/24\n")
    r = nosdn("check", "-f", str(f))
    assert r.returncode == 2, r.stderr
    assert "node a: ips" in r.stderr
    assert "not a plain IP address" in r.stderr


def test_a_huge_value_is_echoed_cut(tmp_path: Path) -> None:
    f = tmp_path / "long.yaml"
    f.write_text(f"nodes:\n- name: a\n  ip: {'x' * 1_000_000}\n")
    r = nosdn("check", "-f", str(f))
    assert r.returncode == 2
    assert len(r.stderr) < 2000
    assert "(1000000 chars)" in r.stderr
    j = nosdn("check", "-f", str(f), "-o", "json")
    assert len(j.stdout) < 2000


def test_markup_in_a_value_is_printed_as_text(tmp_path: Path) -> None:
    f = tmp_path / "markup.yaml"
    f.write_text('nodes:\n- name: a\n  ip: "[/]"\n')
    r = nosdn("check", "-f", str(f))
    assert r.returncode == 2, r.stderr
    assert "[/]" in r.stderr


def test_very_many_problems_print_a_total_and_a_bounded_list(tmp_path: Path) -> None:
    f = tmp_path / "many.yaml"
    f.write_text("nodes:\n" + "".join(f"- {{name: n{i}, ip: bad{i}}}\n" for i in range(500)))
    r = nosdn("check", "-f", str(f))
    assert r.returncode == 2
    assert r.stderr.splitlines()[0].endswith("500 problem(s)")
    assert r.stderr.count("  - ") == 50
    assert "... and 450 more (-o json for all)" in r.stderr
    j = nosdn("check", "-f", str(f), "-o", "json")
    assert len(json.loads(j.stdout)["problems"]) == 500
    routes = nosdn("routes", "-f", str(f), "--router")
    assert routes.returncode == 2
    assert "more (-o json for all)" in routes.stderr


def test_a_huge_name_is_echoed_cut_everywhere(tmp_path: Path) -> None:
    f = tmp_path / "name.yaml"
    f.write_text(
        f"clusterCIDRs: [172.17.0.0/16]\nnodes:\n- name: {'x' * 1_000_000}\n  ip: 10.0.0.1\n"
    )
    r = nosdn("routes", "-f", str(f), "--router")
    assert r.returncode == 2
    assert len(r.stderr) < 3000
    assert "(1000000 chars)" in r.stderr
