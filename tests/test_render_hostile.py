"""Hostile text from an inventory or a Node object cannot reach a rendered artifact as code.

The clusters here are built from `nosdn.model` objects directly, past every input check, since
the point is that the renderers alone are safe: an IPv6 address with a zone id is made the way
the standard library lets one through (``ip_address('fd00::1%evil...')``). For every renderer
the result is either a refusal that names the node, the field and the value, or an output that
is safe when it is *used*: shell formats are run (in a fresh network namespace, with stand-in
``aws``/``gcloud`` that record their argv) and no injected command may run; router configs go
through ``bird -p`` and FRR's ``vtysh -C`` and no injected line may appear.

The root part keeps its examples few (each runs several processes); the fixed worst cases from
issue 10 run every time.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable
from ipaddress import IPv6Address, ip_address, ip_network
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from conftest import requires_root
from nosdn.model import Cluster, Node
from nosdn.render import FORMATS, RenderError, RenderOptions, render
from nosdn.render.graph import picture, to_dot, to_mermaid

Netns = Callable[..., str]
SHELL_FORMATS = ("script", "systemd", "cloud-init", "aws-cli", "gcloud", "az-cli")
ROUTER_FORMATS = ("frr", "bird", "cisco", "junos")

#: What an injection would do: create the file named by $NOSDN_PWN.
PAYLOADS = [
    '$(touch "$NOSDN_PWN")',
    '`touch "$NOSDN_PWN"`',
    ';touch "$NOSDN_PWN";',
    '\ntouch "$NOSDN_PWN"\n',
    "'; touch \"$NOSDN_PWN\"; '",
    "\nEOF\ntouch \"$NOSDN_PWN\"\ncat <<'EOF'",
    "\n}\nprotocol static evil { ipv4; route 0.0.0.0/0 blackhole; }\n",
    "\nline vty\n no login\n",
    "\\",
    "%s%n%%",
    "\u2028touch x\u0085\x00",
    "x" * 5000,
]
WORST = "fd00:10::2%x\nEOF\ntouch PWNED\ncat <<'EOF'"


def _cluster(field: str, value: str) -> Cluster:
    """Two nodes and a service route, with ``value`` put into ``field``, no check in between."""
    name2, ip2, iid, cname = "node2", ip_address("fd00:10::2"), "i-0123456789abcdef0", "c1"
    if field == "name":
        name2 = value
    elif field == "address":
        ip2 = IPv6Address(f"fd00:10::2%{value}") if "%" not in value else ip_address(value)
    elif field == "instanceId":
        iid = value
    else:
        cname = value
    n1 = Node(
        "node1",
        (ip_address("10.10.0.1"), ip_address("fd00:10::1")),
        (ip_network("172.17.1.0/24"), ip_network("fd00:17:0:1::/64")),
    )
    n2 = Node(name2, (ip_address("10.10.0.2"), ip2), (ip_network("fd00:17:0:2::/64"),), iid)
    return Cluster(
        (n1, n2),
        service_cidrs=(ip_network("10.96.0.0/12"),),
        service_via=("node1",),
        name=cname,
    )


def _render(cluster: Cluster, fmt: str, value: str) -> str | None:
    """The output, or None when the renderer refused, naming the value it refused."""
    refusal = ""
    try:
        return render(cluster, fmt, RenderOptions())
    except RenderError as e:
        refusal = str(e)
    # the refusal shows the value (or the address holding it) as repr
    shown = [repr(v)[1:25] for v in (value, f"fd00:10::2%{value}")]
    assert any(s in refusal for s in shown), f"{refusal} does not name {value!r}"
    return None


hostile = st.one_of(
    st.sampled_from(PAYLOADS),
    st.text(alphabet=st.sampled_from("ab-.$()`;'\"\\\n\r\t%{}<>&|* é\u2028"), max_size=40),
    st.builds(lambda a, b: a + b, st.sampled_from(PAYLOADS), st.text(max_size=10)),
)
fields = st.sampled_from(["name", "address", "instanceId", "cluster"])


# --- refusals that name node, field and value (the defects of issue 10) ----------------------


@pytest.mark.parametrize("fmt", sorted(f for f in FORMATS if not FORMATS[f].needs_node))
def test_a_trailing_newline_in_a_node_name_is_refused(fmt: str) -> None:
    with pytest.raises(RenderError, match=r"node 'node2\\n'|node node2\\n"):
        render(_cluster("name", "node2\n"), fmt)


@pytest.mark.parametrize("fmt", sorted(f for f in FORMATS if not FORMATS[f].needs_node))
def test_an_address_with_a_zone_id_is_refused(fmt: str) -> None:
    with pytest.raises(RenderError, match=r"node node2: ips .fd00:10::2%x\\nEOF"):
        render(_cluster("address", WORST), fmt)


def test_an_instance_id_ending_in_a_newline_is_refused() -> None:
    with pytest.raises(RenderError, match=r"node node2: instanceId 'i-0123456789abcdef0\\n'"):
        render(_cluster("instanceId", "i-0123456789abcdef0\n"), "aws-cli")


def test_a_table_ending_in_a_newline_is_refused() -> None:
    with pytest.raises(RenderError, match=r"table 'main\\n'"):
        render(_cluster("cluster", "c1"), "script", RenderOptions(table="main\n"))


def test_a_gce_name_with_a_trailing_newline_does_not_match() -> None:
    from nosdn.names import GCE_NAME

    assert GCE_NAME.match("nosdn-a1")
    assert not GCE_NAME.match("nosdn-a1\n")


def test_cni_writes_json_only() -> None:
    from nosdn.render.cni import render_cni

    doc = json.loads(render_cni(_cluster("cluster", PAYLOADS[0]), "node1"))
    assert doc["plugins"][0]["ipam"]["ranges"][0] == [{"subnet": "172.17.1.0/24"}]


# --- the cloud scripts count what they created ------------------------------------------------

STUB = """#!/bin/sh
# records its argv, one element per line with NUL bytes between elements, then answers
printf '%s\\0' "$(basename "$0")" "$@" >>"$STUB_LOG"
printf '\\n' >>"$STUB_LOG"
case "$(basename "$0") $*" in
"aws ec2 describe-instances"*) echo i-0123456789abcdef0 ;;
*) [ -z "${STUB_FAIL:-}" ] || exit 1 ;;
esac
"""


def _stubs(tmp: Path) -> Path:
    bindir = tmp / "bin"
    bindir.mkdir(exist_ok=True)
    for tool in ("aws", "gcloud", "az"):
        (bindir / tool).write_text(STUB)
        (bindir / tool).chmod(0o755)
    return bindir


def _calls(log: Path) -> list[list[str]]:
    if not log.exists():
        return []
    return [line.split("\0") for line in log.read_text().split("\0\n") if line]


def _run_cloud(tmp: Path, text: str, fail: bool = False) -> subprocess.CompletedProcess[str]:
    f = tmp / "cloud.sh"
    f.write_text(text)
    env = {
        "PATH": f"{_stubs(tmp)}:/usr/bin:/bin",
        "STUB_LOG": str(tmp / "log"),
        "NOSDN_PWN": str(tmp / "PWNED"),
        "ROUTE_TABLE_ID": "rtb-1",
        "GCE_NETWORK": "net-1",
        "AZ_RESOURCE_GROUP": "rg-1",
        "AZ_ROUTE_TABLE": "rt-1",
    }
    if fail:
        env["STUB_FAIL"] = "1"
    return subprocess.run(["dash", str(f)], capture_output=True, text=True, env=env, check=False)


@pytest.mark.parametrize("fmt", ["aws-cli", "gcloud", "az-cli"])
def test_cloud_scripts_exit_1_when_every_create_fails(tmp_path: Path, fmt: str) -> None:
    res = _run_cloud(tmp_path, render(_cluster("cluster", "c1"), fmt), fail=True)
    assert res.returncode == 1
    assert "3 of 3 routes not created" in res.stderr
    ok = _run_cloud(tmp_path, render(_cluster("cluster", "c1"), fmt))
    assert ok.returncode == 0, ok.stderr


def test_gcloud_description_is_one_argv_element(tmp_path: Path) -> None:
    name = "it's $(x) `y`; z\\"
    res = _run_cloud(tmp_path, render(_cluster("cluster", name), "gcloud"))
    assert res.returncode == 0, res.stderr
    descs = [c[c.index("--description") + 1] for c in _calls(tmp_path / "log")]
    assert descs
    assert all(d.endswith(f"in cluster {name}") for d in descs)


# --- the script agrees with `nosdn apply` on off-link nodes; failures are summed up ----------


def _fake_ip(tmp: Path, offlink: str = "", batch_error: str = "") -> Path:
    from test_render_formats import FAKE_IP, _addr_lines

    bindir = tmp / "bin"
    bindir.mkdir(exist_ok=True)
    fake = FAKE_IP
    if batch_error:  # the writes' batch: every line fails with batch_error
        fake = fake.replace(
            '"-o -force -batch -")',
            '"-force -batch -")\n    awk \'{ print "'
            + batch_error
            + '"; print "Command failed -:" NR }\' >&2\n'
            "    exit 1 ;;\n"
            '"-o -force -batch -")',
        )
    (bindir / "ip").write_text(fake)
    (bindir / "ip").chmod(0o755)
    (tmp / "addr").write_text(_addr_lines(["10.10.0.1", "fd00:10::1"]))
    (tmp / "route4").write_text("")
    (tmp / "route6").write_text("")
    (tmp / "offlink").write_text(offlink)
    return bindir


def _run_script(tmp: Path, text: str, bindir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    (tmp / "s.sh").write_text(text)
    env = {"PATH": f"{bindir}:/usr/bin:/bin", "FAKE_IP_DIR": str(tmp)}
    return subprocess.run(
        ["dash", str(tmp / "s.sh"), *args], capture_output=True, text=True, env=env, check=False
    )


def test_script_skips_an_off_link_node_and_exits_0_like_apply(tmp_path: Path) -> None:
    bindir = _fake_ip(tmp_path, offlink="fd00:10::2\n")
    res = _run_script(tmp_path, render(_cluster("cluster", "c1"), "script"), bindir, "--dry-run")
    assert res.returncode == 0, res.stderr
    assert "off-link node node2 (fd00:10::2): no route to it; its routes are skipped" in res.stderr
    assert "fd00:17:0:2::/64" not in res.stdout
    assert "1 off-link" in res.stdout


def test_script_sums_up_many_failed_writes_with_a_likely_cause(tmp_path: Path) -> None:
    nodes = tuple(
        Node(
            f"n{i}",
            (ip_address(f"10.10.{i // 250}.{i % 250 + 1}"),),
            (ip_network(f"172.{16 + i // 256}.{i % 256}.0/24"),),
        )
        for i in range(40)
    )
    cluster = Cluster(nodes, name="c1")
    bindir = _fake_ip(tmp_path, batch_error="RTNETLINK answers: File exists")
    (tmp_path / "addr").write_text(__import__("test_render_formats")._addr_lines(["10.10.0.1"]))
    res = _run_script(tmp_path, render(cluster, "script"), bindir)
    assert res.returncode == 1
    lines = res.stderr.splitlines()
    assert sum("failed to add" in ln for ln in lines) == 10
    assert "... and 29 more failed writes (not shown)" in res.stderr
    assert "39 writes failed; likely cause: another writer" in res.stderr


# --- the property: hostile values, every renderer, outputs that are run ----------------------

_LINE_OK = {
    "frr": re.compile(r"(!.*|(ip|ipv6) route \S+ \S+ tag \d+)"),
    "cisco": re.compile(r"(!.*|(ip|ipv6) route [0-9a-fA-F:./ ]+ name nosdn-[A-Za-z0-9._-]+)"),
    "junos": re.compile(r"(#.*|(delete|set) (groups|apply-groups) nosdn-[A-Za-z0-9_-]*( .*)?)"),
}


def _check_router(tmp: Path, fmt: str, text: str) -> None:
    lines = text.splitlines()
    if fmt in _LINE_OK:
        bad = [ln for ln in lines if not _LINE_OK[fmt].fullmatch(ln)]
        assert not bad, bad
    if fmt == "bird":
        blocks = [ln for ln in lines if ln.startswith("protocol ")]
        assert all(re.fullmatch(r"protocol static nosdn_[A-Za-z0-9_]+_v[46] \{", b) for b in blocks)
        if shutil.which("bird"):
            f = tmp / "b.conf"
            f.write_text(text)
            res = subprocess.run(
                ["bird", "-p", "-c", str(f)], capture_output=True, text=True, check=False
            )
            assert res.returncode == 0, res.stderr
    if fmt == "frr" and shutil.which("vtysh"):
        assert not any(ln.strip().startswith("line") for ln in lines)
        f = tmp / "frr.conf"
        f.write_text(text)
        res = subprocess.run(
            ["vtysh", "-C", "-f", str(f)], capture_output=True, text=True, check=False
        )
        assert res.returncode == 0, res.stdout + res.stderr


def _check_shell(tmp: Path, fmt: str, text: str, ns: str | None) -> None:
    if fmt == "cloud-init":
        doc = yaml.safe_load(text)
        scripts = [f["content"] for f in doc["write_files"] if f["path"].endswith("nosdn-routes")]
        text = scripts[0]
    elif fmt == "systemd":
        text = text.split("# ==> ", 2)[1].split("\n", 1)[1]
    f = tmp / f"{fmt}.sh"
    f.write_text(text)
    for shell in ("dash", "busybox"):
        cmd = [shell, "sh", "-n", str(f)] if shell == "busybox" else [shell, "-n", str(f)]
        res = subprocess.run(cmd, capture_output=True, text=True, check=False)
        assert res.returncode == 0, f"{shell}: {res.stderr}"
    if ns is None:
        return
    pwn = tmp / "PWNED"
    env = {
        "PATH": f"{_stubs(tmp)}:/usr/sbin:/usr/bin:/sbin:/bin",
        "STUB_LOG": str(tmp / "log"),
        "NOSDN_PWN": str(pwn),
        "ROUTE_TABLE_ID": "rtb-1",
        "GCE_NETWORK": "net-1",
        "AZ_RESOURCE_GROUP": "rg-1",
        "AZ_ROUTE_TABLE": "rt-1",
    }
    args = ["--external"] if fmt in ("script", "systemd", "cloud-init") else []
    res = subprocess.run(
        ["ip", "netns", "exec", ns, "dash", str(f), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
        cwd=tmp,
    )
    assert not pwn.exists(), f"{fmt}: an injected command ran\n{text}"
    assert not (tmp / "PWNED").exists(), f"{fmt}: an injected command ran\n{text}"
    assert res.returncode in (0, 1), res.stderr
    for call in _calls(tmp / "log"):
        if "--description" in call:
            assert call[call.index("--description") + 1].startswith("nosdn: pods of node ")


@pytest.mark.root
@requires_root
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(field=fields, value=hostile)
@example(field="address", value=WORST)
@example(field="name", value="node2\nEOF\ntouch PWNED")
@example(field="instanceId", value="i-0123456789abcdef0\n")
@example(field="cluster", value=PAYLOADS[6])
@example(field="cluster", value=PAYLOADS[0])
@example(field="name", value=PAYLOADS[7])
def test_hostile_values_are_refused_or_harmless(
    netns: Netns, tmp_path_factory: pytest.TempPathFactory, field: str, value: str
) -> None:
    tmp = tmp_path_factory.mktemp("hostile")
    try:
        cluster = _cluster(field, value)
    except ValueError:  # not even the standard library lets this address through
        assume(False)
        return
    ns = netns("nosdn-hostile")
    for fmt in SHELL_FORMATS + ROUTER_FORMATS:
        text = _render(cluster, fmt, value)
        if text is None:
            continue
        if fmt in ROUTER_FORMATS:
            _check_router(tmp, fmt, text)
        else:
            _check_shell(tmp, fmt, text, ns)
    pic = picture(cluster)
    dot = to_dot(pic)
    if shutil.which("dot"):
        res = subprocess.run(["dot", "-Tsvg"], input=dot.encode(), capture_output=True, check=False)
        assert res.returncode == 0, res.stderr.decode()
    assert all(ln.count('"') % 2 == 0 for ln in to_mermaid(pic).splitlines())
    assert os.path.exists(tmp)
