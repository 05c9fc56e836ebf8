"""The pvc-protection and pv-protection controllers (mirror pkg/controller/volume/pvcprotection and
pvprotection).

Admission gives every claim the kubernetes.io/pvc-protection finalizer and every volume
kubernetes.io/pv-protection. A deleted claim keeps its finalizer while a pod that is not finished
uses it (so a running pod never loses its volume); a deleted volume keeps its finalizer while it
is Bound. Removing the last finalizer completes the delete.
"""

from __future__ import annotations

import copy

from pocketkube.api import errors
from pocketkube.api.resources import BY_PLURAL
from pocketkube.api.volumes import PROTECTION_PV, PROTECTION_PVC, claim_uses, pod_claim_names
from pocketkube.client.interface import Client
from pocketkube.controllers.base import Controller, SharedInformers

__all__ = ["VolumeProtectionController", "claim_in_use", "without_finalizer"]

PVS = BY_PLURAL[("", "persistentvolumes")]
PVCS = BY_PLURAL[("", "persistentvolumeclaims")]
PODS = BY_PLURAL[("", "pods")]


def without_finalizer(obj: dict, finalizer: str) -> dict | None:
    """The object without `finalizer`; None when it does not carry it."""
    finalizers = (obj.get("metadata") or {}).get("finalizers") or []
    if finalizer not in finalizers:
        return None
    new = copy.deepcopy(obj)
    new["metadata"]["finalizers"] = [f for f in finalizers if f != finalizer]
    return new


def claim_in_use(pods: list[dict], namespace: str, name: str) -> bool:
    return any(claim_uses(p, namespace, name) for p in pods)


class VolumeProtectionController(Controller):
    name = "volume-protection-controller"

    def __init__(self, client: Client, informers: SharedInformers, *, workers: int = 2) -> None:
        self.client = client
        self.claims = informers.get(PVCS)
        self.volumes = informers.get(PVS)
        self.pods = informers.get(PODS)
        super().__init__([self.claims, self.volumes, self.pods], workers=workers)
        self.claims.add_handlers(self._claim, lambda old, new: self._claim(new))
        self.volumes.add_handlers(self._volume, lambda old, new: self._volume(new))
        self.pods.add_handlers(on_update=lambda old, new: self._pod(new), on_delete=self._pod)

    def _claim(self, pvc: dict) -> None:
        if pvc["metadata"].get("deletionTimestamp"):
            self.queue.add("claim:" + f"{pvc['metadata'].get('namespace', '')}/{pvc['metadata']['name']}")

    def _volume(self, pv: dict) -> None:
        if pv["metadata"].get("deletionTimestamp"):
            self.queue.add("volume:" + pv["metadata"]["name"])

    def _pod(self, pod: dict) -> None:
        ns = pod["metadata"].get("namespace", "")
        for name in pod_claim_names(pod):
            pvc = self.claims.get(f"{ns}/{name}")
            if pvc is not None:
                self._claim(pvc)

    async def sync(self, key: str) -> None:
        kind, _, rest = key.partition(":")
        if kind == "claim":
            pvc = self.claims.get(rest)
            if pvc is None or not pvc["metadata"].get("deletionTimestamp"):
                return
            ns, _, name = rest.partition("/")
            if claim_in_use(self.pods.list(), ns, name):
                return
            # The cache may miss a pod created a moment ago: ask the server, as upstream does.
            pods, _ = await self.client.list(PODS, ns)
            if claim_in_use(pods, ns, name):
                return
            new = without_finalizer(pvc, PROTECTION_PVC)
            if new is not None:
                await self._update(PVCS, new)
        elif kind == "volume":
            pv = self.volumes.get(rest)
            if pv is None or not pv["metadata"].get("deletionTimestamp"):
                return
            if (pv.get("status") or {}).get("phase") == "Bound":
                return
            new = without_finalizer(pv, PROTECTION_PV)
            if new is not None:
                await self._update(PVS, new)

    async def _update(self, res, obj: dict) -> None:
        try:
            await self.client.update(res, obj)
        except errors.NotFound:
            pass
