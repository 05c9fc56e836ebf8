"""The resource quota controller: recomputes each ResourceQuota's status (hard, used) from the
objects it counts (upstream pkg/controller/resourcequota). Admission charges status.used as
objects are created; this controller is what gives usage back when they go, and corrects a
charge whose write then failed. As upstream's replenishment, a quota is recomputed when a pod
goes or finishes, and every RESYNC seconds (creates are already charged by admission)."""

from __future__ import annotations

from pocketkube.api import errors, quota
from pocketkube.api.resources import BY_PLURAL
from pocketkube.client.interface import Client
from pocketkube.controllers.base import Controller, SharedInformers

QUOTAS = BY_PLURAL[("", "resourcequotas")]
PODS = BY_PLURAL[("", "pods")]
RESYNC = 15.0


def quota_status(rq: dict, objects: dict[tuple[str, str], list[dict]]) -> dict:
    """status from the counted objects, keyed by (group, plural)."""
    hard = dict((rq.get("spec") or {}).get("hard") or {})
    names = list(hard)
    scopes = list((rq.get("spec") or {}).get("scopes") or [])
    used = {n: 0 for n in names}
    totals: dict = {}
    for (group, plural), items in objects.items():
        for k, v in quota.total(group, plural, items, names, scopes).items():
            totals[k] = totals.get(k, 0) + v
    used.update(totals)
    return {"hard": hard, "used": quota.quantity_map(used, hard)}


class ResourceQuotaController(Controller):
    name = "resourcequota-controller"

    def __init__(self, client: Client, informers: SharedInformers, *, workers: int = 2,
                 resync: float = RESYNC) -> None:
        self.client = client
        self.resync = resync
        self.quotas = informers.get(QUOTAS)
        self.pods = informers.get(PODS)
        super().__init__([self.quotas, self.pods], workers=workers)
        self.quotas.add_handlers(on_add=self.enqueue, on_update=self._quota_updated)
        self.pods.add_handlers(on_update=self._pod_updated, on_delete=self._pod_changed)

    def _quota_updated(self, old: dict, new: dict) -> None:
        if (old.get("spec") or {}) != (new.get("spec") or {}):
            self.enqueue(new)

    def _pod_updated(self, old: dict, new: dict) -> None:
        if quota.pod_terminal(new) != quota.pod_terminal(old):
            self._pod_changed(new)

    def _pod_changed(self, pod: dict) -> None:
        ns = pod["metadata"].get("namespace")
        for rq in self.quotas.list():
            if rq["metadata"].get("namespace") == ns:
                self.enqueue(rq)

    async def sync(self, key: str) -> None:
        rq = self.quotas.get(key)
        if rq is None:
            return
        namespace = rq["metadata"]["namespace"]
        hard = (rq.get("spec") or {}).get("hard") or {}
        objects: dict[tuple[str, str], list[dict]] = {}
        for group, plural in quota.kinds_for(list(hard)):
            res = BY_PLURAL.get((group, plural))
            if res is None:
                continue
            if res is PODS:
                objects[(group, plural)] = [p for p in self.pods.list() if p["metadata"].get("namespace") == namespace]
            else:
                objects[(group, plural)], _ = await self.client.list(res, namespace)
        status = quota_status(rq, objects)
        if status != rq.get("status"):
            try:
                await self.client.update_status(QUOTAS, {**rq, "status": status})
            except errors.NotFound:
                return
        self.queue.add_after(key, self.resync)
