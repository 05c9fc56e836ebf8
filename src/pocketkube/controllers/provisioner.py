"""The built-in local-path provisioner (as rancher's local-path-provisioner that kind and k3s ship).

For a claim the PV binder annotated with our provisioner name, it picks the node (the scheduler's
selected-node annotation, or the first Ready node for an Immediate class), makes the directory
`<node data dir>/storage/pvc-<uid>_<ns>_<name>` and creates a hostPath PersistentVolume pinned to
that node by nodeAffinity and pre-bound to the claim; the binder finishes the binding. A volume
it made that is Released with reclaim policy Delete loses its directory, then the object.

The directories are made and removed by this process directly: the controller manager runs on
the same machine as every node today (`up`), so a node's data dir is a local path. The flag
--local-path-template (`<cluster data dir>/nodes/{node}/storage`) says where each node keeps
them; with a remote node this would become a helper pod on that node, as rancher's does.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil

from pocketkube.api import errors
from pocketkube.api.resources import BY_PLURAL
from pocketkube.api.taints import node_ready_status
from pocketkube.client.events import NORMAL, WARNING, EventRecorder
from pocketkube.client.interface import Client
from pocketkube.controllers import volume_plan as plan
from pocketkube.controllers.base import Controller, SharedInformers

__all__ = ["LOCAL_PATH_PROVISIONER", "LocalPathProvisioner"]

log = logging.getLogger(__name__)

LOCAL_PATH_PROVISIONER = "pocketkube.io/local-path"
PVS = BY_PLURAL[("", "persistentvolumes")]
PVCS = BY_PLURAL[("", "persistentvolumeclaims")]
STORAGE_CLASSES = BY_PLURAL[("storage.k8s.io", "storageclasses")]
NODES = BY_PLURAL[("", "nodes")]


def _make_directory(path: str) -> None:
    os.makedirs(path, exist_ok=True)
    os.chmod(path, 0o777)  # any container user may write, as local-path-provisioner's setup does


class LocalPathProvisioner(Controller):
    name = "local-path-provisioner"

    def __init__(self, client: Client, informers: SharedInformers, recorder: EventRecorder, template: str, *,
                 provisioner: str = LOCAL_PATH_PROVISIONER, workers: int = 2) -> None:
        self.client = client
        self.recorder = recorder
        self.template = template
        self.provisioner = provisioner
        self.volumes = informers.get(PVS)
        self.claims = informers.get(PVCS)
        self.classes = informers.get(STORAGE_CLASSES)
        self.nodes = informers.get(NODES)
        super().__init__([self.volumes, self.claims, self.classes, self.nodes], workers=workers)
        self.claims.add_handlers(self._claim, lambda old, new: self._claim(new))
        self.volumes.add_handlers(self._volume, lambda old, new: self._volume(new))
        # An Immediate claim waits for a Ready node.
        self.nodes.add_handlers(lambda n: self._waiting_claims(), lambda old, new: self._waiting_claims())

    def _claim(self, pvc: dict) -> None:
        if plan.wants_provisioning(pvc, self.provisioner):
            self.queue.add("claim:" + plan.claim_key(pvc))
        elif plan.spec(pvc).get("volumeName"):
            pv = self.volumes.get(plan.spec(pvc)["volumeName"])
            if pv is not None and plan.expansion(pvc, pv, self.provisioner):
                self.queue.add("resize:" + plan.claim_key(pvc))

    def _waiting_claims(self) -> None:
        for pvc in self.claims.list():
            self._claim(pvc)

    def _volume(self, pv: dict) -> None:
        if plan.annotations(pv).get("pv.kubernetes.io/provisioned-by") == self.provisioner:
            self.queue.add("volume:" + pv["metadata"]["name"])

    async def sync(self, key: str) -> None:
        kind, _, rest = key.partition(":")
        if kind == "claim":
            pvc = self.claims.get(rest)
            if pvc is not None and plan.wants_provisioning(pvc, self.provisioner):
                await self._provision(pvc)
        elif kind == "volume":
            pv = self.volumes.get(rest)
            if pv is not None:
                await self._maybe_delete(pv)
        elif kind == "resize":
            pvc = self.claims.get(rest)
            if pvc is not None:
                await self._expand(pvc)

    async def _expand(self, pvc: dict) -> None:
        """Volume expansion (the external resizer's and kubelet's parts at once): the volume's
        capacity, then the claim's status."""
        pv = self.volumes.get(plan.spec(pvc).get("volumeName") or "")
        size = plan.expansion(pvc, pv, self.provisioner) if pv is not None else None
        if pv is None or size is None:
            return
        name = pv["metadata"]["name"]
        self.recorder.event(pvc, NORMAL, "Resizing", f"External resizer is resizing volume {name}", res=PVCS)
        if (plan.spec(pv).get("capacity") or {}).get("storage") != size:
            await self.client.update(PVS, {**pv, "spec": {**plan.spec(pv), "capacity": {"storage": size}}})
        status = {**(pvc.get("status") or {}), "capacity": {"storage": size}}
        await self.client.update_status(PVCS, {**pvc, "status": status})
        self.recorder.event(pvc, NORMAL, "VolumeResizeSuccessful", "Resize volume succeeded", res=PVCS)

    async def _provision(self, pvc: dict) -> None:
        name = plan.provisioned_volume_name(pvc)
        if self.volumes.get(name) is not None:
            return
        sc = self.classes.get(plan.spec(pvc).get("storageClassName") or "")
        if sc is None or sc.get("provisioner") != self.provisioner:
            return
        key = plan.claim_key(pvc)
        if plan.spec(pvc).get("selector") is not None:
            self.recorder.event(pvc, WARNING, "ProvisioningFailed",
                                f'failed to provision volume with StorageClass "{sc["metadata"]["name"]}": '
                                "claim Selector is not supported", res=PVCS)
            return
        ready = [n["metadata"]["name"] for n in self.nodes.list() if node_ready_status(n) == "True"]
        node = plan.provisioning_node(pvc, sc, ready, self.volumes.list())
        if node is None:
            return
        if not self.template:
            self.recorder.event(pvc, WARNING, "ProvisioningFailed",
                                "failed to provision volume: the local-path root of the nodes is not configured",
                                res=PVCS)
            return
        self.recorder.event(pvc, NORMAL, "Provisioning",
                            f'External provisioner is provisioning volume for claim "{key}"', res=PVCS)
        path = plan.local_path(self.template, node, pvc)
        try:
            await asyncio.to_thread(_make_directory, path)
        except OSError as e:
            self.recorder.event(pvc, WARNING, "ProvisioningFailed",
                                f"failed to provision volume with StorageClass \"{sc['metadata']['name']}\": {e}",
                                res=PVCS)
            raise
        try:
            await self.client.create(PVS, plan.provisioned_volume(pvc, sc, node, path))
        except errors.AlreadyExists:
            return
        self.recorder.event(pvc, NORMAL, "ProvisioningSucceeded", f"Successfully provisioned volume {name}",
                            res=PVCS)

    async def _maybe_delete(self, pv: dict) -> None:
        """Reclaim Delete: the directory, then the object. Our finalizer keeps a volume someone
        else deletes until its directory is gone too (a Retain volume keeps its data)."""
        deleting = bool(plan.meta(pv).get("deletionTimestamp"))
        if deleting and plan.PROVISIONER_FINALIZER in (plan.meta(pv).get("finalizers") or []):
            if plan.phase(pv) == "Bound":
                return  # pv-protection: still in use
            if plan.spec(pv).get("persistentVolumeReclaimPolicy") == "Delete":
                await self._remove_directory(pv)
            await self.client.update(PVS, {**pv, "metadata": {**pv["metadata"], "finalizers": [
                f for f in pv["metadata"]["finalizers"] if f != plan.PROVISIONER_FINALIZER]}})
            return
        if deleting or plan.phase(pv) != "Released" or plan.spec(pv).get("persistentVolumeReclaimPolicy") != "Delete":
            return
        await self._remove_directory(pv)
        try:
            await self.client.delete(PVS, "", pv["metadata"]["name"], preconditions={"uid": pv["metadata"]["uid"]})
        except errors.NotFound:
            pass

    async def _remove_directory(self, pv: dict) -> None:
        path = plan.deletable_directory(pv, self.template, self.provisioner)
        if path is not None:
            await asyncio.to_thread(shutil.rmtree, path, True)
