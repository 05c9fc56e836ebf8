"""The cluster DNS component: informers on Services, EndpointSlices and Namespaces keep the
zone index current (one Service's records rebuilt per event, so a new Service resolves as soon
as its watch event arrives), and the `kube-system/kube-dns` Service with its EndpointSlice and
Endpoints is kept pointing at where this server listens (no selector: like `kubernetes`).
"""

from __future__ import annotations

import asyncio
import logging

from pocketkube.api import errors
from pocketkube.api.resources import BY_PLURAL
from pocketkube.client.informer import Informer, object_key
from pocketkube.client.interface import Client
from pocketkube.dns.records import service_records, slice_service_key
from pocketkube.dns.zone import ZoneIndex
from pocketkube.util.backoff import Backoff

log = logging.getLogger(__name__)

SERVICES = BY_PLURAL[("", "services")]
ENDPOINTS = BY_PLURAL[("", "endpoints")]
ENDPOINT_SLICES = BY_PLURAL[("discovery.k8s.io", "endpointslices")]
NAMESPACES = BY_PLURAL[("", "namespaces")]

NAMESPACE = "kube-system"
NAME = "kube-dns"
KEY = f"{NAMESPACE}/{NAME}"
LABELS = {"k8s-app": "kube-dns", "kubernetes.io/cluster-service": "true", "kubernetes.io/name": "CoreDNS"}
MANAGED_BY = "pocketkube-dns"


def kube_dns_service(cluster_ip: str, metrics: bool = False) -> dict:
    """kubeadm's kube-dns Service, minus the selector (the server is not a pod)."""
    metrics_port = [{"name": "metrics", "port": 9153, "protocol": "TCP", "targetPort": 9153}] if metrics else []
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": NAME, "namespace": NAMESPACE, "labels": dict(LABELS)},
            "spec": {"type": "ClusterIP", "clusterIP": cluster_ip, "clusterIPs": [cluster_ip],
                     "sessionAffinity": "None",
                     "ports": [{"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
                               {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53},
                               *metrics_port]}}


def kube_dns_slice(address: str, port: int, metrics_port: int = 0) -> dict:
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": NAME, "namespace": NAMESPACE,
                         "labels": {**LABELS, "kubernetes.io/service-name": NAME,
                                    "endpointslice.kubernetes.io/managed-by": MANAGED_BY}},
            "addressType": "IPv6" if ":" in address else "IPv4",
            "endpoints": [{"addresses": [address], "conditions": {"ready": True, "serving": True,
                                                                  "terminating": False}}],
            "ports": _endpoint_ports(port, metrics_port)}


def _endpoint_ports(port: int, metrics_port: int) -> list[dict]:
    return [{"name": "dns", "port": port, "protocol": "UDP"}, {"name": "dns-tcp", "port": port, "protocol": "TCP"},
            *([{"name": "metrics", "port": metrics_port, "protocol": "TCP"}] if metrics_port else [])]


def kube_dns_endpoints(address: str, port: int, metrics_port: int = 0) -> dict:
    return {"apiVersion": "v1", "kind": "Endpoints",
            "metadata": {"name": NAME, "namespace": NAMESPACE,
                         "labels": {**LABELS, "endpointslice.kubernetes.io/skip-mirror": "true"}},
            "subsets": [{"addresses": [{"ip": address}],
                         "ports": _endpoint_ports(port, metrics_port)}]}


def _ports(obj: dict) -> list[tuple]:
    return sorted((p.get("name"), p.get("port"), p.get("protocol"), str(p.get("targetPort", "")))
                  for p in (obj.get("spec") or {}).get("ports") or [])


def service_drift(current: dict | None, desired: dict) -> str:
    """What reconciling the Service must do: "create", "recreate" (another ClusterIP: it cannot
    be changed in place), "update" (ports, labels or a selector differ) or "" (nothing)."""
    if current is None:
        return "create"
    spec = current.get("spec") or {}
    if spec.get("clusterIP") != desired["spec"]["clusterIP"]:
        return "recreate"
    labels = (current.get("metadata") or {}).get("labels") or {}
    if _ports(current) != _ports(desired) or spec.get("selector") or spec.get("type") != "ClusterIP" \
            or any(labels.get(k) != v for k, v in LABELS.items()):
        return "update"
    return ""


def _differs(current: dict | None, desired: dict, fields: tuple[str, ...]) -> bool:
    if current is None:
        return True
    labels = (current.get("metadata") or {}).get("labels") or {}
    return any(current.get(f) != desired[f] for f in fields) or \
        any(labels.get(k) != v for k, v in desired["metadata"]["labels"].items())


class ClusterDNS:
    def __init__(self, client: Client, index: ZoneIndex, *, service_ip: str, address: str, port: int,
                 metrics_port: int = 0) -> None:
        self.client = client
        self.index = index
        index.ready = False
        self.service_ip = service_ip
        self.address = address
        self.port = port
        self.metrics_port = metrics_port
        self.services = Informer(client, SERVICES)
        self.slices = Informer(client, ENDPOINT_SLICES)
        self.namespaces = Informer(client, NAMESPACES)
        self._slices_by_service: dict[str, dict[str, dict]] = {}
        self._reconcile = asyncio.Event()
        self._backoff = Backoff(initial=0.2, maximum=10.0, jitter=0.2)
        self._tasks: list[asyncio.Task] = []
        self.reconciled = asyncio.Event()
        self.services.add_handlers(self._on_service, lambda _old, new: self._on_service(new),
                                   lambda svc: self._on_service(svc, deleted=True))
        self.slices.add_handlers(self._on_slice, self._on_slice_update, lambda s: self._on_slice(s, deleted=True))
        self.namespaces.add_handlers(lambda ns: self._on_namespace(ns, True),
                                     lambda _old, new: self._on_namespace(new, True),
                                     lambda ns: self._on_namespace(ns, False))

    # ---- the index, one Service at a time ----
    def _rebuild(self, key: str) -> None:
        svc = self.services.get(key)
        records = service_records(svc, self._slices_by_service.get(key, {}).values(), self.index.zone.rstrip(".")) \
            if svc is not None else {}
        self.index.set_service(key, records)

    def _on_service(self, svc: dict, deleted: bool = False) -> None:
        key = object_key(svc)
        self._rebuild(key)
        if key == KEY:
            self._reconcile.set()

    def _on_slice(self, slc: dict, deleted: bool = False) -> None:
        key = slice_service_key(slc)
        if key is None:
            return
        group = self._slices_by_service.setdefault(key, {})
        if deleted:
            group.pop(object_key(slc), None)
            if not group:
                del self._slices_by_service[key]
        else:
            group[object_key(slc)] = slc
        self._rebuild(key)
        if key == KEY:
            self._reconcile.set()

    def _on_slice_update(self, old: dict, new: dict) -> None:
        if slice_service_key(old) != slice_service_key(new):
            self._on_slice(old, deleted=True)
        self._on_slice(new)

    def _on_namespace(self, ns: dict, present: bool) -> None:
        name = (ns.get("metadata") or {}).get("name", "")
        self.index.set_namespace(name, present)

    # ---- kube-dns's own objects ----
    async def reconcile(self) -> None:
        desired = kube_dns_service(self.service_ip, metrics=bool(self.metrics_port))
        current = self.services.get(KEY)
        action = service_drift(current, desired)
        if action == "recreate":
            log.warning("kube-system/kube-dns has ClusterIP %s, not %s: recreating it",
                        (current.get("spec") or {}).get("clusterIP"), self.service_ip)
            try:
                await self.client.delete(SERVICES, NAMESPACE, NAME)
            except errors.NotFound:
                pass
            action = "create"
        if action == "create":
            try:
                await self.client.create(SERVICES, desired, NAMESPACE)
            except errors.AlreadyExists:
                pass
        elif action == "update":
            assert current is not None
            fresh = {**current, "spec": {**current["spec"], "ports": desired["spec"]["ports"], "type": "ClusterIP"}}
            fresh["spec"].pop("selector", None)
            fresh["metadata"] = {**current["metadata"],
                                 "labels": {**(current["metadata"].get("labels") or {}), **LABELS}}
            await self.client.update(SERVICES, fresh)
        await self._ensure(ENDPOINT_SLICES, self.slices.get(KEY), kube_dns_slice(self.address, self.port, self.metrics_port),
                           ("endpoints", "ports", "addressType"))
        try:
            endpoints = await self.client.get(ENDPOINTS, NAMESPACE, NAME)
        except errors.NotFound:
            endpoints = None
        await self._ensure(ENDPOINTS, endpoints, kube_dns_endpoints(self.address, self.port, self.metrics_port), ("subsets",))

    async def _ensure(self, res, current: dict | None, desired: dict, fields: tuple[str, ...]) -> None:
        if not _differs(current, desired, fields):
            return
        if current is None:
            try:
                await self.client.create(res, desired, NAMESPACE)
            except errors.AlreadyExists:
                pass
            return
        if res is ENDPOINT_SLICES and current.get("addressType") != desired["addressType"]:
            await self.client.delete(res, NAMESPACE, NAME)  # addressType is immutable
            await self.client.create(res, desired, NAMESPACE)
            return
        fresh = {**current, **{f: desired[f] for f in fields}}
        fresh["metadata"] = {**current["metadata"],
                             "labels": {**(current["metadata"].get("labels") or {}), **desired["metadata"]["labels"]}}
        await self.client.update(res, fresh)

    async def _reconcile_loop(self) -> None:
        while True:
            await self._reconcile.wait()
            self._reconcile.clear()
            try:
                await self.reconcile()
                self._backoff.reset()
                self.reconciled.set()
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 - API errors: retry with back-off
                delay = self._backoff.next()
                log.warning("reconciling kube-system/kube-dns failed (%s); retrying in %.1fs", e, delay)
                await asyncio.sleep(delay)
                self._reconcile.set()

    async def start(self) -> None:
        """Start the informers, wait for their first listing (the index is complete from then
        on), and reconcile kube-dns in the background."""
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(i.run()) for i in (self.namespaces, self.services, self.slices)]
        for informer in (self.namespaces, self.services, self.slices):
            await informer.synced.wait()
        self.index.set_ready()
        self._reconcile.set()
        self._tasks.append(loop.create_task(self._reconcile_loop()))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
