"""The Service kind as the generic store sees it: its strategy, whose hooks allocate ClusterIPs
and NodePorts in a transaction committed or reverted with the write (as upstream's service
storage wraps the generic store with its allocators)."""

from __future__ import annotations

from pocketkube.registry.allocators.transaction import Transaction
from pocketkube.registry.core.services.allocation import ServiceAllocator
from pocketkube.registry.core.services.defaults import default
from pocketkube.registry.core.services.strategy import validate, validate_update
from pocketkube.registry.strategy import Hooks, Strategy


class AllocationHooks(Hooks):
    """ClusterIP and NodePort allocation, committed or reverted with the Service write."""

    def __init__(self, allocator: ServiceAllocator) -> None:
        self.allocator = allocator

    @property
    def may_race(self) -> bool:  # type: ignore[override]
        return self.allocator.shared

    def before_create(self, obj: dict) -> Transaction:
        return self.allocator.allocate_for_create(obj)

    def before_update(self, new: dict, old: dict) -> Transaction:
        return self.allocator.allocate_for_update(new, old)

    def after_delete(self, obj: dict):
        self.allocator.release(obj)
        if self.allocator.shared:
            return self.allocator.write_releases()  # awaited by the store: the record follows the delete
        return None

    def repair(self, stored: list[dict]) -> list[str]:
        return self.allocator.rebuild(stored)


def strategy(*, service_cidr: str, node_port_range: tuple[int, int]) -> Strategy:
    hooks = AllocationHooks(ServiceAllocator(service_cidr, node_port_range))
    return Strategy(default=default, validate=validate, validate_update=validate_update,
                    returns_deleted_object=True, hooks=hooks)
