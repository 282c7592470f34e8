"""Golden tests: every format, rendered from two small fixed inventories, byte for byte.

The inventories are the post's two nodes (``post.yaml``), a dual-stack cluster with service
routes and an IPv4-only node (``dual.yaml``), and the same cluster over BGP across two racks
(``bgp.yaml``: each node's BIRD config and each router's side, passwords read from
``bgp.password`` as ``nosdn render`` reads them). A renderer change shows up here as a readable diff
of the artifact people deploy. Regenerate after an intended change with
``UPDATE_GOLDEN=1 .venv/bin/pytest tests/test_render_golden.py`` and review the diff.
"""

from __future__ import annotations

import os
from ipaddress import ip_address
from pathlib import Path

import pytest

from nosdn.model import EXTERNAL, Target
from nosdn.render import FORMATS, RenderOptions, read_passwords, render
from nosdn.sources.inventory import load_cluster

GOLDEN = Path(__file__).parent / "golden" / "render"
UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"

_HOST_FORMATS = ("script", "systemd", "cloud-init")
_ROUTER_FORMATS = ("frr", "bird", "cisco", "junos")
_CLOUD_FORMATS = ("aws-cli", "gcloud", "az-cli")

CASES: list[tuple[str, str, str, RenderOptions]] = []
for inv in ("post", "dual"):
    for fmt in (*_HOST_FORMATS, *_ROUTER_FORMATS, *_CLOUD_FORMATS):
        CASES.append((inv, fmt, "default", RenderOptions()))
for fmt in (*_HOST_FORMATS, *_ROUTER_FORMATS):
    CASES.append(("dual", fmt, "external", RenderOptions(target=EXTERNAL)))
CASES += [
    ("post", "script", "node1", RenderOptions(target=Target.for_node("node1"))),
    ("dual", "frr", "node2", RenderOptions(target=Target.for_node("node2"))),
    ("dual", "systemd", "proto200-table100-every30s",
     RenderOptions(protocol=200, table="100", interval=30)),
]  # fmt: skip
_RACK_A = (ip_address("10.10.0.254"), ip_address("fd00:10::fe"))
for node in ("node1", "node2", "node3.rack-b.example.com"):
    CASES.append(("bgp", "bird-node", node, RenderOptions(target=Target.for_node(node))))
CASES.append(("bgp", "bird-node-systemd", "node2", RenderOptions(target=Target.for_node("node2"))))
for fmt in _ROUTER_FORMATS:
    CASES.append(("bgp", fmt, "bgp-rack-a", RenderOptions(bgp=True, peers=_RACK_A)))
    CASES.append(
        ("bgp", fmt, "bgp-rack-b", RenderOptions(bgp=True, peers=(ip_address("10.20.0.254"),)))
    )
CASES.append(("bgp", "frr", "bgp-v4-only", RenderOptions(bgp=True, peers=_RACK_A[:1])))


def test_every_format_has_golden_cases() -> None:
    covered = {fmt for _, fmt, _, _ in CASES} | {"cni"}  # cni: see test_render_formats.py
    assert covered == set(FORMATS)


@pytest.mark.parametrize(
    ("inv", "fmt", "label", "options"),
    CASES,
    ids=[f"{inv}-{fmt}-{label}" for inv, fmt, label, _ in CASES],
)
def test_golden(inv: str, fmt: str, label: str, options: RenderOptions) -> None:
    cluster = load_cluster(GOLDEN / f"{inv}.yaml", warn=False)
    text = render(cluster, fmt, read_passwords(cluster, fmt, options))
    path = GOLDEN / f"{inv}.{fmt}.{label}.txt"
    if UPDATE or not path.exists():
        path.write_text(text)
        if not UPDATE:
            pytest.fail(f"{path.name} did not exist; written now — review it and commit it")
    assert text == path.read_text(), f"{path.name} differs; UPDATE_GOLDEN=1 after review"
