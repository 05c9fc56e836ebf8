"""ClusterIP and NodePort allocation for Services (upstream's alloc.go and the service repair loops).

ServiceAllocator owns the two ranges (one service CIDR, one node-port range shared by all
protocols). allocate_for_create/allocate_for_update first apply the contextual defaulting of
strategy.py and ipfamilies.py, then allocate; every allocation is recorded in a Transaction that
the store commits after the write (releases of old values happen only then) or reverts when the
write fails. share_through(backend) commits both ranges through the store (allocators/stored.py),
so that several API servers on one store never hand out a value twice; the registry calls it
only for a store several servers share (etcd). repair_ranges() is upstream's repair of those
records (allocators/repair.py), run at start and periodically. Errors are raised as
Kubernetes answers them: Invalid for a bad request, InternalError
for an exhausted range.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from pocketkube.api.errors import InternalError, Invalid
from pocketkube.api.fields import invalid
from pocketkube.net.errors import AllocationError, RangeFull
from pocketkube.net.ipalloc import IPAddress, IPAllocator
from pocketkube.registry.allocators.portalloc import PortAllocator
from pocketkube.registry.allocators.stored import (
    NODE_PORTS_KEY,
    SERVICE_IPS_KEY,
    AllocationRaced,
    StoredRange,
)
from pocketkube.registry.allocators.transaction import Transaction
from pocketkube.registry.core.services.ipfamilies import (
    init_ip_family_fields,
    is_matching_prefer_dual_stack,
    parse_ip,
)
from pocketkube.registry.core.services.spec import (
    CLUSTER_IP,
    CLUSTER_IPS,
    EXTERNAL_NAME,
    KIND,
    LOAD_BALANCER,
    NODE_PORT,
    PORTS,
    ensure_spec,
    int_field,
    is_headless,
    list_field,
    name_of,
    needs_cluster_ip,
    needs_health_check,
    needs_node_port,
    node_ports_in_order,
    ports_of,
    spec_of,
    str_field,
)
from pocketkube.registry.core.services.strategy import (
    drop_type_dependent_fields,
    normalize_cluster_ips,
    patch_allocated_values,
)
from pocketkube.registry.core.services.validation import type_errors
from pocketkube.storage.interface import Backend

log = logging.getLogger(__name__)


class ServiceAllocator:
    """ClusterIPs from one IPv4 (or IPv6) CIDR and NodePorts from one range shared by all protocols."""

    def __init__(self, service_cidr: str = "127.96.0.0/16",
                 node_port_range: tuple[int, int] = (30000, 32767)) -> None:
        self.ips = IPAllocator(service_cidr)
        self.node_ports = PortAllocator(*node_port_range)
        self.family = self.ips.family
        self._shared: tuple[StoredRange, StoredRange] | None = None

    def share_through(self, backend: Backend) -> None:
        """Keep both ranges in the store's records, shared with the other API servers on it."""
        self._shared = (StoredRange(backend, SERVICE_IPS_KEY, self.ips.bits, str(self.ips.network)),
                        StoredRange(backend, NODE_PORTS_KEY, self.node_ports.bits, self.node_ports.range_str()))

    async def flush(self) -> None:
        """Write what is pending (the repair's result, releases) to the records now."""
        for shared in self._shared or ():
            await shared.flush()

    async def stop(self) -> None:
        for shared in self._shared or ():
            await shared.stop()

    async def write_releases(self) -> None:
        """Write released values to the records now; on a store error they stay pending (the
        next write or the repair at start writes them), as the Service is gone already."""
        for shared in self._shared or ():
            try:
                await shared.sync()
            except Exception as err:  # noqa: BLE001 - the delete itself succeeded
                log.warning("could not release in %s: %s", shared.key, err)

    @property
    def shared(self) -> bool:
        return self._shared is not None

    async def repair_ranges(self, list_services: Callable[[], list[dict]], attempts: int = 5) -> list[str]:
        """One run of the repair of both records (allocators/repair.py), every server at start
        and periodically: the records and the Services are read at one revision; a run another
        write raced is run again. The problems the Services show (collisions, out of range)."""
        if self._shared is None:
            return []
        backend = self._shared[0].backend
        problems: list[str] = []
        todo = [0, 1]  # a record whose run was raced runs again, alone (its leak counts did not advance)
        for _ in range(attempts):
            await backend.wait_for(await backend.consistent_revision())
            kvs = [backend.get_now(shared.key) for shared in self._shared]  # no yield from here on:
            ips, ports, problems = self._mark_all(list_services())  # one snapshot
            held = (ips.bits.indices(), ports.bits.indices())
            todo = [r for r in todo if not await self._shared[r].repair(kvs[r], held[r])]
            if not todo:
                break
        return problems

    def _refresh(self) -> None:
        for shared in self._shared or ():
            shared.refresh()

    def _new_txn(self) -> Transaction:
        self._refresh()  # decide on the other servers' latest allocations too
        txn = Transaction()
        if self._shared is not None:
            txn.on_persist(lambda: self._persist(txn))
            # Values released by the commit (a type change) or the revert: written soon, in the
            # background (the task runs after the releases).
            txn.on_commit(self._schedule_syncs)
            txn.on_revert(self._schedule_syncs)
        return txn

    def _schedule_syncs(self) -> None:
        for shared in self._shared or ():
            shared.schedule_sync()

    async def _persist(self, txn: Transaction) -> None:
        ips, ports = self._shared or ()
        # Both at once: the two records' writes share one store commit (SQLite batches them).
        await asyncio.gather(ips.sync(), ports.sync())
        if any(offset in (ips, ports)[r].lost for r, offset in txn.claims):
            txn.revert()
            raise AllocationRaced()

    def _release_ip(self, ip: IPAddress) -> None:
        if self._shared is not None:
            if self._shared[0].take_lost(int(ip) - self.ips.base):
                return  # another server holds it now
        self.ips.release(ip)

    def _release_port(self, port: int) -> None:
        if self._shared is not None:
            if self._shared[1].take_lost(port - self.node_ports.base):
                return
        self.node_ports.release(port)

    def first_ip(self) -> str:
        return self.ips.first_ip()

    def used_node_ports(self) -> int:
        return self.node_ports.used()

    def free_node_ports(self) -> int:
        return self.node_ports.free()

    def used_cluster_ips(self) -> int:
        return self.ips.used()

    def free_cluster_ips(self) -> int:
        return self.ips.free()

    # -- create / update / delete ----------------------------------------------------------

    def allocate_for_create(self, svc: dict) -> Transaction:
        _raise_on_type_errors(svc)
        spec = ensure_spec(svc)
        normalize_cluster_ips(spec, None)
        txn = self._new_txn()
        try:
            init_ip_family_fields(svc, None, cluster_family=self.family)
            self._alloc_cluster_ips(svc, txn)
            if needs_node_port(spec):
                self._init_node_ports(svc, txn)
            if needs_health_check(spec):
                self._alloc_health_check_node_port(spec, txn)
        except Exception:
            txn.revert()
            raise
        return txn

    def allocate_for_update(self, new: dict, old: dict) -> Transaction:
        _raise_on_type_errors(new)
        spec, old_spec = ensure_spec(new), spec_of(old)
        patch_allocated_values(spec, old_spec)
        normalize_cluster_ips(spec, old_spec)
        txn = self._new_txn()
        try:
            init_ip_family_fields(new, old_spec, cluster_family=self.family)
            self._update_cluster_ips(new, old_spec, txn)
            self._update_node_ports(new, old_spec, txn)
            self._update_health_check_node_port(spec, old_spec, txn)
        except Exception:
            txn.revert()
            raise
        drop_type_dependent_fields(new, old)
        return txn

    def release(self, svc: dict) -> None:
        self._refresh()
        spec = spec_of(svc)
        for ip in self._owned_ips(spec):
            self._release_ip(ip)
        for port in node_ports_in_order(spec):
            self._release_port(port)
        if needs_health_check(spec) and int_field(spec, "healthCheckNodePort"):
            self._release_port(int_field(spec, "healthCheckNodePort"))

    def rebuild(self, services: list[dict]) -> list[str]:
        """Forget everything, then mark what stored services hold; report conflicts (the repair
        loop at start). Shared ranges also keep what their records hold (others' allocations)."""
        self.ips, self.node_ports, problems = self._mark_all(services)
        if self._shared is not None:
            for shared, alloc in zip(self._shared, (self.ips, self.node_ports), strict=True):
                shared.bits = alloc.bits
                shared.load(alloc.bits.indices())
        return problems

    def _mark_all(self, services: list[dict]) -> tuple[IPAllocator, PortAllocator, list[str]]:
        """Fresh ranges holding what the Services hold, and the conflicts found."""
        ips = IPAllocator(str(self.ips.network))
        node_ports = PortAllocator(self.node_ports.base, self.node_ports.base + self.node_ports.size - 1)
        problems: list[str] = []
        for svc in services:
            spec, who = spec_of(svc), _describe(svc)
            for ip in self._owned_ips(spec):
                problems.extend(f"{who}: {p}" for p in _mark_ip(ips, ip))
            ports = node_ports_in_order(spec)
            if needs_health_check(spec) and int_field(spec, "healthCheckNodePort"):
                ports.append(int_field(spec, "healthCheckNodePort"))
            for port in ports:
                problems.extend(f"{who}: {p}" for p in _mark_port(node_ports, port))
        return ips, node_ports, problems

    def _owned_ips(self, spec: dict) -> list[IPAddress]:
        if not needs_cluster_ip(spec) or is_headless(spec):
            return []
        parsed = [parse_ip(ip) for ip in list_field(spec, "clusterIPs") or [str_field(spec, "clusterIP")]]
        return [ip for ip in parsed if ip is not None and ip.version == self.ips.network.version]

    # -- cluster IPs -------------------------------------------------------------------------

    def _alloc_cluster_ips(self, svc: dict, txn: Transaction) -> None:
        spec = spec_of(svc)
        if str_field(spec, "type") == EXTERNAL_NAME or is_headless(spec):
            return
        ips = spec["clusterIPs"] = list(list_field(spec, "clusterIPs"))
        for i, family in enumerate(list_field(spec, "ipFamilies")):
            if i >= len(ips):
                ips.append("")
            if family == self.family:
                ips[i] = self._alloc_ip(ips[i], svc, txn)
        if ips:
            spec["clusterIP"] = ips[0]

    def _alloc_ip(self, requested: str, svc: dict, txn: Transaction) -> str:
        if not requested:
            try:
                ip = self.ips.allocate_next()
            except RangeFull as err:
                raise InternalError(f"failed to allocate a serviceIP: {err}") from None
        else:
            ip = parse_ip(requested)
            try:
                self.ips.allocate(ip)
            except AllocationError as err:
                raise Invalid(KIND, name_of(svc), [invalid(CLUSTER_IPS, spec_of(svc)["clusterIPs"],
                                                         f"failed to allocate IP {requested}: {err}")]) from None
        txn.on_revert(lambda: self._release_ip(ip))
        txn.claims.append((0, int(ip) - self.ips.base))
        return requested or str(ip)

    def _update_cluster_ips(self, svc: dict, old_spec: dict, txn: Transaction) -> None:
        spec = spec_of(svc)
        if is_matching_prefer_dual_stack(spec, old_spec):
            return
        old_external = str_field(old_spec, "type") == EXTERNAL_NAME
        new_external = str_field(spec, "type") == EXTERNAL_NAME
        if old_external and not new_external:
            self._alloc_cluster_ips(svc, txn)
        elif not old_external and new_external and not is_headless(old_spec):
            for ip in self._owned_ips(old_spec):
                txn.on_commit(lambda ip=ip: self._release_ip(ip))

    # -- node ports --------------------------------------------------------------------------

    def _alloc_port(self, port: int, txn: Transaction) -> None:
        self.node_ports.allocate(port)
        txn.on_revert(lambda: self._release_port(port))
        txn.claims.append((1, port - self.node_ports.base))

    def _alloc_next_port(self, txn: Transaction) -> int:
        try:
            port = self.node_ports.allocate_next()
        except RangeFull as err:
            raise InternalError(f"failed to allocate a nodePort: {err}") from None
        txn.on_revert(lambda: self._release_port(port))
        txn.claims.append((1, port - self.node_ports.base))
        return port

    def _init_node_ports(self, svc: dict, txn: Transaction) -> None:
        """initNodePorts: ports sharing a port number (e.g. 53/TCP and 53/UDP) share one nodePort."""
        spec = spec_of(svc)
        ports = ports_of(spec)
        by_port_number: dict[int, int] = {}
        for i, port in enumerate(ports):
            node_port = int_field(port, "nodePort")
            if not node_port and not _should_allocate_node_ports(spec):
                continue  # only explicit requests are honoured
            number = int_field(port, "port")
            shared = by_port_number.get(number, 0)
            if not shared:
                requested = next((int_field(p, "nodePort") for p in ports
                                  if int_field(p, "port") == number and int_field(p, "nodePort")), 0)
                if requested:
                    self._alloc_requested_port(requested, i, svc, txn)
                    port["nodePort"] = requested
                else:
                    port["nodePort"] = self._alloc_next_port(txn)
                by_port_number[number] = port["nodePort"]
            elif node_port != shared:
                if not node_port:
                    port["nodePort"] = shared
                else:
                    self._alloc_requested_port(node_port, i, svc, txn)

    def _alloc_requested_port(self, node_port: int, index: int, svc: dict, txn: Transaction) -> None:
        try:
            self._alloc_port(node_port, txn)
        except AllocationError as err:
            path = PORTS.index(index).child("nodePort")
            raise Invalid(KIND, name_of(svc), [invalid(path, node_port, str(err))]) from None

    def _alloc_health_check_node_port(self, spec: dict, txn: Transaction) -> None:
        requested = int_field(spec, "healthCheckNodePort")
        if requested:
            try:
                self._alloc_port(requested, txn)
            except AllocationError as err:
                raise InternalError(f"failed to allocate requested HealthCheck NodePort {requested}: {err}") from None
            return
        try:
            port = self.node_ports.allocate_next()
        except RangeFull as err:
            raise InternalError(f"failed to allocate a HealthCheck NodePort 0: {err}") from None
        txn.on_revert(lambda: self._release_port(port))
        txn.claims.append((1, port - self.node_ports.base))
        spec["healthCheckNodePort"] = port

    def _update_node_ports(self, svc: dict, old_spec: dict, txn: Transaction) -> None:
        spec = spec_of(svc)
        if needs_node_port(old_spec) and str_field(spec, "type") in (CLUSTER_IP, EXTERNAL_NAME):
            for port in node_ports_in_order(old_spec):
                txn.on_commit(lambda port=port: self._release_port(port))
        if not needs_node_port(spec):
            return
        old_ports = set(node_ports_in_order(old_spec))
        allocated_now: set[int] = set()
        seen: set[tuple[str, int]] = set()
        for i, port in enumerate(ports_of(spec)):
            node_port = int_field(port, "nodePort")
            if not node_port and not _should_allocate_node_ports(spec):
                continue
            if node_port:
                if node_port not in old_ports and node_port not in allocated_now:
                    self._alloc_requested_port(node_port, i, svc, txn)
                    allocated_now.add(node_port)
            else:
                node_port = port["nodePort"] = self._alloc_next_port(txn)
            key = (str_field(port, "protocol"), node_port)
            if key in seen:
                raise InternalError(f"duplicate nodePort: {{{key[0]} {key[1]}}}")
            seen.add(key)
        still_used = set(node_ports_in_order(spec))
        for port in old_ports - still_used:
            txn.on_commit(lambda port=port: self._release_port(port))

    def _update_health_check_node_port(self, spec: dict, old_spec: dict, txn: Transaction) -> None:
        needed, needs = needs_health_check(old_spec), needs_health_check(spec)
        if not needed and needs:
            self._alloc_health_check_node_port(spec, txn)
        elif needed and not needs and int_field(old_spec, "healthCheckNodePort"):
            old_port = int_field(old_spec, "healthCheckNodePort")
            txn.on_commit(lambda: self._release_port(old_port))


def _mark_ip(ips: IPAllocator, ip: IPAddress) -> list[str]:
    try:
        ips.allocate(ip)
    except AllocationError as err:
        if ips.has(ip):
            return [f"Cluster IP {ip} was assigned to multiple services; please recreate service"]
        return [f"Cluster IP {ip} is not within the service CIDR {ips.network}; please recreate service ({err})"]
    return []


def _mark_port(node_ports: PortAllocator, port: int) -> list[str]:
    try:
        node_ports.allocate(port)
    except AllocationError:
        if node_ports.has(port):
            return [f"Port {port} was assigned to multiple services; please recreate service"]
        return [f"Port {port} is not within the port range {node_ports.range_str()}; please recreate service"]
    return []


def _should_allocate_node_ports(spec: dict) -> bool:
    if str_field(spec, "type") == NODE_PORT:
        return True
    return str_field(spec, "type") == LOAD_BALANCER and spec.get("allocateLoadBalancerNodePorts") is not False


def _raise_on_type_errors(svc: Any) -> None:
    errs = type_errors(svc)
    if errs:
        raise Invalid(KIND, name_of(svc), errs)


def _describe(svc: dict) -> str:
    meta = svc.get("metadata") if isinstance(svc, dict) else None
    namespace = meta.get("namespace", "") if isinstance(meta, dict) else ""
    return f"service {namespace}/{name_of(svc)}"
