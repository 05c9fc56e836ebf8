"""Endpoints controller (the legacy v1 API): one Endpoints object per selecting Service.

Mirrors pkg/controller/endpoint: service and pod events become service keys (the pod mapping
and the change stamps are shared with the EndpointSlice controller), `sync` computes the
object with `endpoints_plan.plan_endpoints` and creates or updates it only when it differs;
a deleted service takes its Endpoints with it. Services without a selector are skipped, so
hand-made Endpoints stay as written. A cache that has not caught up with our own last write
raises `StaleCache` and the key is retried.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from pocketkube.api import errors
from pocketkube.api.resources import BY_PLURAL
from pocketkube.api.timestamps import format_rfc3339_nano
from pocketkube.client.events import WARNING, EventRecorder
from pocketkube.client.interface import Client
from pocketkube.controllers.base import SharedInformers, split_key
from pocketkube.controllers.endpoints_plan import plan_endpoints
from pocketkube.controllers.endpointslice import PODS, SERVICES, ServiceKeyedController, StaleCache

__all__ = ["EndpointsController"]

log = logging.getLogger(__name__)

ENDPOINTS = BY_PLURAL[("", "endpoints")]


def _rv(obj: dict) -> int:
    try:
        return int(obj["metadata"].get("resourceVersion") or 0)
    except ValueError:
        return 0


class EndpointsController(ServiceKeyedController):
    name = "endpoint-controller"

    def __init__(self, client: Client, informers: SharedInformers, recorder: EventRecorder, *, workers: int = 5,
                 clock: Callable[[], int] = time.time_ns) -> None:
        self.client = client
        self.recorder = recorder
        self.services = informers.get(SERVICES)
        self.pods = informers.get(PODS)
        self.endpoints = informers.get(ENDPOINTS)
        super().__init__([self.services, self.pods, self.endpoints], workers=workers)
        self._written: dict[str, int] = {}  # resourceVersion of our last write per key
        self._watch_services_and_pods(self.services, self.pods, clock)
        self.endpoints.add_handlers(on_delete=self.enqueue)

    async def sync_service(self, key: str, stamp: int | None = None) -> None:
        namespace, name = split_key(key)
        svc = self.services.get(key)
        if svc is None:
            self._written.pop(key, None)
            try:
                await self.client.delete(ENDPOINTS, namespace, name)
            except errors.NotFound:
                pass
            return
        current = self.endpoints.get(key)
        if current is not None and _rv(current) < self._written.get(key, 0):
            raise StaleCache(f"endpoints cache for service {key} is behind this controller's writes")
        plan = plan_endpoints(svc, self.index.pods_for(svc), current,
                              trigger_time=format_rfc3339_nano(stamp) if stamp else None)
        if plan.action == "none" or plan.endpoints is None:
            return
        try:
            if plan.action == "create":
                written = await self.client.create(ENDPOINTS, plan.endpoints, namespace)
            else:
                written = await self.client.update(ENDPOINTS, plan.endpoints)
        except (errors.Conflict, errors.AlreadyExists, errors.NotFound):
            raise  # the cache was behind: retried
        except errors.ApiError as e:
            if plan.action == "create":
                reason, message = "FailedToCreateEndpoint", f"Failed to create endpoint for service {key}: {e}"
            else:
                reason, message = "FailedToUpdateEndpoint", f"Failed to update endpoint {key}: {e}"
            self.recorder.event(svc, WARNING, reason, message, res=SERVICES)
            raise
        self._written[key] = _rv(written)
