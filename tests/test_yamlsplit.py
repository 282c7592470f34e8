"""An inventory read in pieces (`nosdn.yamlsplit`) must be exactly the inventory read whole:
same cluster, same problems, same errors, whatever the layout of the file."""

from __future__ import annotations

from pathlib import Path

import pytest

from nosdn.sources import inventory
from nosdn.sources.inventory import InventoryError
from nosdn.yamlsplit import Split, split_nodes

HEAD = "clusterCIDRs: [10.244.0.0/16]\nnodeCIDRMaskSize: 24\n"

LAYOUTS = {
    "flow": HEAD
    + "nodes:\n"
    + "".join(
        f"  - {{name: n{i}, ip: 10.0.0.{i}, podCIDR: 10.244.{i}.0/24}}\n" for i in range(1, 8)
    ),
    "block": HEAD
    + "nodes:\n"
    + "".join(
        f"  - name: n{i}\n    ips: [10.0.0.{i}]\n    podCIDRs:\n      - 10.244.{i}.0/24\n"
        for i in range(1, 8)
    ),
    "column 0, comments, blank lines, a key after": "nodes:  # the machines\n"
    + "".join(f"- name: n{i}\n  ip: 10.0.0.{i}\n\n# rack {i}\n" for i in range(1, 8))
    + "clusterCIDRs: [10.244.0.0/16]\nserviceVia: [n1]\n",
    "quotes on one line": HEAD
    + "nodes:\n"
    + "".join(f"  - {{name: \"n{i}\", ip: '10.0.0.{i}'}}\n" for i in range(1, 8)),
    "no podCIDRs (allocated)": HEAD
    + "nodes:\n"
    + "".join(f"  - {{name: n{i}, ip: 10.0.0.{i}}}\n" for i in range(1, 8)),
    "a bad node among good ones": HEAD
    + "nodes:\n"
    + "".join(f"  - {{name: n{i}, ip: 10.0.0.{i}}}\n" for i in range(1, 4))
    + "  - {name: bad, ip: 10.0.0.300, colour: red}\n"
    + "".join(f"  - {{name: m{i}, ip: 10.0.1.{i}}}\n" for i in range(1, 4)),
    "items that are not mappings": HEAD + "nodes:\n  - just a string\n  -\n  - {name: a}\n",
}

#: Files the splitter must leave whole (they would parse differently, or it cannot tell).
WHOLE = {
    "anchor and alias": HEAD
    + "nodes:\n  - &n {name: a, ip: 10.0.0.1}\n  - *n\n  - {name: b, ip: 10.0.0.2}\n",
    "quote over two lines": HEAD
    + 'nodes:\n  - {name: "a\n  - b", ip: 10.0.0.1}\n  - {name: c, ip: 10.0.0.3}\n',
    "block scalar": HEAD + "nodes:\n  - name: |\n      x\n  - name: b\n",
    "flow list": HEAD + "nodes: [{name: a, ip: 10.0.0.1}, {name: b, ip: 10.0.0.2}]\n",
    "two documents": HEAD + "nodes:\n  - {name: a, ip: 10.0.0.1}\n---\nnodes: []\n",
    "nodes not at the top": "cluster:\n  nodes:\n    - {name: a}\n",
    "a line less indented than the items": HEAD + "nodes:\n  - {name: a}\n - {name: b}\n",
}


@pytest.fixture(autouse=True)
def _tiny_pieces(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(inventory, "_SPLIT_FROM", 0)
    monkeypatch.setattr(inventory, "_PIECE", 2)


def _whole(path: Path) -> object:
    try:
        return inventory.parse_inventory(inventory.read_yaml(path), str(path))
    except InventoryError as e:
        return ("error", [str(p) for p in e.problems])


def _split(path: Path) -> object:
    try:
        return inventory._parse_file(path)
    except InventoryError as e:
        return ("error", [str(p) for p in e.problems])


@pytest.mark.parametrize("name", list(LAYOUTS))
def test_pieces_read_as_the_whole(tmp_path: Path, name: str) -> None:
    path = tmp_path / "inv.yaml"
    path.write_text(LAYOUTS[name])
    assert split_nodes(LAYOUTS[name]) is not None  # really read in pieces
    assert _split(path) == _whole(path)


@pytest.mark.parametrize("name", list(WHOLE))
def test_unsafe_files_are_read_whole(tmp_path: Path, name: str) -> None:
    assert split_nodes(WHOLE[name]) is None
    path = tmp_path / "inv.yaml"
    path.write_text(WHOLE[name])
    assert _split(path) == _whole(path)


def test_items_counted_per_piece() -> None:
    split = split_nodes(LAYOUTS["block"])
    assert split is not None
    assert [n for _, n in split.pieces(3)] == [3, 3, 1]
    assert split.head == HEAD + "nodes:\n"


@pytest.mark.parametrize(
    "bad",
    [
        "  - {name: a, ip: 10.0.0.1\n",  # a flow mapping never closed
        "  - {name: a, ip: 10.0.0.1}\n    ip: 10.0.0.2\n",  # junk after a flow item
        "  - name: a\n    name: b\n",  # a duplicate key inside one item
    ],
)
def test_a_piece_that_does_not_parse_gives_the_whole_documents_error(
    tmp_path: Path, bad: str
) -> None:
    text = HEAD + "nodes:\n  - {name: x, ip: 10.0.0.9}\n  - {name: y, ip: 10.0.0.8}\n" + bad
    path = tmp_path / "inv.yaml"
    path.write_text(text)
    whole = _whole(path)
    assert isinstance(whole, tuple)
    assert "valid YAML" in whole[1][0]
    assert _split(path) == whole


def test_a_duplicate_nodes_key_is_refused_as_before(tmp_path: Path) -> None:
    path = tmp_path / "inv.yaml"
    path.write_text(HEAD + "nodes:\n  - {name: a}\nnodes:\n  - {name: b}\n")
    got = _split(path)
    assert got == _whole(path)
    assert isinstance(got, tuple)
    assert "duplicate" in got[1][0]


def test_a_piece_with_the_wrong_item_count_is_refused() -> None:
    """The last guard: a cut in the wrong place that still parses (here: two items taken
    for one) must not give a cluster; the file is then read whole."""
    split = split_nodes(LAYOUTS["flow"])
    assert split is not None
    wrong = Split(split.head, split.text, [split.starts[0], *split.starts[2:]], split.end)
    with pytest.raises(inventory._CannotSplit):
        inventory._parse_split(wrong, "inv.yaml")


@pytest.mark.parametrize("name", ["block", "anchor and alias"])
def test_the_file_reader_drops_each_node_once_parsed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    """Read in pieces ("block") or whole ("anchor and alias"), the YAML of every node is let go
    once it is parsed: no node list the reader parsed still holds an entry at the end."""
    text = LAYOUTS.get(name) or WHOLE[name]
    path = tmp_path / "inv.yaml"
    path.write_text(text)
    parsed: list[object] = []
    real = inventory._parse_yaml

    def recording(text: str) -> object:
        got = real(text)
        parsed.append(got)
        return got

    monkeypatch.setattr(inventory, "_parse_yaml", recording)
    cluster, problems = inventory._parse_file(path)
    assert problems == []
    assert cluster.nodes
    lists = [d for d in parsed if isinstance(d, list)]
    lists += [d["nodes"] for d in parsed if isinstance(d, dict) and d.get("nodes")]
    assert lists, "no node list was parsed"
    assert all(item is None for items in lists for item in items)


def test_parse_inventory_leaves_the_callers_data_as_it_was() -> None:
    data = {"nodes": [{"name": "a", "ip": "10.0.0.1"}, {"name": "b", "ips": ["10.0.0.2"]}]}
    before = repr(data)
    cluster, problems = inventory.parse_inventory(data, "inv.yaml")
    assert [n.name for n in cluster.nodes] == ["a", "b"]
    assert problems == []
    assert repr(data) == before
