"""Pure volume checks of the scheduler (mirror the VolumeBinding, VolumeRestrictions and
VolumeZone plugins of pkg/scheduler/framework/plugins).

- pod level (PreFilter): every PVC the pod names exists and is not being deleted, an unbound one
  has a WaitForFirstConsumer class (an Immediate one must be bound by the PV controller first), and
  a ReadWriteOncePod claim is not used by another pod;
- node level (Filter): a bound claim's volume admits the node (its nodeAffinity); an unbound
  claim can get a volume there: a matching available volume the node can reach, or a class with a
  provisioner (the scheduler then names the node with the selected-node annotation, PreBind, and
  waits for the binding before binding the pod).

Reasons are upstream's strings.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pocketkube.api.volumes import (
    ANN_SELECTED_NODE,
    claim_class,
    find_matching_volume,
    node_affinity_allows,
    pod_claim_names,
)

__all__ = ["REASON_BIND_CONFLICT", "REASON_NODE_CONFLICT", "REASON_PV_NOT_EXIST", "REASON_RWOP", "UNRESOLVABLE",
           "VolumeState", "claims_to_select", "filter_volumes", "pod_volumes_bound", "prefilter_volumes"]

REASON_NODE_CONFLICT = "node(s) had volume node affinity conflict"
REASON_BIND_CONFLICT = "node(s) didn't find available persistent volumes to bind"
REASON_PV_NOT_EXIST = "node(s) unavailable due to one or more pvc(s) bound to non-existent pv(s)"
REASON_RWOP = "node has pod using PersistentVolumeClaim with the same name and ReadWriteOncePod access mode"
REASON_UNBOUND_IMMEDIATE = "pod has unbound immediate PersistentVolumeClaims"
# Failures preemption cannot fix.
UNRESOLVABLE = (REASON_NODE_CONFLICT, REASON_BIND_CONFLICT, REASON_PV_NOT_EXIST)
NO_PROVISIONER = "kubernetes.io/no-provisioner"


@dataclass
class VolumeState:
    """What the scheduler's caches hold about storage."""
    claims: dict[str, dict] = field(default_factory=dict)  # "<ns>/<name>" → PVC
    volumes: dict[str, dict] = field(default_factory=dict)  # name → PV
    classes: dict[str, dict] = field(default_factory=dict)  # name → StorageClass
    rwop_in_use: set[str] = field(default_factory=set)  # "<ns>/<claim>" used by a scheduled pod

    def claims_of(self, pod: dict) -> list[tuple[str, dict | None]]:
        ns = (pod.get("metadata") or {}).get("namespace", "")
        return [(name, self.claims.get(f"{ns}/{name}")) for name in pod_claim_names(pod)]

    def class_of(self, pvc: dict) -> dict | None:
        name = claim_class(pvc)
        return self.classes.get(name) if name else None


def _spec(obj: dict) -> dict:
    return obj.get("spec") if isinstance(obj.get("spec"), dict) else {}


def _wait_for_consumer(sc: dict | None) -> bool:
    return sc is not None and sc.get("volumeBindingMode") == "WaitForFirstConsumer"


def prefilter_volumes(pod: dict, state: VolumeState) -> str | None:
    """Why the pod fits no node whatever the node (None: go on to the node filters)."""
    ns = (pod.get("metadata") or {}).get("namespace", "")
    for name, pvc in state.claims_of(pod):
        if pvc is None:
            return f'persistentvolumeclaim "{name}" not found'
        if (pvc.get("metadata") or {}).get("deletionTimestamp"):
            return f'persistentvolumeclaim "{name}" is being deleted'
        if not _spec(pvc).get("volumeName") and not _wait_for_consumer(state.class_of(pvc)):
            return REASON_UNBOUND_IMMEDIATE
        if "ReadWriteOncePod" in (_spec(pvc).get("accessModes") or []) and f"{ns}/{name}" in state.rwop_in_use:
            return REASON_RWOP
    return None


def filter_volumes(pod: dict, node: dict, state: VolumeState) -> str | None:
    """Why the pod's volumes rule this node out (None: they fit)."""
    node_name = node["metadata"]["name"]
    for _name, pvc in state.claims_of(pod):
        if pvc is None:
            continue  # prefilter_volumes reports it
        volume_name = _spec(pvc).get("volumeName")
        if volume_name:
            pv = state.volumes.get(volume_name)
            if pv is None:
                return REASON_PV_NOT_EXIST
            if not node_affinity_allows(pv, node):
                return REASON_NODE_CONFLICT
            continue
        selected = ((pvc.get("metadata") or {}).get("annotations") or {}).get(ANN_SELECTED_NODE)
        if selected and selected != node_name:
            return REASON_BIND_CONFLICT
        if find_matching_volume(pvc, state.volumes.values(), node) is not None:
            continue
        sc = state.class_of(pvc)
        if sc is None or sc.get("provisioner") in (None, "", NO_PROVISIONER):
            return REASON_BIND_CONFLICT
    return None


def claims_to_select(pod: dict, node: str, state: VolumeState) -> list[dict]:
    """The unbound claims to annotate with selected-node=`node` before the pod is bound (PreBind)."""
    out = []
    for _name, pvc in state.claims_of(pod):
        if pvc is None or _spec(pvc).get("volumeName"):
            continue
        if ((pvc.get("metadata") or {}).get("annotations") or {}).get(ANN_SELECTED_NODE) != node:
            out.append(pvc)
    return out


def pod_volumes_bound(pod: dict, state: VolumeState) -> bool:
    """Every claim of the pod is bound to a volume (the scheduler's wait before binding the pod)."""
    for _name, pvc in state.claims_of(pod):
        if pvc is None or not _spec(pvc).get("volumeName") or (pvc.get("status") or {}).get("phase") != "Bound":
            return False
    return True
