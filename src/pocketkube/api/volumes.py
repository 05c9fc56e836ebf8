"""The vocabulary of persistent storage shared by the registry, the PV controller and the scheduler:
annotation names, phases, and the pure matching rules (which PersistentVolume satisfies a claim,
whether a volume's node affinity admits a node).

Mirrors pkg/controller/volume/persistentvolume (findMatchingVolume, checkVolumeSatisfyClaim) and
component-helpers' storage/volume helpers. Everything here tolerates malformed JSON: a wrong type
never raises, it simply does not match.
"""

from __future__ import annotations

from collections.abc import Iterable
from fractions import Fraction
from typing import Any

from pocketkube.api.quantity import parse as parse_quantity
from pocketkube.api.selectors import LabelSelector

__all__ = [
    "ANN_BIND_COMPLETED", "ANN_BOUND_BY_CONTROLLER", "ANN_DEFAULT_CLASS", "ANN_PROVISIONED_BY",
    "ANN_SELECTED_NODE", "ANN_STORAGE_PROVISIONER", "HOSTNAME_LABEL", "PROTECTION_PV", "PROTECTION_PVC",
    "access_modes_cover", "claim_class", "default_class_name", "claim_request", "claim_uses", "find_matching_volume", "is_default_class",
    "mismatch", "node_affinity_allows", "parse_quantity", "pod_claim_names", "volume_class",
]

ANN_BIND_COMPLETED = "pv.kubernetes.io/bind-completed"
ANN_BOUND_BY_CONTROLLER = "pv.kubernetes.io/bound-by-controller"
ANN_PROVISIONED_BY = "pv.kubernetes.io/provisioned-by"
ANN_SELECTED_NODE = "volume.kubernetes.io/selected-node"
ANN_STORAGE_PROVISIONER = "volume.kubernetes.io/storage-provisioner"
ANN_BETA_STORAGE_PROVISIONER = "volume.beta.kubernetes.io/storage-provisioner"
ANN_DEFAULT_CLASS = "storageclass.kubernetes.io/is-default-class"
ANN_BETA_DEFAULT_CLASS = "storageclass.beta.kubernetes.io/is-default-class"
ANN_BETA_CLASS = "volume.beta.kubernetes.io/storage-class"
PROTECTION_PVC = "kubernetes.io/pvc-protection"
PROTECTION_PV = "kubernetes.io/pv-protection"
HOSTNAME_LABEL = "kubernetes.io/hostname"



def _map(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list:
    return value if isinstance(value, list) else []


def is_default_class(sc: dict) -> bool:
    ann = _map(_map(sc.get("metadata")).get("annotations"))
    return ann.get(ANN_DEFAULT_CLASS) == "true" or ann.get(ANN_BETA_DEFAULT_CLASS) == "true"


def default_class_name(classes: Iterable[dict]) -> str | None:
    """The default StorageClass: the newest one marked default (ties: by name), as upstream picks it."""
    defaults = [c for c in classes if is_default_class(c)]
    if not defaults:
        return None
    newest = max(defaults, key=lambda c: (str(_map(c.get("metadata")).get("creationTimestamp") or ""),
                                          str(_map(c.get("metadata")).get("name") or "")))
    return newest["metadata"]["name"]


def claim_class(pvc: dict) -> str:
    """GetPersistentVolumeClaimClass: the beta annotation wins over spec.storageClassName."""
    ann = _map(_map(pvc.get("metadata")).get("annotations"))
    if ANN_BETA_CLASS in ann:
        return str(ann[ANN_BETA_CLASS])
    value = _map(pvc.get("spec")).get("storageClassName")
    return value if isinstance(value, str) else ""


def volume_class(pv: dict) -> str:
    ann = _map(_map(pv.get("metadata")).get("annotations"))
    if ANN_BETA_CLASS in ann:
        return str(ann[ANN_BETA_CLASS])
    value = _map(pv.get("spec")).get("storageClassName")
    return value if isinstance(value, str) else ""


def claim_request(pvc: dict) -> Fraction:
    value = parse_quantity(_map(_map(_map(pvc.get("spec")).get("resources")).get("requests")).get("storage"))
    return value if value is not None else Fraction(0)


def _capacity(pv: dict) -> Fraction | None:
    return parse_quantity(_map(_map(pv.get("spec")).get("capacity")).get("storage"))


def access_modes_cover(have: Any, want: Any) -> bool:
    """Every requested access mode is offered (the volume may offer more)."""
    offered = {m for m in _list(have) if isinstance(m, str)}
    return all(m in offered for m in _list(want))


def _volume_mode(obj: dict) -> str:
    mode = _map(obj.get("spec")).get("volumeMode")
    return mode if isinstance(mode, str) and mode else "Filesystem"


def _requirement_holds(req: dict, source: dict) -> bool:
    key, op, values = req.get("key"), req.get("operator"), _list(req.get("values"))
    present = key in source
    if op == "In":
        return present and source[key] in values
    if op == "NotIn":
        return not present or source[key] not in values
    if op == "Exists":
        return present
    if op == "DoesNotExist":
        return not present
    if op in ("Gt", "Lt") and present and len(values) == 1:
        try:
            left, right = int(source[key]), int(values[0])
        except (TypeError, ValueError):
            return False
        return left > right if op == "Gt" else left < right
    return False


def node_affinity_allows(pv: dict, node: dict) -> bool:
    """Whether the volume's spec.nodeAffinity.required admits the node (no affinity admits all).
    Terms are ORed, the requirements of one term ANDed, as a pod's required node affinity."""
    required = _map(_map(_map(pv.get("spec")).get("nodeAffinity")).get("required"))
    if not required:
        return True
    meta = _map(node.get("metadata"))
    labels = _map(meta.get("labels"))
    fields = {"metadata.name": meta.get("name", "")}
    for term in _list(required.get("nodeSelectorTerms")):
        term = _map(term)
        exprs, field_exprs = _list(term.get("matchExpressions")), _list(term.get("matchFields"))
        if not exprs and not field_exprs:
            continue
        if all(_requirement_holds(_map(r), labels) for r in exprs) and all(
                _requirement_holds(_map(r), fields) for r in field_exprs):
            return True
    return False


def _selector_matches(pvc: dict, pv: dict) -> bool:
    selector = _map(pvc.get("spec")).get("selector")
    if selector is None:
        return True
    try:
        return LabelSelector.from_dict(selector).matches(_map(pv.get("metadata")).get("labels"))
    except ValueError:
        return False


def claim_ref_is(pv: dict, pvc: dict) -> bool:
    """Whether the volume's claimRef names this claim (a ref without uid names any claim of that name)."""
    ref = _map(_map(pv.get("spec")).get("claimRef"))
    m = _map(pvc.get("metadata"))
    if ref.get("name") != m.get("name") or (ref.get("namespace") or "") != m.get("namespace"):
        return False
    return not ref.get("uid") or ref.get("uid") == m.get("uid")


def mismatch(pv: dict, pvc: dict) -> str:
    """checkVolumeSatisfyClaim: why the volume cannot serve the claim, in upstream's words ("" when it can)."""
    capacity = _capacity(pv)
    if capacity is None or capacity < claim_request(pvc):
        return "requested PV is too small"
    if volume_class(pv) != claim_class(pvc):
        return "storageClassName does not match"
    if _volume_mode(pv) != _volume_mode(pvc):
        return "incompatible volumeMode"
    if not access_modes_cover(_map(pv.get("spec")).get("accessModes"), _map(pvc.get("spec")).get("accessModes")):
        return "incompatible accessMode"
    return ""


def volume_satisfies(pv: dict, pvc: dict) -> bool:
    """checkVolumeSatisfyClaim plus the selector: size, class, mode, access modes, labels."""
    return not mismatch(pv, pvc) and _selector_matches(pvc, pv)


def find_matching_volume(pvc: dict, volumes: Iterable[dict], node: dict | None = None) -> dict | None:
    """The volume the claim binds to: one pre-bound to it (claimRef naming it) if any fits, else the
    smallest available one that satisfies it; with `node` (delayed binding), only volumes whose node
    affinity admits that node. Released/Failed volumes and those being deleted never match."""
    best: dict | None = None
    best_size: Fraction | None = None
    for pv in volumes:
        m = _map(pv.get("metadata"))
        if m.get("deletionTimestamp") or _map(pv.get("status")).get("phase") in ("Released", "Failed"):
            continue
        ref = _map(pv.get("spec")).get("claimRef")
        if ref and not claim_ref_is(pv, pvc):
            continue
        if node is not None and not node_affinity_allows(pv, node):
            continue
        if not volume_satisfies(pv, pvc):
            continue
        if ref:
            return pv
        size = _capacity(pv)
        if best is None or (size is not None and best_size is not None and size < best_size):
            best, best_size = pv, size
    return best


def pod_claim_names(pod: dict) -> list[str]:
    """The PVC names a pod's volumes use, in order, each once."""
    names: list[str] = []
    for vol in _list(_map(pod.get("spec")).get("volumes")):
        name = _map(_map(vol).get("persistentVolumeClaim")).get("claimName")
        if isinstance(name, str) and name and name not in names:
            names.append(name)
    return names


def claim_uses(pod: dict, namespace: str, claim: str) -> bool:
    """Whether a scheduled, not yet finished pod of the namespace uses the claim (what pvc-protection
    waits for; an unscheduled pod never starts with a claim being deleted, so it does not count)."""
    m = _map(pod.get("metadata"))
    if (m.get("namespace") != namespace or not _map(pod.get("spec")).get("nodeName")
            or _map(pod.get("status")).get("phase") in ("Succeeded", "Failed")):
        return False
    return claim in pod_claim_names(pod)
