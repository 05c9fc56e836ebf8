"""The resource quota controller: recomputes each ResourceQuota's status (hard, used) from the
objects it counts (upstream pkg/controller/resourcequota). Admission charges status.used as
objects are created; this controller is what gives usage back when they go, and corrects a
charge whose write then failed. As upstream's replenishment, a quota is recomputed when a pod
goes or finishes, and every RESYNC seconds (creates are already charged by admission).

Admission charges a quota just before it writes the object, so for a moment a charge is recorded
for an object no list shows yet: a recomputed usage lower than the recorded one is written only
when a second look CONFIRM_DELAY later finds the same (upstream lives with that window)."""

from __future__ import annotations

from pocketkube.api import errors, quota
from pocketkube.api.quantity import parse
from pocketkube.api.resources import BY_PLURAL
from pocketkube.client.interface import Client
from pocketkube.controllers.base import Controller, SharedInformers

QUOTAS = BY_PLURAL[("", "resourcequotas")]
PODS = BY_PLURAL[("", "pods")]
RESYNC = 15.0
CONFIRM_DELAY = 1.0


def lowers_usage(new_used: dict[str, str], old_used: dict[str, str]) -> bool:
    """Whether any resource's recomputed usage is below the recorded one."""
    for k, v in new_used.items():
        old, new = parse(old_used.get(k)), parse(v)
        if old is not None and new is not None and new < old:
            return True
    return False


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
                 resync: float = RESYNC, confirm_delay: float = CONFIRM_DELAY) -> None:
        self.client = client
        self.resync = resync
        self.confirm_delay = confirm_delay
        self._to_confirm: dict[str, dict] = {}  # quota key → the lower usage seen once
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
            self._to_confirm.pop(key, None)
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
        recorded = (rq.get("status") or {}).get("used") or {}
        if lowers_usage(status["used"], recorded) and self._to_confirm.get(key) != status["used"]:
            self._to_confirm[key] = status["used"]
            self.queue.add_after(key, self.confirm_delay)
            return
        self._to_confirm.pop(key, None)
        if status != rq.get("status"):
            try:
                await self.client.update_status(QUOTAS, {**rq, "status": status})
            except errors.NotFound:
                return
        self.queue.add_after(key, self.resync)
