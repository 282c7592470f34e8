"""`nosdn.sources.select` without click: where the nodes come from, from values, the names given
on a command line and an environment (no root, no API)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from nosdn.sources.nodes import DEFAULT_ADDRESS_TYPES as TYPES
from nosdn.sources.select import (
    DEFAULT_ADDRESS_TYPES,
    ClusterSource,
    SourceChoiceError,
    address_policy,
    choose,
    networks,
)


def pick(
    given: frozenset[str] | set[str] = frozenset(), environ: dict[str, str] | None = None, **kw: Any
) -> ClusterSource:
    values: dict[str, Any] = {
        "file": None,
        "kubeconfig": None,
        "kube_server": None,
        "context": None,
        "cluster_cidr": (),
        "address_types": DEFAULT_ADDRESS_TYPES,
        "address_cidr": (),
        "required": True,
    }
    values.update(kw)
    return choose(**values, given=given, environ=environ or {})


def test_an_inventory_and_an_api_server_exclude_each_other() -> None:
    with pytest.raises(SourceChoiceError, match=r"-f inv.yaml and --kube-server both say"):
        pick({"file"}, file=Path("inv.yaml"), kube_server="https://10.0.0.1:6443")


def test_an_api_option_beats_an_inventory_from_the_environment() -> None:
    """$NOSDN_INVENTORY gives a file without it being given on the command line."""
    src = pick(file=Path("inv.yaml"), kubeconfig="/k")
    assert (src.kind, src.file, src.kubeconfig) == ("kube", None, "/k")


def test_node_options_with_an_inventory_say_which_inventory() -> None:
    with pytest.raises(SourceChoiceError, match=r"\(\$NOSDN_INVENTORY inv.yaml\) says that"):
        pick({"cluster_cidr"}, file=Path("inv.yaml"), cluster_cidr=("10.244.0.0/16",))


def test_kubeconfig_from_the_environment_reads_the_api() -> None:
    assert pick(environ={"KUBECONFIG": "/k"}).kind == "kube"


def test_nothing_given_is_refused_only_where_nodes_are_needed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.kube/config
    with pytest.raises(SourceChoiceError, match="no nodes to work from"):
        pick()
    assert pick(required=False).kind is None


def test_a_server_without_a_scheme_is_refused_with_the_fix() -> None:
    with pytest.raises(SourceChoiceError, match=r"give a URL with its scheme, e.g. https://"):
        pick(kube_server="10.0.0.1:6443")


def test_bad_option_values_name_the_option() -> None:
    with pytest.raises(ValueError, match=r"--cluster-cidr '10.244.0.0/33': not a network"):
        networks(["10.244.0.0/16,10.244.0.0/33"], "--cluster-cidr")
    with pytest.raises(ValueError, match=r"--node-address-types"):
        address_policy(" , ", ())
    assert address_policy(DEFAULT_ADDRESS_TYPES, ()).types == TYPES
