"""What a cloud supplies to the shared pass (`nosdn.backends.cloud.sync.sync`): a `CloudProvider`
that resolves nodes to instances and reads its `CloudTable`s, each a small `Backend`."""

from __future__ import annotations

from collections import Counter
from typing import Protocol

from nosdn.backends.base import ApplyResult
from nosdn.model import Cluster, Diff, InstalledRoute
from nosdn.problems import Problem


class CloudError(RuntimeError):
    """The cloud could not be read (no such table, no credentials, API down): nothing written."""


class CloudTable(Protocol):
    """One route table, as a `nosdn.backends.base.Backend`: ``routes()`` returns what the pass's
    one read found (no API call), ``apply`` writes a diff computed from them."""

    name: str
    #: The table's id as the cloud names it (``rtb-...``, ``network/NAME``).
    table_id: str

    @property
    def capacity(self) -> int | None:
        """How many routes the table may hold (None: unknown, not checked)."""
        ...

    @property
    def used(self) -> int:
        """How many routes count against ``capacity`` now (ours and everyone else's)."""
        ...

    #: Where to raise the limit, for the refusal message.
    quota_hint: str

    def routes(self) -> list[InstalledRoute]: ...

    def apply(self, diff: Diff) -> ApplyResult: ...


class CloudProvider(Protocol):
    """A cloud: finds instances and route tables and prepares instances to forward."""

    name: str
    #: API calls made so far, by operation (retries counted separately as ``retry:<op>``).
    calls: Counter[str]

    def resolve(self, cluster: Cluster) -> tuple[dict[str, str], list[Problem]]:
        """Each node with pod subnets -> its instance; the problems of those not found."""
        ...

    def tables(self, cluster: Cluster, instances: dict[str, str]) -> list[CloudTable]:
        """Read every managed table (raises `CloudError` when there is none)."""
        ...

    def check_targets(self, targets: dict[str, str]) -> tuple[list[Problem], list[str]]:
        """Read-only check of the instances new routes will point at (node -> instance):
        problems for those that cannot carry a route, notes for what looks wrong."""
        ...

    def prepare_targets(self, targets: dict[str, str]) -> list[str]:
        """Make those instances able to forward pod traffic; notes on what was done."""
        ...
