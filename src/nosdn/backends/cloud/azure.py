"""Azure route tables as a nosdn backend (azure-mgmt-network; the only module that imports it).

An Azure virtual network drops packets to addresses it has no route for, so a pod subnet needs a
user-defined route (next hop ``VirtualAppliance``, the node's private address) in the route table
of the nodes' subnet, and the node's NIC needs IP forwarding on. Each managed table is a
`nosdn.backends.cloud.contract.CloudTable`; `AzureRoutes` is the
`nosdn.backends.cloud.contract.CloudProvider`. Why it looks the way it does:

- Ownership is in the route's name: it starts with `nosdn.names.azure_name_prefix` of the
  cluster, and its destination lies in the cluster CIDRs. The operator's routes, other
  clusters', and anything by hand are never touched; one of them to a wanted prefix is a
  conflict. ``nosdn render --format az-cli`` uses the same names, so routes it made are adopted.
- Writes, as cloud-provider-azure learned to make them (``pkg/provider/azure_routes.go``): ARM
  rejects concurrent writes to one table (409 ``AnotherOperationInProgress``), so a pass makes at
  most one update per table: a PUT of the whole route set, with ``If-Match`` the ETag it read.
  A 412 (someone wrote between our read and our write) or 409 is answered by a fresh read, the
  same intent merged onto it (a foreign route added meanwhile is kept, and one to a pod subnet
  becomes a failed write, never overwritten) and another PUT, a bounded number of times.
- Long-running operations (``Azure-AsyncOperation`` / ``Location``) are polled by the SDK; a
  policy in the pipeline refuses any request to a host other than the configured endpoint, so
  a polling URL pointing elsewhere fails the write instead of being followed.
- Retries: azure-core's retry policy retries 408, 429 and 5xx with exponential backoff, and
  honours ``Retry-After``. Every request is counted (``calls``; ``retry:<op>`` for repeats).
- Credentials: azure-identity's ``DefaultAzureCredential`` (environment service principal,
  workload identity, managed identity, Azure CLI). Authentication and authorization failures
  become one `CloudError` line naming the credential, subscription, resource group and table.
  A plain-http endpoint (a local test server) is accepted on loopback only, and gets no
  credentials unless a test hands one in.
"""

from __future__ import annotations

import ipaddress
import json
import re
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

from nosdn.backends.base import ApplyResult, WriteError
from nosdn.backends.cloud.azure_auth import missing_credential
from nosdn.backends.cloud.contract import CloudError, CloudTable
from nosdn.model import Cluster, Diff, InstalledRoute, IPNetwork, Node, Route
from nosdn.names import AZURE_NAME, azure_name_prefix, azure_route_name
from nosdn.problems import Problem

DEFAULT_CAPACITY = 400
QUOTA_HINT = (
    "Azure subscription limit 'Routes per route table' (Networking limits; a support request)"
)
ARM = "https://management.azure.com"
#: The API version of the lists nosdn reads itself (``networkInterfaces``), a stable one.
LIST_API_VERSION = "2024-05-01"
HOP = "VirtualAppliance"
_ID = re.compile(
    r"^/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)/providers/"
    r"Microsoft\.Compute/(?:virtualMachines/(?P<vm>[^/]+)|virtualMachineScaleSets/(?P<ss>[^/]+)"
    r"/virtualMachines/(?P<idx>[^/]+))\Z",
    re.IGNORECASE,
)
_TABLE_ID = re.compile(
    r"^/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)/providers/"
    r"Microsoft\.Network/routeTables/(?P<name>[^/]+)\Z",
    re.IGNORECASE,
)
_VM_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")
#: Resource group names: 1-90 of letters, digits, ``._-()``, not ending in ``.``.
RESOURCE_GROUP = re.compile(r"^[-\w._()]{0,89}[-\w_()]\Z", re.ASCII)
SUBSCRIPTION = re.compile(r"^[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}\Z")
_BUSY = {"AnotherOperationInProgress", "OperationPreempted", "RetryableError", "Conflict"}
_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class AzureConfig:
    """Where the routes go. ``endpoint`` None means ARM's; credentials come from
    ``DefaultAzureCredential`` unless one is given to `AzureRoutes`."""

    subscription: str
    resource_group: str
    #: Tables as ``NAME`` (in ``resource_group``), ``RG/NAME`` or a full resource id.
    route_tables: tuple[str, ...]
    endpoint: str | None = None
    capacity: int = DEFAULT_CAPACITY
    #: NIC updates (IP forwarding on) run at once, each a long-running operation.
    nic_workers: int = 8
    #: PUTs tried per table per pass when the table changed under us (412) or was busy (409).
    write_attempts: int = 5
    retry_total: int = 8
    backoff: float = 0.8
    backoff_max: float = 60.0
    polling_interval: float = 1.0
    operation_timeout: float = 300.0


@dataclass(frozen=True, slots=True)
class TableRef:
    subscription: str
    resource_group: str
    name: str

    @property
    def id(self) -> str:
        return (
            f"/subscriptions/{self.subscription}/resourceGroups/{self.resource_group}"
            f"/providers/Microsoft.Network/routeTables/{self.name}"
        )


def table_ref(text: str, subscription: str, resource_group: str) -> TableRef:
    """A ``--route-table`` value as a table; raises `ValueError` naming what is wrong."""
    if m := _TABLE_ID.match(text):
        sub, rg, name = m.group("sub"), m.group("rg"), m.group("name")
    elif text.count("/") == 1:
        sub, (rg, name) = subscription, text.split("/")
    else:
        sub, rg, name = subscription, resource_group, text
    if not AZURE_NAME.fullmatch(name):
        raise ValueError(
            f"--route-table {text!r}: {name!r} is not an Azure route table name (1-80 of "
            "letters, digits, '._-', starting with a letter or digit)"
        )
    if not RESOURCE_GROUP.fullmatch(rg):
        raise ValueError(f"--route-table {text!r}: {rg!r} is not a resource group name")
    return TableRef(sub, rg, name)


@dataclass(frozen=True, slots=True)
class Instance:
    """A node's VM: a plain VM or a scale-set instance."""

    subscription: str
    resource_group: str
    vm: str = ""
    scale_set: str = ""
    index: str = ""

    @property
    def id(self) -> str:
        base = f"/subscriptions/{self.subscription}/resourceGroups/{self.resource_group}"
        if self.scale_set:
            return (
                f"{base}/providers/Microsoft.Compute/virtualMachineScaleSets/{self.scale_set}"
                f"/virtualMachines/{self.index}"
            )
        return f"{base}/providers/Microsoft.Compute/virtualMachines/{self.vm}"


def instance_of(value: str, subscription: str, resource_group: str) -> Instance | None:
    """The VM an inventory ``instanceId`` or a Node's ``spec.providerID`` names
    (``azure:///subscriptions/.../virtualMachines/NAME``, a scale-set instance, a resource id, or
    a VM name in ``resource_group``), or None if it is none of them."""
    value = value.strip()
    if value.startswith("azure://"):
        value = value[len("azure://") :]
    if m := _ID.match(value):
        if m.group("vm"):
            return Instance(m.group("sub"), m.group("rg"), vm=m.group("vm"))
        return Instance(
            m.group("sub"), m.group("rg"), scale_set=m.group("ss"), index=m.group("idx")
        )
    if _VM_NAME.fullmatch(value):
        return Instance(subscription, resource_group, vm=value)
    return None


def _dst(text: Any) -> IPNetwork | None:
    try:
        return ipaddress.ip_network(str(text))
    except ValueError:
        return None  # a service tag (``AzureCloud``): never a pod subnet


def _in(dst: IPNetwork, cidrs: Iterable[IPNetwork]) -> bool:
    return any(dst.version == c.version and dst.subnet_of(c) for c in cidrs)  # type: ignore[arg-type]


def _props(raw: dict[str, Any]) -> dict[str, Any]:
    p = raw.get("properties")
    return p if isinstance(p, dict) else {}


class _OffEndpoint(Exception):
    """A request (a polling URL, a redirect) to a host other than the configured endpoint."""


@dataclass(slots=True)
class _Table:
    """One table as read: its ETag, location, tags and raw routes."""

    ref: TableRef
    etag: str
    body: dict[str, Any]
    routes: list[dict[str, Any]] = field(default_factory=list)


class AzureRouteTable:
    """One managed route table, as read at the start of the pass."""

    name = "azure"
    quota_hint = QUOTA_HINT

    def __init__(self, owner: AzureRoutes, cluster: Cluster, table: _Table) -> None:
        self._owner = owner
        self._cluster = cluster
        self._table = table
        self.table_id = table.ref.name
        self.capacity: int | None = owner.config.capacity
        self.used = len(table.routes)

    def routes(self) -> list[InstalledRoute]:
        return [r for raw in self._table.routes if (r := self._owner.parse(raw, self._cluster))]

    def apply(self, diff: Diff) -> ApplyResult:
        return self._owner.write(self._cluster, self._table, diff)


class AzureRoutes:
    """The Azure side of a pass: one Network client on one endpoint, NIC checks, the tables."""

    name = "azure"

    def __init__(self, config: AzureConfig, credential: Any | None = None) -> None:
        from azure.core.pipeline.policies import SansIOHTTPPolicy
        from azure.mgmt.network import NetworkManagementClient

        self.config = config
        self.calls: Counter[str] = Counter()
        self._count_lock = threading.Lock()
        self.refs = [
            table_ref(t, config.subscription, config.resource_group) for t in config.route_tables
        ]
        endpoint = (config.endpoint or ARM).rstrip("/")
        url = urllib.parse.urlsplit(endpoint)
        self._host = url.netloc
        self._endpoint = endpoint
        loopback = url.hostname in ("127.0.0.1", "::1", "localhost")
        if url.scheme != "https" and not (url.scheme == "http" and loopback):
            raise CloudError(
                f"--azure-endpoint {endpoint}: use https:// (plain http only for a local test "
                "server on loopback)"
            )
        self._credential_kind = type(credential).__name__ if credential else ""
        anonymous = credential is None and url.scheme == "http"
        if anonymous:
            self._credential_kind = "none: a local test endpoint"
        elif credential is None:
            try:
                from azure.identity import DefaultAzureCredential

                credential = DefaultAzureCredential(exclude_interactive_browser_credential=True)
            except Exception as e:  # a broken environment (bad AZURE_* values)
                raise CloudError(f"cannot set up Azure credentials: {e}") from e
            self._credential_kind = "DefaultAzureCredential"
        owner = self

        class Count(SansIOHTTPPolicy):  # type: ignore[type-arg]
            """Per call: marks the request fresh, so the per-try policy can tell retries."""

            def on_request(self, request: Any) -> None:
                request.context["nosdn_fresh"] = True

        class Guard(SansIOHTTPPolicy):  # type: ignore[type-arg]
            """Per try: counts, and refuses any request not addressed to the endpoint."""

            def on_request(self, request: Any) -> None:
                req = request.http_request
                target = urllib.parse.urlsplit(req.url)
                if target.netloc != owner._host:
                    raise _OffEndpoint(f"{req.method} {target.netloc}{target.path}")
                op = _op_name(req.method, target.path)
                fresh = request.context.get("nosdn_fresh")
                request.context["nosdn_fresh"] = False
                with owner._count_lock:  # NIC updates and their pollers run in threads
                    owner.calls[op if fresh else "retry:" + op] += 1

        kw: dict[str, Any] = {
            "base_url": endpoint,
            "per_call_policies": [Count()],
            "per_retry_policies": [Guard()],
            "retry_total": config.retry_total,
            "retry_status": config.retry_total,  # azure-core stops at 3 bad statuses otherwise
            "retry_backoff_factor": config.backoff,
            "retry_backoff_max": config.backoff_max,
            "polling_interval": config.polling_interval,
        }
        if anonymous:
            kw["authentication_policy"] = SansIOHTTPPolicy()  # sends no Authorization
        elif url.scheme == "http":  # azure-core sends bearer tokens over TLS only
            kw["authentication_policy"] = _loopback_bearer(credential)
        self.client = NetworkManagementClient(credential or _NoToken(), config.subscription, **kw)
        self._cluster: Cluster | None = None
        self._nics: dict[str, dict[str, Any]] = {}  # VM id (lowercase) -> its primary NIC
        self._listed: set[str] = set()
        self._forward: dict[str, tuple[Instance, dict[str, Any]]] = {}
        self._hops: tuple[Cluster, dict[Any, str]] | None = None
        self._by_name: tuple[Cluster, dict[str, Node]] | None = None

    # --- calls ----------------------------------------------------------------------------
    def _where(self, ref: TableRef | None = None) -> str:
        where = f"subscription {self.config.subscription}"
        rg = ref.resource_group if ref else self.config.resource_group
        where += f", resource group {rg}"
        if ref is not None:
            where += f", route table {ref.name}"
        return where

    def _api(self, what: str, ref: TableRef | None, fn: Callable[[], _T]) -> _T:
        """Run one SDK call; authentication, authorization, endpoint and transport failures
        become one `CloudError` line. Other HTTP errors are raised as they are."""
        from azure.core.exceptions import (
            ClientAuthenticationError,
            HttpResponseError,
            ServiceRequestError,
        )

        try:
            return fn()
        except ClientAuthenticationError as e:
            raise CloudError(
                f"Azure authentication failed ({self._credential_kind}) {what} in "
                f"{self._where(ref)}: {_first_line(e)}; {missing_credential()}"
            ) from e
        except _OffEndpoint as e:
            raise CloudError(f"{what}: refused a request off the endpoint {self._host}: {e}") from e
        except HttpResponseError as e:
            if e.status_code == 403:
                raise CloudError(
                    f"Azure refused {what} in {self._where(ref)} ({self._credential_kind}): "
                    f"{_code(e)}: {_first_line(e)}; grant the identity Network Contributor on "
                    "the route table and the nodes' NICs (routeTables read/write, "
                    "networkInterfaces read/write)"
                ) from e
            raise
        except ServiceRequestError as e:
            raise CloudError(f"{what}: cannot reach {self._host}: {_first_line(e)}") from e

    def _finish(self, poller: Any) -> None:
        """Wait for a long-running write to end (its errors raised), without building the
        SDK's model of the final resource: nothing reads it, and for a table it is every route
        once more."""
        poller.wait(timeout=self.config.operation_timeout)
        if not poller.done():
            raise CloudError(
                f"the operation did not finish within {self.config.operation_timeout:.0f} s"
            )

    def _pages(self, path: str) -> list[dict[str, Any]]:
        """Every item of an ARM list, page after page (``nextLink``), as plain JSON, through
        the client's pipeline (credentials, retries, the endpoint guard, the counting)."""
        from azure.core.exceptions import (
            ClientAuthenticationError,
            HttpResponseError,
            ResourceNotFoundError,
            map_error,
        )
        from azure.core.rest import HttpRequest
        from azure.mgmt.core.exceptions import ARMErrorFormat

        url: str | None = f"{self._endpoint}{path}?api-version={LIST_API_VERSION}"
        items: list[dict[str, Any]] = []
        while url:
            resp = self.client.send_request(HttpRequest("GET", url))
            if resp.status_code != 200:
                errors = {401: ClientAuthenticationError, 404: ResourceNotFoundError}
                map_error(status_code=resp.status_code, response=resp, error_map=errors)
                raise HttpResponseError(response=resp, error_format=ARMErrorFormat)
            body = resp.json()
            items.extend(x for x in body.get("value") or [] if isinstance(x, dict))
            url = body.get("nextLink") or None
        return items

    def read_table(self, ref: TableRef) -> _Table:
        from azure.core.exceptions import HttpResponseError, ResourceNotFoundError

        what = "reading the route table"
        try:
            rt = self._api(
                what,
                ref,
                # the bytes, not the SDK's models: a table of thousands of routes is read every
                # pass, and building an SDK model per route is most of such a read
                lambda: json.loads(
                    b"".join(
                        cast(
                            Iterable[bytes],
                            self.client.route_tables.get(ref.resource_group, ref.name, stream=True),
                        )
                    )
                ),
            )
        except ResourceNotFoundError as e:
            code = _code(e)
            if code == "SubscriptionNotFound":
                raise CloudError(
                    f"no subscription {ref.subscription} ({code}) reading route table {ref.name}: "
                    "fix --azure-subscription (AZURE_SUBSCRIPTION_ID) or the table's resource id"
                ) from e
            if code == "ResourceGroupNotFound":
                raise CloudError(
                    f"no resource group {ref.resource_group} in subscription {ref.subscription} "
                    f"({code}) reading route table {ref.name}: fix --azure-resource-group "
                    "or --route-table RG/NAME"
                ) from e
            raise CloudError(
                f"no route table {ref.name} in {self._where(ref)} ({code}): create it and "
                "associate it with the nodes' subnet, or fix --route-table"
            ) from e
        except HttpResponseError as e:
            raise CloudError(f"{what} {ref.id}: {_code(e)}: {_first_line(e)}") from e
        body = rt if isinstance(rt, dict) else {}
        routes = list(_props(body).get("routes") or [])
        return _Table(ref, str(body.get("etag") or ""), body, routes)

    # --- CloudProvider --------------------------------------------------------------------
    def resolve(self, cluster: Cluster) -> tuple[dict[str, str], list[Problem]]:
        self._cluster = cluster
        instances: dict[str, str] = {}
        problems: list[Problem] = []
        for n in cluster.nodes:
            if not n.pod_cidrs:
                continue
            value = n.instance_id or n.name
            inst = instance_of(value, self.config.subscription, self.config.resource_group)
            if inst is None:
                problems.append(
                    Problem(
                        n.name,
                        "instanceId",
                        n.instance_id or f"(none: the node name {n.name!r})",
                        "is not an Azure VM name, resource id or providerID",
                        "write the VM as NAME (in --azure-resource-group), its resource id, or "
                        "azure:///subscriptions/.../virtualMachines/NAME",
                    )
                )
            else:
                instances[n.name] = inst.id
        owners: dict[str, list[str]] = {}
        for node, vm in instances.items():
            owners.setdefault(vm.lower(), []).append(node)
        for nodes in owners.values():
            if len(nodes) > 1:
                for node in nodes:
                    problems.append(
                        Problem(
                            node,
                            "instanceId",
                            instances.pop(node),
                            f"is also the VM of {', '.join(x for x in nodes if x != node)}",
                            "every node is its own VM; fix the inventory",
                        )
                    )
        return instances, problems

    def tables(self, cluster: Cluster, instances: dict[str, str]) -> list[CloudTable]:
        self._cluster = cluster
        if not self.refs:
            raise CloudError(
                "--cloud azure needs the route table: pass --route-table NAME (the table "
                "associated with the nodes' subnet; repeat for several)"
            )
        return [AzureRouteTable(self, cluster, self.read_table(ref)) for ref in self.refs]

    def parse(self, raw: dict[str, Any], cluster: Cluster) -> InstalledRoute | None:
        """One route of a table as nosdn sees it: ours when its name has the cluster's prefix
        and its destination lies in the cluster CIDRs."""
        p = _props(raw)
        dst = _dst(p.get("addressPrefix"))
        if dst is None:
            return None
        name = str(raw.get("name") or "")
        owned = name.startswith(azure_name_prefix(cluster.name)) and _in(dst, cluster.cluster_cidrs)
        hop_type = str(p.get("nextHopType") or "?")
        via: tuple[Any, ...] = ()
        hop = hop_type
        if hop_type == HOP and (ip := _ip(p.get("nextHopIpAddress"))) is not None:
            via = (ip,)
            hop = f"{ip}"
            who = self._hop_names(cluster).get(ip)
            if who is not None:
                hop += f" (node {who})"
        return InstalledRoute(
            dst,
            via,
            owned,
            "nosdn" if owned else f"route {name}",
            f"{dst} -> {hop} [route {name}]",
            name,
        )

    def _hop_names(self, cluster: Cluster) -> dict[Any, str]:
        """Node address -> node name, built once per cluster (a table of N routes is parsed
        in N lookups, not N searches of the nodes)."""
        known = self._hops
        if known is None or known[0] is not cluster:
            names: dict[Any, str] = {}
            for n in cluster.nodes:
                for a in n.ips:
                    names.setdefault(a, n.name)
            known = self._hops = (cluster, names)
        return known[1]

    def _node(self, name: str) -> Node | None:
        cluster = self._cluster
        if cluster is None:
            return None
        if self._by_name is None or self._by_name[0] is not cluster:
            self._by_name = (cluster, {n.name: n for n in reversed(cluster.nodes)})
        return self._by_name[1].get(name)

    def _list_nics(self, inst: Instance) -> None:
        """Read the NICs of the instance's resource group (or scale set) once per pass."""
        key = f"{inst.resource_group}/{inst.scale_set}".lower()
        if key in self._listed:
            return
        self._listed.add(key)
        what = f"listing the network interfaces of {inst.scale_set or inst.resource_group}"
        base = f"/subscriptions/{inst.subscription}/resourceGroups/{inst.resource_group}/providers"
        if inst.scale_set:
            path = f"{base}/Microsoft.Compute/virtualMachineScaleSets/{inst.scale_set}"
            path += "/networkInterfaces"
        else:
            path = f"{base}/Microsoft.Network/networkInterfaces"

        def read() -> list[dict[str, Any]]:
            return self._pages(path)

        from azure.core.exceptions import HttpResponseError

        try:
            found = self._api(what, None, read)
        except HttpResponseError as e:
            raise CloudError(f"{what}: {_code(e)}: {_first_line(e)}") from e
        for nic in found:
            vm = _props(nic).get("virtualMachine") or {}
            vm_id = str(vm.get("id") or "").lower()
            if not vm_id:
                continue
            if vm_id not in self._nics or _props(nic).get("primary"):
                self._nics[vm_id] = nic

    def check_targets(self, targets: dict[str, str]) -> tuple[list[Problem], list[str]]:
        self._listed = set()
        self._nics = {}
        self._forward = {}
        problems: list[Problem] = []
        notes: list[str] = []
        for node, vm_id in sorted(targets.items()):
            inst = instance_of(vm_id, self.config.subscription, self.config.resource_group)
            assert inst is not None
            self._list_nics(inst)
            nic = self._nics.get(vm_id.lower())
            label = inst.vm or f"{inst.scale_set}/{inst.index}"
            if nic is None:
                problems.append(
                    Problem(
                        node,
                        "instanceId",
                        vm_id,
                        f"no network interface in resource group {inst.resource_group} is "
                        f"attached to VM {label}",
                        "fix instanceId (or the Node's providerID) to name the node's VM",
                    )
                )
                continue
            n = self._node(node)
            addresses = {
                str(_props(c).get("privateIPAddress") or "")
                for c in _props(nic).get("ipConfigurations") or []
            }
            mine = [str(ip) for ip in (n.ips if n else ()) if str(ip) in addresses]
            if n is not None and not mine:
                problems.append(
                    Problem(
                        node,
                        "ip",
                        ", ".join(str(ip) for ip in n.ips),
                        f"is not an address of NIC {nic.get('name')} of VM {label} (it has "
                        f"{', '.join(sorted(addresses)) or 'none'})",
                        "fix the node's address, or its instanceId",
                    )
                )
                continue
            if not _props(nic).get("enableIPForwarding"):
                self._forward[node] = (inst, nic)
        return problems, notes

    def prepare_targets(self, targets: dict[str, str]) -> list[str]:
        from azure.core.exceptions import HttpResponseError

        notes: list[str] = []
        jobs: list[tuple[str, str, Callable[[], Any]]] = []
        for node in sorted(targets):
            if node not in self._forward:
                continue
            inst, nic = self._forward[node]
            name = str(nic.get("name") or "")
            if inst.scale_set:
                notes.append(
                    f"NIC {name} of scale set {inst.scale_set} instance {inst.index} (node {node}) "
                    "has IP forwarding off and Azure drops its pods' traffic: set "
                    "enableIPForwarding in the scale set's network profile (az vmss update "
                    "... --set virtualMachineProfile.networkProfile.networkInterfaceConfigurations"
                    "[0].enableIPForwarding=true), then update the instances"
                )
                continue
            body = dict(nic)
            body["properties"] = {**_props(nic), "enableIPForwarding": True}
            etag = str(nic.get("etag") or "")
            rg = str(nic.get("id", "")).split("/")[4] if nic.get("id") else inst.resource_group

            def put(
                rg: str = rg, name: str = name, body: dict[str, Any] = body, etag: str = etag
            ) -> Any:
                poller = self.client.network_interfaces.begin_create_or_update(
                    rg, name, cast(Any, body), headers={"If-Match": etag} if etag else {}
                )
                return self._finish(poller)

            jobs.append((node, name, put))

        def run(job: tuple[str, str, Callable[[], Any]]) -> str:
            node, name, put = job
            try:
                self._api(f"turning on IP forwarding on NIC {name}", None, put)
                return f"turned on IP forwarding on NIC {name} (node {node})"
            except (HttpResponseError, CloudError) as e:
                return (
                    f"could not turn on IP forwarding on NIC {name} (node {node}); Azure will "
                    f"drop its pods' traffic: {_first_line(e)}"
                )

        # Each NIC update is its own long-running operation on its own resource (no table
        # lock): a few at once, so a new cluster's first pass waits for them ~workers times
        # less, while staying far below ARM's write rate limits.
        if len(jobs) <= 1 or self.config.nic_workers <= 1:
            notes.extend(run(j) for j in jobs)
        else:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(min(self.config.nic_workers, len(jobs))) as pool:
                notes.extend(pool.map(run, jobs))  # in node order, as they were started
        return notes

    # --- writes ---------------------------------------------------------------------------
    def write(self, cluster: Cluster, table: _Table, diff: Diff) -> ApplyResult:
        """One PUT of the whole route set with ``If-Match``; on 412/409 a fresh read, the same
        intent merged onto it, and another PUT, up to ``write_attempts`` times."""
        from azure.core.exceptions import HttpResponseError

        result = ApplyResult()
        current = table
        last = ""
        for attempt in range(self.config.write_attempts):
            if attempt:
                current = self.read_table(table.ref)
            routes, changed, lost = self._merge(cluster, current, diff)
            if not changed:
                result.errors.extend(lost)
                return result  # someone else's write already made it so
            body = {
                "location": current.body.get("location"),
                "tags": current.body.get("tags") or {},
                "properties": {
                    k: v
                    for k, v in _props(current.body).items()
                    if k in ("disableBgpRoutePropagation",)
                }
                | {"routes": routes},
            }
            ref = table.ref

            def put(
                body: dict[str, Any] = body, etag: str = current.etag, ref: TableRef = ref
            ) -> Any:
                poller = self.client.route_tables.begin_create_or_update(
                    ref.resource_group, ref.name, cast(Any, body), headers={"If-Match": etag}
                )
                return self._finish(poller)

            try:
                self._api("writing the route table", ref, put)
            except HttpResponseError as e:
                code = _code(e)
                last = f"{code}: {_first_line(e)}"
                if e.status_code == 412 or (e.status_code == 409 and code in _BUSY):
                    self.calls[f"refused:{e.status_code}"] += 1
                    if e.status_code == 409:
                        time.sleep(min(self.config.backoff * 2**attempt, self.config.backoff_max))
                    continue
                break
            except CloudError as e:
                last = str(e)
                break
            result.writes += changed
            result.errors.extend(lost)
            return result
        for r in [*diff.add, *(c.new for c in diff.change)]:
            result.errors.append(WriteError(r.dst, r.node, "add", last or "not written"))
        for old in diff.remove:
            result.errors.append(WriteError(old.dst, None, "remove", last or "not written"))
        return result

    def _merge(
        self, cluster: Cluster, table: _Table, diff: Diff
    ) -> tuple[list[dict[str, Any]], int, list[WriteError]]:
        """The table's routes with the diff's intent applied: (routes, route writes, routes
        that someone else took between our read and this one)."""
        want: dict[IPNetwork, Route] = {r.dst: r for r in diff.keep}
        new = [*diff.add, *(c.new for c in diff.change)]
        want.update((r.dst, r) for r in new)
        drop = {r.dst for r in diff.remove}
        out: list[dict[str, Any]] = []
        lost: list[WriteError] = []
        changed = 0
        satisfied: set[IPNetwork] = set()
        for raw in table.routes:
            got = self.parse(raw, cluster)
            if got is None:
                out.append(raw)
                continue
            if not got.owned:
                out.append(raw)
                if got.dst in want and any(r.dst == got.dst for r in new):
                    r = want.pop(got.dst)
                    lost.append(
                        WriteError(r.dst, r.node, "add", f"taken by {got.detail} meanwhile")
                    )
                continue
            wanted = want.get(got.dst)
            if wanted is not None and got.via == wanted.via[:1] and got.dst not in satisfied:
                satisfied.add(got.dst)
                out.append(raw)
            elif wanted is None and got.dst not in drop:
                out.append(raw)  # ours, not in this pass's plan (a node left alone)
            else:
                changed += 1
        for dst, r in want.items():
            if dst in satisfied:
                continue
            node = r.node or "services"
            out.append(
                {
                    "name": azure_route_name(cluster.name, node, str(dst)),
                    "properties": {
                        "addressPrefix": str(dst),
                        "nextHopType": HOP,
                        "nextHopIpAddress": str(r.via[0]),
                    },
                }
            )
            changed += 1
        return out, changed, lost


def _op_name(method: str, path: str) -> str:
    parts = [p for p in path.split("/") if p]
    kinds = [i for i, p in enumerate(parts) if p in ("routeTables", "networkInterfaces")]
    if not kinds:
        return "operations.get" if method == "GET" else f"{method.lower()}.other"
    i = kinds[-1]
    kind = (
        "routes" if parts[i] == "routeTables" and parts[i + 2 : i + 3] == ["routes"] else parts[i]
    )
    listing = parts[-1] == kind
    verb = {"GET": "list" if listing else "get", "PUT": "createOrUpdate"}.get(
        method, method.lower()
    )
    return f"{kind}.{verb}"


def _ip(text: Any) -> Any:
    try:
        return ipaddress.ip_address(str(text))
    except ValueError:
        return None


def _code(e: Any) -> str:
    err = getattr(e, "error", None)
    return str(getattr(err, "code", None) or getattr(e, "reason", None) or type(e).__name__)


def _first_line(e: BaseException) -> str:
    err = getattr(e, "error", None)
    msg = str(getattr(err, "message", None) or e)
    return msg.strip().splitlines()[0] if msg.strip() else type(e).__name__


class _NoToken:
    """The credential of an anonymous client (its authentication policy never asks)."""

    def get_token(self, *_: Any, **__: Any) -> Any:
        raise CloudError("no Azure credential for this endpoint")


def _loopback_bearer(credential: Any) -> Any:
    """Bearer tokens for a plain-http loopback endpoint (a local test server)."""
    from azure.core.pipeline.policies import SansIOHTTPPolicy

    class Bearer(SansIOHTTPPolicy):  # type: ignore[type-arg]
        def on_request(self, request: Any) -> None:
            token = credential.get_token(ARM + "/.default")
            request.http_request.headers["Authorization"] = f"Bearer {token.token}"

    return Bearer()
