"""All resource stores over one backend, each with its kind's strategy.

The registry is what the API server sees of the cluster state: it is handed an opened Backend
(the wiring chooses which, from the storage DSN) and its configuration, and offers the
per-kind stores plus the few whole-store operations the server runs (start, repair,
compaction, revision). Nothing here knows a concrete backend.
"""

from __future__ import annotations

from dataclasses import dataclass

from pocketkube.api.resources import RESOURCES, Resource
from pocketkube.registry import codec
from pocketkube.registry.admission import LimitRanger, ResourceQuotaAdmission
from pocketkube.registry.apiregistration import apiservices
from pocketkube.registry.apps import controllerrevisions, daemonsets, deployments, replicasets, statefulsets
from pocketkube.registry.batch import cronjobs, jobs
from pocketkube.registry.certificates import csr
from pocketkube.registry.core import config as config_kinds
from pocketkube.registry.core import limitranges, namespaces, others, quota, replicationcontrollers, services
from pocketkube.registry.core.pods import strategy as pods_strategy
from pocketkube.registry.leasemanager import TTLLeases
from pocketkube.registry.masterleases import MasterLeases
from pocketkube.registry.networking import strategies as networking
from pocketkube.registry.policy import pdb
from pocketkube.registry.rbac import strategies as rbac
from pocketkube.registry.rbac.index import PolicyIndex
from pocketkube.registry.store import ObjectStore
from pocketkube.registry.strategy import NO_HOOKS, Strategy
from pocketkube.registry.volumes import strategies as volumes
from pocketkube.storage.compactor import CompactorState, compact_tick
from pocketkube.storage.interface import Backend


@dataclass(frozen=True)
class RegistryConfig:
    service_cidr: str = "127.96.0.0/16"
    node_port_range: tuple[int, int] = (30000, 32767)
    # The tolerationSeconds that admission gives pods for the not-ready/unreachable taints
    # (DefaultTolerationSeconds): how long a lost node's pods wait before they are evicted.
    default_toleration_seconds: int = 300


def strategies(config: RegistryConfig, service_accounts=None, policy: PolicyIndex | None = None) -> dict[str, Strategy]:
    """Each kind's strategy, configured; `service_accounts(namespace, name)` looks a
    ServiceAccount up for the pods' admission (None: no ServiceAccount admission); the RBAC
    kinds' writes keep `policy` current."""
    return {
        "Service": services.strategy(service_cidr=config.service_cidr, node_port_range=config.node_port_range),
        "Pod": pods_strategy.strategy(default_toleration_seconds=config.default_toleration_seconds,
                                      service_accounts=service_accounts),
        "Deployment": Strategy(deployments.default, deployments.validate, deployments.validate_update,
                               tracks_generation=True),
        "ReplicaSet": Strategy(replicasets.default, replicasets.validate, replicasets.validate_update,
                               tracks_generation=True),
        "Namespace": namespaces.strategy(),
        "Node": Strategy(others.node_default, others.node_validate, others.node_validate_update,
                         keeps_status_on_create=True),
        "Endpoints": Strategy(others.endpoints_default, others.endpoints_validate, others.endpoints_validate_update),
        "EndpointSlice": Strategy(others.endpointslice_default, others.endpointslice_validate,
                                  others.endpointslice_validate_update),
        "Event": Strategy(others.event_default, others.event_validate, others.event_validate_update),
        "Lease": Strategy(others.lease_default, others.lease_validate, others.lease_validate_update),

        # -- config and identity
        "ConfigMap": config_kinds.configmap_strategy(),
        "Secret": config_kinds.secret_strategy(),
        "ServiceAccount": config_kinds.serviceaccount_strategy(),

        # -- storage
        "PersistentVolume": volumes.pv_strategy(),
        "PersistentVolumeClaim": volumes.pvc_strategy(),
        "StorageClass": volumes.storage_class_strategy(),

        # -- resources and disruption
        "LimitRange": limitranges.strategy(),
        "ResourceQuota": quota.strategy(),
        "PodDisruptionBudget": pdb.strategy(),

        # -- workloads: batch
        "Job": jobs.strategy(),
        "CronJob": cronjobs.strategy(),

        # -- workloads: apps and core
        "DaemonSet": daemonsets.strategy(),
        "StatefulSet": Strategy(statefulsets.default, statefulsets.validate, statefulsets.validate_update,
                                tracks_generation=True),
        "ControllerRevision": controllerrevisions.strategy(),
        "ReplicationController": replicationcontrollers.strategy(),

        # -- rbac
        **rbac.strategies(policy or PolicyIndex()),

        # -- TLS bootstrap
        "CertificateSigningRequest": csr.strategy(),

        # -- API registration
        "APIService": apiservices.strategy(),

        # -- networking
        "Ingress": networking.ingress_strategy(),
        "IngressClass": networking.ingress_class_strategy(),
    }


class Registry:
    def __init__(self, backend: Backend, config: RegistryConfig = RegistryConfig()) -> None:
        self._backend = backend
        self._compactor = CompactorState()
        self.master_leases = MasterLeases(backend)  # which API servers are alive (the `kubernetes` endpoints)
        self.config = config
        # The RBAC authorizer's index of Roles and bindings, kept current by those kinds' writes.
        self.policy = PolicyIndex()
        by_kind = strategies(config, lambda ns, name: self.stores[("", "serviceaccounts")].try_get(ns, name),
                             self.policy)
        self.stores: dict[tuple[str, str], ObjectStore] = {
            (res.group, res.plural): ObjectStore(res, backend, by_kind[res.kind]) for res in RESOURCES}
        volumes.connect(self.stores)  # DefaultStorageClass admission reads StorageClasses
        networking.connect(self.stores)  # DefaultIngressClass admission reads IngressClasses
        # On a store several API servers write (etcd), ClusterIPs and NodePorts are committed
        # through its range records. A store one server owns (SQLite) needs no records: the
        # in-memory ranges rebuilt from the Services at start stay exact.
        if getattr(backend, "shared", False):
            self.allocator.share_through(backend)
        self._admission()

    def _admission(self) -> None:
        """LimitRanger on pods and claims, then ResourceQuota on every namespaced kind (upstream's order)."""
        ranger = LimitRanger(self.stores[("", "limitranges")])
        self.stores[("", "pods")].admission.append(ranger)
        self.stores[("", "persistentvolumeclaims")].admission.append(ranger)
        quotas = ResourceQuotaAdmission(self.stores[("", "resourcequotas")],
                                        lambda group, plural: self.stores.get((group, plural)))
        for (group, plural), store in self.stores.items():
            if store.res.namespaced and (group, plural) != ("", "events"):
                store.admission.append(quotas)

    async def start(self) -> list[str]:
        """Open the backend and rebuild in-memory state from it; the problems the repair found."""
        await self._backend.start()
        rename = getattr(self._backend, "rename_prefixes", None)
        if rename is not None:  # a data dir from before kube's key layout: moved once, in place
            await rename(codec.legacy_renames(RESOURCES))
        problems = self.repair()
        await self.repair_ranges()  # the first run of the records' repair (a shared store only)
        return problems

    async def repair_ranges(self) -> list[str]:
        """One run of the shared range records' repair (every API server runs it at start and
        periodically: allocators/repair.py); the Services' conflicts found."""
        return await self.allocator.repair_ranges(self.services.list_objects)

    async def close(self) -> None:
        await self.allocator.stop()
        await self._backend.close()

    def expire_events_after(self, ttl: float) -> None:
        """Events live `ttl` seconds after their last write (kube-apiserver's --event-ttl), each
        under a store lease the store expires by itself (registry/leasemanager.py)."""
        self.events.ttl_leases = TTLLeases(self._backend, ttl)

    def store(self, group: str, plural: str) -> ObjectStore:
        return self.stores[(group, plural)]

    def store_for(self, res: Resource) -> ObjectStore:
        return self.stores[(res.group, res.plural)]

    @property
    def services(self) -> ObjectStore:
        return self.stores[("", "services")]

    @property
    def namespaces(self) -> ObjectStore:
        return self.stores[("", "namespaces")]

    @property
    def events(self) -> ObjectStore:
        return self.stores[("", "events")]

    @property
    def allocator(self) -> services.ServiceAllocator:
        return self.services.hooks.allocator

    def current_revision(self) -> int:
        return self._backend.current_revision()

    async def compact(self, keep: int) -> int:
        """One compactor tick (storage/compactor.py): the server that wins this interval's swap
        forgets history older than what it saw a tick ago, keeping at least `keep` revisions
        (watches from before get 410). The revision compacted to, or 0."""
        self._compactor, done = await compact_tick(self._backend, self._compactor, keep)
        return done

    def check_namespace_writable(self, namespace: str) -> None:
        """Namespaced creates need a live namespace, as Kubernetes' NamespaceLifecycle admission."""
        namespaces.check_writable(self.namespaces.try_get("", namespace), namespace)

    def check_deletable(self, res: Resource, name: str) -> None:
        """The system namespaces may not be deleted (NamespaceLifecycle admission)."""
        if res is self.namespaces.res:
            namespaces.check_deletable(name)

    def repair(self) -> list[str]:
        """Rebuild each kind's in-memory state (the allocators) from what is stored, as
        Kubernetes' repair loops do at startup; the conflicts found."""
        problems: list[str] = []
        for store in self.stores.values():
            if store.hooks is not NO_HOOKS:  # only kinds with in-memory state need their objects read
                problems.extend(store.hooks.repair(store.list_objects()))
        return problems
