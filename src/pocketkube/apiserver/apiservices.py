"""The API server's APIService controllers (upstream kube-apiserver runs both in-process too):

- autoregistration: a local APIService (no `spec.service`) for every group-version served here,
  with the priorities of upstream's table, kept present (a deleted one comes back) and kept
  to the desired spec; automanaged ones whose group-version is no longer served go. Upstream
  labels these `automanaged: onstart` and recreates a deleted one only at its next start; here
  they come back at once, as the `kubernetes` Service does.
- availability: the Available condition of every APIService. Local ones are available. For a
  service-backed one the Service, its port and its endpoints are checked as upstream does; the
  last step, the discovery request to the extension server, always fails: pocketkube does not
  proxy to extension API servers. Discovery only lists what is served here, so an unavailable
  APIService never hides or breaks the served groups (upstream hides unavailable groups).

The decisions are pure functions; `APIServiceController` applies them to the registry, woken by
watches on APIServices, Services and Endpoints (with a periodic resync).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime

from pocketkube.api import errors
from pocketkube.apiserver import discovery
from pocketkube.registry.registry import Registry
from pocketkube.registry.store import ObjectStore

log = logging.getLogger(__name__)

GROUP = "apiregistration.k8s.io"
AUTOMANAGED_LABEL = "kube-aggregator.kubernetes.io/automanaged"
AUTOMANAGED_ON_START = "onstart"  # what kube-apiserver puts on its own group-versions
RESYNC_SECONDS = 30.0

# (group, version) -> (groupPriorityMinimum, versionPriority): upstream's priority table
# (DefaultGenericAPIServicePriorities merged with kube-apiserver's apiVersionPriorities) for the
# group-versions we serve, plus metrics.k8s.io as metrics-server registers itself.
PRIORITIES: dict[tuple[str, str], tuple[int, int]] = {
    ("", "v1"): (18000, 1),
    ("apps", "v1"): (17800, 15),
    ("events.k8s.io", "v1"): (17750, 15),
    ("authentication.k8s.io", "v1"): (17700, 15),
    ("authorization.k8s.io", "v1"): (17600, 15),
    ("autoscaling", "v1"): (17500, 15),
    ("autoscaling", "v2"): (17500, 30),
    ("batch", "v1"): (17400, 15),
    ("certificates.k8s.io", "v1"): (17300, 15),
    ("networking.k8s.io", "v1"): (17200, 15),
    ("policy", "v1"): (17100, 15),
    ("rbac.authorization.k8s.io", "v1"): (17000, 15),
    ("storage.k8s.io", "v1"): (16800, 15),
    ("apiextensions.k8s.io", "v1"): (16700, 15),
    ("admissionregistration.k8s.io", "v1"): (16700, 15),
    ("scheduling.k8s.io", "v1"): (16600, 15),
    ("coordination.k8s.io", "v1"): (16500, 15),
    ("node.k8s.io", "v1"): (16300, 15),
    ("discovery.k8s.io", "v1"): (16200, 15),
    ("flowcontrol.apiserver.k8s.io", "v1"): (16100, 21),
    (discovery.METRICS_GROUP, discovery.METRICS_VERSION): (100, 100),
}


def apiservice_name(group: str, version: str) -> str:
    return f"{version}.{group}"


def served_group_versions() -> list[tuple[str, str]]:
    """The group-versions autoregistration covers: every one served here (discovery's list) but
    apiregistration.k8s.io itself, which upstream's aggregator serves without an APIService (it
    registers only its delegates' paths; discovery ranks its own group first)."""
    return [*((g, v) for g, v in discovery.group_versions() if g != GROUP),
            (discovery.METRICS_GROUP, discovery.METRICS_VERSION)]


def local_apiservice(group: str, version: str) -> dict | None:
    """The APIService autoregistration keeps for a served group-version; None without a priority
    (upstream skips those rather than guess one)."""
    priority = PRIORITIES.get((group, version))
    if priority is None:
        return None
    return {"apiVersion": f"{GROUP}/v1", "kind": "APIService",
            "metadata": {"name": apiservice_name(group, version),
                         "labels": {AUTOMANAGED_LABEL: AUTOMANAGED_ON_START}},
            "spec": {"group": group, "version": version, "groupPriorityMinimum": priority[0],
                     "versionPriority": priority[1]}}


def desired_apiservices(served: list[tuple[str, str]]) -> dict[str, dict]:
    return {obj["metadata"]["name"]: obj for obj in (local_apiservice(g, v) for g, v in served) if obj}


def automanaged(apiservice: dict) -> bool:
    labels = (apiservice.get("metadata") or {}).get("labels") or {}
    return bool(labels.get(AUTOMANAGED_LABEL))


def autoregister_plan(desired: dict[str, dict], existing: dict[str, dict]) -> tuple[list[dict], list[dict], list[str]]:
    """(to create, to update with the desired spec, names to delete). A user-made APIService
    with a desired name is taken over (upstream's autoregister does the same)."""
    creates = [obj for name, obj in desired.items() if name not in existing]
    updates = []
    for name, obj in desired.items():
        cur = existing.get(name)
        if cur is not None and (cur.get("spec") != obj["spec"] or not automanaged(cur)):
            updates.append(obj)
    deletes = [name for name, cur in existing.items() if name not in desired and automanaged(cur)]
    return creates, updates, deletes


def _service_message(kind: str, ref: dict) -> str:
    return f'service/{ref.get("name", "")} in "{ref.get("namespace", "")}" {kind}'


def available_condition(apiservice: dict, service: dict | None, endpoints: dict | None) -> tuple[str, str, str]:
    """(status, reason, message) of the Available condition, in upstream's order of checks."""
    spec = apiservice.get("spec") or {}
    ref = spec.get("service")
    if not isinstance(ref, dict):
        return "True", "Local", "Local APIServices are always available"
    if service is None:
        return "False", "ServiceNotFound", _service_message("is not present", ref)
    svc_spec = service.get("spec") or {}
    port = ref.get("port", 443)
    if svc_spec.get("type", "ClusterIP") == "ClusterIP":
        ports = [p for p in svc_spec.get("ports") or [] if p.get("port") == port]
        if not ports:
            return "False", "ServicePortError", _service_message(f"is not listening on port {port}", ref)
        port_name = ports[0].get("name", "")
        if endpoints is None:
            return "False", "EndpointsNotFound", \
                f'cannot find endpoints for service/{ref.get("name")} in "{ref.get("namespace")}"'
        if not any(subset.get("addresses") and any(p.get("name", "") == port_name for p in subset.get("ports") or [])
                   for subset in endpoints.get("subsets") or []):
            return "False", "MissingEndpoints", (f'endpoints for service/{ref.get("name")} in '
                                                 f'"{ref.get("namespace")}" have no addresses with port name '
                                                 f'"{port_name}"')
    host = svc_spec.get("clusterIP") or f'{ref.get("name")}.{ref.get("namespace")}.svc'
    url = f'https://{host}:{port}/apis/{spec.get("group", "")}/{spec.get("version", "")}'
    return "False", "FailedDiscoveryCheck", (f"failing or missing response from {url}: pocketkube does not proxy "
                                             "to extension API servers (API aggregation is not supported)")


def updated_status(apiservice: dict, condition: tuple[str, str, str], now: str) -> dict | None:
    """The status with the Available condition set, or None when it already says so. The
    transition time moves only when the condition's status changes."""
    status, reason, message = condition
    current = apiservice.get("status") if isinstance(apiservice.get("status"), dict) else {}
    conditions = [c for c in current.get("conditions") or [] if isinstance(c, dict)]
    old = next((c for c in conditions if c.get("type") == "Available"), None)
    if old is not None and (old.get("status"), old.get("reason"), old.get("message")) == condition:
        return None
    since = old.get("lastTransitionTime") if old is not None and old.get("status") == status else now
    new = {"type": "Available", "status": status, "lastTransitionTime": since, "reason": reason, "message": message}
    others = [c for c in conditions if c.get("type") != "Available"]
    return {**current, "conditions": [new, *others]}


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class APIServiceController:
    """Applies the autoregistration plan and the availability decisions to the registry."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.apiservices = registry.store(GROUP, "apiservices")
        self._services = registry.services
        self._endpoints = registry.store("", "endpoints")
        # (namespace, name) of the Services some APIService names: only their Service and
        # Endpoints events concern this controller (every other Service write skips it).
        self._referenced: set[tuple[str, str]] = set()

    async def sync(self) -> None:
        await self._autoregister()
        apiservices = self.apiservices.list_objects()
        self._referenced = {(ref.get("namespace", ""), ref.get("name", "")) for obj in apiservices
                            if isinstance(ref := (obj.get("spec") or {}).get("service"), dict)}
        for obj in apiservices:
            await self._sync_availability(obj)

    def _concerns(self, store: ObjectStore, event) -> bool:
        """Whether a watch event can change an APIService: any APIService event, and the events
        of the Services (and their Endpoints) that an APIService names."""
        if store is self.apiservices:
            return True
        if not self._referenced:  # the usual case: every APIService is local
            return False
        meta = event.object().get("metadata") or {}
        return (meta.get("namespace", ""), meta.get("name", "")) in self._referenced

    async def _autoregister(self) -> None:
        existing = {o["metadata"]["name"]: o for o in self.apiservices.list_objects()}
        creates, updates, deletes = autoregister_plan(desired_apiservices(served_group_versions()), existing)
        for obj in creates:
            with contextlib.suppress(errors.AlreadyExists):
                await self.apiservices.create(obj)
        for obj in updates:
            def mutate(cur: dict, obj: dict = obj) -> dict:
                cur["spec"] = obj["spec"]
                cur["metadata"].setdefault("labels", {}).update(obj["metadata"]["labels"])
                return cur
            with contextlib.suppress(errors.NotFound):
                await self.apiservices.guaranteed_update("", obj["metadata"]["name"], mutate)
        for name in deletes:
            with contextlib.suppress(errors.NotFound):
                await self.apiservices.delete("", name)

    async def _sync_availability(self, obj: dict) -> None:
        ref = (obj.get("spec") or {}).get("service")
        service = endpoints = None
        if isinstance(ref, dict):
            service = self._services.try_get(ref.get("namespace", ""), ref.get("name", ""))
            endpoints = self._endpoints.try_get(ref.get("namespace", ""), ref.get("name", ""))
        condition = available_condition(obj, service, endpoints)
        if updated_status(obj, condition, _now()) is None:
            return

        def mutate(cur: dict) -> dict:
            status = updated_status(cur, condition, _now())
            if status is not None:
                cur["status"] = status
            return cur
        with contextlib.suppress(errors.NotFound):
            await self.apiservices.guaranteed_update("", obj["metadata"]["name"], mutate, subresource="status")

    async def run(self) -> None:
        """Sync now, then whenever a watched kind changes, and every RESYNC_SECONDS."""
        wake = asyncio.Event()
        watchers = [asyncio.create_task(self._watch(store, wake), name=f"apiservice-watch-{store.res.plural}")
                    for store in (self.apiservices, self._services, self._endpoints)]
        try:
            while True:
                try:
                    await self.sync()
                except errors.ApiError as e:
                    log.warning("APIService sync failed: %s", e.message)
                # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a cancellation
                # that arrives as the event fires, and the controller would outlive its stop.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(RESYNC_SECONDS):
                        await wake.wait()
                wake.clear()
        finally:
            for t in watchers:
                t.cancel()
            await asyncio.gather(*watchers, return_exceptions=True)

    async def _watch(self, store: ObjectStore, wake: asyncio.Event) -> None:
        while True:
            try:
                async for event in store.watch("", self.registry.current_revision()):
                    if self._concerns(store, event):
                        wake.set()
                # The watch ended (the store is closing): wait before watching again, or this loop
                # would spin without ever yielding and nothing could cancel it.
                await asyncio.sleep(1.0)
            except errors.Gone:  # compacted under us: resync and watch again
                wake.set()
            except Exception:  # noqa: BLE001 - a broken watch must not stop the controller
                log.exception("APIService controller: watch on %s failed", store.res.plural)
                await asyncio.sleep(1.0)
