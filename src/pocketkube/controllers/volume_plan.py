"""Pure decisions of the PersistentVolume controller and the local-path provisioner (mirror
pkg/controller/volume/persistentvolume's syncClaim/syncVolume and the local-path provisioner).

Every function takes objects and returns what to write; nothing here does I/O.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import PurePosixPath

from pocketkube.api.volumes import (
    ANN_BETA_STORAGE_PROVISIONER,
    ANN_BIND_COMPLETED,
    ANN_BOUND_BY_CONTROLLER,
    ANN_PROVISIONED_BY,
    ANN_SELECTED_NODE,
    ANN_STORAGE_PROVISIONER,
    HOSTNAME_LABEL,
    claim_class,
    claim_ref_is,
    parse_quantity,
)

NO_PROVISIONER = "kubernetes.io/no-provisioner"
PROVISIONER_FINALIZER = "external-provisioner.volume.kubernetes.io/finalizer"
ANN_LOCAL_NODE = "local.path.provisioner/selected-node"  # the node a provisioned volume lives on
# Event messages, as upstream's PV controller words them.
MSG_WAIT_FIRST_CONSUMER = "waiting for first consumer to be created before binding"
MSG_NO_CLASS = "no persistent volumes available for this claim and no storage class is set"
MSG_CLAIM_LOST = "Bound claim has lost its PersistentVolume. Data on the volume is lost!"
MSG_CLAIM_MISBOUND = "Two claims are bound to the same volume, this one is bound incorrectly"


def external_provisioning_message(provisioner: str) -> str:
    return (f"Waiting for a volume to be created either by the external provisioner '{provisioner}' or "
            "manually by the system administrator. If volume creation is delayed, please verify that the "
            "provisioner is running and correctly registered.")


def meta(obj: dict) -> dict:
    return obj.get("metadata") or {}


def annotations(obj: dict) -> dict:
    return meta(obj).get("annotations") or {}


def spec(obj: dict) -> dict:
    value = obj.get("spec")
    return value if isinstance(value, dict) else {}


def phase(obj: dict) -> str:
    return (obj.get("status") or {}).get("phase") or ""


def claim_key(pvc: dict) -> str:
    return f"{meta(pvc).get('namespace', '')}/{meta(pvc).get('name', '')}"


def claim_reference(pvc: dict) -> dict:
    m = meta(pvc)
    return {"kind": "PersistentVolumeClaim", "namespace": m["namespace"], "name": m["name"], "uid": m["uid"],
            "apiVersion": "v1", "resourceVersion": m.get("resourceVersion", "")}


def _with_annotations(obj: dict, **values: str) -> dict:
    new = copy.deepcopy(obj)
    m = new.setdefault("metadata", {})
    m["annotations"] = {**(m.get("annotations") or {}), **values}
    return new


def delayed_binding(pvc: dict, sc: dict | None) -> bool:
    """WaitForFirstConsumer class and no node chosen yet by the scheduler."""
    return (sc is not None and sc.get("volumeBindingMode") == "WaitForFirstConsumer"
            and not annotations(pvc).get(ANN_SELECTED_NODE))


def volume_bound_to(pv: dict, pvc: dict) -> dict:
    """The volume with its claimRef naming the claim (bindVolumeToClaim)."""
    new = copy.deepcopy(pv)
    pre_bound = claim_ref_is(pv, pvc) and spec(pv).get("claimRef")
    new["spec"]["claimRef"] = claim_reference(pvc)
    if not pre_bound:
        new = _with_annotations(new, **{ANN_BOUND_BY_CONTROLLER: "yes"})
    return new


def claim_bound_to(pvc: dict, pv: dict) -> dict:
    """The claim with volumeName and the binding annotations (bindClaimToVolume)."""
    new = copy.deepcopy(pvc)
    values = {ANN_BIND_COMPLETED: "yes"}
    if not spec(pvc).get("volumeName"):
        values[ANN_BOUND_BY_CONTROLLER] = "yes"
    new = _with_annotations(new, **values)
    new["spec"]["volumeName"] = meta(pv)["name"]
    return new


def bound_claim_status(pvc: dict, pv: dict) -> dict:
    status = dict(pvc.get("status") or {})
    status["phase"] = "Bound"
    status["accessModes"] = list(spec(pv).get("accessModes") or [])
    status["capacity"] = dict(spec(pv).get("capacity") or {})
    return status


def claim_needs_binding_write(pvc: dict, pv: dict) -> bool:
    return spec(pvc).get("volumeName") != meta(pv).get("name") or annotations(pvc).get(ANN_BIND_COMPLETED) != "yes"


def with_provisioner_annotations(pvc: dict, provisioner: str) -> dict | None:
    """The claim annotated with the provisioner expected to create its volume; None when it already is."""
    ann = annotations(pvc)
    if ann.get(ANN_STORAGE_PROVISIONER) == provisioner and ann.get(ANN_BETA_STORAGE_PROVISIONER) == provisioner:
        return None
    return _with_annotations(pvc, **{ANN_STORAGE_PROVISIONER: provisioner, ANN_BETA_STORAGE_PROVISIONER: provisioner})


@dataclass(frozen=True)
class VolumeVerdict:
    """What syncVolume decides for a volume: its phase, and whether to reclaim or unbind it."""
    phase: str
    reclaim: bool = False  # the claim is gone: apply the reclaim policy
    unbind: bool = False  # the controller bound it to a claim that took another volume: free it


def judge_volume(pv: dict, claim: dict | None) -> VolumeVerdict:
    """`claim` is the stored claim named by the volume's claimRef (None when there is none)."""
    ref = spec(pv).get("claimRef")
    if not ref:
        return VolumeVerdict("Available")
    if not ref.get("uid"):
        return VolumeVerdict("Available")  # pre-bound by the user; the claim's sync binds it
    if claim is None or meta(claim).get("uid") != ref.get("uid"):
        return VolumeVerdict("Released", reclaim=True)
    volume_name = spec(claim).get("volumeName")
    if volume_name == meta(pv).get("name"):
        return VolumeVerdict("Bound")
    if not volume_name:
        return VolumeVerdict(phase(pv) or "Available")  # binding in progress: the claim's sync ends it
    if annotations(pv).get(ANN_BOUND_BY_CONTROLLER) == "yes":
        return VolumeVerdict("Available", unbind=True)
    return VolumeVerdict("Released", reclaim=True)


def unbound_volume(pv: dict) -> dict:
    new = copy.deepcopy(pv)
    new["spec"].pop("claimRef", None)
    (new["metadata"].get("annotations") or {}).pop(ANN_BOUND_BY_CONTROLLER, None)
    return new


# ---- the local-path provisioner ----

def provisioned_volume_name(pvc: dict) -> str:
    return f"pvc-{meta(pvc)['uid']}"


def local_path(template: str, node: str, pvc: dict) -> str:
    """<node's data dir>/storage/pvc-<uid>_<namespace>_<name>, as rancher's local-path names them."""
    m = meta(pvc)
    root = template.replace("{node}", node)
    return str(PurePosixPath(root) / f"pvc-{m['uid']}_{m['namespace']}_{m['name']}")


def provisioned_volume(pvc: dict, sc: dict, node: str, path: str) -> dict:
    """The PersistentVolume for a claim on `node`: a hostPath directory pinned to that node,
    pre-bound to the claim, the class's reclaim policy, capacity = the request."""
    s = spec(pvc)
    return {
        "apiVersion": "v1", "kind": "PersistentVolume",
        "metadata": {"name": provisioned_volume_name(pvc),
                     "annotations": {ANN_PROVISIONED_BY: sc.get("provisioner", ""),
                                     ANN_LOCAL_NODE: node},
                     # Held until the directory is gone, whoever deletes the volume.
                     "finalizers": [PROVISIONER_FINALIZER]},
        "spec": {
            "capacity": {"storage": ((s.get("resources") or {}).get("requests") or {}).get("storage", "0")},
            "accessModes": list(s.get("accessModes") or []),
            "persistentVolumeReclaimPolicy": sc.get("reclaimPolicy") or "Delete",
            "storageClassName": claim_class(pvc),
            "volumeMode": s.get("volumeMode") or "Filesystem",
            "hostPath": {"path": path, "type": "DirectoryOrCreate"},
            "claimRef": claim_reference(pvc),
            "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                {"key": HOSTNAME_LABEL, "operator": "In", "values": [node]}]}]}},
        },
    }


def provisioning_node(pvc: dict, sc: dict, ready_nodes: list[str], volumes: list[dict] = ()) -> str | None:
    """The node to provision on: the scheduler's choice, or for an Immediate class the Ready node
    holding the fewest of our volumes (then by name); None: not yet."""
    selected = annotations(pvc).get(ANN_SELECTED_NODE)
    if selected:
        return selected
    if sc.get("volumeBindingMode") == "WaitForFirstConsumer" or not ready_nodes:
        return None
    held = [annotations(v).get(ANN_LOCAL_NODE) for v in volumes]
    return min(ready_nodes, key=lambda n: (held.count(n), n))


def wants_provisioning(pvc: dict, provisioner: str) -> bool:
    return (not spec(pvc).get("volumeName") and not meta(pvc).get("deletionTimestamp")
            and annotations(pvc).get(ANN_STORAGE_PROVISIONER) == provisioner)


def deletable_directory(pv: dict, template: str, provisioner: str) -> str | None:
    """The directory to remove when our provisioned volume is reclaimed with Delete: only a path our
    template produces for the volume's node, so a hand-edited volume can never make us remove
    anything else."""
    if annotations(pv).get(ANN_PROVISIONED_BY) != provisioner:
        return None
    path = (spec(pv).get("hostPath") or spec(pv).get("local") or {}).get("path")
    node = annotations(pv).get(ANN_LOCAL_NODE)
    if not isinstance(path, str) or not node or not template:
        return None
    root = PurePosixPath(template.replace("{node}", node))
    candidate = PurePosixPath(path)
    if candidate.parent != root or not candidate.name.startswith(f"{meta(pv).get('name', '')}_") or ".." in path:
        return None
    return path


def expansion(pvc: dict, pv: dict, provisioner: str) -> str | None:
    """The size to grow our bound volume to when its claim asks for more than it has (a directory
    has no size to change: growing is recording the new capacity); None when nothing to do."""
    if annotations(pv).get(ANN_PROVISIONED_BY) != provisioner or phase(pvc) != "Bound":
        return None
    if spec(pvc).get("volumeName") != meta(pv).get("name"):
        return None
    wanted = ((spec(pvc).get("resources") or {}).get("requests") or {}).get("storage")
    want, have = parse_quantity(wanted), parse_quantity((spec(pv).get("capacity") or {}).get("storage"))
    shown = parse_quantity(((pvc.get("status") or {}).get("capacity") or {}).get("storage"))
    if want is None or have is None:
        return None
    return wanted if want > have or (shown is not None and want > shown) else None
