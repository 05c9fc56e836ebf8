"""TTL-after-finished controller: delete a finished Job `ttlSecondsAfterFinished` after it
finished (pkg/controller/ttlafterfinished). The finish time is the lastTransitionTime of the
Job's Complete or Failed condition; the Job is re-read before the delete, so a TTL changed
meanwhile is honoured, and deleted in the foreground, so its pods go first."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from pocketkube.api import errors
from pocketkube.api.meta import deep_get
from pocketkube.api.resources import BY_PLURAL
from pocketkube.api.timestamps import parse_rfc3339
from pocketkube.client.interface import Client
from pocketkube.controllers.base import Controller, SharedInformers, split_key

__all__ = ["TTLAfterFinishedController", "expires_in"]

log = logging.getLogger(__name__)

JOBS = BY_PLURAL[("batch", "jobs")]


def finish_time(job: dict) -> float | None:
    for c in deep_get(job, "status", "conditions", default=None) or []:
        if c.get("type") in ("Complete", "Failed") and c.get("status") == "True":
            return parse_rfc3339(c.get("lastTransitionTime"))
    return None


def expires_in(job: dict, now: float) -> float | None:
    """Seconds until `job` may be deleted (≤ 0: now); None when it has no TTL, is not finished
    or is already being deleted."""
    ttl = deep_get(job, "spec", "ttlSecondsAfterFinished")
    if ttl is None or deep_get(job, "metadata", "deletionTimestamp"):
        return None
    finished = finish_time(job)
    return None if finished is None else finished + ttl - now


class TTLAfterFinishedController(Controller):
    name = "ttl-after-finished-controller"

    def __init__(self, client: Client, informers: SharedInformers, *, workers: int = 2,
                 clock: Callable[[], float] = time.time) -> None:
        self.client = client
        self.job_informer = informers.get(JOBS)
        super().__init__([self.job_informer], workers=workers)
        self.clock = clock
        self.job_informer.add_handlers(self._on_job, lambda old, new: self._on_job(new), None)

    def _on_job(self, job: dict) -> None:
        if expires_in(job, self.clock()) is not None:
            self.enqueue(job)

    def _expired(self, key: str, job: dict) -> bool:
        """Whether the Job's TTL after finishing has run out; if it will later, look again then."""
        remaining = expires_in(job, self.clock())
        if remaining is not None and remaining > 0:
            self.queue.add_after(key, remaining)
        return remaining is not None and remaining <= 0

    async def sync(self, key: str) -> None:
        job = self.job_informer.get(key)
        if job is None:
            return
        if not self._expired(key, job):
            return
        namespace, name = split_key(key)
        try:  # the cache may be stale: decide again on the live object
            job = await self.client.get(JOBS, namespace, name)
        except errors.NotFound:
            return
        if not self._expired(key, job):
            return
        log.info("%s: deleting job %s after its TTL", self.name, key)
        try:
            await self.client.delete(JOBS, namespace, name, propagation="Foreground",
                                     preconditions={"uid": job["metadata"]["uid"],
                                                    "resourceVersion": job["metadata"]["resourceVersion"]})
        except errors.NotFound:
            return
