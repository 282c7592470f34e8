"""Leader election on a coordination.k8s.io/v1 Lease: one holder at a time, across processes.

Used by the agent's pod-CIDR allocator (one agent of the DaemonSet writes ``spec.podCIDRs``)
and meant for the cloud route controller too: it needs only the small `LeaseApi` protocol.

It follows client-go's leaderelection, whose rules exist for good reasons:

- expiry is judged by *this* process's clock: a Lease counts as expired when its content has
  not changed for ``lease_duration`` seconds since we first saw it that way, so clock skew
  between machines does not matter (``renewTime`` is informative only);
- every write carries the resourceVersion read just before, so on a real API server two
  candidates racing for an expired Lease cannot both win (409 Conflict for the loser);
- a leader that cannot renew within ``renew_deadline`` stops leading *before* its Lease can
  expire for the others (``renew_deadline < lease_duration``);
- on a clean stop the leader releases the Lease (empty holder) so the next one need not wait;
- a leader that writes somewhere else (the cloud route controller) asks `holds` right before
  writing: leading *and* renewed less than ``renew_deadline`` ago by its own clock, so a renewal
  stuck in a slow request cannot leave it writing beside its successor.

The `kmock` emulator has no resourceVersion: there the compare-and-swap is not enforced, and
two candidates writing in the same instant could both believe they won. Tests of this module
run candidates against the emulator one step at a time and check the Conflict path with a fake.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Protocol

from nosdn.sources.errors import ApiError, ConflictError

log = logging.getLogger("nosdn.sources.leader")


class LeaseApi(Protocol):
    def get_lease(self, namespace: str, name: str) -> Mapping[str, Any] | None: ...

    def create_lease(self, namespace: str, lease: Mapping[str, Any]) -> Mapping[str, Any]: ...

    def update_lease(
        self, namespace: str, name: str, lease: Mapping[str, Any], resource_version: str
    ) -> Mapping[str, Any]: ...


def micro_time() -> str:
    """A Kubernetes MicroTime (RFC 3339 with microseconds)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderElector:
    def __init__(
        self,
        api: LeaseApi,
        namespace: str,
        name: str,
        identity: str,
        *,
        lease_duration: float = 15.0,
        renew_deadline: float = 10.0,
        retry_period: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not retry_period < renew_deadline < lease_duration:
            raise ValueError(
                "leader election needs retry_period < renew_deadline < lease_duration "
                f"(got {retry_period}, {renew_deadline}, {lease_duration})"
            )
        self.api = api
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.lease_duration = lease_duration
        self.renew_deadline = renew_deadline
        self.retry_period = retry_period
        self.clock = clock
        self._observed: tuple[Any, ...] | None = None
        self._observed_at = 0.0
        self.leading = False
        #: When the last successful acquire or renew *started* (this process's clock).
        self.renewed_at = float("-inf")

    # --- one step -------------------------------------------------------------------------
    def _spec(self, transitions: int, acquired: str | None) -> dict[str, Any]:
        now = micro_time()
        return {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": max(1, round(self.lease_duration)),
            "acquireTime": acquired or now,
            "renewTime": now,
            "leaseTransitions": transitions,
        }

    def try_acquire_or_renew(self) -> bool:
        """One attempt; True if we hold the Lease afterwards."""
        started = self.clock()
        try:
            lease = self.api.get_lease(self.namespace, self.name)
            if lease is None:
                body = {
                    "apiVersion": "coordination.k8s.io/v1",
                    "kind": "Lease",
                    "metadata": {"name": self.name, "namespace": self.namespace},
                    "spec": self._spec(0, None),
                }
                self._observe(self.api.create_lease(self.namespace, body))
                self.renewed_at = started
                return True
            spec = dict(lease.get("spec") or {})
            self._observe(lease)
            holder = spec.get("holderIdentity") or ""
            mine = holder == self.identity
            if holder and not mine and self._observed_at + self._duration(spec) > self.clock():
                return False  # someone else holds it and it has not expired
            transitions = int(spec.get("leaseTransitions") or 0) + (0 if mine else 1)
            meta = lease.get("metadata") or {}
            new = self._spec(transitions, spec.get("acquireTime") if mine else None)
            updated = self.api.update_lease(
                self.namespace, self.name, {"spec": new}, str(meta.get("resourceVersion") or "")
            )
            self._observe(updated)
            self.renewed_at = started
            return True
        except ConflictError:
            return False
        except ApiError as e:
            log.info("lease %s/%s: %s", self.namespace, self.name, e)
            return False

    def holds(self) -> bool:
        """Whether this candidate leads and renewed recently enough to act as leader now."""
        return self.leading and self.clock() - self.renewed_at < self.renew_deadline

    def _duration(self, spec: Mapping[str, Any]) -> float:
        try:
            return float(spec.get("leaseDurationSeconds") or self.lease_duration)
        except (TypeError, ValueError):
            return self.lease_duration

    def _observe(self, lease: Mapping[str, Any]) -> None:
        spec = lease.get("spec") or {}
        key = (spec.get("holderIdentity"), spec.get("renewTime"), spec.get("leaseTransitions"))
        if key != self._observed:
            self._observed = key
            self._observed_at = self.clock()

    def release(self) -> None:
        """Give the Lease up (only if we still hold it)."""
        try:
            lease = self.api.get_lease(self.namespace, self.name)
            spec = dict((lease or {}).get("spec") or {})
            if lease is None or spec.get("holderIdentity") != self.identity:
                return
            spec.update(
                {"holderIdentity": "", "leaseDurationSeconds": 1, "renewTime": micro_time()}
            )
            meta = lease.get("metadata") or {}
            self.api.update_lease(
                self.namespace, self.name, {"spec": spec}, str(meta.get("resourceVersion") or "")
            )
        except ApiError as e:
            log.info("could not release lease %s/%s: %s", self.namespace, self.name, e)

    # --- the loop -------------------------------------------------------------------------
    def run(
        self,
        stop: threading.Event,
        on_started: Callable[[threading.Event], None],
        on_stopped: Callable[[], None] = lambda: None,
    ) -> None:
        """Campaign until ``stop``; while leading, ``on_started(lost)`` runs in its own thread
        and must return soon after ``lost`` is set."""
        while not stop.is_set():
            if not self.try_acquire_or_renew():
                stop.wait(self.retry_period * random.uniform(1.0, 1.2))
                continue
            self.leading = True
            log.info("became leader of lease %s/%s as %s", self.namespace, self.name, self.identity)
            lost = threading.Event()
            worker = threading.Thread(
                target=on_started, args=(lost,), name="nosdn-leader", daemon=True
            )
            worker.start()
            last_renew = self.clock()
            while not stop.is_set():
                stop.wait(self.retry_period)
                if stop.is_set():
                    break
                if self.try_acquire_or_renew():
                    last_renew = self.clock()
                elif self.clock() - last_renew > self.renew_deadline:
                    log.warning("lost lease %s/%s: could not renew", self.namespace, self.name)
                    break
            lost.set()
            worker.join(timeout=self.renew_deadline)
            self.leading = False
            on_stopped()
            if stop.is_set():
                self.release()
