"""Leader election through a coordination.k8s.io/v1 Lease, as client-go's leaderelection does.

Several copies of a component (kube-controller-manager, kube-scheduler) run; the one whose
identity is the Lease's `holderIdentity` acts, the others wait. The leader renews every
`retry_period`; when it cannot renew within `renew_deadline` it stops acting at once (the lease
is still valid for `lease_duration - renew_deadline`, so nobody else acts yet). A follower takes
the lease once it has seen the same record unchanged for `lease_duration` by its own clock (never
by comparing the record's renewTime with its clock: hosts' clocks differ). Every write is a
compare-and-swap on the Lease's resourceVersion, so two candidates never both win. A leader that
stops cleanly releases the lease (empty holder, 1 s duration), so a successor takes over at its
next retry instead of after 15 s.

`decide()` is the pure part (record, what we observed, now → what to write); `LeaderElector` does
the I/O.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace

from pocketkube.api import errors
from pocketkube.api.resources import BY_PLURAL
from pocketkube.api.timestamps import now_micro
from pocketkube.client.events import EventRecorder
from pocketkube.client.interface import Client

__all__ = ["LeaderElectionConfig", "LeaderElector", "LeaseRecord", "Observation", "decide", "new_identity"]

log = logging.getLogger(__name__)
LEASES = BY_PLURAL[("coordination.k8s.io", "leases")]

# kube-controller-manager's and kube-scheduler's defaults (--leader-elect-*).
LEASE_DURATION = 15.0
RENEW_DEADLINE = 10.0
RETRY_PERIOD = 2.0


def new_identity() -> str:
    """`<hostname>_<uuid>`, as kube-controller-manager names itself."""
    return f"{socket.gethostname()}_{uuid.uuid4()}"


@dataclass(frozen=True)
class LeaderElectionConfig:
    namespace: str
    name: str
    identity: str
    lease_duration: float = LEASE_DURATION
    renew_deadline: float = RENEW_DEADLINE
    retry_period: float = RETRY_PERIOD

    def __post_init__(self) -> None:
        # client-go's NewLeaderElector checks the same orderings.
        if not self.lease_duration > self.renew_deadline > self.retry_period > 0:
            raise ValueError("leaseDuration must be greater than renewDeadline, and renewDeadline "
                             "greater than retryPeriod (> 0)")


@dataclass(frozen=True)
class LeaseRecord:
    """A Lease's spec (client-go's LeaderElectionRecord)."""
    holder: str = ""
    duration: int = 0
    acquire_time: str = ""
    renew_time: str = ""
    transitions: int = 0

    @classmethod
    def from_lease(cls, lease: dict) -> LeaseRecord:
        spec = lease.get("spec") or {}
        return cls(holder=spec.get("holderIdentity") or "", duration=int(spec.get("leaseDurationSeconds") or 0),
                   acquire_time=spec.get("acquireTime") or "", renew_time=spec.get("renewTime") or "",
                   transitions=int(spec.get("leaseTransitions") or 0))

    def spec(self) -> dict:
        out: dict = {"holderIdentity": self.holder, "leaseDurationSeconds": self.duration,
                     "leaseTransitions": self.transitions}
        if self.acquire_time:
            out["acquireTime"] = self.acquire_time
        if self.renew_time:
            out["renewTime"] = self.renew_time
        return out


@dataclass(frozen=True)
class Observation:
    """The last record we saw and when (our monotonic clock) we first saw it as it is."""
    record: LeaseRecord | None = None
    at: float = 0.0


@dataclass(frozen=True)
class Decision:
    action: str  # "create", "update" or "wait" (held by someone else)
    record: LeaseRecord | None = None


def decide(current: LeaseRecord | None, observed: Observation, identity: str, now: float,
           lease_duration: float, stamp: str) -> Decision:
    """What to write to lead (client-go's tryAcquireOrRenew): `current` is the stored record (None:
    no Lease), `observed` what we saw before (its `at` refreshed by the caller when the record
    changed), `stamp` the MicroTime to write. We lead if the holder is us; else we may take it
    when nobody holds it or its record has not changed for `lease_duration`."""
    duration = int(lease_duration)
    if current is None:
        return Decision("create", LeaseRecord(identity, duration, stamp, stamp, 0))
    if current.holder == identity:
        return Decision("update", replace(current, duration=duration, renew_time=stamp))
    if current.holder and observed.at + lease_duration > now:
        return Decision("wait")
    return Decision("update", LeaseRecord(identity, duration, stamp, stamp, current.transitions + 1))


class LeaderElector:
    """Campaigns, then runs `on_started` while leading; `run()` returns when leadership is lost
    (after calling `on_stopped`) or the task is cancelled (then the lease is released)."""

    def __init__(self, client: Client, config: LeaderElectionConfig, *,
                 on_started: Callable[[], Awaitable[None]], on_stopped: Callable[[], Awaitable[None]],
                 clock: Callable[[], float] = time.monotonic, recorder: EventRecorder | None = None) -> None:
        self.client = client
        self.recorder = recorder  # "<identity> became leader" / "stopped leading" Events on the Lease, as upstream
        self.lease: dict | None = None  # the Lease as we last wrote it
        self.config = config
        self.on_started = on_started
        self.on_stopped = on_stopped
        self.clock = clock
        self.observed = Observation()
        self.leading = False

    async def run(self) -> None:
        try:
            await self._acquire()
            self.leading = True
            log.info("%s: became leader of %s/%s", self.config.identity, self.config.namespace, self.config.name)
            self._event("became leader")
            await self.on_started()
            await self._renew()
            self.leading = False
            log.error("%s: leader election lost for %s/%s", self.config.identity, self.config.namespace,
                      self.config.name)
            self._event("stopped leading")
            await self.on_stopped()
        except asyncio.CancelledError:
            if self.leading:
                self.leading = False
                await asyncio.shield(self.release())
            raise

    def _event(self, what: str) -> None:
        if self.recorder is not None and self.lease is not None:
            self.recorder.event(self.lease, "Normal", "LeaderElection", f"{self.config.identity} {what}", res=LEASES)

    async def _acquire(self) -> None:
        while not await self.try_acquire_or_renew():
            await asyncio.sleep(self.config.retry_period)

    async def _renew(self) -> None:
        """Renew every retry period until a renewal has not succeeded for renew_deadline."""
        cfg = self.config
        last_ok = self.clock()
        while True:
            await asyncio.sleep(cfg.retry_period)
            left = cfg.renew_deadline - (self.clock() - last_ok)
            try:
                ok = left > 0 and await asyncio.wait_for(self.try_acquire_or_renew(), left)
            except TimeoutError:
                ok = False
            if ok:
                last_ok = self.clock()
            elif self.clock() - last_ok >= cfg.renew_deadline or self.observed_holder() not in ("", cfg.identity):
                return

    def observed_holder(self) -> str:
        return self.observed.record.holder if self.observed.record else ""

    async def try_acquire_or_renew(self) -> bool:
        cfg = self.config
        try:
            lease = await self.client.get(LEASES, cfg.namespace, cfg.name)
        except errors.NotFound:
            lease = None
        except errors.ApiError as e:
            log.warning("error retrieving lease %s/%s: %s", cfg.namespace, cfg.name, e.message)
            return False
        current = LeaseRecord.from_lease(lease) if lease is not None else None
        now = self.clock()
        if current != self.observed.record:
            self.observed = Observation(current, now)
        decision = decide(current, self.observed, cfg.identity, now, cfg.lease_duration, now_micro())
        if decision.action == "wait":
            return False
        assert decision.record is not None
        try:
            if decision.action == "create":
                stored = await self.client.create(LEASES, {
                    "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                    "metadata": {"name": cfg.name, "namespace": cfg.namespace}, "spec": decision.record.spec()})
            else:
                assert lease is not None
                body = {**lease, "spec": decision.record.spec()}  # resourceVersion kept: a CAS
                stored = await self.client.update(LEASES, body)
        except errors.ApiError as e:  # Conflict / AlreadyExists: someone else wrote first
            log.info("lease %s/%s not written: %s", cfg.namespace, cfg.name, e.message)
            return False
        self.observed = Observation(decision.record, self.clock())
        self.lease = stored
        return True

    async def release(self) -> bool:
        """Give the lease up (ReleaseOnCancel): empty holder, 1 s duration, transitions kept."""
        cfg = self.config
        try:
            lease = await self.client.get(LEASES, cfg.namespace, cfg.name)
            if LeaseRecord.from_lease(lease).holder != cfg.identity:
                return False
            stamp = now_micro()
            record = LeaseRecord("", 1, stamp, stamp, LeaseRecord.from_lease(lease).transitions)
            await self.client.update(LEASES, {**lease, "spec": record.spec()})
            return True
        except errors.ApiError as e:
            log.warning("lease %s/%s not released: %s", cfg.namespace, cfg.name, e.message)
            return False
