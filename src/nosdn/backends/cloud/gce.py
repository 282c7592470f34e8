"""GCE routes as a nosdn backend (google-cloud-compute; the only module that imports it).

A GCE VPC network has one route collection, so the network is the one "table"
(`GceNetworkTable`); `GceRoutes` is the `nosdn.backends.cloud.contract.CloudProvider`. Why it
looks the way it does:

- Ownership is written on the route itself: its description says ``nosdn: pods of node N in
  cluster C`` and its name starts with the cluster's name (`route_name`: cluster, node and
  subnet, made a valid GCE name within 63 characters). Routes of other clusters, subnet and
  peering routes, default routes and anything anyone made by hand are never touched; one of them
  to a wanted prefix is a conflict. The rendered ``gcloud`` script uses the same names and
  descriptions, so routes it made are adopted.
- GCE routes are immutable: a next hop change is a delete then an insert. All deletes run
  (and finish) before any insert, so a route keeps its name and a full quota frees room first.
- Writes are operations. google-cloud-compute's own ``insert()`` polls them through a
  GlobalOperationsClient it builds *without* the caller's endpoint (it would ask
  compute.googleapis.com); this backend calls ``insert_unary``/``delete_unary`` and polls
  ``globalOperations.wait`` itself with clients built from the same endpoint and credentials, so
  no request goes anywhere but the endpoint it was given. Every write carries a ``requestId``, so
  a retried insert or delete cannot happen twice.
- Retries: 429, 5xx and 403 rate-limit answers are retried with exponential backoff and full
  jitter (google-api-core's ``Retry``). The ``ROUTES`` quota is read only when a pass adds routes,
  so a pass that finds the network in sync makes one paged list call and nothing else.
- A plain-HTTP endpoint (a local test server) gets anonymous credentials: a token is never sent
  in clear text.
"""

from __future__ import annotations

import ipaddress
import re
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from typing import Any

from nosdn.backends.base import ApplyResult, WriteError
from nosdn.backends.cloud.contract import CloudError, CloudTable
from nosdn.model import Cluster, Diff, InstalledRoute, IPNetwork, Node
from nosdn.names import GCE_NAME, gce_route_name
from nosdn.problems import Problem

_DESCRIPTION = re.compile(r"^nosdn: pods of node (?P<node>.*) in cluster (?P<cluster>.*)$")
_INSTANCE_PATH = re.compile(r"(?:^|/)projects/([^/]+)/zones/([^/]+)/instances/([^/]+)$")
_PROVIDER_ID = re.compile(r"^gce://([^/]+)/([^/]+)/([^/]+)$")
_NO_INSTANCE = "NEXT_HOP_INSTANCE_NOT_FOUND"
_RATE_REASONS = {"rateLimitExceeded", "userRateLimitExceeded"}
QUOTA_HINT = "GCE quota 'ROUTES' of the project (IAM & Admin > Quotas)"


def route_name(cluster: str, node: str, dst: str) -> str:
    """The route's GCE name: the same rule as the gcloud renderer's (`nosdn.names`)."""
    return gce_route_name(cluster, node, dst)


def name_prefix(cluster: str) -> str:
    """The start that every `route_name` of ``cluster`` shares (at most 40 characters, which
    survive the cut of a long name)."""
    name = re.sub(r"[^a-z0-9]", "-", cluster.lower()) + "-"
    if not name[:1].isalpha():
        name = "nosdn-" + name
    return name[:40]


def description(cluster: str, node: str) -> str:
    clean = "".join(c if c.isprintable() else " " for c in cluster)
    return f"nosdn: pods of node {node} in cluster {clean}"


def _path(link: str) -> str:
    """``projects/P/zones/Z/instances/N`` from a full or partial instance URL."""
    m = _INSTANCE_PATH.search(link)
    return f"projects/{m.group(1)}/zones/{m.group(2)}/instances/{m.group(3)}" if m else link


@dataclass(frozen=True, slots=True)
class GceConfig:
    """Where the routes go. ``endpoint`` None means Google's; credentials come from the usual
    Application Default Credentials (``GOOGLE_APPLICATION_CREDENTIALS``, metadata server)."""

    project: str
    network: str = "default"
    #: Zone of nodes whose instanceId names no zone (and of nodes without instanceId, whose
    #: instance is taken to be named like the node, as GCE names Kubernetes nodes).
    zone: str | None = None
    endpoint: str | None = None
    #: Routes the project may hold; None: read the project's ROUTES quota when adding.
    capacity: int | None = None
    priority: int = 1000
    page_size: int = 500
    backoff_initial: float = 0.5
    backoff_max: float = 30.0
    retry_deadline: float = 120.0
    operation_timeout: float = 300.0


class GceNetworkTable:
    """The routes of one VPC network, as listed at the start of the pass."""

    name = "gce"
    quota_hint = QUOTA_HINT

    def __init__(
        self,
        owner: GceRoutes,
        cluster: Cluster,
        instances: dict[str, str],
        installed: list[InstalledRoute],
        count: int,
    ) -> None:
        self._owner = owner
        self._cluster = cluster
        self._instances = instances
        self._installed = installed
        self._count = count
        self._quota: tuple[int, int] | None = None
        self.table_id = f"network/{owner.config.network}"

    def routes(self) -> list[InstalledRoute]:
        return list(self._installed)

    def _limits(self) -> tuple[int, int]:
        if self.owner_capacity is not None:
            return self.owner_capacity, self._count
        if self._quota is None:
            self._quota = self._owner.routes_quota()
        return self._quota

    @property
    def owner_capacity(self) -> int | None:
        return self._owner.config.capacity

    @property
    def capacity(self) -> int | None:  # read only when a pass adds routes
        return self._limits()[0]

    @property
    def used(self) -> int:
        return self._limits()[1]

    def apply(self, diff: Diff) -> ApplyResult:
        return self._owner.write(self._cluster, self._instances, diff)


class GceRoutes:
    """The GCE side of a pass: Compute clients on one endpoint, instance checks, the network."""

    name = "gce"

    def __init__(self, config: GceConfig, credentials: Any | None = None) -> None:
        from google.api_core import retry as gretry
        from google.cloud import compute_v1

        self.config = config
        self.calls: Counter[str] = Counter()
        if credentials is None and (config.endpoint or "").startswith("http://"):
            from google.auth.credentials import AnonymousCredentials

            credentials = AnonymousCredentials()  # type: ignore[no-untyped-call]
        kw: dict[str, Any] = {"credentials": credentials, "transport": "rest"}
        if config.endpoint:
            kw["client_options"] = {"api_endpoint": config.endpoint.rstrip("/")}
        try:
            self._routes = compute_v1.RoutesClient(**kw)
            self._ops = compute_v1.GlobalOperationsClient(**kw)
            self._instances = compute_v1.InstancesClient(**kw)
            self._projects = compute_v1.ProjectsClient(**kw)
        except Exception as e:  # google.auth.exceptions.DefaultCredentialsError and friends
            raise CloudError(f"cannot reach the GCE API: {e}") from e
        self._retry = gretry.Retry(
            predicate=self._retryable,
            initial=config.backoff_initial,
            maximum=config.backoff_max,
            multiplier=2.0,
            timeout=config.retry_deadline,
            on_error=self._on_retry,
        )
        self._op_name = ""
        self._network = f"projects/{config.project}/global/networks/{config.network}"

    # --- calls ----------------------------------------------------------------------------
    @staticmethod
    def _retryable(e: BaseException) -> bool:
        from google.api_core import exceptions as gexc

        if isinstance(
            e,
            gexc.TooManyRequests
            | gexc.InternalServerError
            | gexc.BadGateway
            | gexc.ServiceUnavailable
            | gexc.GatewayTimeout,
        ):
            return True
        if isinstance(e, gexc.Forbidden):
            return any(
                isinstance(err, dict) and err.get("reason") in _RATE_REASONS for err in e.errors
            )
        return False

    def _on_retry(self, _e: BaseException) -> None:
        self.calls["retry:" + self._op_name] += 1

    def _call(self, op: str, fn: Any, **kw: Any) -> Any:
        self.calls[op] += 1
        self._op_name = op
        return fn(**kw, retry=self._retry, timeout=60.0)

    def routes_quota(self) -> tuple[int, int]:
        """(limit, usage) of the project's ROUTES quota."""
        from google.api_core import exceptions as gexc

        try:
            project = self._call("projects.get", self._projects.get, project=self.config.project)
        except gexc.GoogleAPICallError as e:
            raise CloudError(f"reading the quotas of project {self.config.project}: {e}") from e
        for q in project.quotas:
            if q.metric == "ROUTES":
                return int(q.limit), int(q.usage)
        raise CloudError(f"project {self.config.project} reports no ROUTES quota")

    # --- CloudProvider --------------------------------------------------------------------
    def instance_path(self, node: Node) -> str | Problem:
        """The node's instance as ``projects/P/zones/Z/instances/N``, or why not."""
        value = (node.instance_id or "").strip()
        project, zone = self.config.project, self.config.zone
        if (m := _PROVIDER_ID.match(value)) or (m := _INSTANCE_PATH.search(value)):
            project, zone, name = m.groups()
        elif value.count("/") == 1:
            zone, name = value.split("/")
        else:
            name = value or node.name
        if not GCE_NAME.match(name):
            return Problem(
                node.name,
                "instanceId",
                value or f"(none: the node name {name!r})",
                "is not a GCE instance name",
                "write the instance as NAME, ZONE/NAME or gce://PROJECT/ZONE/NAME",
            )
        if not zone:
            return Problem(
                node.name,
                "instanceId",
                value or "(none)",
                "names no zone",
                "write ZONE/NAME, or pass --gce-zone",
            )
        return f"projects/{project}/zones/{zone}/instances/{name}"

    def resolve(self, cluster: Cluster) -> tuple[dict[str, str], list[Problem]]:
        instances: dict[str, str] = {}
        problems: list[Problem] = []
        for n in cluster.nodes:
            if not n.pod_cidrs:
                continue
            got = self.instance_path(n)
            if isinstance(got, Problem):
                problems.append(got)
            else:
                instances[n.name] = got
        return instances, problems

    def tables(self, cluster: Cluster, instances: dict[str, str]) -> list[CloudTable]:
        from google.api_core import exceptions as gexc

        by_name = {n.name: n for n in reversed(cluster.nodes)}  # the first of a name, as .node
        node_of = {path: by_name.get(n) for n, path in instances.items()}
        want_cluster = description(cluster.name, "").split(" in cluster ", 1)[1]
        prefix = name_prefix(cluster.name)
        installed: list[InstalledRoute] = []
        count = 0
        try:
            pager = self._call(
                "routes.list",
                self._routes.list,
                request={"project": self.config.project, "max_results": self.config.page_size},
            )
            for i, page in enumerate(pager.pages):
                if i:
                    self.calls["routes.list"] += 1
                for r in page.items:
                    if not r.network.endswith(self._network):
                        continue
                    count += 1
                    got = self._parse(r, node_of, want_cluster, prefix)
                    if got is not None:
                        installed.append(got)
        except gexc.GoogleAPICallError as e:
            raise CloudError(f"listing the routes of project {self.config.project}: {e}") from e
        return [GceNetworkTable(self, cluster, instances, installed, count)]

    def _parse(
        self, r: Any, node_of: dict[str, Node | None], want_cluster: str, prefix: str
    ) -> InstalledRoute | None:
        try:
            dst: IPNetwork = ipaddress.ip_network(r.dest_range)
        except ValueError:
            return None
        m = _DESCRIPTION.match(r.description or "")
        owned = m is not None and m.group("cluster") == want_cluster and r.name.startswith(prefix)
        hop_path = _path(r.next_hop_instance) if r.next_hop_instance else ""
        gone = any(w.code == _NO_INSTANCE for w in r.warnings)
        node = node_of.get(hop_path) if hop_path and not gone else None
        gw = node.ip_for(dst.version) if node is not None else None
        hop = (
            hop_path.rsplit("/", 1)[-1]
            if hop_path
            else (
                r.next_hop_ip
                or r.next_hop_gateway.rsplit("/", 1)[-1]
                or r.next_hop_peering
                or r.next_hop_network.rsplit("/", 1)[-1]
                or r.next_hop_ilb
                or r.next_hop_vpn_tunnel
                or "?"
            )
        )
        label = f"instance {hop}" if hop_path else hop
        if node is not None:
            label += f" (node {node.name})"
        if gone:
            label += " (instance not found)"
        return InstalledRoute(
            dst,
            (gw,) if gw is not None else (),
            owned,
            "nosdn" if owned else f"route {r.name}",
            f"{dst} -> {label} [route {r.name}, priority {r.priority}]",
            r.name,
        )

    def check_targets(self, targets: dict[str, str]) -> tuple[list[Problem], list[str]]:
        from google.api_core import exceptions as gexc

        problems: list[Problem] = []
        notes: list[str] = []
        for node, path in sorted(targets.items()):
            m = _INSTANCE_PATH.search(path)
            assert m is not None
            project, zone, name = m.groups()
            try:
                inst = self._call(
                    "instances.get",
                    self._instances.get,
                    project=project,
                    zone=zone,
                    instance=name,
                )
            except gexc.NotFound:
                problems.append(
                    Problem(
                        node,
                        "instanceId",
                        f"{zone}/{name}",
                        f"no such instance in project {project}",
                        "fix instanceId (NAME, ZONE/NAME or gce://PROJECT/ZONE/NAME)",
                    )
                )
                continue
            except gexc.GoogleAPICallError as e:
                raise CloudError(f"reading instance {zone}/{name} (node {node}): {e}") from e
            if not inst.can_ip_forward:
                notes.append(
                    f"instance {zone}/{name} (node {node}) has IP forwarding off: GCE drops "
                    "the pods' packets until it is recreated with --can-ip-forward"
                )
        return problems, notes

    def prepare_targets(self, targets: dict[str, str]) -> list[str]:
        return []  # canIpForward is fixed at instance creation: check_targets reports it

    # --- writes ---------------------------------------------------------------------------
    def write(self, cluster: Cluster, instances: dict[str, str], diff: Diff) -> ApplyResult:
        """Deletes (removed routes, old halves of changes) first and to the end, then inserts."""
        from google.cloud import compute_v1

        result = ApplyResult()
        deletes = [_Job(old.dst, None, "remove", old.ref) for old in diff.remove]
        deletes += [_Job(c.new.dst, c.new.node, "change", c.old.ref) for c in diff.change]
        for job in deletes:
            request = compute_v1.DeleteRouteRequest(
                project=self.config.project, route=job.ref, request_id=str(uuid.uuid4())
            )
            self._start(result, job, "routes.delete", self._routes.delete_unary, request)
        failed = self._finish(result, deletes, counted={"remove"})
        inserts = [_Job(c.new.dst, c.new.node, "change") for c in diff.change]
        inserts = [j for j in inserts if j.dst not in failed]
        inserts += [_Job(r.dst, r.node, "add") for r in diff.add]
        for job in inserts:
            node = job.node or "services"
            route = compute_v1.Route(
                name=route_name(cluster.name, node, str(job.dst)),
                network=self._network,
                dest_range=str(job.dst),
                priority=self.config.priority,
                next_hop_instance=instances.get(job.node or "", ""),
                description=description(cluster.name, node),
            )
            request = compute_v1.InsertRouteRequest(
                project=self.config.project, route_resource=route, request_id=str(uuid.uuid4())
            )
            self._start(result, job, "routes.insert", self._routes.insert_unary, request)
        self._finish(result, inserts, counted={"add", "change"})
        return result

    def _start(self, result: ApplyResult, job: _Job, op: str, fn: Any, request: Any) -> None:
        """Send one write; the request (and its requestId) is the same on every retry."""
        from google.api_core import exceptions as gexc

        try:
            job.op = self._call(op, fn, request=request)
        except gexc.NotFound:
            if op == "routes.delete":
                job.done = True  # already gone: the goal is reached
            else:
                result.errors.append(WriteError(job.dst, job.node, job.action, "not found"))
        except gexc.GoogleAPICallError as e:
            result.errors.append(WriteError(job.dst, job.node, job.action, str(e)))

    def _finish(self, result: ApplyResult, jobs: list[_Job], counted: set[str]) -> set[IPNetwork]:
        """Wait for every started operation; count the writes whose action is ``counted``;
        return the destinations whose write failed."""
        from google.api_core import exceptions as gexc
        from google.cloud import compute_v1

        failed: set[IPNetwork] = set()
        done = compute_v1.Operation.Status.DONE
        for job in jobs:
            if job.op is None and not job.done:
                failed.add(job.dst)  # never started: its error is already recorded
                continue
            op = job.op
            deadline = time.monotonic() + self.config.operation_timeout
            try:
                while op is not None and op.status != done:
                    if time.monotonic() > deadline:
                        raise CloudError(f"operation {op.name} did not finish in time")
                    op = self._call(
                        "operations.wait",
                        self._ops.wait,
                        project=self.config.project,
                        operation=op.name,
                    )
            except (gexc.GoogleAPICallError, CloudError) as e:
                failed.add(job.dst)
                result.errors.append(WriteError(job.dst, job.node, job.action, str(e)))
                continue
            if op is not None and op.error and op.error.errors:
                failed.add(job.dst)
                msg = "; ".join(f"{e.code}: {e.message}" for e in op.error.errors)
                result.errors.append(WriteError(job.dst, job.node, job.action, msg))
                continue
            if job.action in counted:
                result.writes += 1
        return failed


@dataclass(slots=True)
class _Job:
    """One route write and the operation that carries it."""

    dst: IPNetwork
    node: str | None
    action: str  # "add" | "change" | "remove"
    ref: str = ""
    op: Any = None
    done: bool = False
