"""Where a command's nodes come from, decided before anything is read, and one read of them.

An inventory file, or the cluster's Node objects from the Kubernetes API: which one follows
from what was given on the command line and from the environment (``$KUBECONFIG``, a pod's
service account, kubectl's ``~/.kube/config``), with every contradiction refused up front.
Usable without click: a caller hands over the values and the names of those given on its
command line; a refusal is a `SourceChoiceError`, a bad option value a `ValueError`, and an
API that cannot be read a `SourceError`, each with a message that names the option or the
server and what to do.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from nosdn.echo import echo
from nosdn.model import IPNetwork

if TYPE_CHECKING:
    from nosdn.sources.errors import ApiError
    from nosdn.sources.kubernetes import KubeApi
    from nosdn.sources.listing import NodeList
    from nosdn.sources.nodes import AddressPolicy

#: `nosdn.sources.nodes.DEFAULT_ADDRESS_TYPES`, as the option's text (a test keeps them equal).
DEFAULT_ADDRESS_TYPES = "InternalIP,ExternalIP"
#: Where a pod's service account token is (the in-cluster configuration reads it).
SERVICE_ACCOUNT_TOKEN = Path("/var/run/secrets/kubernetes.io/serviceaccount/token")


@dataclass(frozen=True, slots=True)
class ClusterSource:
    """Where one command's nodes come from: ``kind`` "file" (``file``), "kube" (the rest), or
    None (nothing given; only commands that can do without nodes get one)."""

    kind: Literal["file", "kube"] | None
    file: Path | None = None
    kubeconfig: str | None = None
    kube_server: str | None = None
    context: str | None = None
    cluster_cidrs: tuple[str, ...] = ()
    address_types: str = DEFAULT_ADDRESS_TYPES
    address_cidrs: tuple[str, ...] = ()

    @property
    def what(self) -> str:
        """The nodes' source, as a message names it ("no such node in ...")."""
        return "the inventory" if self.kind == "file" else "the cluster's Node objects"

    def argv(self) -> list[str]:
        """The options that name this source again, for a command line to paste (what came
        from the environment stays there)."""
        if self.kind == "file":
            return ["-f", str(self.file)]
        out: list[str] = []
        for flag, value in (
            ("--kubeconfig", self.kubeconfig),
            ("--kube-server", self.kube_server),
            ("--context", self.context),
        ):
            if value is not None:
                out += [flag, value]
        for cidr in self.cluster_cidrs:
            out += ["--cluster-cidr", cidr]
        if self.address_types != DEFAULT_ADDRESS_TYPES:
            out += ["--node-address-types", self.address_types]
        for cidr in self.address_cidrs:
            out += ["--node-address-cidr", cidr]
        return out


def default_kubeconfig() -> Path:
    """kubectl's kubeconfig when nothing names one: ``~/.kube/config``. A command that needs
    nodes and was given no source reads it, as kubectl would."""
    return Path.home() / ".kube" / "config"


def in_cluster(environ: Mapping[str, str] = os.environ) -> bool:
    """Running in a pod with a service account (what the in-cluster configuration needs)."""
    return bool(environ.get("KUBERNETES_SERVICE_HOST")) and SERVICE_ACCOUNT_TOKEN.exists()


class SourceChoiceError(ValueError):
    """The options contradict each other, or no source can be found: nothing was read."""


def choose(
    *,
    file: Path | None,
    kubeconfig: str | None,
    kube_server: str | None,
    context: str | None,
    cluster_cidr: tuple[str, ...],
    address_types: str,
    address_cidr: tuple[str, ...],
    given: Collection[str],
    required: bool,
    environ: Mapping[str, str] = os.environ,
) -> ClusterSource:
    """Decide where nodes come from. ``given``: the names (``file``, ``cluster_cidr``,
    ``address_types``, ``address_cidr``) whose value came from the command line, not from a
    default or the environment (``$NOSDN_INVENTORY`` gives ``file`` without giving it)."""
    api = [
        f"--{name.replace('_', '-')}"
        for name, value in (
            ("kubeconfig", kubeconfig),
            ("kube_server", kube_server),
            ("context", context),
        )
        if value is not None
    ]
    node = [
        flag
        for name, flag in (
            ("cluster_cidr", "--cluster-cidr"),
            ("address_types", "--node-address-types"),
            ("address_cidr", "--node-address-cidr"),
        )
        if name in given
    ]
    if kube_server is not None and not kube_server.startswith(("https://", "http://")):
        raise SourceChoiceError(
            f"--kube-server {echo(kube_server)}: give a URL with its scheme, e.g. "
            f"https://{echo(kube_server)} (or http:// for a plain proxy such as kubectl proxy)"
        )
    kind: Literal["file", "kube"] | None = None
    if file is not None and ("file" in given or not api):
        if api:
            raise SourceChoiceError(
                f"-f {file} and {api[0]} both say where the nodes come from: give one of them"
            )
        if node:
            how = "-f" if "file" in given else "$NOSDN_INVENTORY"
            raise SourceChoiceError(
                f"{node[0]} is for nodes read from the Kubernetes API, and the inventory "
                f"({how} {file}) says that itself (clusterCIDRs, ips)"
            )
        kind = "file"
    elif api or node or environ.get("KUBECONFIG") or in_cluster(environ):
        kind = "kube"
        file = None
    elif required and default_kubeconfig().is_file():  # as kubectl: ~/.kube/config
        kind = "kube"
        file = None
        kubeconfig = str(default_kubeconfig())
    elif required:
        raise SourceChoiceError(
            "no nodes to work from: give the inventory with -f FILE (or $NOSDN_INVENTORY), or "
            "read the cluster's Node objects with --kubeconfig FILE or --kube-server URL "
            "(or $KUBECONFIG)"
        )
    return ClusterSource(
        kind,
        file,
        kubeconfig,
        kube_server,
        context,
        cluster_cidr,
        address_types,
        address_cidr,
    )


def networks(values: Sequence[str], option: str) -> tuple[IPNetwork, ...]:
    """Networks from repeated and/or comma-separated values; `ValueError` naming a bad one."""
    from nosdn.addr import parse_net

    out: list[IPNetwork] = []
    for text in values:
        for raw in text.split(","):
            part = raw.strip()
            if not part:
                continue
            try:
                out.append(parse_net(part))
            except ValueError as e:
                raise ValueError(
                    f"{option} {part!r}: not a network ({e}) — e.g. 10.244.0.0/16"
                ) from None
    return tuple(out)


def address_policy(types: str, cidrs: Sequence[str]) -> AddressPolicy:
    """The `AddressPolicy` of ``--node-address-types`` and ``--node-address-cidr``
    (`ValueError` if it cannot be one)."""
    from nosdn.sources.nodes import AddressPolicy

    nets = networks(cidrs, "--node-address-cidr")
    try:
        return AddressPolicy(tuple(t.strip() for t in types.split(",") if t.strip()), nets)
    except ValueError as e:
        raise ValueError(f"--node-address-types: {e}") from None


class SourceError(Exception):
    """The Kubernetes API could not be read; the message says which and why."""


def open_api(source: ClusterSource) -> KubeApi:
    """A client of ``source``'s API server (`SourceError` if it cannot be set up)."""
    from nosdn.sources.errors import ApiError
    from nosdn.sources.kubernetes import KubeApi, KubeSettings

    settings = KubeSettings(
        server=source.kube_server, kubeconfig=source.kubeconfig, context=source.context
    )
    try:
        return KubeApi(settings)
    except ApiError as e:
        raise SourceError(str(e)) from None


def read_nodes(source: ClusterSource) -> tuple[NodeList, str]:
    """One list of the cluster's Nodes, built and checked (`nosdn.sources.listing`), and the
    server it came from. `SourceError` when the API cannot be read, `ValueError` on a bad
    option value (both before any request for the latter)."""
    from nosdn.sources.errors import ApiError
    from nosdn.sources.listing import list_cluster

    policy = address_policy(source.address_types, source.address_cidrs)
    cidrs = networks(source.cluster_cidrs, "--cluster-cidr")
    try:
        api = open_api(source)
    except SourceError as e:
        raise SourceError(f"{e} (or give the inventory with -f FILE)") from None
    try:
        return list_cluster(api, policy=policy, cluster_cidrs=cidrs), api.server
    except ApiError as e:
        raise SourceError(
            f"cannot read the Nodes from the Kubernetes API at {api.server}: {e} — {api_fix(e)}"
        ) from None
    finally:
        api.close()


def api_fix(e: ApiError) -> str:
    """What to do about a failed read, by how it failed."""
    text = str(e)
    if e.status == 401:
        return (
            "the server refused the credentials (an expired or wrong token or certificate): "
            "get a fresh kubeconfig"
        )
    if e.status == 403:
        return (
            "this account may not list Nodes: use one bound to the ClusterRole `nosdn "
            "manifests` prints, or an admin kubeconfig"
        )
    if "CERTIFICATE_VERIFY_FAILED" in text or "SSLError" in text:
        return (
            "the server's certificate is not signed by the kubeconfig's certificate-authority: "
            "check the kubeconfig's cluster entry"
        )
    if e.status == 0:
        return "is the server up and its address right? (check with: kubectl get nodes)"
    return "check the server with: kubectl get nodes"
