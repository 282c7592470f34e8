"""A `CloudProvider` from the options the CLI and the controller take (`CloudOptions`), and
the checks of those options. The cloud SDKs are imported only here, when a provider is built,
so a command that never builds one never pays for them."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from nosdn.backends.cloud.contract import CloudProvider

_RTB = re.compile(r"^rtb-[0-9a-f]{8,17}$")


class Cloud(StrEnum):
    aws = "aws"
    gce = "gce"
    azure = "azure"


@dataclass(frozen=True, slots=True)
class CloudOptions:
    """Everything needed to reach one cloud's route tables."""

    cloud: Cloud
    route_tables: tuple[str, ...] = ()
    capacity: int | None = None
    aws_region: str | None = None
    aws_endpoint: str | None = None
    gce_project: str | None = None
    gce_network: str = "default"
    gce_zone: str | None = None
    gce_endpoint: str | None = None
    azure_subscription: str | None = None
    azure_resource_group: str | None = None
    azure_endpoint: str | None = None


#: Each cloud's own options (flag, field), refused with another ``--cloud``.
_OWN: dict[Cloud, tuple[tuple[str, str], ...]] = {
    Cloud.aws: (("--aws-region", "aws_region"), ("--aws-endpoint", "aws_endpoint")),
    Cloud.gce: (
        ("--gce-project", "gce_project"),
        ("--gce-zone", "gce_zone"),
        ("--gce-endpoint", "gce_endpoint"),
    ),
    Cloud.azure: (
        ("--azure-subscription", "azure_subscription"),
        ("--azure-resource-group", "azure_resource_group"),
        ("--azure-endpoint", "azure_endpoint"),
    ),
}


def _refuse_others(opts: CloudOptions) -> None:
    for cloud, own in _OWN.items():
        if cloud is opts.cloud:
            continue
        for flag, attr in own:
            if getattr(opts, attr):
                raise ValueError(f"{flag} is for --cloud {cloud.value}, not {opts.cloud.value}")


def build_provider(opts: CloudOptions) -> CloudProvider:
    """The provider for ``opts``; raises `ValueError` naming the option that is wrong, and
    `nosdn.backends.cloud.contract.CloudError` when the cloud's client cannot be set up."""
    if opts.capacity is not None and opts.capacity < 1:
        raise ValueError(f"--capacity {opts.capacity}: must be at least 1")
    _refuse_others(opts)
    if opts.cloud is Cloud.azure:
        return _azure(opts)
    if opts.cloud is Cloud.aws:
        for rtb in opts.route_tables:
            if not _RTB.match(rtb):
                raise ValueError(f"--route-table {rtb}: not a route table id (rtb-...)")
        from nosdn.backends.cloud.aws import DEFAULT_CAPACITY, AwsConfig, AwsRoutes

        return AwsRoutes(
            AwsConfig(
                region=opts.aws_region,
                endpoint_url=opts.aws_endpoint,
                route_tables=opts.route_tables,
                capacity=opts.capacity or DEFAULT_CAPACITY,
            )
        )
    if opts.route_tables:
        raise ValueError("--route-table is for --cloud aws|azure, not gce")
    if not opts.gce_project:
        raise ValueError(
            "--cloud gce needs the project: pass --gce-project or set GOOGLE_CLOUD_PROJECT"
        )
    from nosdn.backends.cloud.gce import GceConfig, GceRoutes

    return GceRoutes(
        GceConfig(
            project=opts.gce_project,
            network=opts.gce_network,
            zone=opts.gce_zone,
            endpoint=opts.gce_endpoint,
            capacity=opts.capacity,
        )
    )


def check_azure(opts: CloudOptions) -> None:
    """Refuse (`ValueError`, naming the option) Azure options that cannot work."""
    from nosdn.backends.cloud.azure import RESOURCE_GROUP, SUBSCRIPTION, table_ref

    sub, rg = opts.azure_subscription or "", opts.azure_resource_group or ""
    if not sub:
        raise ValueError(
            "--cloud azure needs --azure-subscription (the subscription id of the route table); "
            "pass it or set AZURE_SUBSCRIPTION_ID"
        )
    if not SUBSCRIPTION.fullmatch(sub):
        raise ValueError(f"--azure-subscription {sub!r}: not a subscription id (a UUID)")
    if not rg:
        raise ValueError(
            "--cloud azure needs --azure-resource-group (the group of the route table and of "
            "VMs named without one); pass it or set AZURE_RESOURCE_GROUP"
        )
    if not RESOURCE_GROUP.fullmatch(rg):
        raise ValueError(
            f"--azure-resource-group {rg!r}: not a resource group name (1-90 of letters, "
            "digits, '._-()', not ending in '.')"
        )
    if not opts.route_tables:
        raise ValueError(
            "--cloud azure needs --route-table NAME (the table associated with the nodes' "
            "subnet; repeat for several)"
        )
    for t in opts.route_tables:
        table_ref(t, sub, rg)  # raises ValueError naming the table


def _azure(opts: CloudOptions) -> CloudProvider:
    """The Azure provider: subscription, resource group and tables checked before any call."""
    from nosdn.backends.cloud.azure import DEFAULT_CAPACITY, AzureConfig, AzureRoutes

    check_azure(opts)
    sub, rg = opts.azure_subscription or "", opts.azure_resource_group or ""
    return AzureRoutes(
        AzureConfig(
            subscription=sub,
            resource_group=rg,
            route_tables=opts.route_tables,
            endpoint=opts.azure_endpoint,
            capacity=opts.capacity or DEFAULT_CAPACITY,
        )
    )
