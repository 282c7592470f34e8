"""Properties of the rendered formats that matter more than their exact bytes (no root needed).

The script's own logic (node detection, the per-node filter, the diff in awk) runs here under
real dash/busybox and awk against a stand-in ``ip`` that answers from files: that lets every
node of many clusters be checked against the planner in milliseconds. The real kernel is in
test_render_root.py. Router configs are fed to the real parsers where installed (``bird -p``,
``vtysh -C``), scripts to ``shellcheck`` and ``sh -n``.
"""

from __future__ import annotations

import ipaddress
import os
import re
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Callable
from ipaddress import ip_address, ip_network
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nosdn.cli import app
from nosdn.model import EXTERNAL, Cluster, Node, Route, Target
from nosdn.names import GCE_NAME_MAX, gce_route_name
from nosdn.plan import desired_routes
from nosdn.render import FORMATS, RenderError, RenderOptions, render, render_files
from nosdn.render.routers import bird_config
from nosdn.sources.inventory import load_cluster

GOLDEN = Path(__file__).parent / "golden" / "render"
SHELLS = [s for s in ("dash", "busybox") if shutil.which(s)]


def _dual() -> Cluster:
    return load_cluster(GOLDEN / "dual.yaml", warn=False)


def _post() -> Cluster:
    return load_cluster(GOLDEN / "post.yaml", warn=False)


# --- the script, run by a real shell against a stand-in `ip` -------------------------------

FAKE_IP = r"""#!/bin/sh
# Stand-in for iproute2's ip: answers the script's reads from files, refuses any write.
d=$FAKE_IP_DIR
case "$*" in
"-o addr show") cat "$d/addr" ;;
"-4 -o route show table "*) cat "$d/route4" ;;
"-6 -o route show table "*) cat "$d/route6" ;;
"-4 -o route show exact "* | "-6 -o route show exact "*)
    cat "$d/route4" "$d/route6" | awk -v x="$6" '$1 == x' ;;
"-o -force -batch -")  # the next-hop lookups: on-link unless listed in $d/offlink
    awk -v off="$d/offlink" 'BEGIN { while ((getline l < off) > 0) bad[l] = 1 }
        $1 == "route" && $2 == "get" && !($3 in bad) { print $3, "dev eth0 src x uid 0" }' ;;
*) echo "fake ip: unexpected write: $*" >&2; exit 9 ;;
esac
"""


def _addr_lines(ips: list[str]) -> str:
    lines = ["1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever"]
    for i, a in enumerate(ips):
        fam = "inet6" if ":" in a else "inet"
        lines.append(f"2: eth0    {fam} {a}/{64 if ':' in a else 24} scope global eth0\\  x{i}")
    return "\n".join(lines) + "\n"


RunScript = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def run_script(tmp_path: Path) -> RunScript:
    """Run a rendered script in dry-run mode with a fake ``ip`` reporting ``addrs`` as this
    host's addresses and ``route4``/``route6`` as the kernel's tables."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "ip").write_text(FAKE_IP)
    (bindir / "ip").chmod(0o755)

    def run(
        script: str,
        addrs: list[str],
        *args: str,
        route4: str = "",
        route6: str = "",
        shell: str = "dash",
    ) -> subprocess.CompletedProcess[str]:
        (tmp_path / "addr").write_text(_addr_lines(addrs))
        (tmp_path / "route4").write_text(route4)
        (tmp_path / "route6").write_text(route6)
        (tmp_path / "s.sh").write_text(script)
        cmd = [shell, "sh"] if shell == "busybox" else [shell]
        return subprocess.run(
            [*cmd, str(tmp_path / "s.sh"), "--dry-run", *args],
            capture_output=True,
            text=True,
            check=False,
            env={"PATH": f"{bindir}:/usr/bin:/bin", "FAKE_IP_DIR": str(tmp_path)},
        )

    return run


def _writes(stdout: str) -> set[str]:
    return {line for line in stdout.splitlines() if line.startswith("ip ")}


def _add_cmd(r: Route, proto: int = 157, table: str = "main") -> str:
    hops = f"via {r.via[0]}" if len(r.via) == 1 else " ".join(f"nexthop via {v}" for v in r.via)
    return f"ip -{r.family} route add {r.dst} proto {proto} table {table} {hops}"


@pytest.mark.parametrize("shell", SHELLS)
def test_script_on_each_node_adds_exactly_the_planned_routes(
    run_script: RunScript, shell: str
) -> None:
    cluster = _dual()
    script = render(cluster, "script")
    for node in cluster.nodes:
        res = run_script(script, [str(ip) for ip in node.ips], shell=shell)
        assert res.returncode == 0, res.stderr
        want = {_add_cmd(r) for r in desired_routes(cluster, Target.for_node(node.name))}
        assert _writes(res.stdout) == want, node.name
        assert not any(str(c) in res.stdout for c in node.pod_cidrs), "route to own subnet"
        assert f"node {node.name}, table main" in res.stdout


def test_script_external_host_gets_services_as_ecmp(run_script: RunScript) -> None:
    cluster = _dual()
    res = run_script(render(cluster, "script"), ["10.10.0.50", "fd00:10::50"], "--external")
    assert res.returncode == 0, res.stderr
    assert _writes(res.stdout) == {_add_cmd(r) for r in desired_routes(cluster, EXTERNAL)}
    assert (
        "ip -4 route add 10.96.0.0/12 proto 157 table main "
        "nexthop via 10.10.0.1 nexthop via 10.10.0.2" in res.stdout
    )
    assert "ip -6 route add fd00:96::/112" in res.stdout


def test_script_rendered_external_needs_no_flag(run_script: RunScript) -> None:
    cluster = _dual()
    res = run_script(render(cluster, "script", RenderOptions(target=EXTERNAL)), ["10.10.0.50"])
    assert res.returncode == 0, res.stderr
    assert _writes(res.stdout) == {_add_cmd(r) for r in desired_routes(cluster, EXTERNAL)}


def test_script_conflicts_stale_and_changes(run_script: RunScript) -> None:
    """Classification from the table dump: keep, change, remove stale, conflict (exit 1)."""
    cluster = _dual()
    route4 = (
        "10.10.0.0/24 dev eth0 proto kernel scope link src 10.10.0.1 \n"
        "172.17.2.0/24 via 10.10.0.9 dev eth0 proto static \n"  # foreign: conflict
        "172.17.3.0/24 via 10.10.0.7 dev eth0 proto 157 \n"  # ours, wrong next hop
        "172.17.99.0/24 via 10.10.0.2 dev eth0 proto 157 \n"  # ours, stale
        "192.0.2.0/24 via 10.10.0.2 dev eth0 \n"  # proto boot, not wanted: none of our business
    )
    route6 = "fd00:17:0:2::/64 nhid 7 via fd00:10::2 dev eth0 proto 157 metric 1024 pref medium\n"
    res = run_script(render(cluster, "script"), ["10.10.0.1"], route4=route4, route6=route6)
    assert res.returncode == 1
    assert "conflict: 172.17.2.0/24 (pods of node2) is already routed by proto static" in (
        res.stderr
    )
    assert "172.17.2.0/24 via 10.10.0.9 dev eth0 proto static" in res.stderr
    assert _writes(res.stdout) == {
        "ip -4 route replace 172.17.3.0/24 proto 157 table main via 10.10.0.3",
        "ip -4 route del 172.17.99.0/24 proto 157 table main",
    }
    assert "1 changed, 1 removed, 1 unchanged, 1 conflicts" in res.stdout


def test_script_in_sync_writes_nothing(run_script: RunScript) -> None:
    cluster = _post()
    res = run_script(
        render(cluster, "script"),
        ["10.10.0.2"],
        route4="172.17.1.0/24 via 10.10.0.1 dev eth0 proto 157 \n",
    )
    assert res.returncode == 0, res.stderr
    assert _writes(res.stdout) == set()
    assert "0 added, 0 changed, 0 removed, 1 unchanged, 0 conflicts, 0 failed" in res.stdout


def test_script_ecmp_in_any_order_is_in_sync(run_script: RunScript) -> None:
    cluster = _dual()
    route4 = (
        "10.96.0.0/12 proto 157 \\\tnexthop via 10.10.0.2 dev eth0 weight 1 "
        "\\\tnexthop via 10.10.0.1 dev eth0 weight 1 \n"
    )
    res = run_script(render(cluster, "script"), ["10.10.0.50"], "--external", route4=route4)
    assert "10.96.0.0/12" not in "".join(_writes(res.stdout))


@pytest.mark.parametrize(
    ("addrs", "args", "message"),
    [
        (["192.0.2.7"], (), "none of the nodes' addresses"),
        (["10.10.0.1", "10.10.0.2"], (), "addresses of several nodes"),
        (["10.10.0.1"], ("--external",), "this host is node node1"),
        (["10.10.0.2"], ("--node", "node1"), "has the address of node node2 (10.10.0.2)"),
        (["10.10.0.1"], ("--node", "nodeX"), "node nodeX is not in this script's inventory"),
        (["10.10.0.1"], ("--bogus",), "unknown argument: --bogus"),
        (["10.10.0.1"], ("--external", "--node", "node1"), "exclude each other"),
    ],
)
def test_script_refuses_with_exit_2(
    run_script: RunScript, addrs: list[str], args: tuple[str, ...], message: str
) -> None:
    res = run_script(render(_post(), "script"), addrs, *args)
    assert res.returncode == 2
    assert message in res.stderr
    assert _writes(res.stdout) == set()


def test_script_pinned_to_a_node_holds_only_its_routes(run_script: RunScript) -> None:
    cluster = _dual()
    script = render(cluster, "script", RenderOptions(target=Target.for_node("node1")))
    data = script.split("routes() {\n    cat <<'EOF'\n", 1)[1].split("EOF\n", 1)[0]
    dsts = {ip_network(line.split()[0]) for line in data.splitlines()}
    node1 = cluster.node("node1")
    assert node1 is not None
    assert dsts == {r.dst for r in desired_routes(cluster, Target.for_node("node1"))}
    assert not dsts & set(node1.pod_cidrs)
    ok = run_script(script, ["10.10.0.1"])
    assert ok.returncode == 0, ok.stderr
    wrong = run_script(script, ["10.10.0.2"])
    assert wrong.returncode == 2
    assert "rendered for node node1 only" in run_script(script, ["10.10.0.2"], "--external").stderr


def test_script_protocol_and_table_are_render_options(run_script: RunScript) -> None:
    cluster = _post()
    script = render(cluster, "script", RenderOptions(protocol=200, table="100"))
    res = run_script(
        script,
        ["10.10.0.1"],
        route4="172.17.9.0/24 via 10.10.0.2 dev eth0 proto 157 \n",  # 157 is not ours now
    )
    assert _writes(res.stdout) == {
        "ip -4 route add 172.17.2.0/24 proto 200 table 100 via 10.10.0.2"
    }


@settings(
    max_examples=25,
    deadline=None,
    # the fixture rewrites every input file on each call
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(st.data())
def test_script_matches_the_planner_on_random_clusters(
    run_script: RunScript, data: st.DataObject
) -> None:
    n = data.draw(st.integers(2, 6))
    v6 = data.draw(st.lists(st.booleans(), min_size=n, max_size=n))
    v4 = [data.draw(st.booleans()) or not v6[i] for i in range(n)]
    nodes = []
    for i in range(n):
        ips: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = []
        cidrs: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        if v4[i]:
            ips.append(ip_address(f"10.0.0.{i + 1}"))
            cidrs.append(ip_network(f"10.{i + 1}.0.0/24"))
        if v6[i]:
            ips.append(ip_address(f"fd00::{i + 1}"))
            cidrs.append(ip_network(f"fd00:{i + 1}::/64"))
        nodes.append(Node(f"n{i}", tuple(ips), tuple(cidrs)))
    cluster = Cluster(tuple(nodes))
    me = data.draw(st.sampled_from(nodes))
    res = run_script(render(cluster, "script"), [str(a) for a in me.ips])
    assert res.returncode == 0, res.stderr
    assert _writes(res.stdout) == {
        _add_cmd(r) for r in desired_routes(cluster, Target.for_node(me.name))
    }


# --- static checks of the shell outputs -----------------------------------------------------


def _shell_outputs() -> list[tuple[str, str]]:
    dual, post = _dual(), _post()
    return [
        ("script", render(dual, "script")),
        ("script-node", render(post, "script", RenderOptions(target=Target.for_node("node2")))),
        ("aws-cli", render(dual, "aws-cli")),
        ("aws-cli-post", render(post, "aws-cli")),
        ("gcloud", render(dual, "gcloud")),
    ]


@pytest.mark.parametrize(("name", "text"), _shell_outputs(), ids=lambda v: v[:12])
def test_shell_outputs_parse(tmp_path: Path, name: str, text: str) -> None:
    f = tmp_path / f"{name}.sh"
    f.write_text(text)
    for shell in SHELLS:
        cmd = [shell, "sh", "-n", str(f)] if shell == "busybox" else [shell, "-n", str(f)]
        res = subprocess.run(cmd, capture_output=True, text=True, check=False)
        assert res.returncode == 0, f"{shell}: {res.stderr}"
    if shutil.which("shellcheck"):
        res = subprocess.run(
            ["shellcheck", "-s", "sh", str(f)], capture_output=True, text=True, check=False
        )
        assert res.returncode == 0, res.stdout
    assert text.startswith("#!/bin/sh\n")


# --- router configs ---------------------------------------------------------------------------


@pytest.mark.skipif(not shutil.which("bird"), reason="bird2 is not installed")
@pytest.mark.parametrize("target", [None, EXTERNAL, Target.for_node("node1")], ids=str)
def test_bird_parses_the_config(tmp_path: Path, target: Target | None) -> None:
    cluster = _dual()
    text = render(cluster, "bird", RenderOptions(target=target))
    whole = bird_config(desired_routes(cluster, target or EXTERNAL), standalone=True)
    for name, conf in (("fragment", text), ("standalone", whole)):
        f = tmp_path / f"{name}.conf"
        f.write_text(conf)
        res = subprocess.run(
            ["bird", "-p", "-c", str(f)], capture_output=True, text=True, check=False
        )
        assert res.returncode == 0, f"{name}: {res.stderr}\n{conf}"
    # and bird does reject a broken file, so the check above means something
    (tmp_path / "bad.conf").write_text(text.replace("via", "vai", 1))
    bad = subprocess.run(
        ["bird", "-p", "-c", str(tmp_path / "bad.conf")], capture_output=True, check=False
    )
    assert bad.returncode != 0


STATICD = Path("/usr/lib/frr/staticd")


def _staticd_complaints(conf: Path) -> list[str]:
    """What FRR's own staticd says when it parses ``conf`` (``-C``: check and exit). It runs as
    user frr, so it reads a copy in a directory of its own; it warns about next hops zebra
    cannot resolve (no zebra runs here): those lines are ignored."""
    with tempfile.TemporaryDirectory(prefix="nosdn-frr-") as d:
        os.chmod(d, 0o755)
        copy = Path(d) / "frr.conf"
        copy.write_text(conf.read_text())
        copy.chmod(0o644)
        proc = subprocess.Popen(
            [str(STATICD), "-C", "-f", str(copy)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        out, _ = proc.communicate(timeout=30)
    shutil.rmtree(f"/var/tmp/frr/staticd.{proc.pid}", ignore_errors=True)  # its crash-log dir
    return [ln for ln in out.decode().splitlines() if ln.strip() and "nht_register" not in ln]


@pytest.mark.skipif(not shutil.which("vtysh"), reason="frr is not installed")
def test_frr_accepts_the_config(tmp_path: Path) -> None:
    f = tmp_path / "frr.conf"
    for target in (None, EXTERNAL):
        f.write_text(render(_dual(), "frr", RenderOptions(target=target)))
        res = subprocess.run(
            ["vtysh", "-C", "-f", str(f)], capture_output=True, text=True, check=False
        )
        assert res.returncode == 0, res.stdout + res.stderr
        if STATICD.exists() and os.geteuid() == 0:
            # staticd is stricter: a next hop it cannot parse as an address becomes an interface
            assert _staticd_complaints(f) == []
    f.write_text("ip route 300.0.0.0/8 10.1.1.1\n")
    bad = subprocess.run(["vtysh", "-C", "-f", str(f)], capture_output=True, text=True, check=False)
    assert bad.returncode != 0
    if STATICD.exists() and os.geteuid() == 0:
        f.write_text("ipv6 route fd00::/64 10.0.0.1\n")
        assert _staticd_complaints(f) != []


def test_router_formats_carry_every_route_and_name_its_node() -> None:
    cluster = _dual()
    routes = desired_routes(cluster, EXTERNAL)
    for fmt in ("frr", "bird", "cisco", "junos"):
        text = render(cluster, fmt, RenderOptions(target=EXTERNAL))
        for r in routes:
            for gw in r.via:
                assert str(gw) in text, (fmt, r)
        assert "node3.rack-b.example.com" in text
        assert "services via node1, node2 (ECMP)" in text


def test_cisco_masks_are_the_subnets() -> None:
    text = render(_dual(), "cisco")
    found = set()
    for line in text.splitlines():
        if m := re.match(r"ip route (\S+) (\S+) (\S+) name nosdn-(\S+)$", line):
            found.add((ip_network(f"{m[1]}/{m[2]}"), ip_address(m[3])))
    assert found == {
        (r.dst, r.via[0]) for r in desired_routes(_dual(), Target("router")) if r.family == 4
    }


def test_junos_deletes_its_group_before_setting_it() -> None:
    lines = [ln for ln in render(_dual(), "junos").splitlines() if not ln.startswith("#")]
    assert lines[0] == "delete groups nosdn-Prod-EU-1"
    assert lines[-1] == "set apply-groups nosdn-Prod-EU-1"
    assert all(ln.startswith("set groups nosdn-Prod-EU-1 routing-options ") for ln in lines[1:-1])
    assert "rib inet6.0 static route fd00:17:0:1::/64 next-hop fd00:10::1" in render(
        _dual(), "junos"
    )


# --- cloud ------------------------------------------------------------------------------------

_NAME = re.compile(r"^[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?$")


@given(
    cluster=st.text(min_size=1, max_size=80),
    node=st.text(min_size=1, max_size=253),
    a=st.integers(0, 2**32 - 256),
    plen=st.integers(8, 32),
)
def test_gce_route_names_are_valid_and_stable(cluster: str, node: str, a: int, plen: int) -> None:
    dst = str(ipaddress.IPv4Network((a, plen), strict=False))
    name = gce_route_name(cluster, node, dst)
    assert len(name) <= GCE_NAME_MAX
    assert _NAME.match(name), name
    assert name == gce_route_name(cluster, node, dst)


def test_gce_route_names_are_unique_per_subnet() -> None:
    long = "n" * 200
    names = {
        gce_route_name("kubernetes", node, f"10.{i}.{j}.0/24")
        for node in ("node1", long)
        for i in range(20)
        for j in range(20)
    }
    assert len(names) == 2 * 400
    assert gce_route_name("k", "n", "fd00:17:0:1::/64") != gce_route_name(
        "k", "n", "fd00:17:0:1::/80"
    )


def test_gcloud_commands_match_the_router_routes() -> None:
    text = render(_dual(), "gcloud")
    ranges = re.findall(r"--next-hop-address (\S+) --destination-range (\S+)", text)
    want = {(str(r.via[0]), str(r.dst)) for r in desired_routes(_dual(), Target("router"))}
    assert set(ranges) == want
    for name in re.findall(r"^create_route (\S+)", text, re.M):
        assert _NAME.match(name)
        assert len(name) <= GCE_NAME_MAX


def test_aws_uses_known_ids_looks_up_the_rest_and_ipv6_flag() -> None:
    text = render(_dual(), "aws-cli")
    assert "--destination-ipv6-cidr-block fd00:17:0:1::/64" in text
    assert "--destination-cidr-block 172.17.3.0/24" in text
    assert "instance_by_ip private-ip-address 10.10.0.3 node3.rack-b.example.com" in text
    post = render(_post(), "aws-cli")
    assert "--instance-id i-0123456789abcdef0" in post
    assert "instance_by_ip private-ip-address 10.10.0.2 node2" in post
    assert "instance_by_ip private-ip-address 10.10.0.1" not in post
    # every lookup comes before the first write
    assert post.index("instance_by_ip private") < post.index("\ncreate_route ")


def test_aws_refuses_a_bad_instance_id() -> None:
    node = Node("node1", (ip_address("10.0.0.1"),), (ip_network("10.1.0.0/24"),), "i-1; reboot")
    with pytest.raises(RenderError, match=r"node node1: instanceId 'i-1; reboot'"):
        render(Cluster((node,)), "aws-cli")


# --- systemd and cloud-init -------------------------------------------------------------------


def test_cloud_init_is_yaml_holding_the_systemd_files() -> None:
    cluster = _dual()
    text = render(cluster, "cloud-init")
    assert text.startswith("#cloud-config\n")
    doc = yaml.safe_load(text)
    files = render_files(cluster, "systemd")
    assert [(f["path"], f["content"], f["permissions"]) for f in doc["write_files"]] == [
        (f"/{f.path}", f.content, f"0{f.mode:o}") for f in files
    ]
    assert ["systemctl", "enable", "--now", "nosdn-routes.timer"] in doc["runcmd"]


def test_systemd_units_run_the_script_from_a_timer() -> None:
    files = {f.path: f for f in render_files(_post(), "systemd", RenderOptions(interval=45))}
    service = files["etc/systemd/system/nosdn-routes.service"].content
    timer = files["etc/systemd/system/nosdn-routes.timer"].content
    assert "Type=oneshot" in service
    assert "ExecStart=/usr/local/sbin/nosdn-routes\n" in service
    assert "OnUnitActiveSec=45s" in timer
    assert "WantedBy=timers.target" in timer
    assert files["usr/local/sbin/nosdn-routes"].mode == 0o755
    assert files["usr/local/sbin/nosdn-routes"].content == render(_post(), "script")


# --- options and targets ------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", [0, 2, 3, 4, 12, 16, 186, 256, -1])
def test_protocols_that_belong_to_others_are_refused(protocol: int) -> None:
    with pytest.raises(RenderError, match=f"protocol {protocol}"):
        render(_post(), "script", RenderOptions(protocol=protocol))


@pytest.mark.parametrize(
    ("fmt", "options", "message"),
    [
        ("aws-cli", RenderOptions(target=Target.for_node("node1")), "does not take --node"),
        ("gcloud", RenderOptions(target=EXTERNAL), "does not take --external"),
        ("script", RenderOptions(target=Target("router")), "does not take --router"),
        ("cni", RenderOptions(), "is per node"),
        ("script", RenderOptions(target=Target.for_node("ghost")), "--node ghost: no such node"),
        ("nope", RenderOptions(), "unknown format 'nope'"),
        ("script", RenderOptions(table="local"), "table 'local'"),
        ("systemd", RenderOptions(interval=1), "interval 1"),
    ],
)
def test_bad_options_are_refused(fmt: str, options: RenderOptions, message: str) -> None:
    with pytest.raises(RenderError, match=re.escape(message)):
        render(_post(), fmt, options)


def test_cni_is_dispatched_to_its_renderer() -> None:
    cni = pytest.importorskip("nosdn.render.cni")
    cluster = _dual()
    got = render(cluster, "cni", RenderOptions(target=Target.for_node("node2"), mtu=1400))
    assert got == cni.render_cni(cluster, "node2", mtu=1400, bridge="cni0")


def test_every_format_renders_an_empty_cluster_without_error() -> None:
    empty = Cluster(())
    for fmt, f in FORMATS.items():
        if not f.needs_node:  # cni, bird-node: per node (test_cni_render.py, test_bgp.py)
            assert render(empty, fmt)


# --- the command ----------------------------------------------------------------------------------

runner = CliRunner()


def test_cli_prints_the_format() -> None:
    res = runner.invoke(app, ["render", "-f", str(GOLDEN / "post.yaml"), "--format", "bird"])
    assert res.exit_code == 0, res.output
    assert res.stdout == (GOLDEN / "post.bird.default.txt").read_text()


def test_cli_out_dir_writes_the_files_with_their_modes(tmp_path: Path) -> None:
    res = runner.invoke(
        app,
        [
            "render",
            "-f",
            str(GOLDEN / "post.yaml"),
            "--format",
            "systemd",
            "--out",
            str(tmp_path),
        ],
    )
    assert res.exit_code == 0, res.output
    script = tmp_path / "usr/local/sbin/nosdn-routes"
    assert stat.S_IMODE(script.stat().st_mode) == 0o755
    assert (tmp_path / "etc/systemd/system/nosdn-routes.timer").is_file()
    assert (tmp_path / "etc/iproute2/rt_protos.d/nosdn.conf").read_text().endswith("157\tnosdn\n")
    assert script.read_text() == render(_post(), "script")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--format", "script", "--node", "node1", "--external"], "at most one of"),
        (["--format", "aws-cli", "--node", "node1"], "does not take --node"),
        (["--format", "script", "--node", "ghost"], "no such node"),
        (["--format", "cni"], "is per node"),
        (["--format", "xml"], "Invalid value for '--format'"),
        (["--format", "script", "--protocol", "4"], "protocol 4"),
    ],
)
def test_cli_bad_input_exits_2(args: list[str], message: str) -> None:
    res = runner.invoke(app, ["render", "-f", str(GOLDEN / "post.yaml"), *args])
    assert res.exit_code == 2
    assert message in res.output


def test_cli_help_lists_every_format() -> None:
    res = runner.invoke(app, ["render", "--help"], env={"COLUMNS": "200"})
    assert res.exit_code == 0
    for name in FORMATS:
        assert name in res.output
