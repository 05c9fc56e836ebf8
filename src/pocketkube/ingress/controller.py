"""The built-in Ingress controller: informers → routing table → the proxy's listeners.

It runs as its own process under `pocketkube up` (as k3s runs traefik), with its own identity
(user system:pocketkube-ingress: it reads TLS Secrets, which node identities may not), and listens
on every node IP. Its LoadBalancer Service `kube-system/pocketkube-ingress` gets an address from
the built-in LB controller; the Service's EndpointSlice (kept here, the Service has no selector)
names the node IPs, so the Service data plane carries the LB address to these listeners, and
that address is what Ingresses get in status.loadBalancer.ingress.

Any change (Ingress, class, Service, EndpointSlice, Secret) marks the table dirty; one loop
rebuilds it, then writes statuses and Events for what changed. Requests read the current table.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

from pocketkube.api import errors
from pocketkube.api.resources import BY_PLURAL
from pocketkube.client.events import EventRecorder
from pocketkube.client.informer import Informer, object_key
from pocketkube.client.interface import Client
from pocketkube.ingress.proxy import IngressProxy
from pocketkube.ingress.routing import Cluster, Problem, Rule, Table, build_table, index_slices, is_ours
from pocketkube.ingress.tls import SniContexts

log = logging.getLogger(__name__)

INGRESSES = BY_PLURAL[("networking.k8s.io", "ingresses")]
INGRESS_CLASSES = BY_PLURAL[("networking.k8s.io", "ingressclasses")]
SERVICES = BY_PLURAL[("", "services")]
SLICES = BY_PLURAL[("discovery.k8s.io", "endpointslices")]
SECRETS = BY_PLURAL[("", "secrets")]

SERVICE_NAMESPACE = "kube-system"
SERVICE_NAME = "pocketkube-ingress"
MANAGED_BY = "ingress.pocketkube.io"  # a label value: no slash
COMPONENT = "pocketkube-ingress"
UNAVAILABLE_EVENT_INTERVAL = 30.0  # seconds between two 503 Events for one Ingress


@dataclass(frozen=True)
class IngressSettings:
    addresses: tuple[str, ...] = ()  # where to listen: the node IPs
    http_port: int = 80  # 0: no plain HTTP listener
    https_port: int = 443  # 0: no TLS listener
    load_balancer: bool = True  # keep the LoadBalancer Service and publish its address


def desired_status(lb_ips: list[str], addresses: tuple[str, ...]) -> dict:
    """status.loadBalancer: the LB address once the Service has one, else the node IPs."""
    ips = lb_ips or list(addresses)
    return {"loadBalancer": {"ingress": [{"ip": ip} for ip in ips]}} if ips else {"loadBalancer": {}}


def service_object(settings: IngressSettings) -> dict:
    ports = [{"name": name, "port": port, "targetPort": port, "protocol": "TCP"}
             for name, port in (("http", settings.http_port), ("https", settings.https_port)) if port]
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": SERVICE_NAME, "namespace": SERVICE_NAMESPACE,
                         "labels": {"app.kubernetes.io/name": SERVICE_NAME}},
            "spec": {"type": "LoadBalancer", "ports": ports}}


def slice_object(settings: IngressSettings) -> dict:
    ports = [{"name": name, "port": port, "protocol": "TCP"}
             for name, port in (("http", settings.http_port), ("https", settings.https_port)) if port]
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": SERVICE_NAME, "namespace": SERVICE_NAMESPACE,
                         "labels": {"kubernetes.io/service-name": SERVICE_NAME,
                                    "endpointslice.kubernetes.io/managed-by": MANAGED_BY}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": [ip], "conditions": {"ready": True}} for ip in settings.addresses],
            "ports": ports}


@dataclass
class _State:
    table: Table = field(default_factory=Table)
    problems: set[Problem] = field(default_factory=set)
    last_unavailable: dict[str, float] = field(default_factory=dict)


class IngressController:
    def __init__(self, client: Client, settings: IngressSettings) -> None:
        self.client = client
        self.settings = settings
        self.informers = {res.plural: Informer(client, res) for res in
                          (INGRESSES, INGRESS_CLASSES, SERVICES, SLICES, SECRETS)}
        self.events = EventRecorder(client, COMPONENT)
        self.state = _State()
        self.proxy = IngressProxy(lambda: self.state.table, self._unavailable)
        self.tls = SniContexts(lambda host: self.state.table.cert_for(host))
        self.rebuilds = 0
        self._wake = asyncio.Event()
        self._own_changed = asyncio.Event()  # our LB Service or its slice changed
        self._tasks: list[asyncio.Task] = []
        for inf in self.informers.values():
            inf.add_handlers(self._mark, lambda _old, new: self._mark(new), self._mark)

    def _mark(self, obj: dict) -> None:
        self._wake.set()
        if object_key(obj) == f"{SERVICE_NAMESPACE}/{SERVICE_NAME}":
            self._own_changed.set()

    @property
    def table(self) -> Table:
        return self.state.table

    # ---- lifecycle ----
    async def start(self) -> None:
        self._tasks = [asyncio.create_task(inf.run()) for inf in self.informers.values()]
        await asyncio.gather(*(inf.synced.wait() for inf in self.informers.values()))
        self.rebuild()
        await self._listen()
        self._tasks.append(asyncio.create_task(self._loop()))
        if self.settings.load_balancer and (self.settings.http_port or self.settings.https_port):
            self._tasks.append(asyncio.create_task(self._keep_service()))

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.proxy.close()
        await self.events.stop()

    async def _listen(self) -> None:
        for scheme, port in (("http", self.settings.http_port), ("https", self.settings.https_port)):
            if not port:
                continue
            for address in self.settings.addresses:
                await self.proxy.serve(address, port, scheme=scheme,
                                       ssl_context=self.tls.default if scheme == "https" else None)

    # ---- the table ----
    def cluster(self) -> Cluster:
        inf = self.informers
        classes = {o["metadata"]["name"]: o for o in inf["ingressclasses"].list()}
        return Cluster(ingresses=inf["ingresses"].list(), classes=classes,
                       services={object_key(o): o for o in inf["services"].list()},
                       slices=index_slices(inf["endpointslices"].list()),
                       secrets={object_key(o): o for o in inf["secrets"].list()})

    def rebuild(self) -> Table:
        self._wake.clear()
        table = build_table(self.cluster())
        self.state.table = table
        self.proxy.endpoints_changed(table)
        self.rebuilds += 1
        fresh = set(table.problems) - self.state.problems
        self.state.problems = set(table.problems)
        for p in sorted(fresh, key=lambda p: (p.ingress, p.message)):
            self._event(p.ingress, p.reason, p.message)
        return table

    def _event(self, ingress_key: str, reason: str, message: str) -> None:
        ing = self.informers["ingresses"].get(ingress_key)
        if ing is not None:
            self.events.event(ing, "Warning", reason, message, res=INGRESSES)

    def _unavailable(self, rule: Rule) -> None:
        """A request answered 503: an Event on the Ingress, at most every UNAVAILABLE_EVENT_INTERVAL."""
        now = time.monotonic()
        if now - self.state.last_unavailable.get(rule.ingress, -1e9) < UNAVAILABLE_EVENT_INTERVAL:
            return
        self.state.last_unavailable[rule.ingress] = now
        self._event(rule.ingress, "ServiceUnavailable",
                    f"503 for {rule.path}: {rule.backend.problem or 'no endpoints'}")

    async def _loop(self) -> None:
        while True:
            await self._wake.wait()
            await asyncio.sleep(0.02)  # coalesce a burst of changes into one rebuild
            self.rebuild()
            try:
                await self.sync_statuses()
            except Exception:  # noqa: BLE001 - the next change retries
                log.exception("ingress status update failed")

    # ---- status and the LoadBalancer Service ----
    def lb_ips(self) -> list[str]:
        svc = self.informers["services"].get(f"{SERVICE_NAMESPACE}/{SERVICE_NAME}") \
            if self.settings.load_balancer else None
        entries = ((svc or {}).get("status") or {}).get("loadBalancer", {}).get("ingress") or []
        return [e["ip"] for e in entries if isinstance(e, dict) and e.get("ip")]

    async def sync_statuses(self) -> None:
        want = desired_status(self.lb_ips(), self.settings.addresses)
        classes = self.cluster().classes
        for ing in self.informers["ingresses"].list():
            if not is_ours(ing, classes) or (ing.get("status") or {}) == want:
                continue
            try:
                await self.client.update_status(INGRESSES, {**ing, "status": want})
            except (errors.Conflict, errors.NotFound):
                self._wake.set()  # a newer version is on its way through the informer

    async def _keep_service(self) -> None:
        """Create the LoadBalancer Service and its EndpointSlice, and put them back when changed or
        deleted (the informers wake this loop; it also looks every 30 s)."""
        while True:
            try:
                await self._ensure(SERVICES, service_object(self.settings), service_matches)
                await self._ensure(SLICES, slice_object(self.settings), slice_matches)
                self._own_changed.clear()
                try:
                    await asyncio.wait_for(self._own_changed.wait(), 30)
                except TimeoutError:
                    pass
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 - API errors: retry
                log.warning("cannot keep %s/%s: %s", SERVICE_NAMESPACE, SERVICE_NAME, e)
                await asyncio.sleep(2)

    async def _ensure(self, res, want: dict, same) -> None:
        try:
            cur = await self.client.get(res, SERVICE_NAMESPACE, SERVICE_NAME)
        except errors.NotFound:
            await self.client.create(res, want, SERVICE_NAMESPACE)
            return
        if not same(cur, want):
            body = {**cur, **{k: v for k, v in want.items() if k != "metadata"}}
            if res is SERVICES:
                body["spec"] = {**cur["spec"], "type": "LoadBalancer", "ports": want["spec"]["ports"]}
            await self.client.update(res, body)


def _port_shape(ports: object) -> list[tuple]:
    return [(p.get("name"), p.get("port"), p.get("targetPort", p.get("port")), p.get("protocol", "TCP"))
            for p in ports if isinstance(p, dict)] if isinstance(ports, list) else []


def service_matches(cur: dict, want: dict) -> bool:
    spec = cur.get("spec") or {}
    return spec.get("type") == "LoadBalancer" and not spec.get("selector") and \
        _port_shape(spec.get("ports")) == _port_shape(want["spec"]["ports"])


def slice_matches(cur: dict, want: dict) -> bool:
    return cur.get("endpoints") == want["endpoints"] and _port_shape(cur.get("ports")) == _port_shape(want["ports"])
