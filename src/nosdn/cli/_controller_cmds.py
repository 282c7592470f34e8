"""`nosdn controller --cloud aws|gce|azure`: the cloud route controller, a Deployment of two
replicas.

Options are parsed and checked here, before anything starts; the controller lives in
`nosdn.controller`. It takes the cloud options of ``nosdn plan/apply --cloud``
(`nosdn.cli._cloud`) and the Kubernetes, node and logging options of ``nosdn agent``
(`nosdn.cli._agent_cmds`, which takes the API and node options from `nosdn.cli._click`), so
one flag means the same thing everywhere.
"""

from __future__ import annotations

from typing import Any

from nosdn.cli._agent_cmds import ROUTING, api_options, routing_options, serving_options
from nosdn.cli._click import address_policy, command, nets, option
from nosdn.cli._cloud import _cloud_params
from nosdn.cli._output import EXIT_FAILURE, fail
from nosdn.controller.config import DEFAULT_LEASE, DEFAULT_METRICS_PORT

LEASE = "Leader election (one replica writes)"


@command("controller")
@api_options
@routing_options
@option(
    "--cluster-name",
    default="kubernetes",
    help="The cluster's name in the cloud: AWS tables tagged kubernetes.io/cluster/NAME, GCE "
    "route names and descriptions, Azure route names (the prefix of the routes it owns).",
    panel=ROUTING,
)
@option(
    "--dry-run",
    is_flag=True,
    help="Compute and log every pass; write nothing (no routes, conditions or events).",
    panel=ROUTING,
)
@option("--lease-namespace", default="kube-system", panel=LEASE)
@option("--lease-name", default=DEFAULT_LEASE, panel=LEASE)
@option(
    "--identity",
    default="",
    show_default=False,
    help="This replica's name in the Lease (default: $POD_NAME or the host name, plus a "
    "random suffix).",
    panel=LEASE,
)
@option("--lease-duration", type=float, default=15.0, help="Seconds a Lease lasts.", panel=LEASE)
@option(
    "--lease-renew-deadline",
    "renew_deadline",
    type=float,
    default=10.0,
    help="The leader stops writing when it could not renew for this long.",
    panel=LEASE,
)
@option(
    "--lease-retry-period",
    "retry_period",
    type=float,
    default=2.0,
    help="Seconds between tries to acquire or renew.",
    panel=LEASE,
)
@serving_options(DEFAULT_METRICS_PORT)
def controller(**kw: Any) -> None:
    """Run the cloud route controller: keep the VPC route table(s) holding every node's pod
    subnet routed to its instance, from the cluster's Node objects (spec.podCIDRs,
    spec.providerID), and set NetworkUnavailable=False (RouteCreated) on the nodes whose routes
    exist. One replica leads (a Lease); the others wait warm. Runs until SIGTERM."""
    from nosdn.backends.cloud.contract import CloudError
    from nosdn.backends.cloud.factory import Cloud, CloudOptions, build_provider
    from nosdn.controller.config import ControllerConfig
    from nosdn.daemon.config import ConfigError
    from nosdn.daemon.logs import setup_logging
    from nosdn.sources.errors import ApiError
    from nosdn.sources.kubernetes import KubeSettings

    if kw["cloud"] is None:
        fail("--cloud aws|gce|azure is required: the cloud whose route tables to keep")
    cloud = CloudOptions(
        cloud=Cloud(kw["cloud"]),
        route_tables=tuple(kw["route_table"]),
        capacity=kw["capacity"],
        aws_region=kw["aws_region"],
        aws_endpoint=kw["aws_endpoint"],
        gce_project=kw["gce_project"],
        gce_network=kw["gce_network"],
        gce_zone=kw["gce_zone"],
        gce_endpoint=kw["gce_endpoint"],
        azure_subscription=kw["azure_subscription"],
        azure_resource_group=kw["azure_resource_group"],
        azure_endpoint=kw["azure_endpoint"],
    )
    try:
        cfg = ControllerConfig(
            cloud,
            nets(kw["cluster_cidr"], "--cluster-cidr"),
            cluster_name=kw["cluster_name"],
            node_cidr_mask_v4=kw["mask_v4"],
            node_cidr_mask_v6=kw["mask_v6"],
            addresses=address_policy(kw["address_types"], kw["address_cidr"]),
            resync=kw["resync"],
            max_delete_share=kw["max_delete_share"],
            deletion_hold=kw["deletion_hold"],
            deletion_window=kw["deletion_window"],
            watch_timeout=kw["watch_timeout"],
            watch_deadline=kw["watch_deadline"],
            dry_run=kw["dry_run"],
            lease_namespace=kw["lease_namespace"],
            lease_name=kw["lease_name"],
            identity=kw["identity"],
            lease_duration=kw["lease_duration"],
            renew_deadline=kw["renew_deadline"],
            retry_period=kw["retry_period"],
            set_condition=kw["condition"],
            events=kw["events"],
            event_namespace=kw["event_namespace"],
            metrics_address=kw["metrics_address"] or None,
        )
    except (ConfigError, ValueError) as e:
        fail(str(e))
    try:
        provider = build_provider(cloud)
    except (ValueError, CloudError) as e:  # an option, a region, credentials: fix and rerun
        fail(str(e))
    setup_logging(kw["log_format"], kw["log_level"])
    from nosdn.controller.run import run_controller

    settings = KubeSettings(
        server=kw["kube_server"], kubeconfig=kw["kubeconfig"], context=kw["context"]
    )
    try:
        run_controller(cfg, settings, provider)
    except (CloudError, ApiError) as e:
        fail(str(e), EXIT_FAILURE)


controller.params[:0] = _cloud_params()
controller.params[0].help = (  # --cloud: the same option as plan/apply's, required here
    "The cloud whose VPC route table(s) to keep (every pod subnet -> its node's instance). "
    "Required."
)
