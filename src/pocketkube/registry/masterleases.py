"""Which API servers are alive: kube-apiserver's master leases (`--endpoint-reconciler-type=lease`).

Each API server writes `/registry/masterleases/<its IP>` every RENEW_INTERVAL, attached to a
store lease of TTL seconds, as upstream's lease endpoint reconciler does (its key gets an etcd
lease with that TTL); the `kubernetes` Service's endpoints list the servers whose key exists. A
server that stops renewing loses its key when its lease expires: the store deletes it, so no
server's clock is ever compared with another's.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import orjson

from pocketkube.storage.interface import Backend, KeyExists, KeyNotFound, LeaseNotFound

__all__ = ["MASTER_LEASES_PREFIX", "RENEW_INTERVAL", "TTL", "MasterLease", "MasterLeases", "parse"]

log = logging.getLogger(__name__)
MASTER_LEASES_PREFIX = "/registry/masterleases/"
TTL = 15.0
RENEW_INTERVAL = 10.0


@dataclass(frozen=True, slots=True)
class MasterLease:
    ip: str
    port: int
    mod_revision: int


def parse(key: str, value: bytes, mod_revision: int) -> MasterLease | None:
    """The lease a key holds; None (logged) for a malformed one."""
    try:
        data = orjson.loads(value)
        return MasterLease(str(data["ip"]), int(data["port"]), mod_revision)
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        log.warning("ignoring a malformed master lease at %s", key)
        return None


class MasterLeases:
    def __init__(self, backend: Backend, *, ttl: float = TTL) -> None:
        self.backend = backend
        self.ttl = ttl
        self._leases: dict[str, int] = {}  # IP -> the store lease its key is attached to

    async def _lease(self, ip: str) -> int:
        """Our store lease for ip, renewed; a new one if it expired (the store then deleted the key)."""
        lease = self._leases.get(ip)
        if lease:
            try:
                await self.backend.keep_alive(lease)
                return lease
            except LeaseNotFound:
                log.warning("the master lease of %s expired before it was renewed: granting a new one", ip)
        lease = await self.backend.grant(max(1, math.ceil(self.ttl)))
        self._leases[ip] = lease
        return lease

    async def renew(self, ip: str, port: int) -> None:
        """Keep our lease alive and write our key with it (a new revision each time, as upstream)."""
        lease = await self._lease(ip)
        key = MASTER_LEASES_PREFIX + ip
        value = orjson.dumps({"ip": ip, "port": port})
        try:
            await self.backend.update(key, value, 0, lease=lease)
        except KeyNotFound:
            try:
                await self.backend.create(key, value, lease=lease)
            except KeyExists:
                await self.backend.update(key, value, 0, lease=lease)

    async def live(self) -> list[MasterLease]:
        """The live servers, by IP."""
        kvs, _ = await self.backend.range(MASTER_LEASES_PREFIX)
        leases = (parse(kv.key, kv.value, kv.mod_revision) for kv in kvs)
        return sorted((m for m in leases if m is not None), key=lambda m: m.ip)

    async def remove(self, ip: str) -> None:
        """A clean stop: leave the list at once (upstream's RemoveEndpoints)."""
        lease = self._leases.pop(ip, 0)
        if lease:
            try:
                await self.backend.revoke(lease)  # deletes the key with it
            except LeaseNotFound:
                pass
        try:
            await self.backend.delete(MASTER_LEASES_PREFIX + ip)
        except KeyNotFound:
            pass
