"""Admission plugins that read other kinds: LimitRanger (pods) and ResourceQuota (every
namespaced kind). The decisions are pure functions (core/limitranges.py, api/quota.py); here they
meet the stores.

Quota is charged as upstream does: the check and the increment of status.used happen in one
read-modify-write of the quota, so two concurrent creates cannot both take its last unit. A
resource status.used does not know yet is counted from the stored objects; the quota controller
recomputes status.used from the objects afterwards (a charge whose write then failed heals there).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from fractions import Fraction

from pocketkube.api import errors, quota
from pocketkube.api.quantity import parse
from pocketkube.api.resources import Resource
from pocketkube.registry.core import limitranges
from pocketkube.registry.store import ObjectStore
from pocketkube.registry.strategy import Admission

StoreLookup = Callable[[str, str], "ObjectStore | None"]


class NamespacedView:
    """A kind's objects in a namespace without a scan of the store per request: the admission
    plugins look at LimitRanges and quotas on every create. Which objects exist is read again
    only after one was created or deleted; the objects themselves are read fresh each time
    (a quota's status changes with every charge)."""

    def __init__(self, store: ObjectStore) -> None:
        self.store = store
        self._at = -1
        self._names: dict[str, list[str]] = {}

    def objects(self, namespace: str) -> list[dict]:
        if self._at != self.store.membership:
            at = self.store.membership
            names: dict[str, list[str]] = {}
            for obj in self.store.list_objects():
                names.setdefault(obj["metadata"].get("namespace", ""), []).append(obj["metadata"]["name"])
            self._names, self._at = names, at
        found = (self.store.try_get(namespace, name) for name in self._names.get(namespace, []))
        return [obj for obj in found if obj is not None]


def _name(obj: dict) -> str:
    return str((obj.get("metadata") or {}).get("name", ""))


class LimitRanger(Admission):
    def __init__(self, limitranges_store: ObjectStore) -> None:
        self._ranges = NamespacedView(limitranges_store)

    def _for(self, obj: dict) -> list[dict]:
        return self._ranges.objects((obj.get("metadata") or {}).get("namespace", ""))

    def mutate(self, res: Resource, obj: dict) -> None:
        ranges = self._for(obj)
        if ranges and res.plural == "pods":
            limitranges.apply_defaults(obj, ranges)

    async def admit(self, res: Resource, obj: dict, dry_run: bool) -> None:
        ranges = self._for(obj)
        check = limitranges.violations if res.plural == "pods" else limitranges.claim_violations
        msgs = check(obj, ranges) if ranges else []
        if msgs:
            raise limitranges.forbidden(res.plural, _name(obj), msgs)


class _Charge:
    """One admission's request against one quota, settled by a batch write."""

    def __init__(self, names: list[str], requested: dict[str, Fraction], resource: str, name: str) -> None:
        self.names, self.requested, self.resource, self.name = names, requested, resource, name
        self.done: asyncio.Future = asyncio.get_running_loop().create_future()
        # An admission cancelled while it waited (its client went) must not leave the outcome unread.
        self.done.add_done_callback(lambda f: f.cancelled() or f.exception())


class ResourceQuotaAdmission(Admission):
    """Charges are batched per quota: the admissions waiting on one quota are checked in turn
    against the usage before them and written in one status update, as upstream's quota
    evaluator batches its work queue (a read-modify-write each would conflict and retry)."""

    def __init__(self, quotas: ObjectStore, lookup: StoreLookup) -> None:
        self._quotas = quotas
        self._view = NamespacedView(quotas)
        self._lookup = lookup
        self._pending: dict[tuple[str, str], list[_Charge]] = {}
        self._tasks: set[asyncio.Task] = set()

    def _used(self, q: dict, names: list[str]) -> dict[str, Fraction]:
        """status.used for `names`, counting from the stored objects what it does not know yet."""
        recorded = (q.get("status") or {}).get("used") or {}
        used = {n: parse(recorded.get(n)) for n in names}
        unknown = [n for n, v in used.items() if v is None]
        out = {n: v for n, v in used.items() if v is not None}
        if unknown:
            out.update(usage_from_stores(self._lookup, q["metadata"]["namespace"], unknown, _scopes(q)))
        return out

    def _decide(self, q: dict, res: Resource, obj: dict) -> tuple[list[str], dict[str, Fraction]]:
        hard = (q.get("spec") or {}).get("hard") or {}
        names = [n for n in hard if quota.counts_resource(n, res.group, res.plural)]
        if not names or not quota.in_scope(_scopes(q), res.group, res.plural, obj):
            return [], {}
        qname = q["metadata"]["name"]
        if (res.group, res.plural) == ("", "pods"):
            msg = quota.missing_constraints(obj, set(names))
            if msg:
                raise limitranges.forbidden(res.plural, _name(obj), [f"failed quota: {qname}: {msg}"])
        requested = {k: v for k, v in quota.usage(res.group, res.plural, obj).items() if k in names}
        used = self._used(q, names)
        msg = quota.exceeded(qname, hard, used, requested)
        if msg:
            raise limitranges.forbidden(res.plural, _name(obj), [msg])
        return names, requested

    async def admit(self, res: Resource, obj: dict, dry_run: bool) -> None:
        namespace = (obj.get("metadata") or {}).get("namespace", "")
        quotas = self._view.objects(namespace)
        charges = [(q, *self._decide(q, res, obj)) for q in quotas]  # every quota checked first
        if dry_run:
            return
        for q, names, requested in charges:
            if not names or not any(requested.values()):
                continue
            key = (namespace, q["metadata"]["name"])
            charge = _Charge(names, requested, res.plural, _name(obj))
            waiting = self._pending.setdefault(key, [])
            waiting.append(charge)
            if len(waiting) == 1:  # the first waiter starts the batch; later ones join it
                task = asyncio.get_running_loop().create_task(self._flush(key))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            await asyncio.shield(charge.done)

    async def _flush(self, key: tuple[str, str]) -> None:
        """Write every pending charge of one quota, batch after batch, until none waits."""
        while self._pending.get(key):
            await asyncio.sleep(0)  # let the admissions of this loop iteration join the batch
            batch = self._pending.pop(key)
            refused: dict[int, Exception] = {}

            def apply(current: dict) -> dict:
                refused.clear()
                hard = (current.get("spec") or {}).get("hard") or {}
                names = sorted({n for c in batch for n in c.names})
                used = self._used(current, names)
                for i, c in enumerate(batch):
                    msg = quota.exceeded(current["metadata"]["name"], hard, used, c.requested)
                    if msg:
                        refused[i] = limitranges.forbidden(c.resource, c.name, [msg])
                        continue
                    for k in c.names:
                        used[k] = used.get(k, Fraction(0)) + c.requested.get(k, Fraction(0))
                status = current.setdefault("status", {})
                status["hard"] = dict(hard)
                status["used"] = {**(status.get("used") or {}),
                                  **quota.quantity_map({k: used.get(k, Fraction(0)) for k in names}, hard)}
                return current
            try:
                await self._quotas.guaranteed_update(key[0], key[1], apply, subresource="status")
            except errors.NotFound:
                refused = {}  # deleted meanwhile: nothing to charge
            except Exception as e:  # noqa: BLE001 - every waiter gets the write's error
                refused = dict.fromkeys(range(len(batch)), e)
            for i, c in enumerate(batch):
                if i in refused:
                    c.done.set_exception(refused[i])
                else:
                    c.done.set_result(None)


def _scopes(q: dict) -> list[str]:
    return list((q.get("spec") or {}).get("scopes") or [])


def usage_from_stores(lookup: StoreLookup, namespace: str, names: list[str],
                      scopes: list[str] | None = None) -> dict[str, Fraction]:
    """Current usage of quota resource names in a namespace, counted from the stored objects."""
    out = {n: Fraction(0) for n in names}
    for group, plural in quota.kinds_for(names):
        store = lookup(group, plural)
        if store is None:
            continue
        for k, v in quota.total(group, plural, store.list_objects(namespace), names, scopes).items():
            out[k] += v
    return out
