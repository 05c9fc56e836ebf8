"""All resource stores over one backend, with each kind's strategy and hooks wired in."""

from __future__ import annotations

import importlib

from pocketkube.api import errors
from pocketkube.api.resources import RESOURCES, Resource
from pocketkube.registry.store import Hooks, ObjectStore
from pocketkube.registry.strategy import Strategy
from pocketkube.storage.sqlite import SQLiteBackend

# kind -> (module, function prefix). A prefix "" means default/validate/validate_update.
_STRATEGY_MODULES: dict[str, tuple[str, str]] = {
    "Service": ("pocketkube.registry.core.services", ""),
    "Pod": ("pocketkube.registry.core.pods", ""),
    "Deployment": ("pocketkube.registry.apps.deployments", ""),
    "ReplicaSet": ("pocketkube.registry.apps.replicasets", ""),
    "Namespace": ("pocketkube.registry.core.others", "namespace_"),
    "Node": ("pocketkube.registry.core.others", "node_"),
    "Endpoints": ("pocketkube.registry.core.others", "endpoints_"),
    "EndpointSlice": ("pocketkube.registry.core.others", "endpointslice_"),
    "Event": ("pocketkube.registry.core.others", "event_"),
    "Lease": ("pocketkube.registry.core.others", "lease_"),
}


def _strategy_for(kind: str) -> Strategy:
    module_name, prefix = _STRATEGY_MODULES[kind]
    mod = importlib.import_module(module_name)
    return Strategy(
        default=getattr(mod, prefix + "default"),
        validate=getattr(mod, prefix + "validate"),
        validate_update=getattr(mod, prefix + "validate_update"),
    )


class _AllocationHooks(Hooks):
    """ClusterIP and NodePort allocation, transactional with the Service write."""

    def __init__(self, allocator) -> None:
        self.allocator = allocator

    def before_create(self, obj: dict):
        return self.allocator.allocate_for_create(obj)

    def before_update(self, new: dict, old: dict):
        return self.allocator.allocate_for_update(new, old)

    def after_delete(self, obj: dict) -> None:
        self.allocator.release(obj)


class Registry:
    def __init__(self, backend: SQLiteBackend, service_cidr: str = "127.96.0.0/16",
                 node_port_range: tuple[int, int] = (30000, 32767)) -> None:
        from pocketkube.registry.core.services import ServiceAllocator

        self.backend = backend
        self.allocator = ServiceAllocator(service_cidr, node_port_range)
        self.stores: dict[tuple[str, str], ObjectStore] = {}
        for res in RESOURCES:
            hooks = _AllocationHooks(self.allocator) if res.kind == "Service" else None
            self.stores[(res.group, res.plural)] = ObjectStore(res, backend, _strategy_for(res.kind), hooks)

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

    def check_namespace_writable(self, namespace: str) -> None:
        """Namespaced creates need a live namespace, as Kubernetes' NamespaceLifecycle admission."""
        ns = self.namespaces.try_get("", namespace)
        if ns is None:
            raise errors.NotFound.object("namespaces", namespace)
        if ns["metadata"].get("deletionTimestamp"):
            raise errors.Forbidden(
                f"unable to create new content in namespace {namespace} because it is being terminated",
                {"name": namespace, "kind": "namespaces"})

    def repair_allocations(self) -> list[str]:
        """Rebuild the allocators from stored Services (startup repair, as Kubernetes' repair loops)."""
        return self.allocator.rebuild(self.services.list_objects())


