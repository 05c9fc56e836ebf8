"""Which API servers are alive: kube-apiserver's master leases (`--endpoint-reconciler-type=lease`).

Each API server writes `/registry/masterleases/<its IP>` every RENEW_INTERVAL; the `kubernetes`
Service's endpoints list the servers whose key is live. Upstream gives each key an etcd lease
with a TTL; our store contract has no leases, so expiry is observed instead: a key whose
mod_revision has not changed for TTL seconds *by this server's clock* is stale and deleted (with
a compare-and-swap, so a renewal that races the deletion wins). Only the key's own revisions are
compared, never another host's clock, as client-go's leader election does.

`live_and_stale()` is the pure part.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import orjson

from pocketkube.storage.interface import Backend, KeyExists, KeyNotFound, RevisionMismatch

__all__ = ["MASTER_LEASES_PREFIX", "RENEW_INTERVAL", "TTL", "MasterLease", "MasterLeases", "live_and_stale"]

log = logging.getLogger(__name__)
MASTER_LEASES_PREFIX = "/registry/masterleases/"
TTL = 15.0
RENEW_INTERVAL = 10.0


@dataclass(frozen=True, slots=True)
class MasterLease:
    ip: str
    port: int
    mod_revision: int


def live_and_stale(leases: list[MasterLease], seen: dict[str, tuple[int, float]], now: float,
                   ttl: float = TTL) -> tuple[list[MasterLease], list[MasterLease], dict[str, tuple[int, float]]]:
    """(live leases, stale leases, the new `seen`): `seen` maps an IP to the lease's mod_revision
    when we last looked and when (our clock) we first saw that revision."""
    fresh: dict[str, tuple[int, float]] = {}
    live: list[MasterLease] = []
    stale: list[MasterLease] = []
    for lease in leases:
        rev, since = seen.get(lease.ip, (0, now))
        if rev != lease.mod_revision:
            since = now
        fresh[lease.ip] = (lease.mod_revision, since)
        (live if now - since < ttl else stale).append(lease)
    return sorted(live, key=lambda m: m.ip), stale, fresh


class MasterLeases:
    def __init__(self, backend: Backend, *, ttl: float = TTL, clock: Callable[[], float] = time.monotonic) -> None:
        self.backend = backend
        self.ttl = ttl
        self.clock = clock
        self._seen: dict[str, tuple[int, float]] = {}

    async def renew(self, ip: str, port: int) -> None:
        """Write our key (a new revision each time: that is the heartbeat)."""
        key = MASTER_LEASES_PREFIX + ip
        value = orjson.dumps({"ip": ip, "port": port})
        try:
            await self.backend.update(key, value, 0)
        except KeyNotFound:
            try:
                await self.backend.create(key, value)
            except KeyExists:
                await self.backend.update(key, value, 0)

    async def live(self) -> list[MasterLease]:
        """The live servers; stale keys are deleted on the way."""
        kvs, _ = await self.backend.range(MASTER_LEASES_PREFIX)
        leases: list[MasterLease] = []
        for kv in kvs:
            try:
                data = orjson.loads(kv.value)
                leases.append(MasterLease(str(data["ip"]), int(data["port"]), kv.mod_revision))
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                log.warning("ignoring a malformed master lease at %s", kv.key)
        live, stale, self._seen = live_and_stale(leases, self._seen, self.clock(), self.ttl)
        for lease in stale:
            try:
                await self.backend.delete(MASTER_LEASES_PREFIX + lease.ip, lease.mod_revision)
                log.info("API server %s:%d stopped renewing its lease: removed", lease.ip, lease.port)
            except (KeyNotFound, RevisionMismatch):  # renewed or removed meanwhile
                pass
        return live

    async def remove(self, ip: str) -> None:
        """A clean stop: leave the list at once (upstream's RemoveEndpoints)."""
        try:
            await self.backend.delete(MASTER_LEASES_PREFIX + ip)
        except KeyNotFound:
            pass
