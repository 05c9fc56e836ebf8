"""The strategies of PersistentVolume, PersistentVolumeClaim and StorageClass, with the admission
plugins that act on them at write time:

- DefaultStorageClass: a claim created without spec.storageClassName gets the default class's
  name (the newest default class when several are marked, as upstream picks).
- StorageObjectInUseProtection: claims get the kubernetes.io/pvc-protection finalizer and volumes
  kubernetes.io/pv-protection at create; the protection controllers remove them once unused.
- PersistentVolumeClaimResize: a bound claim's storage request may grow only when its class
  allows volume expansion.

The admission plugins read StorageClasses; the registry hands the claim hooks that store once
every store exists (`connect`).
"""

from __future__ import annotations

from collections.abc import Callable

from pocketkube.api import errors
from pocketkube.api.volumes import PROTECTION_PV, PROTECTION_PVC, claim_class, default_class_name
from pocketkube.registry.strategy import Hooks, Strategy, Transaction
from pocketkube.registry.volumes import validation as v

RESIZE_FORBIDDEN = ("only dynamically provisioned pvc can be resized and the storageclass that provisions "
                    "the pvc must support resize")


def _add_finalizer(obj: dict, finalizer: str) -> None:
    m = obj.setdefault("metadata", {})
    finalizers = m.get("finalizers")
    if not isinstance(finalizers, list):
        finalizers = []
    if finalizer not in finalizers:
        m["finalizers"] = [*finalizers, finalizer]


def admit_new_claim(pvc: dict, classes: list[dict]) -> None:
    """DefaultStorageClass and pvc-protection, in place. An explicit "" class means "no class"."""
    spec = pvc.get("spec")
    if isinstance(spec, dict) and spec.get("storageClassName") is None and not claim_class(pvc):
        name = default_class_name(classes)
        if name is not None:
            spec["storageClassName"] = name
    _add_finalizer(pvc, PROTECTION_PVC)


def resize_allowed(pvc: dict, classes: list[dict]) -> bool:
    name = claim_class(pvc)
    sc = next((c for c in classes if (c.get("metadata") or {}).get("name") == name), None) if name else None
    return sc is not None and sc.get("allowVolumeExpansion") is True


class ClaimHooks(Hooks):
    def __init__(self) -> None:
        self.classes: Callable[[], list[dict]] = list

    def before_create(self, obj: dict) -> Transaction | None:
        admit_new_claim(obj, self.classes())
        return None

    def before_update(self, new: dict, old: dict) -> Transaction | None:
        bound = isinstance(old.get("status"), dict) and old["status"].get("phase") == "Bound"
        if bound and v.resized(new, old) and not resize_allowed(new, self.classes()):
            name = old["metadata"]["name"]
            raise errors.Forbidden(f'persistentvolumeclaims "{name}" is forbidden: {RESIZE_FORBIDDEN}',
                                   {"name": name, "kind": "persistentvolumeclaims"})
        return None


class VolumeHooks(Hooks):
    def before_create(self, obj: dict) -> Transaction | None:
        _add_finalizer(obj, PROTECTION_PV)
        return None


def pv_strategy() -> Strategy:
    return Strategy(v.default_pv, v.validate_pv, v.validate_pv_update, hooks=VolumeHooks())


def pvc_strategy() -> Strategy:
    return Strategy(v.default_pvc, v.validate_pvc, v.validate_pvc_update, hooks=ClaimHooks())


def storage_class_strategy() -> Strategy:
    return Strategy(v.default_storage_class, v.validate_storage_class, v.validate_storage_class_update)


def connect(stores: dict) -> None:
    """Give the claim admission its view of the StorageClasses (stores keyed (group, plural))."""
    hooks = stores[("", "persistentvolumeclaims")].hooks
    if isinstance(hooks, ClaimHooks):
        hooks.classes = stores[("storage.k8s.io", "storageclasses")].list_objects
