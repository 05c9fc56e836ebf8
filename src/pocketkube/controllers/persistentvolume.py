"""The PersistentVolume binder (mirrors pkg/controller/volume/persistentvolume's PV controller).

Claims and volumes are synced separately, through one queue (keys `claim:<ns>/<name>` and
`volume:<name>`). A claim without a volume is matched to an available or pre-bound volume
(api/volumes.find_matching_volume); with a WaitForFirstConsumer class it waits until the
scheduler names a node (the selected-node annotation) and then only matches volumes that node
can reach; with no match it is annotated with its class's provisioner, which creates a volume
pre-bound to it (controllers/provisioner.py for ours). Binding writes the volume's claimRef
first, then the claim's volumeName, then both statuses, every write an optimistic update of the
cached object (a Conflict retries the key). A volume whose claim is gone is Released and its
reclaim policy applies: Retain keeps it, Delete is the provisioner's job for volumes it made and
fails for others (no in-tree deleter here), Recycle is not supported.
"""

from __future__ import annotations

import logging

from pocketkube.api.resources import BY_PLURAL
from pocketkube.api.timestamps import now_rfc3339
from pocketkube.api.volumes import (
    ANN_PROVISIONED_BY,
    ANN_SELECTED_NODE,
    HOSTNAME_LABEL,
    claim_class,
    claim_ref_is,
    default_class_name,
    mismatch,
)
from pocketkube.api.volumes import find_matching_volume as _find
from pocketkube.client.events import NORMAL, WARNING, EventRecorder
from pocketkube.client.interface import Client
from pocketkube.controllers import volume_plan as plan
from pocketkube.controllers.base import Controller, SharedInformers

__all__ = ["PVCS", "PVS", "STORAGE_CLASSES", "PersistentVolumeController"]

log = logging.getLogger(__name__)

PVS = BY_PLURAL[("", "persistentvolumes")]
PVCS = BY_PLURAL[("", "persistentvolumeclaims")]
STORAGE_CLASSES = BY_PLURAL[("storage.k8s.io", "storageclasses")]
NODES = BY_PLURAL[("", "nodes")]


class PersistentVolumeController(Controller):
    name = "persistentvolume-binder-controller"

    def __init__(self, client: Client, informers: SharedInformers, recorder: EventRecorder, *,
                 workers: int = 2) -> None:
        self.client = client
        self.recorder = recorder
        self.volumes = informers.get(PVS)
        self.claims = informers.get(PVCS)
        self.classes = informers.get(STORAGE_CLASSES)
        self.nodes = informers.get(NODES)
        super().__init__([self.volumes, self.claims, self.classes, self.nodes], workers=workers)
        self.claims.add_handlers(self._claim_changed, lambda old, new: self._claim_changed(new), self._claim_deleted)
        self.volumes.add_handlers(self._volume_changed, lambda old, new: self._volume_changed(new),
                                  self._volume_changed)
        # A new class or an unblocked node can make waiting claims bindable.
        self.classes.add_handlers(lambda sc: self._all_pending_claims(), lambda old, new: self._all_pending_claims())

    # ---- handlers ----

    def _claim_changed(self, pvc: dict) -> None:
        self.queue.add("claim:" + plan.claim_key(pvc))

    def _claim_deleted(self, pvc: dict) -> None:
        name = plan.spec(pvc).get("volumeName")
        if name:
            self.queue.add("volume:" + name)
        for pv in self.volumes.list():  # a volume pre-bound to the claim by the provisioner
            if claim_ref_is(pv, pvc):
                self.queue.add("volume:" + pv["metadata"]["name"])

    def _volume_changed(self, pv: dict) -> None:
        self.queue.add("volume:" + pv["metadata"]["name"])
        ref = plan.spec(pv).get("claimRef")
        if ref:
            self.queue.add(f"claim:{ref.get('namespace', '')}/{ref.get('name', '')}")
        else:
            self._all_pending_claims()  # a newly available volume may match a waiting claim

    def _all_pending_claims(self) -> None:
        for pvc in self.claims.list():
            if not plan.spec(pvc).get("volumeName"):
                self._claim_changed(pvc)

    async def sync(self, key: str) -> None:
        kind, _, rest = key.partition(":")
        if kind == "claim":
            pvc = self.claims.get(rest)
            if pvc is not None:
                await self._sync_claim(pvc)
        elif kind == "volume":
            pv = self.volumes.get(rest)
            if pv is not None:
                await self._sync_volume(pv)

    # ---- claims ----

    async def _claim_phase(self, pvc: dict, phase: str) -> dict:
        if plan.phase(pvc) == phase:
            return pvc
        return await self.client.update_status(PVCS, {**pvc, "status": {**(pvc.get("status") or {}), "phase": phase}})

    async def _sync_claim(self, pvc: dict) -> None:
        if plan.spec(pvc).get("volumeName"):
            await self._sync_bound_claim(pvc)
            return
        if plan.meta(pvc).get("deletionTimestamp"):
            return
        if plan.spec(pvc).get("storageClassName") is None and not claim_class(pvc):
            # Retroactive default class: a claim made while there was no default gets today's.
            default = default_class_name(self.classes.list())
            if default is not None:
                await self.client.update(PVCS, {**pvc, "spec": {**plan.spec(pvc), "storageClassName": default}})
                return  # the update brings the claim back
        class_name = claim_class(pvc)
        sc = self.classes.get(class_name) if class_name else None
        if plan.delayed_binding(pvc, sc):
            self.recorder.event(pvc, NORMAL, "WaitForFirstConsumer", plan.MSG_WAIT_FIRST_CONSUMER, res=PVCS)
            await self._claim_phase(pvc, "Pending")
            return
        node = self._selected_node(pvc) if sc is not None and sc.get("volumeBindingMode") == "WaitForFirstConsumer" \
            else None
        pv = _find(pvc, self.volumes.list(), node)
        if pv is not None:
            await self._bind(pvc, pv)
            return
        if class_name and sc is None:  # a class name with no object only selects static volumes
            self.recorder.event(pvc, WARNING, "ProvisioningFailed",
                                f'storageclass.storage.k8s.io "{class_name}" not found', res=PVCS)
        elif sc is None:
            self.recorder.event(pvc, NORMAL, "FailedBinding", plan.MSG_NO_CLASS, res=PVCS)
        elif sc.get("provisioner") == plan.NO_PROVISIONER:
            self.recorder.event(pvc, NORMAL, "FailedBinding",
                                "no persistent volumes available for this claim", res=PVCS)
        else:
            provisioner = str(sc.get("provisioner") or "")
            annotated = plan.with_provisioner_annotations(pvc, provisioner)
            if annotated is not None:
                pvc = await self.client.update(PVCS, annotated)
            self.recorder.event(pvc, NORMAL, "ExternalProvisioning",
                                plan.external_provisioning_message(provisioner), res=PVCS)
        await self._claim_phase(pvc, "Pending")

    def _selected_node(self, pvc: dict) -> dict:
        name = plan.annotations(pvc).get(ANN_SELECTED_NODE, "")
        node = self.nodes.get(name)
        # A node the cache does not know yet still has its hostname label.
        return node or {"metadata": {"name": name, "labels": {HOSTNAME_LABEL: name}}}

    async def _sync_bound_claim(self, pvc: dict) -> None:
        name = plan.spec(pvc)["volumeName"]
        pv = self.volumes.get(name)
        if pv is None:
            if plan.phase(pvc) == "Bound":
                self.recorder.event(pvc, WARNING, "ClaimLost", plan.MSG_CLAIM_LOST, res=PVCS)
                await self._claim_phase(pvc, "Lost")
            elif plan.phase(pvc) != "Lost":
                await self._claim_phase(pvc, "Pending")  # pre-bound to a volume that does not exist yet
            return
        ref = plan.spec(pv).get("claimRef")
        if not ref and (why := mismatch(pv, pvc)):
            self.recorder.event(pvc, WARNING, "VolumeMismatch",
                                f'Cannot bind to requested volume "{name}": {why}', res=PVCS)
            await self._claim_phase(pvc, "Pending")
            return
        if ref and not claim_ref_is(pv, pvc):
            if plan.phase(pvc) == "Bound":
                self.recorder.event(pvc, WARNING, "ClaimMisbound", plan.MSG_CLAIM_MISBOUND, res=PVCS)
                await self._claim_phase(pvc, "Lost")
            return
        await self._bind(pvc, pv)

    async def _bind(self, pvc: dict, pv: dict) -> None:
        ref = plan.spec(pv).get("claimRef") or {}
        if not (claim_ref_is(pv, pvc) and ref.get("uid") == plan.meta(pvc).get("uid")):
            pv = await self.client.update(PVS, plan.volume_bound_to(pv, pvc))
        pv = await self._volume_status(pv, "Bound")
        if plan.claim_needs_binding_write(pvc, pv):
            pvc = await self.client.update(PVCS, plan.claim_bound_to(pvc, pv))
        status = plan.bound_claim_status(pvc, pv)
        if status != pvc.get("status"):
            await self.client.update_status(PVCS, {**pvc, "status": status})

    # ---- volumes ----

    async def _sync_volume(self, pv: dict) -> None:
        # Volumes being deleted are synced too: pv-protection waits for them to leave Bound.
        ref = plan.spec(pv).get("claimRef") or {}
        claim = self.claims.get(f"{ref.get('namespace', '')}/{ref.get('name', '')}") if ref else None
        verdict = plan.judge_volume(pv, claim)
        if verdict.unbind:
            pv = await self.client.update(PVS, plan.unbound_volume(pv))
        if verdict.reclaim:
            await self._reclaim(pv)
            return
        await self._volume_status(pv, verdict.phase)

    async def _volume_status(self, pv: dict, phase: str, message: str = "") -> dict:
        """Write the volume's phase (and message) when they change; lastPhaseTransitionTime marks
        the moment of a phase change, as upstream's registry does."""
        current = pv.get("status") or {}
        if current.get("phase") == phase and (current.get("message") or "") == message:
            return pv
        status: dict = {"phase": phase}
        if message:
            status["message"] = message
        status["lastPhaseTransitionTime"] = (current.get("lastPhaseTransitionTime")
                                             if current.get("phase") == phase else now_rfc3339())
        return await self.client.update_status(PVS, {**pv, "status": status})

    async def _reclaim(self, pv: dict) -> None:
        name = plan.meta(pv)["name"]
        policy = plan.spec(pv).get("persistentVolumeReclaimPolicy") or "Retain"
        phase, message = "Released", ""
        if policy == "Delete" and not plan.annotations(pv).get(ANN_PROVISIONED_BY):
            phase = "Failed"
            message = f'error getting deleter volume plugin for volume "{name}": no deletable volume plugin matched'
            self.recorder.event(pv, WARNING, "VolumeFailedDelete", message, res=PVS)
        elif policy == "Recycle":
            phase, message = "Failed", "No recycler plugin found for the volume!"
            self.recorder.event(pv, WARNING, "VolumeFailedRecycle", message, res=PVS)
        # Delete of a provisioned volume: its provisioner sees it Released and deletes it.
        await self._volume_status(pv, phase, message)
