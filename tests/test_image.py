"""The nosdn image, built without Docker (tools/build-image.sh: debootstrap, pip, umoci) and run
with Debian's runc (root).

Each run is the image's own rootfs in fresh namespaces (its own network namespace: nothing
leaves it) with the user, capabilities and root filesystem the manifests give that container
(read from `nosdn.agent.manifests`, not restated here): the agent (root, NET_ADMIN + NET_RAW),
the install-cni init container (root, no capability), the controller (uid 65532, no
capability, read-only root). ``nosdn version`` and ``nosdn agent --help`` work, the CNI plugins
the conflist uses, ``ip``, ``nft`` and ``bird`` are there, and the capabilities are exactly
the granted ones (NET_ADMIN works where granted, and fails where it is not). The image's size
is printed. crun is not used: Debian 12's crun refuses hosts with cgroups in hybrid mode, as
these machines are; runc runs on both.
"""

from __future__ import annotations

import copy
import json
import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import ip_network
from pathlib import Path
from typing import Any

import pytest

from conftest import requires_root
from nosdn.agent.installcni import PLUGINS
from nosdn.agent.manifests import manifests
from nosdn.backends.cloud.factory import Cloud, CloudOptions
from nosdn.controller.manifests import controller_manifests

pytestmark = [pytest.mark.root, requires_root]

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "tools" / "build-image.sh"
#: Linux capability numbers (linux/capability.h) of the ones the manifests grant.
CAP_BITS = {"NET_BIND_SERVICE": 10, "NET_ADMIN": 12, "NET_RAW": 13}


@dataclass
class Image:
    oci: Path
    bundle: Path
    config: dict[str, Any]
    size: str


def _missing(why: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI: the image must be built and run: {why}")
    pytest.skip(why)


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Image]:
    if shutil.which("runc") is None:
        _missing("runc not installed (apt-get install runc; make test does)")
    # the venv running the tests is the one whose pinned versions go into the image
    env = {**os.environ, "PYTHON": os.environ.get("PYTHON", sys.executable)}
    proc = subprocess.run([str(BUILD)], capture_output=True, text=True, check=False, env=env)
    if proc.returncode in (3, 4):
        _missing(proc.stderr.strip().splitlines()[-1])
    assert proc.returncode == 0, f"tools/build-image.sh failed:\n{proc.stderr[-4000:]}"
    oci = Path(proc.stdout.strip().splitlines()[-1])
    bundle = tmp_path_factory.mktemp("image") / "bundle"
    from nosdn import __version__

    subprocess.run(
        ["umoci", "unpack", "--image", f"{oci}:{__version__}", str(bundle)],
        check=True,
        capture_output=True,
    )
    try:
        config = json.loads((bundle / "config.json").read_text())
        yield Image(oci, bundle, config, (oci.parent / "size.txt").read_text().strip())
    finally:
        shutil.rmtree(bundle, ignore_errors=True)


def security(container: dict[str, Any]) -> tuple[int, list[str], bool]:
    """(uid, capabilities, read-only root) of a container of the manifests."""
    sc = container.get("securityContext", {})
    assert sc["capabilities"]["drop"] == ["ALL"]
    caps = [f"CAP_{c}" for c in sc["capabilities"].get("add", [])]
    return sc.get("runAsUser", 0), caps, bool(sc.get("readOnlyRootFilesystem", False))


def run(img: Image, container: dict[str, Any], *argv: str) -> subprocess.CompletedProcess[str]:
    """``argv`` in the image, as ``container`` of the manifests would run."""
    uid, caps, readonly = security(container)
    cfg = copy.deepcopy(img.config)
    proc = cfg["process"]
    proc.update(terminal=False, args=list(argv), user={"uid": uid, "gid": uid})
    proc["capabilities"] = dict.fromkeys(("bounding", "effective", "permitted"), caps)
    proc["noNewPrivileges"] = True
    cfg["root"]["readonly"] = readonly
    cfg["hostname"] = "nosdn-image-test"
    (img.bundle / "config.json").write_text(json.dumps(cfg))
    name = f"nosdn-img-{secrets.token_hex(4)}"
    try:
        return subprocess.run(
            ["runc", "run", "--bundle", str(img.bundle), name],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    finally:
        subprocess.run(["runc", "delete", "--force", name], capture_output=True, check=False)


def agent_pod() -> dict[str, Any]:
    docs = manifests(cluster_cidrs=(ip_network("10.244.0.0/16"),))
    ds = next(d for d in docs if d["kind"] == "DaemonSet")
    return ds["spec"]["template"]["spec"]  # type: ignore[no-any-return]


def controller_container() -> dict[str, Any]:
    docs = controller_manifests(
        CloudOptions(Cloud.aws, aws_region="eu-west-1"),
        cluster_cidrs=(ip_network("10.244.0.0/16"),),
    )
    dep = next(d for d in docs if d["kind"] == "Deployment")
    return dep["spec"]["template"]["spec"]["containers"][0]  # type: ignore[no-any-return]


def cap_mask(caps: list[str]) -> int:
    return sum(1 << CAP_BITS[c.removeprefix("CAP_")] for c in caps)


STATUS = (
    "import re; s = open('/proc/self/status').read(); "
    "print(int(re.search(r'CapEff:\\s*(\\w+)', s).group(1), 16), "
    "int(re.search(r'CapBnd:\\s*(\\w+)', s).group(1), 16))"
)


def test_the_image_is_built_with_its_entrypoint_and_size(
    image: Image, capsys: pytest.CaptureFixture[str]
) -> None:
    assert image.config["process"]["args"] == ["nosdn", "agent"]  # ENTRYPOINT nosdn, CMD agent
    with capsys.disabled():  # the size, in every run's output
        print(f"\nnosdn image: {image.size} ({image.oci})")
    packed = int(image.size.split()[1])
    assert packed < 250_000_000, image.size


def test_agent_runs_version_and_help_with_exactly_its_capabilities(image: Image) -> None:
    (agent,) = agent_pod()["containers"]
    uid, caps, _ = security(agent)
    assert (uid, caps) == (0, ["CAP_NET_ADMIN", "CAP_NET_RAW"])
    version = run(image, agent, "nosdn", "version")
    assert version.returncode == 0, version.stderr
    from nosdn import __version__

    assert version.stdout.startswith(f"nosdn {__version__} ")
    helped = run(image, agent, "nosdn", "agent", "--help")
    assert helped.returncode == 0, helped.stderr
    assert "--cluster-cidr" in helped.stdout
    status = run(image, agent, "python3", "-c", STATUS)
    assert status.returncode == 0, status.stderr
    assert status.stdout.split() == [str(cap_mask(caps))] * 2
    # NET_ADMIN does what the agent needs, in the container's own network namespace
    nft = run(
        image,
        agent,
        "sh",
        "-c",
        "nft add table inet nosdn && nft list tables && "
        "ip link add nosdn-t0 type bridge && ip -o link show nosdn-t0",
    )
    assert nft.returncode == 0, nft.stderr
    assert "table inet nosdn" in nft.stdout
    assert "nosdn-t0" in nft.stdout


def test_the_tools_and_the_cni_plugins_are_there(image: Image) -> None:
    (agent,) = agent_pod()["containers"]
    proc = run(
        image,
        agent,
        "sh",
        "-c",
        "ls /usr/lib/cni; ip -V; nft --version; bird --version 2>&1; "
        "cat /etc/iproute2/rt_protos.d/nosdn.conf",
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert set(PLUGINS) <= set(out.split())
    assert "ip utility, iproute2" in out
    assert "nftables v1." in out
    assert "BIRD version 2." in out
    assert "157 nosdn" in out


def test_install_cni_runs_as_the_init_container_without_capabilities(image: Image) -> None:
    (init,) = agent_pod()["initContainers"]
    uid, caps, _ = security(init)
    assert (uid, caps) == (0, [])
    proc = run(
        image,
        init,
        "sh",
        "-c",
        "mkdir -p /tmp/host-bin && nosdn install-cni --from /usr/lib/cni "
        "--to /tmp/host-bin && ls /tmp/host-bin",
    )
    assert proc.returncode == 0, proc.stderr
    assert all(f"{p}: installed" in proc.stdout for p in PLUGINS)
    denied = run(image, init, "nft", "add", "table", "inet", "x")
    assert denied.returncode != 0  # no NET_ADMIN: the capabilities really are dropped
    assert "Operation not permitted" in denied.stderr


def test_controller_runs_as_65532_without_capabilities_on_a_read_only_root(image: Image) -> None:
    ctl = controller_container()
    uid, caps, readonly = security(ctl)
    assert (uid, caps, readonly) == (65532, [], True)
    proc = run(
        image,
        ctl,
        "sh",
        "-c",
        "id -u; nosdn version && nosdn controller --help >/dev/null && echo ok; "
        "touch /usr/x 2>/dev/null || echo read-only",
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split()[0] == "65532"
    assert "ok" in proc.stdout.split()
    assert "read-only" in proc.stdout


def test_the_cleanup_daemonset_cleans_the_containers_network_and_waits(image: Image) -> None:
    """The uninstall DaemonSet's containers, as granted: the init container (NET_ADMIN only)
    removes our route, nexthop and table and leaves a foreign route; the waiting one (65532,
    nothing granted, read-only root) exits 0 on SIGTERM."""
    from nosdn.agent.uninstall_manifests import uninstall_manifests

    ds = next(d for d in uninstall_manifests() if d["kind"] == "DaemonSet")
    pod = ds["spec"]["template"]["spec"]
    (init,) = pod["initContainers"]
    assert security(init)[:2] == (0, ["CAP_NET_ADMIN"])
    script = (
        "set -e; ip link add br0 type bridge; ip link set br0 up; "
        "ip addr add 10.0.0.1/24 dev br0; "
        "ip nexthop add id 7 via 10.0.0.2 dev br0 proto 157; "
        "ip route add 10.244.2.0/24 nhid 7 proto 157; "
        "ip route add 10.99.0.0/24 via 10.0.0.9 proto static; "
        "nft add table inet nosdn; nft add table inet other; "
        f"nosdn {' '.join(init['args'])}; "  # exactly as the DaemonSet runs it
        "echo ROUTES; ip route show proto 157; ip route show proto static; "
        "echo NEXTHOPS; ip nexthop show; echo TABLES; nft list tables"
    )
    proc = run(image, init, "sh", "-c", script)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "routes and nexthops removed: 2" in out
    after = out.split("ROUTES", 1)[1]
    assert "10.244.2.0/24" not in after
    assert "10.99.0.0/24 via 10.0.0.9" in after
    assert "id 7" not in after
    assert after.split("TABLES", 1)[1].split() == ["table", "inet", "other"]
    (done,) = pod["containers"]
    waited = run(
        image,
        done,
        "sh",
        "-c",
        f"nosdn {' '.join(done['args'])} & sleep 2; kill -TERM $!; wait $!; echo rc=$?",
    )
    assert waited.returncode == 0, waited.stderr
    assert "rc=0" in waited.stdout


def test_the_image_takes_every_argument_its_manifests_give_it(image: Image) -> None:
    """Each container's args, as the manifests write them, parse in the image's nosdn (an
    unknown or misspelt option fails before --help is honoured)."""
    pod = agent_pod()
    containers = [*pod["initContainers"], *pod["containers"], controller_container()]
    for c in containers:
        proc = run(image, c, "nosdn", *c["args"], "--help")
        assert proc.returncode == 0, (c["name"], proc.stderr)
    bad = run(image, pod["containers"][0], "nosdn", "agent", "--no-such-flag", "--help")
    assert bad.returncode == 2


#: Every SDK import nosdn makes (most of them lazily, inside the backends), and the backends.
SDK_IMPORTS = """
import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from google.api_core import exceptions, retry
from google.auth.credentials import AnonymousCredentials
from google.cloud import compute_v1
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.core.pipeline.policies import SansIOHTTPPolicy
from azure.identity import DefaultAzureCredential
from azure.mgmt.network import NetworkManagementClient
from azure.mgmt.network.models import NetworkInterface, RouteTable
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
import nosdn.backends.cloud.aws, nosdn.backends.cloud.gce, nosdn.backends.cloud.azure
import nosdn.backends.kernel
import nosdn.sources.kubernetes, nosdn.agent.run, nosdn.controller.run
print("imported")
"""


def test_every_sdk_nosdn_imports_is_in_the_image(image: Image) -> None:
    proc = run(image, controller_container(), "python3", "-c", SDK_IMPORTS)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "imported"
